"""torch.hub entry point: the network of a genome, untrained or with a checkpoint's weights.

From a checkout of this repository (``source="local"`` reads this file; nothing is
downloaded)::

    import torch
    model = torch.hub.load("path/to/repo", "genome_model", "efficientnet-b0", source="local")
    model = torch.hub.load("path/to/repo", "genome_model", "runs/<study>/best.json",
                           checkpoint="runs/<study>/model.pt", source="local")

``dependencies`` lists what torch.hub checks before the call; the repository's own
``space`` and ``nas`` packages are imported from the checkout. With the package installed,
the same is ``space.build(genome, num_classes, in_channels)`` or
``nas.checkpoint.model_from_checkpoint(path)``, which this function wraps.
"""

dependencies = ["torch", "numpy", "networkx"]


def genome_model(path_or_preset, num_classes=None, in_channels=None, checkpoint=None):
    """The torch network of a genome (a preset name such as ``efficientnet-b0`` or a genome
    JSON file).

    Without ``checkpoint`` the weights are the untrained initialisation and the model is
    in training mode; ``num_classes`` and ``in_channels`` default to 1000 and 3 (ImageNet).
    With ``checkpoint`` (written by ``nas train``) the trained weights are loaded, the
    model is in eval mode, the genome must be the one the checkpoint was trained with, and
    ``num_classes``/``in_channels`` default to the checkpoint's (other values are refused:
    the weights would not fit). Errors are ``space.NasError`` subclasses that say what to
    change.
    """
    from nas.checkpoint import CheckpointError, model_from_checkpoint
    from nas.common import load_genome
    from nas.export import architecture_difference
    from space import build

    genome = load_genome(path_or_preset)
    if checkpoint is None:
        return build(genome, num_classes=1000 if num_classes is None else num_classes,
                     in_channels=3 if in_channels is None else in_channels)
    saved, model, metadata = model_from_checkpoint(checkpoint)
    difference = architecture_difference(genome, saved)
    if difference:
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} was trained for another "
                              f"architecture than {str(path_or_preset)!r} ({difference}: "
                              "checkpoint vs genome)")
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if value is not None and value != metadata[name]:
            raise CheckpointError(f"{name}={value} does not fit checkpoint {str(checkpoint)!r}, "
                                  f"which has {metadata[name]}; leave {name} out")
    return model
