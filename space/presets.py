"""Published architectures as genomes.

``efficientnet-b0``: Tan & Le 2019, Table 1 (SE 0.25 in every block, SiLU); torchvision's
``efficientnet_b0`` has the same 5,288,548 parameters.
``mnasnet-a1``: Tan et al. 2019, Figure 7 (SepConv first stage without a skip, SE only
where the figure draws it, ReLU): 3.9 M parameters, 312 M multiply-adds.
"""

from __future__ import annotations

from .errors import GenomeError
from .genome import Genome, Stage

__all__ = ["get", "names"]


def _stages(rows: list[tuple]) -> tuple[Stage, ...]:
    return tuple(Stage(kernel_size=k, expand_ratio=e, se_ratio=se, num_layers=n,
                       out_channels=c, stride=s, **dict(ops))
                 for k, e, se, n, c, s, *ops in rows)


# (kernel, expand, se, layers, channels, first stride[, (field, value) ...]), one row per
# stage, numbered 1..7 as everywhere in the tool
_PRESETS = {
    "efficientnet-b0": Genome(
        name="efficientnet-b0",
        stages=_stages([
            (3, 1, 0.25, 1, 16, 1),    # stage 1, 112x112 in
            (3, 6, 0.25, 2, 24, 2),    # stage 2, 112x112 in
            (5, 6, 0.25, 2, 40, 2),    # stage 3, 56x56 in
            (3, 6, 0.25, 3, 80, 2),    # stage 4, 28x28 in
            (5, 6, 0.25, 3, 112, 1),   # stage 5, 14x14 in
            (5, 6, 0.25, 4, 192, 2),   # stage 6, 14x14 in
            (3, 6, 0.25, 1, 320, 1),   # stage 7, 7x7 in
        ]),
        stem_channels=32, head_channels=1280, dropout=0.2, drop_connect_rate=0.2,
        resolution=224, activation="silu"),
    "mnasnet-a1": Genome(
        name="mnasnet-a1",
        stages=_stages([
            # SepConv without a residual, as the reference code and timm write it
            # ('..._noskip'): 32 -> 16 channels has none, but a deeper scaled stage would
            (3, 1, 0.0, 1, 16, 1, ("skip_op", "none")),     # 112x112 in
            (3, 6, 0.0, 2, 24, 2),     # 112x112 in
            (5, 3, 0.25, 3, 40, 2),    # 56x56 in
            (3, 6, 0.0, 4, 80, 2),     # 28x28 in
            (3, 6, 0.25, 2, 112, 1),   # 14x14 in
            (5, 6, 0.25, 3, 160, 2),   # 14x14 in
            (3, 6, 0.0, 1, 320, 1),    # 7x7 in
        ]),
        stem_channels=32, head_channels=1280, dropout=0.2, drop_connect_rate=0.0,
        resolution=224, activation="relu"),
}


def names() -> list[str]:
    return sorted(_PRESETS)


def get(name: str) -> Genome:
    """A preset genome by name (``efficientnet-b0`` or ``mnasnet-a1``)."""
    try:
        return _PRESETS[name]
    except KeyError:
        raise GenomeError(f"unknown preset {name!r}; choose one of {', '.join(names())}") from None
