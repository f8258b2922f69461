"""Genomes: concrete MBConv architectures as frozen, validated dataclasses.

A :class:`Genome` is one network: a stem convolution, an ordered tuple of MBConv
:class:`Stage` s, and a 1x1 head. Its JSON form is versioned (``"version": 1``) and
read strictly: an unknown key, a wrong type or an impossible value raises
:class:`~space.errors.GenomeError` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Optional, Union

from .errors import GenomeError
from .files import loads_json, read_text_file
from .schema import (LIMITS, STAGE_FIELDS, field_error, plain_number, require_float,
                     require_int)

__all__ = ["Stage", "Genome", "SearchContext", "GENOME_VERSION", "ACTIVATIONS", "LIMITS"]

GENOME_VERSION = 1
ACTIVATIONS = ("silu", "relu")


class _StageMethods:
    """What every :class:`Stage` does; its fields come from :data:`space.schema.STAGE_FIELDS`."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "stage") -> None:
        for field in STAGE_FIELDS:
            field.check(f"{where}.{field.name}", getattr(self, field.name))

    @property
    def operator(self) -> str:
        """Name in the papers' tables: ``MBConv6``, ``MBConv1``, MnasNet's ``SepConv`` or
        EfficientNetV2's ``Fused-MBConv4``."""
        if self.conv_op == "fused":
            return f"Fused-MBConv{self.expand_ratio:g}"
        if self.expand_ratio == 1 and self.se_ratio == 0:
            return "SepConv"
        return f"MBConv{self.expand_ratio:g}"

    def to_dict(self) -> dict[str, Any]:
        """Fields with a default are written only when they differ from it, so a genome
        without the later choices reads, writes and de-duplicates as it always did."""
        return {field.name: plain_number(getattr(self, field.name)) for field in STAGE_FIELDS
                if field.required or getattr(self, field.name) != field.default}


# The dataclass is made from the schema so that a field is declared in one place only.
Stage = dataclasses.make_dataclass(
    "Stage",
    [(field.name, field.type) for field in STAGE_FIELDS if field.required]
    + [(field.name, field.type, dataclasses.field(default=field.default))
       for field in STAGE_FIELDS if not field.required],
    bases=(_StageMethods,), frozen=True)
Stage.__module__ = __name__  # pickling finds it here (make_dataclass takes module= only from 3.12)
Stage.__doc__ = """One stage: ``num_layers`` identical blocks; only the first one strides.

``expand_ratio`` 1 means no 1x1 expansion convolution (MBConv1; without SE this is
MnasNet's SepConv). ``se_ratio`` sizes the squeeze-and-excitation bottleneck from the
block's *input* channels (0 disables SE). ``conv_op`` is ``"mbconv"`` (depthwise) or
``"fused"`` (Fused-MBConv: a regular kxk convolution instead of the expansion and the
depthwise pair); ``skip_op`` is ``"identity"`` (the residual wherever stride and widths
allow it) or ``"none"``. Fields: :data:`space.schema.STAGE_FIELDS`."""


_GENOME_KEYS = ("version", "name", "stem_channels", "stages", "head_channels", "dropout",
                "drop_connect_rate", "resolution", "resolution_multiplier", "activation",
                "context")
_CONTEXT_KEYS = ("dataset", "in_channels", "num_classes")
# Far above any dataset's; a bound so that a hostile file cannot ask for a huge classifier.
_MAX_CLASSES = 1_000_000


@dataclass(frozen=True)
class SearchContext:
    """What a searched genome was costed for: its dataset's input channels and classes
    (a search's ``best.json`` records them, so that ``nas scale`` reports the costs the
    search reported). Not part of the architecture: :meth:`Genome.key` and genome
    equality ignore it."""

    dataset: str
    in_channels: int
    num_classes: int

    def validate(self) -> None:
        if not isinstance(self.dataset, str) or len(self.dataset) > 200:
            raise field_error("context.dataset", self.dataset,
                              "expected a string of at most 200 characters")
        require_int("context.in_channels", self.in_channels, minimum=1,
                    maximum=LIMITS["channels"])
        require_int("context.num_classes", self.num_classes, minimum=1, maximum=_MAX_CLASSES)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "in_channels": self.in_channels,
                "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, data: Any) -> "SearchContext":
        if not isinstance(data, dict):
            raise field_error("context", type(data).__name__, "expected an object with "
                              + ", ".join(_CONTEXT_KEYS))
        unknown = sorted(set(data) - set(_CONTEXT_KEYS))
        missing = [key for key in _CONTEXT_KEYS if key not in data]
        if unknown or missing:
            problem = f"unknown {unknown[0]!r}" if unknown else f"missing {missing[0]!r}"
            raise GenomeError(f"genome field 'context' must hold exactly "
                              f"{', '.join(_CONTEXT_KEYS)}; {problem}")
        context = cls(**data)
        context.validate()
        return context
