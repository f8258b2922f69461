"""The ``supernet`` evaluator: a genome's score is the validation accuracy of its
sub-network with inherited weights, after its batch-norm statistics are re-estimated
on a few training batches (the shared running statistics belong to no sub-network;
once-for-all and BigNAS recalibrate them the same way).

The sub-network is exported to its stand-alone :func:`space.build` network
(:meth:`Supernet.extract`) and scored by the trainer's own batch-norm recalibration
and accuracy functions, so the score is that of the very network a user would deploy.
The supernet is trained on first use (or read from its artifact) over the training
images outside the validation split, with the split's ``val_size`` and ``seed``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional, Union

from space import Genome, SearchSpace

from ..common import UsageError
from ..data import split_train_val, take_subset
from ..evaluators import Evaluator
from ..noise import binomial_standard_error
from ..protocol import EvaluationFailed
from ..train import evaluate_accuracy, recompute_batch_norm
from .artifact import default_path, key_digest, obtain, save_artifact, supernet_key
from .model import Supernet, check_shareable
from .settings import SupernetSettings
from .training import train_supernet

__all__ = ["SupernetEvaluator", "BN_IMAGES"]

# Training images over which a sub-network's batch-norm statistics are re-estimated
# (four batches of 128). Once-for-all re-estimates on 2,000 ImageNet images; on
# Fashion-MNIST at 32 px 512 keep a genome's evaluation to seconds. To be tuned by the
# rank-fidelity measurement of issue 22.
BN_IMAGES = 512


class SupernetEvaluator(Evaluator):
    """Scores genomes of ``space`` by a supernet trained once with ``settings``.

    ``path`` names the artifact (default ``<runs_dir>/supernets/<digest>.pt``); it is
    built there on first use, by one process while others wait."""

    name = "supernet"

    def __init__(self, *, space: SearchSpace, settings: SupernetSettings,
                 path: Union[str, Path, None] = None, runs_dir: Union[str, Path] = "runs",
                 bn_images: int = BN_IMAGES, rebuild: bool = False, force: bool = False,
                 checkpoint_seconds: float = 60.0, **common: Any) -> None:
        check_shareable(space)  # before the dataset loads
        if bn_images < 1:
            raise UsageError(f"batch-norm images {bn_images} must be at least 1")
        super().__init__(resolution=settings.resolution, seed=settings.seed, **common)
        self.space = space
        self.supernet_settings = settings
        self.bn_images = bn_images
        train, self.val = split_train_val(self.data, settings.val_size, settings.seed)
        self.train = take_subset(train, settings.subset, settings.seed)
        self.key = supernet_key(space, self.data, settings)
        self.path = Path(path) if path is not None else default_path(runs_dir, self.key)
        self.checkpoint_seconds = checkpoint_seconds
        self.supernet, self.metadata, self.built = obtain(self.path, space, self.key,
                                                          self._build, rebuild=rebuild,
                                                          force=force)
        self.supernet.to(self.device)
        # An artifact given by path may have been trained longer or on more images; its
        # split and resolution match (obtain checks), and its own settings are recorded.
        stored = self.metadata["key"]["settings"]
        self.supernet_settings = SupernetSettings(**{
            field.name: stored[field.name] for field in dataclasses.fields(SupernetSettings)
            if field.name in stored})

    @classmethod
    def create(cls, *, proxy: Any, batch_size: Optional[int], train_config: Any,
               common: dict[str, Any], space: Optional[SearchSpace] = None,
               runs_dir: Union[str, Path] = "runs", supernet: Union[str, Path, None] = None,
               supernet_settings: Optional[SupernetSettings] = None,
               **extra: Any) -> "SupernetEvaluator":
        """For :func:`nas.evaluators.make_evaluator`: the supernet of ``space`` (default:
        the built-in space) trained with ``supernet_settings`` (default: the supernet
        defaults at the proxy protocol's resolution, validation split and seed), read
        from ``supernet`` (a path) or found under ``runs_dir``. The protocol's epochs
        and subset are a per-genome training's and do not apply."""
        space = space or SearchSpace.default()
        settings = supernet_settings or SupernetSettings(
            resolution=proxy.resolution, val_size=proxy.val_size, seed=common["seed"])
        rest = {key: value for key, value in common.items() if key not in ("resolution", "seed")}
        return cls(space=space, settings=settings, path=supernet,
                   runs_dir=runs_dir, **rest)

    def _build(self, partial: Path) -> None:
        supernet = Supernet(self.space, num_classes=self.num_classes,
                            in_channels=self.in_channels)
        summary = train_supernet(supernet, self.train, self.normalization,
                                 self.supernet_settings, digest=key_digest(self.key),
                                 checkpoint=partial, checkpoint_seconds=self.checkpoint_seconds,
                                 device=self.device, quiet=self.quiet)
        save_artifact(self.path, supernet.cpu(), self.key,
                      normalization=self.normalization.to_dict(), training=summary)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "supernet": str(self.path),
                # the artifact's own key: two files trained differently never share it
                "supernet_digest": key_digest(self.metadata["key"]),
                **{f"supernet_{key}": value
                   for key, value in self.supernet_settings.to_dict().items()},
                "val_size": len(self.val), "bn_images": self.bn_images}

    def noise(self, score: float) -> Optional[float]:
        """The binomial standard error of an accuracy on the validation split."""
        return binomial_standard_error(min(1.0, max(0.0, score)), len(self.val))

    def evaluate(self, genome: Genome, *,
                 on_epoch: Optional[Callable[[int, float], None]] = None) -> float:
        """The validation accuracy of ``genome``'s sub-network; ``on_epoch`` is not
        called (nothing trains, so there are no epochs to report)."""
        why = self.space.why_not_contained(genome)
        if why:
            raise EvaluationFailed(f"the supernet cannot score a genome outside its space: {why}")
        resolution = self.input_resolution(genome)
        self._check_memory(genome, resolution=resolution, batch=1024, training=False)
        model = self.supernet.extract(dataclasses.replace(genome, dropout=0.0,
                                                          drop_connect_rate=0.0))
        recompute_batch_norm(model, self.train, images=self.bn_images,
                             batch_size=min(128, self.bn_images), resolution=resolution,
                             normalization=self.normalization, device=self.device,
                             channels_last=True, seed=self.seed)
        return evaluate_accuracy(model, self.val, resolution=resolution,
                                 normalization=self.normalization, device=self.device)
