"""The genome schema: every per-stage field declared once.

A :class:`StageField` says everything the tool knows about one field of a
:class:`~space.genome.Stage`: its type and rule (checked with the field's name in the
message), its default (a field added after version 1 has one, so older genomes and space
files keep their meaning), how a space file offers it, how it shows in a stage table,
how timm's block strings write it and its Optuna parameter (``stage3_kernel_size``).
:data:`STAGE_FIELDS` is the list; the ``Stage`` dataclass, its JSON form, space files,
stage tables, containment checks, architecture comparisons and the timm strings are all
derived from it. A new per-stage choice is one entry here, the block that builds it
(:mod:`space.blocks`, :mod:`space.model`) and its cost (:mod:`space.graph`).

Stages are numbered 1..N everywhere (tables, messages, Optuna parameters); the stem and
the head are named, not numbered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from .errors import GenomeError

__all__ = ["StageField", "STAGE_FIELDS", "FIELDS_BY_NAME", "REQUIRED", "LIMITS",
           "BLOCK_CHOICES", "CONV_OPS", "SKIP_OPS", "field_error", "require_int",
           "require_float", "Mismatch", "architecture_items", "first_mismatch",
           "param_name", "plain_number", "exactly"]

# Upper bounds that keep a hostile or mistyped file from allocating terabytes. They
# sit far above anything the papers use (B7: 640 channels x 6, 600 px, 55 blocks).
LIMITS = {
    "kernel_size": 15,
    "expand_ratio": 16.0,
    "num_layers": 64,
    "channels": 16384,
    "resolution": 4096,
    "stages": 32,
}
# MnasNet's ConvOp and SkipOp (Tan et al. 2019, Section 4), cheapest first.
# "mbconv": 1x1 expansion, depthwise kxk, projection (MobileNetV2's inverted residual).
# "fused": EfficientNetV2's Fused-MBConv, timm's EdgeResidual: one regular kxk
#          convolution replaces the expansion and the depthwise pair (at every expand
#          ratio, 1 included: then it keeps the input width), then the 1x1 projection.
CONV_OPS = ("mbconv", "fused")
# "identity": the residual where stride 1 and in == out channels; "none": no residual.
SKIP_OPS = ("identity", "none")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


def field_error(field: str, value: Any, expected: str) -> GenomeError:
    """The error naming ``field``; its ``expected`` attribute is the rule alone, for the
    messages of space files that quote the value in their own words."""
    error = GenomeError(f"genome field '{field}' = {value!r}: {expected}")
    error.expected = expected
    return error


def require_int(field: str, value: Any, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(field, value, "expected an integer")
    if not minimum <= value <= maximum:
        raise field_error(field, value, f"expected an integer in [{minimum}, {maximum}]")
    return value


def require_float(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise field_error(field, value, "expected a finite number")
    return float(value)


def plain_number(value: Any) -> Any:
    """6.0 -> 6 so that JSON and tables read like the papers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# -- rules ------------------------------------------------------------------------------

def _kernel(where: str, value: Any) -> None:
    kernel = require_int(where, value, minimum=3, maximum=LIMITS["kernel_size"])
    if kernel % 2 == 0:
        raise field_error(where, kernel, "expected an odd integer >= 3")


def _expand(where: str, value: Any) -> None:
    expand = require_float(where, value)
    if not 1.0 <= expand <= LIMITS["expand_ratio"]:
        raise field_error(where, expand, f"expected a number in [1, {LIMITS['expand_ratio']:g}]")


def _se(where: str, value: Any) -> None:
    if not 0.0 <= require_float(where, value) < 1.0:
        raise field_error(where, value, "expected a number in [0, 1)")


def _integer(maximum: int) -> Callable[[str, Any], None]:
    def check(where: str, value: Any) -> None:
        require_int(where, value, minimum=1, maximum=maximum)
    return check


def _stride(where: str, value: Any) -> None:
    if value not in (1, 2) or isinstance(value, bool):
        raise field_error(where, value, "expected 1 or 2")


def _one_of(options: tuple[str, ...]) -> Callable[[str, Any], None]:
    def check(where: str, value: Any) -> None:
        if not isinstance(value, str) or value not in options:
            raise field_error(where, value, f"expected one of {', '.join(map(repr, options))}")
    return check


# -- the schema -------------------------------------------------------------------------

