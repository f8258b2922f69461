"""Genomes as timm's EfficientNet architecture-definition strings, and back.

timm (pytorch-image-models, ``timm/models/efficientnet.py`` and
``timm/models/_efficientnet_builder.py``) writes an EfficientNet as a list of stages,
each a list of block strings, plus a channel and a depth multiplier. EfficientNet-B0::

    [['ds_r1_k3_s1_e1_c16_se0.25'], ['ir_r2_k3_s2_e6_c24_se0.25'],
     ['ir_r2_k5_s2_e6_c40_se0.25'], ['ir_r3_k3_s2_e6_c80_se0.25'],
     ['ir_r3_k5_s1_e6_c112_se0.25'], ['ir_r4_k5_s2_e6_c192_se0.25'],
     ['ir_r1_k3_s1_e6_c320_se0.25']]

with stem 32, head ``round_channels(1280)`` and SiLU ("swish"). The grammar of one
block string, and how a genome stage is written as one, is :mod:`space.timm_strings`.

How timm resolves the numbers, and so how this module reads and writes them:

- widths: every ``c``, the stem and the head go through ``round_channels(c x
  channel_multiplier)`` (divisor 8, never below 90%), the same rule as
  :func:`space.round_channels`; at multiplier 1.0 a width that is not a multiple of 8
  is rounded too, so a genome with such a width cannot be written;
- depth: a stage's total repeats become ``ceil(total x depth_multiplier)`` (or
  ``max(1, round(...))`` with ``depth_trunc="round"``), shared among the stage's strings
  in proportion, allocated from the last string backwards;
- only the first block of a stage strides;
- squeeze width: timm's builder divides ``se`` by ``e`` and its squeeze-excite takes
  ``round(expanded x se / e)`` channels, i.e. ``se`` counts the block's input channels;
  the genome takes ``max(1, int(in_channels x se_ratio))`` (:func:`space.resolve_blocks`).
  The two agree for every ``se`` the papers use; where they do not, the conversion
  fails and says which block.

Every string becomes one genome stage (a genome stage is one kind of block repeated), and
every genome stage one single-string timm stage, so ``genome -> strings -> genome`` is the
identity. Anything timm would build differently from the genome, or would silently ignore
(``e6`` on a ``ds`` block, ``s2`` on a stage's second string), raises
:class:`TimmFormatError` naming the string and the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from .blocks import conv_output_size, resolve_blocks, round_channels
from .errors import GenomeError
from .genome import Genome, Stage
from .schema import exactly, first_mismatch
from .timm_strings import (BlockString, TimmFormatError, parse_block, scale_repeats,
                           stage_string)

__all__ = ["TimmFormatError", "TimmArch", "to_timm", "from_timm", "stage_string",
           "DEPTH_TRUNCATIONS", "ACT_LAYERS"]

DEPTH_TRUNCATIONS = ("ceil", "round")
# timm's names for the model-wide activation -> the genome's (timm: get_act_layer).
ACT_LAYERS = {"swish": "silu", "silu": "silu", "relu": "relu"}
_TIMM_ACTIVATION = {"silu": "swish", "relu": "relu"}


@dataclass(frozen=True)
class TimmArch:
    """A network as timm's EfficientNet builder takes it.

    Field names are timm's own (``stem_size``, ``num_features``, ``act_layer``,
    ``drop_rate``, ``drop_path_rate``, as in ``timm.models.efficientnet.EfficientNet``)
    so that they can be passed on as they are. ``stem_size`` and ``num_features`` are
    *before* the channel multiplier: timm rounds the stem itself and ``_gen_efficientnet``
    passes ``round_chs_fn(num_features)`` (see :attr:`head_features`). ``resolution``,
    ``resolution_multiplier`` and ``name`` are the genome's own fields, carried so that
    the round trip loses nothing (timm keeps the input size in its pretrained config).
    """

    arch_def: tuple[tuple[str, ...], ...]
    channel_multiplier: float = 1.0
    depth_multiplier: float = 1.0
    depth_trunc: str = "ceil"
    stem_size: int = 32
    num_features: int = 1280
    act_layer: str = "swish"
    drop_rate: float = 0.2
    drop_path_rate: float = 0.2
    resolution: int = 224
    resolution_multiplier: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        raw = self.arch_def
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or not raw:
            raise TimmFormatError(f"arch_def = {raw!r}: expected a non-empty list of stages, "
                                  "each a list of block strings")
        stages = []
        for index, stage in enumerate(raw):
            if isinstance(stage, (str, bytes)) or not isinstance(stage, Sequence) or not stage:
                raise TimmFormatError(f"arch_def[{index}] = {stage!r}: expected a non-empty "
                                      "list of block strings")
            stages.append(tuple(stage))
        object.__setattr__(self, "arch_def", tuple(stages))
        for field in ("channel_multiplier", "depth_multiplier"):
            value = getattr(self, field)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or not 0 < value <= 64):
                raise TimmFormatError(f"{field} = {value!r}: expected a number in (0, 64]")
        if self.depth_trunc not in DEPTH_TRUNCATIONS:
            raise TimmFormatError(f"depth_trunc = {self.depth_trunc!r}: expected one of "
                                  f"{', '.join(DEPTH_TRUNCATIONS)}")
        for field in ("stem_size", "num_features"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TimmFormatError(f"{field} = {value!r}: expected a positive integer")
        if self.act_layer not in ACT_LAYERS:
            raise TimmFormatError(f"act_layer = {self.act_layer!r}: genomes use "
                                  f"{', '.join(sorted(ACT_LAYERS))}")

    def round_chs(self, channels: int) -> int:
        """timm's ``round_chs_fn``: ``round_channels(channels x channel_multiplier)``."""
        return round_channels(channels * self.channel_multiplier)

    @property
    def head_features(self) -> int:
        """The head width timm builds: ``round_chs_fn(num_features)``, as in
        ``_gen_efficientnet``."""
        return self.round_chs(self.num_features)

    def to_genome(self) -> Genome:
        """The genome timm would build from these strings; :class:`TimmFormatError` when it
        would build something a genome cannot hold."""
        return _decode(self)

    # -- files --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch_def": [list(stage) for stage in self.arch_def],
            "channel_multiplier": self.channel_multiplier,
            "depth_multiplier": self.depth_multiplier,
            "depth_trunc": self.depth_trunc,
            "stem_size": self.stem_size,
            "num_features": self.num_features,
            "act_layer": self.act_layer,
            "drop_rate": self.drop_rate,
            "drop_path_rate": self.drop_path_rate,
            "resolution": self.resolution,
            "resolution_multiplier": self.resolution_multiplier,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, ignore: Sequence[str] = ()) -> "TimmArch":
        """Read :meth:`to_dict`'s form strictly; keys in ``ignore`` (for example the
        ``"python"`` usage lines of an exported file) are skipped."""
        if not isinstance(data, Mapping):
            raise TimmFormatError(f"a timm architecture must be an object, got "
                                  f"{type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known - set(ignore))
        if unknown:
            raise TimmFormatError(f"unknown key {unknown[0]!r} in a timm architecture; "
                                  f"allowed: {', '.join(cls.__dataclass_fields__)}")
        if "arch_def" not in data:
            raise TimmFormatError("a timm architecture needs 'arch_def'")
        return cls(**{key: value for key, value in data.items() if key in known})

    def python_code(self, *, num_classes: int = 1000, in_chans: int = 3) -> str:
        """Python that builds this network with timm's ``EfficientNet`` class, one stage
        per line with its input size, in timm's own style."""
        lines = ["from functools import partial", "",
                 "from timm.layers import get_act_layer",
                 "from timm.models._efficientnet_builder import decode_arch_def, round_channels",
                 "from timm.models.efficientnet import EfficientNet", "",
                 "arch_def = ["]
        size = conv_output_size(self.resolution, 3, 2)
        for index, stage in enumerate(self.arch_def):
            lines.append(f"    # stage {index}, {size}x{size} in")
            lines.append(f"    {list(stage)!r},")
            first = parse_block(stage[0], "arch_def")
            size = conv_output_size(size, first.kernel_size, first.stride)
        lines += [
            "]",
            f"round_chs_fn = partial(round_channels, multiplier={self.channel_multiplier!r})",
            "model = EfficientNet(",
            f"    block_args=decode_arch_def(arch_def, depth_multiplier={self.depth_multiplier!r},"
            f" depth_trunc={self.depth_trunc!r}),",
            f"    stem_size={self.stem_size}, num_features=round_chs_fn({self.num_features}),"
            " round_chs_fn=round_chs_fn,",
            f"    act_layer=get_act_layer({self.act_layer!r}), drop_rate={self.drop_rate!r},"
            f" drop_path_rate={self.drop_path_rate!r},",
            f"    num_classes={num_classes}, in_chans={in_chans})",
        ]
        return "\n".join(lines) + "\n"


def _timm_se_channels(block: BlockString, in_channels: int, expanded: int) -> int:
    """The squeeze width timm builds: its builder divides ``se`` by the block's ``e``
    (``se_from_exp=False``) and ``SqueezeExcite`` rounds ``expanded x ratio``."""
    if block.kind == "ds":
        return round(in_channels * block.se_ratio)
    return round(expanded * (block.se_ratio / block.expand_ratio))


def _decode(arch: TimmArch) -> Genome:
    activation = ACT_LAYERS[arch.act_layer]
    stages: list[Stage] = []
    sources: list[BlockString] = []
    for stage_index, strings in enumerate(arch.arch_def):
        blocks = [parse_block(text, f"arch_def[{stage_index}][{index}]")
                  for index, text in enumerate(strings)]
        repeats = scale_repeats([block.repeats for block in blocks], arch.depth_multiplier,
                                 arch.depth_trunc)
        for index, (block, count) in enumerate(zip(blocks, repeats)):
            label = f"{block.where} {block.text!r}"
            if index > 0 and block.stride != 1:
                raise TimmFormatError(f"{label}: only a stage's first block strides in timm, so "
                                      f"'s{block.stride}' would be ignored; start a new stage")
            if block.activation not in (None, activation):
                raise TimmFormatError(f"{label}: a {block.activation} block in a "
                                      f"{activation} network; a genome has one activation")
            try:
                stages.append(Stage(**{**block.fields, "num_layers": count,
                                       "out_channels": arch.round_chs(block.out_channels)}))
            except GenomeError as error:
                raise TimmFormatError(f"{label}: {error}") from None
            sources.append(block)
    try:
        genome = Genome(stages=tuple(stages), stem_channels=arch.round_chs(arch.stem_size),
                        head_channels=arch.head_features, dropout=arch.drop_rate,
                        drop_connect_rate=arch.drop_path_rate, resolution=arch.resolution,
                        resolution_multiplier=arch.resolution_multiplier,
                        activation=activation, name=arch.name)
    except GenomeError as error:
        raise TimmFormatError(f"the timm architecture makes an impossible genome: "
                              f"{error}") from None
    for spec in resolve_blocks(genome):
        block = sources[spec.stage_index]
        label = f"{block.where} {block.text!r}"
        if block.se_ratio:
            timm_width = _timm_se_channels(block, spec.in_channels, spec.expanded_channels)
            if timm_width != spec.se_channels:
                raise TimmFormatError(
                    f"{label}: in block {spec.block_index + 1} ({spec.in_channels} channels in) "
                    f"timm's squeeze width is {timm_width}, the genome's max(1, int("
                    f"{spec.in_channels} x {block.se_ratio:g})) is {spec.se_channels}; pick an "
                    "se ratio for which both agree (0.25 does with whole expansion ratios on "
                    "widths that are multiples of 8)")
    return genome


def from_timm(arch_def: Sequence[Sequence[str]], channel_multiplier: float = 1.0,
              depth_multiplier: float = 1.0, *, depth_trunc: str = "ceil", stem_size: int = 32,
              num_features: int = 1280, act_layer: str = "swish", drop_rate: float = 0.2,
              drop_path_rate: float = 0.2, resolution: int = 224,
              resolution_multiplier: float = 1.0, name: str = "") -> Genome:
    """The genome of a timm EfficientNet definition, e.g. ``from_timm(b0_arch_def, 1.2, 1.4)``
    for timm's ``efficientnet_b3`` (``_gen_efficientnet(channel_multiplier=1.2,
    depth_multiplier=1.4)``).

    ``stem_size`` and ``num_features`` are before the channel multiplier, as
    ``_gen_efficientnet`` writes them (32 and 1280). Raises :class:`TimmFormatError`
    naming the string for anything a genome cannot hold.
    """
    return TimmArch(arch_def=arch_def, channel_multiplier=channel_multiplier,
                    depth_multiplier=depth_multiplier, depth_trunc=depth_trunc,
                    stem_size=stem_size, num_features=num_features, act_layer=act_layer,
                    drop_rate=drop_rate, drop_path_rate=drop_path_rate, resolution=resolution,
                    resolution_multiplier=resolution_multiplier, name=name).to_genome()


_WIDTH_HINT = "timm rounds every width to a multiple of 8 with round_channels"
_DIFFERENCE_HINTS = {
    "stem_channels": _WIDTH_HINT,
    "head_channels": _WIDTH_HINT,
    "out_channels": _WIDTH_HINT,
    "num_layers": "timm scales repeats as ceil(repeats x depth_multiplier)",
}


def _first_difference(genome: Genome, rebuilt: Genome) -> Optional[str]:
    """'stage 3 out_channels: timm builds 24, the genome has 20 (...)', or None."""
    mismatch = first_mismatch(rebuilt, exactly(genome))
    if mismatch is None:
        return None
    hint = _DIFFERENCE_HINTS.get(mismatch.field)
    return (f"{mismatch.label}: timm builds {mismatch.value!r}, the genome has "
            f"{mismatch.allowed[0]!r}" + (f" ({hint})" if hint else ""))


def to_timm(genome: Genome, *, base: Optional[Genome] = None, channel_multiplier: float = 1.0,
            depth_multiplier: float = 1.0, depth_trunc: Optional[str] = None) -> TimmArch:
    """``genome`` as timm strings.

    Without ``base``: one string per stage at the genome's final widths and repeats, with
    multipliers 1.0. With ``base`` (say the B0 a scaled genome came from) and its
    multipliers: ``base``'s strings plus the multipliers, the way timm writes B1..B7, but
    only when timm's scaling of them rebuilds ``genome`` exactly. ``depth_trunc`` None
    picks the first of ``"ceil"`` (EfficientNet's and timm's default) and ``"round"`` (fast
    scaling's repeats) that does. Training settings (dropout, drop-connect), resolution and
    name always come from ``genome``.

    Raises :class:`TimmFormatError` naming the first thing timm would build differently.
    """
    if base is None and (channel_multiplier != 1.0 or depth_multiplier != 1.0
                         or depth_trunc not in (None, "ceil")):
        raise TimmFormatError("channel/depth multipliers scale a base genome's strings; pass "
                              "base= (the unscaled genome) with them")
    if depth_trunc is None:
        def written(trunc: str) -> TimmArch:
            return to_timm(genome, base=base, channel_multiplier=channel_multiplier,
                           depth_multiplier=depth_multiplier, depth_trunc=trunc)
        try:
            return written("ceil")
        except TimmFormatError as ceil_error:
            if base is None:
                raise
            try:
                return written("round")
            except TimmFormatError:
                raise ceil_error from None
    source = genome if base is None else base
    label = f"genome {genome.name!r}" if genome.name else "the genome"
    try:
        arch = TimmArch(arch_def=tuple((stage_string(stage),) for stage in source.stages),
                        channel_multiplier=channel_multiplier, depth_multiplier=depth_multiplier,
                        depth_trunc=depth_trunc, stem_size=source.stem_channels,
                        num_features=source.head_channels,
                        act_layer=_TIMM_ACTIVATION[genome.activation], drop_rate=genome.dropout,
                        drop_path_rate=genome.drop_connect_rate, resolution=genome.resolution,
                        resolution_multiplier=genome.resolution_multiplier, name=genome.name)
        rebuilt = arch.to_genome()
    except TimmFormatError as error:
        raise TimmFormatError(f"{label} cannot be written as timm strings: {error}") from None
    difference = _first_difference(genome, rebuilt)
    if difference:
        how = ("its own strings" if base is None else
               f"the base's strings x channel {channel_multiplier:g}, depth {depth_multiplier:g}")
        raise TimmFormatError(f"{label} cannot be written as timm strings ({how}): {difference}")
    return arch
