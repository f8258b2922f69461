"""A tiny search space and supernet settings for the supernet tests: three stages,
every kind of choice, 16-pixel Fashion-MNIST, a few hundred images."""

from space import SearchSpace

TINY_SPACE = {
    "stem_channels": 8, "head_channels": 32, "dropout": 0.1, "drop_connect_rate": 0.1,
    "choices": {"kernel_size": [3, 5], "expand_ratio": [1, 3], "se_ratio": [0, 0.25],
                "layers_delta": [-1, 0], "width_multiplier": [0.5, 1.0],
                "conv_op": ["mbconv", "fused"], "skip_op": ["identity", "none"]},
    "stages": [{"out_channels": 8, "num_layers": 1, "stride": 1},
               {"out_channels": 16, "num_layers": 2, "stride": 2},
               {"out_channels": 24, "num_layers": 2, "stride": 2}],
}

# As passed to `nas supernet train` and to SupernetSettings.
TINY_SETTINGS = {"epochs": 1, "subset": 512, "batch_size": 64, "resolution": 16,
                 "val_size": 500}


def tiny_space(**changes) -> SearchSpace:
    return SearchSpace.from_dict({**TINY_SPACE, **changes}, source="<tiny>")