@dataclass(frozen=True)
class StageField:
    """One field of a stage.

    ``check(where, value)`` raises :class:`GenomeError` naming ``where``. ``default`` is
    :data:`REQUIRED` for the fields of genome version 1. Space files: ``choice_key`` is
    the list of choices (None: the stage sets the value and it is not searched), of
    ``choice_type`` when it is not the field's type; ``skeleton`` fields take a base value per stage that ``resolve(base, choice)`` turns
    into a value; ``options`` lists a categorical field's values, cheapest first.
    Tables: ``column`` heads the field's column (None: the operator name shows it),
    ``cell`` writes a value. timm: ``timm_option`` is the block-string option letter, or
    ``timm_flags`` maps a value to the flag timm writes for it (the default writes none).
    ``block`` fields are copied into every block's :class:`~space.blocks.BlockSpec`, and
    a latency unit's key carries their non-default values (``unit_tags``).
    """

    name: str
    type: type
    check: Callable[[str, Any], None]
    default: Any = REQUIRED
    choice_key: Optional[str] = None
    choice_type: Optional[type] = None
    skeleton: bool = False
    resolve: Optional[Callable[[Any, Any], Any]] = None
    choice_rule: Optional[Callable[[Sequence[Any]], Optional[str]]] = None
    options: tuple[str, ...] = ()
    column: Optional[str] = None
    cell: Callable[[Any], str] = lambda value: f"{plain_number(value)}"
    timm_option: Optional[str] = None
    timm_flags: tuple[tuple[str, str], ...] = ()
    block: bool = False
    unit_tags: tuple[tuple[str, str], ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def searched(self) -> bool:
        return self.choice_key is not None


def _width(base: int, multiplier: float) -> int:
    from .blocks import round_channels  # blocks imports the genome, which imports this
    return round_channels(base * multiplier)


STAGE_FIELDS: tuple[StageField, ...] = (
    StageField("kernel_size", int, _kernel, choice_key="kernel_size", timm_option="k"),
    StageField("expand_ratio", float, _expand, choice_key="expand_ratio", timm_option="e"),
    StageField("se_ratio", float, _se, choice_key="se_ratio", column="SE", timm_option="se"),
    StageField("num_layers", int, _integer(LIMITS["num_layers"]), choice_key="layers_delta",
               choice_type=int, skeleton=True, resolve=lambda base, delta: max(1, base + delta),
               choice_rule=lambda deltas: (None if all(abs(d) <= LIMITS["num_layers"]
                                                       for d in deltas)
                                           else "expected small integers"),
               column="layers", timm_option="r"),
    StageField("out_channels", int, _integer(LIMITS["channels"]), choice_key="width_multiplier",
               choice_type=float, skeleton=True, resolve=_width,
               choice_rule=lambda widths: (None if all(0 < w <= 64 for w in widths)
                                           else "expected numbers in (0, 64]"),
               column="channels", timm_option="c"),
    StageField("stride", int, _stride, skeleton=True, column="stride", timm_option="s"),
    StageField("conv_op", str, _one_of(CONV_OPS), default="mbconv", choice_key="conv_op",
               options=CONV_OPS, block=True, unit_tags=(("fused", "fused"),)),
    StageField("skip_op", str, _one_of(SKIP_OPS), default="identity", choice_key="skip_op",
               options=SKIP_OPS, column="skip", block=True, timm_flags=(("none", "noskip"),),
               unit_tags=(("none", "noskip"),)),
)
FIELDS_BY_NAME = {field.name: field for field in STAGE_FIELDS}
BLOCK_CHOICES = tuple(field for field in STAGE_FIELDS if field.block)


def param_name(stage_index: int, field: StageField) -> str:
    """The Optuna parameter of a field of stage ``stage_index`` (0-based), numbered 1..N."""
    return f"stage{stage_index + 1}_{field.name}"


# -- comparing architectures ------------------------------------------------------------

_GENOME_ARCHITECTURE = ("stem_channels", "head_channels", "activation")


@dataclass(frozen=True)
class Mismatch:
    """The first architectural item where a genome is not what was expected: ``field``
    ("stem_channels", "stages" for the number of stages, or a stage field), ``label``
    ("stage 3 out_channels"), the genome's ``value`` and what was ``allowed``."""

    field: str
    label: str
    stage: Optional[int]
    value: Any
    allowed: tuple[Any, ...]


def architecture_items(genome: Any) -> Iterator[tuple[str, str, Optional[int], Any]]:
    """(field, label, stage index or None, value) of everything that shapes the weights,
    in the order comparisons report them. Training settings (dropout, drop-connect), the
    resolution and the name do not and are left out."""
    for name in _GENOME_ARCHITECTURE:
        yield name, name, None, getattr(genome, name)
    yield "stages", "number of stages", None, len(genome.stages)
    for index, stage in enumerate(genome.stages):
        for field in STAGE_FIELDS:
            yield field.name, f"stage {index + 1} {field.name}", index, getattr(stage, field.name)


def first_mismatch(genome: Any,
                   allowed: Callable[[str, Optional[int]], tuple[Any, ...]]) -> Optional[Mismatch]:
    """The first item of :func:`architecture_items` whose value is not in
    ``allowed(field, stage_index)``; None when every one is. Serves containment in a
    space, the comparison of two genomes and the check of timm's rebuilt genome alike."""
    for field, label, stage, value in architecture_items(genome):
        options = allowed(field, stage)
        if value not in options:
            return Mismatch(field=field, label=label, stage=stage, value=value, allowed=options)
    return None


def exactly(other: Any) -> Callable[[str, Optional[int]], tuple[Any, ...]]:
    """``allowed`` for :func:`first_mismatch` that admits only ``other``'s values."""
    def allowed(field: str, stage: Optional[int]) -> tuple[Any, ...]:
        if stage is None:
            return (len(other.stages),) if field == "stages" else (getattr(other, field),)
        return (getattr(other.stages[stage], field),)
    return allowed