_STAGE_KEYS = tuple(field.name for field in STAGE_FIELDS)


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
    # The search's dataset context, when the genome came from one (see SearchContext).
    context: Optional[SearchContext] = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple):
            object.__setattr__(self, "stages", tuple(self.stages))
        self.validate()

    def validate(self) -> None:
        if not 1 <= len(self.stages) <= LIMITS["stages"]:
            raise field_error("stages", f"{len(self.stages)} stages",
                               f"expected 1 to {LIMITS['stages']} stages")
        for index, stage in enumerate(self.stages):
            if not isinstance(stage, Stage):
                raise field_error(f"stages[{index}]", stage, "expected a Stage")
            stage.validate(where=f"stages[{index}]")
        require_int("stem_channels", self.stem_channels, minimum=1, maximum=LIMITS["channels"])
        require_int("head_channels", self.head_channels, minimum=1, maximum=LIMITS["channels"])
        for field in ("dropout", "drop_connect_rate"):
            value = require_float(field, getattr(self, field))
            if not 0.0 <= value < 1.0:
                raise field_error(field, value, "expected a probability in [0, 1)")
        require_int("resolution", self.resolution, minimum=8, maximum=LIMITS["resolution"])
        multiplier = require_float("resolution_multiplier", self.resolution_multiplier)
        if not 0.0 < multiplier <= 64.0:
            raise field_error("resolution_multiplier", multiplier, "expected a number in (0, 64]")
        if self.activation not in ACTIVATIONS:
            raise field_error("activation", self.activation, f"expected one of {ACTIVATIONS}")
        if not isinstance(self.name, str) or len(self.name) > 200:
            raise field_error("name", self.name, "expected a string of at most 200 characters")
        if self.context is not None:
            if not isinstance(self.context, SearchContext):
                raise field_error("context", self.context, "expected a SearchContext")
            self.context.validate()

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
            "dropout": plain_number(self.dropout),
            "drop_connect_rate": plain_number(self.drop_connect_rate),
            "resolution": self.resolution,
            "resolution_multiplier": plain_number(self.resolution_multiplier),
            "activation": self.activation,
            # Only when known: genomes without one keep their old JSON byte for byte.
            **({"context": self.context.to_dict()} if self.context is not None else {}),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def key(self) -> str:
        """Canonical text of the architecture alone (no name), for de-duplication: a
        ``skip_op`` that removes no residual is written as the default."""
        from .blocks import canonical_genome  # blocks builds on this module

        body = canonical_genome(self).to_dict()
        body.pop("name")
        body.pop("context", None)
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
            raise field_error("version", version, f"expected {GENOME_VERSION}")
        if "stages" not in data:
            raise GenomeError("genome field 'stages' is missing")
        raw_stages = data["stages"]
        if not isinstance(raw_stages, list):
            raise field_error("stages", type(raw_stages).__name__, "expected a list of stages")
        stages = []
        for index, raw in enumerate(raw_stages[: LIMITS["stages"] + 1]):
            stages.append(_stage_from_dict(raw, f"stages[{index}]"))
        fields = {key: value for key, value in data.items() if key not in ("version", "stages")}
        if "context" in fields:
            fields["context"] = SearchContext.from_dict(fields["context"])
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
        raise field_error(where, type(raw).__name__, "expected an object")
    unknown = sorted(set(raw) - set(_STAGE_KEYS))
    if unknown:
        raise GenomeError(f"genome has unknown field '{where}.{unknown[0]}'; "
                          f"allowed stage fields: {', '.join(_STAGE_KEYS)}")
    missing = [field.name for field in STAGE_FIELDS if field.required and field.name not in raw]
    if missing:
        raise GenomeError(f"genome field '{where}.{missing[0]}' is missing")
    # Validate with the stage's position in the message before constructing.
    stage = Stage.__new__(Stage)
    for field in STAGE_FIELDS:
        object.__setattr__(stage, field.name, raw.get(field.name, field.default))
    stage.validate(where=where)
    return Stage(**raw)


def _read_text(source: Union[str, os.PathLike]) -> str:
    if isinstance(source, str) and source.lstrip().startswith(("{", "[")):
        return source
    return read_text_file(source, "genome file", GenomeError)
