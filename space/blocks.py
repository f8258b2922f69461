"""From a genome to fully resolved blocks: the single description that both the torch
builder (:mod:`space.model`) and the analytic graph (:mod:`space.graph`) consume, so
that the cost model cannot drift from the network that is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .genome import Genome
from .schema import BLOCK_CHOICES

__all__ = ["round_channels", "BlockSpec", "resolve_blocks", "conv_output_size",
           "canonical_genome"]


def round_channels(channels: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Round a channel count to a multiple of ``divisor``, never below ``round_limit`` of it.

    The rule of the EfficientNet and MobileNetV2 reference code (``round_filters`` /
    ``_make_divisible``): round to the nearest multiple, at least ``divisor``, and add
    one more ``divisor`` if rounding lost more than 10%.
    """
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < round_limit * channels:
        rounded += divisor
    return int(rounded)


def conv_output_size(size: int, kernel_size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded convolution (padding ``(k - 1) // 2``)."""
    padding = (kernel_size - 1) // 2
    return (size + 2 * padding - kernel_size) // stride + 1


@dataclass(frozen=True)
class BlockSpec:
    """One block with every number resolved; no multipliers left to apply.

    ``conv_op`` "mbconv": 1x1 expansion (unless ``has_expansion`` is False), depthwise
    kxk; "fused" (Fused-MBConv, timm's EdgeResidual): one regular kxk convolution from
    ``in_channels`` to ``expanded_channels`` in their place. Either is followed by the
    optional squeeze-and-excitation and the 1x1 projection. ``skip_op`` is "none" only
    where it removes a residual: a block whose shapes forbid one says "identity", so two
    genomes that build the same network give the same blocks.
    """

    stage_index: int
    block_index: int  # position among all blocks of the network
    in_channels: int
    out_channels: int
    has_expansion: bool  # False for MBConv1 / SepConv: the depthwise conv sees the input
    expanded_channels: int  # equals in_channels when there is no expansion conv
    kernel_size: int
    stride: int
    se_channels: int  # squeeze width; 0 means no squeeze-and-excitation
    drop_connect: float  # stochastic-depth probability of this block's residual branch
    conv_op: str = "mbconv"
    skip_op: str = "identity"

    @property
    def shapes_allow_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def residual(self) -> bool:
        return self.shapes_allow_residual and self.skip_op == "identity"


def resolve_blocks(genome: Genome) -> list[BlockSpec]:
    """Expand the genome's stages into blocks.

    Conventions (shared with torchvision's EfficientNet): the first block of a stage
    strides and changes channels; the expanded width is ``round_channels(in x ratio)``;
    the SE squeeze width is ``max(1, int(in_channels x se_ratio))`` of the block's
    *input* channels; drop-connect grows linearly with block position,
    ``rate x index / num_blocks``.
    """
    total = genome.num_blocks
    blocks: list[BlockSpec] = []
    in_channels = genome.stem_channels
    for stage_index, stage in enumerate(genome.stages):
        for layer in range(stage.num_layers):
            expanded = (in_channels if stage.expand_ratio == 1
                        else round_channels(in_channels * stage.expand_ratio))
            se_channels = max(1, int(in_channels * stage.se_ratio)) if stage.se_ratio > 0 else 0
            blocks.append(BlockSpec(
                stage_index=stage_index,
                block_index=len(blocks),
                in_channels=in_channels,
                out_channels=stage.out_channels,
                has_expansion=stage.expand_ratio != 1,
                expanded_channels=expanded,
                kernel_size=stage.kernel_size,
                stride=stage.stride if layer == 0 else 1,
                se_channels=se_channels,
                drop_connect=genome.drop_connect_rate * len(blocks) / total,
                **{field.name: getattr(stage, field.name) for field in BLOCK_CHOICES},
            ))
            if not blocks[-1].shapes_allow_residual:
                blocks[-1] = dataclasses.replace(blocks[-1], skip_op="identity")
            in_channels = stage.out_channels
    return blocks


def canonical_genome(genome: Genome) -> Genome:
    """``genome`` with ``skip_op`` "identity" on every stage none of whose blocks could
    hold a residual (one block that strides or changes width): the same network, written
    one way, so that such twins share a key (:meth:`Genome.key`)."""
    keeps = {spec.stage_index for spec in resolve_blocks(genome) if spec.shapes_allow_residual}
    stages = tuple(stage if index in keeps or stage.skip_op == "identity"
                   else dataclasses.replace(stage, skip_op="identity")
                   for index, stage in enumerate(genome.stages))
    return genome if stages == genome.stages else dataclasses.replace(genome, stages=stages)
