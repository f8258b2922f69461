"""Genomes: concrete MBConv architectures as frozen, validated dataclasses.

A :class:`Genome` is one network: a stem convolution, an ordered tuple of MBConv
:class:`Stage` s, and a 1x1 head. Its JSON form is versioned (``"version": 1``) and
read strictly: an unknown key, a wrong type or an impossible value raises
:class:`~space.errors.GenomeError` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Union

from .errors import GenomeError
from .files import loads_json, read_text_file

__all__ = ["Stage", "Genome", "GENOME_VERSION", "ACTIVATIONS", "LIMITS"]

GENOME_VERSION = 1
ACTIVATIONS = ("silu", "relu")

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


def _field_error(field: str, value: Any, expected: str) -> GenomeError:
    return GenomeError(f"genome field '{field}' = {value!r}: {expected}")


def _require_int(field: str, value: Any, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _field_error(field, value, "expected an integer")
    if not minimum <= value <= maximum:
        raise _field_error(field, value, f"expected an integer in [{minimum}, {maximum}]")
    return value


def _require_float(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _field_error(field, value, "expected a finite number")
    return float(value)


@dataclass(frozen=True)
class Stage:
    """One stage: ``num_layers`` identical MBConv blocks; only the first one strides.

    ``expand_ratio`` 1 means no 1x1 expansion convolution (MBConv1; without SE this is
    MnasNet's SepConv). ``se_ratio`` sizes the squeeze-and-excitation bottleneck from
    the block's *input* channels (0 disables SE).
    """

    kernel_size: int
    expand_ratio: float
    se_ratio: float
    num_layers: int
    out_channels: int
    stride: int

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "stage") -> None:
        kernel = _require_int(f"{where}.kernel_size", self.kernel_size, minimum=3,
                              maximum=LIMITS["kernel_size"])
        if kernel % 2 == 0:
            raise _field_error(f"{where}.kernel_size", kernel, "expected an odd integer >= 3")
        expand = _require_float(f"{where}.expand_ratio", self.expand_ratio)
        if not 1.0 <= expand <= LIMITS["expand_ratio"]:
            raise _field_error(f"{where}.expand_ratio", expand,
                               f"expected a number in [1, {LIMITS['expand_ratio']:g}]")
        se = _require_float(f"{where}.se_ratio", self.se_ratio)
        if not 0.0 <= se < 1.0:
            raise _field_error(f"{where}.se_ratio", se, "expected a number in [0, 1)")
        _require_int(f"{where}.num_layers", self.num_layers, minimum=1, maximum=LIMITS["num_layers"])
        _require_int(f"{where}.out_channels", self.out_channels, minimum=1,
                     maximum=LIMITS["channels"])
        if self.stride not in (1, 2) or isinstance(self.stride, bool):
            raise _field_error(f"{where}.stride", self.stride, "expected 1 or 2")

    @property
    def operator(self) -> str:
        """Name in the papers' tables: ``MBConv6``, ``MBConv1`` or MnasNet's ``SepConv``."""
        if self.expand_ratio == 1 and self.se_ratio == 0:
            return "SepConv"
        return f"MBConv{self.expand_ratio:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel_size": self.kernel_size,
            "expand_ratio": _plain_number(self.expand_ratio),
            "se_ratio": _plain_number(self.se_ratio),
            "num_layers": self.num_layers,
            "out_channels": self.out_channels,
            "stride": self.stride,
        }


def _plain_number(value: float) -> int | float:
    """6.0 -> 6 so that JSON and tables read like the papers."""
    return int(value) if float(value).is_integer() else float(value)


_GENOME_KEYS = ("version", "name", "stem_channels", "stages", "head_channels", "dropout",
                "drop_connect_rate", "resolution", "resolution_multiplier", "activation")
_STAGE_KEYS = tuple(field.name for field in dataclasses.fields(Stage))


@dataclass(frozen=True)
class Genome:
    """A concrete architecture (what the search finds and the scaler grows).

    ``resolution`` is the deployment resolution (224 for a B0) at which costs are
    reported. ``resolution_multiplier`` is this genome's resolution relative to the
    baseline it was scaled from (1.0 for a baseline); training on a small-image
    dataset runs at the proxy resolution times this multiplier.
    """

    stages: tuple[Stage, ...]
    stem_channels: int = 32
    head_channels: int = 1280
    dropout: float = 0.2
    drop_connect_rate: float = 0.2
    resolution: int = 224
    resolution_multiplier: float = 1.0
    activation: str = "silu"
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple):
            object.__setattr__(self, "stages", tuple(self.stages))
        self.validate()

    def validate(self) -> None:
        if not 1 <= len(self.stages) <= LIMITS["stages"]:
            raise _field_error("stages", f"{len(self.stages)} stages",
                               f"expected 1 to {LIMITS['stages']} stages")
        for index, stage in enumerate(self.stages):
            if not isinstance(stage, Stage):
                raise _field_error(f"stages[{index}]", stage, "expected a Stage")
            stage.validate(where=f"stages[{index}]")
        _require_int("stem_channels", self.stem_channels, minimum=1, maximum=LIMITS["channels"])
        _require_int("head_channels", self.head_channels, minimum=1, maximum=LIMITS["channels"])
        for field in ("dropout", "drop_connect_rate"):
            value = _require_float(field, getattr(self, field))
            if not 0.0 <= value < 1.0:
                raise _field_error(field, value, "expected a probability in [0, 1)")
        _require_int("resolution", self.resolution, minimum=8, maximum=LIMITS["resolution"])
        multiplier = _require_float("resolution_multiplier", self.resolution_multiplier)
        if not 0.0 < multiplier <= 64.0:
            raise _field_error("resolution_multiplier", multiplier, "expected a number in (0, 64]")
        if self.activation not in ACTIVATIONS:
            raise _field_error("activation", self.activation, f"expected one of {ACTIVATIONS}")
        if not isinstance(self.name, str) or len(self.name) > 200:
            raise _field_error("name", self.name, "expected a string of at most 200 characters")

    @property
    def num_blocks(self) -> int:
        return sum(stage.num_layers for stage in self.stages)

    # -- JSON ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": GENOME_VERSION,
            "name": self.name,
            "stem_channels": self.stem_channels,
            "stages": [stage.to_dict() for stage in self.stages],
            "head_channels": self.head_channels,
            "dropout": _plain_number(self.dropout),
            "drop_connect_rate": _plain_number(self.drop_connect_rate),
            "resolution": self.resolution,
            "resolution_multiplier": _plain_number(self.resolution_multiplier),
            "activation": self.activation,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def key(self) -> str:
        """Canonical text of the architecture alone (no name), for de-duplication."""
        body = self.to_dict()
        body.pop("name")
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> "Genome":
        if not isinstance(data, dict):
            raise GenomeError(f"genome must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_GENOME_KEYS))
        if unknown:
            raise GenomeError(f"genome has unknown field {unknown[0]!r}; "
                              f"allowed fields: {', '.join(_GENOME_KEYS)}")
        version = data.get("version")
        if version != GENOME_VERSION:
            raise _field_error("version", version, f"expected {GENOME_VERSION}")
        if "stages" not in data:
            raise GenomeError("genome field 'stages' is missing")
        raw_stages = data["stages"]
        if not isinstance(raw_stages, list):
            raise _field_error("stages", type(raw_stages).__name__, "expected a list of stages")
        stages = []
        for index, raw in enumerate(raw_stages[: LIMITS["stages"] + 1]):
            stages.append(_stage_from_dict(raw, f"stages[{index}]"))
        fields = {key: value for key, value in data.items() if key not in ("version", "stages")}
        try:
            return cls(stages=tuple(stages), **fields)
        except TypeError as error:  # a value of a type the dataclass cannot even compare
            raise GenomeError(f"genome is malformed: {error}") from None

    @classmethod
    def from_json(cls, source: Union[str, os.PathLike]) -> "Genome":
        """Read a genome from JSON text or from a path to a JSON file."""
        return cls.from_dict(loads_json(_read_text(source), "genome", GenomeError))


def _stage_from_dict(raw: Any, where: str) -> Stage:
    if not isinstance(raw, dict):
        raise _field_error(where, type(raw).__name__, "expected an object")
    unknown = sorted(set(raw) - set(_STAGE_KEYS))
    if unknown:
        raise GenomeError(f"genome has unknown field '{where}.{unknown[0]}'; "
                          f"allowed stage fields: {', '.join(_STAGE_KEYS)}")
    missing = [key for key in _STAGE_KEYS if key not in raw]
    if missing:
        raise GenomeError(f"genome field '{where}.{missing[0]}' is missing")
    # Validate with the stage's position in the message before constructing.
    stage = Stage.__new__(Stage)
    for key in _STAGE_KEYS:
        object.__setattr__(stage, key, raw[key])
    stage.validate(where=where)
    return Stage(**raw)


def _read_text(source: Union[str, os.PathLike]) -> str:
    if isinstance(source, str) and source.lstrip().startswith(("{", "[")):
        return source
    return read_text_file(source, "genome file", GenomeError)
