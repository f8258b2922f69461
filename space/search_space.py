"""The MnasNet factorized hierarchical search space over a fixed stage skeleton.

A space is a set of choices per stage (Tan et al. 2019, Section 4): kernel size,
expansion ratio, squeeze-and-excitation ratio, layers relative to the skeleton, output
width relative to it, the convolution op (MBConv or Fused-MBConv) and the skip op
(identity residual or none); the fields and their space-file keys are those of
:data:`space.schema.STAGE_FIELDS`. It is declared in a TOML (or JSON) file a user can copy
and edit; ``space/default_space.toml`` is the built-in one, over the EfficientNet-B0
skeleton.

Choices are resolved to the distinct concrete values they produce (a width
multiplier of 0.75 and 1.0 both give 16 channels for a 16-channel stage), so each
Optuna parameter has no aliases and :meth:`SearchSpace.size` counts distinct genomes.
One alias is left: the skip op of a stage none of whose blocks can hold a residual (one
block that strides or changes width) builds the same network either way; the search's
de-duplication sees them as one (:meth:`Genome.key` writes such a stage's skip op as the
default), and only a deeper scaled member of that stage tells them apart.
"""

from __future__ import annotations

import itertools
import math
import random
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Protocol, Sequence

from .errors import GenomeError, SpaceError
from .files import loads_json, read_text_file, tame_integers
from .genome import ACTIVATIONS, Genome, Stage
from .schema import (FIELDS_BY_NAME, LIMITS, STAGE_FIELDS, Mismatch, StageField,
                     first_mismatch, param_name)

__all__ = ["SearchSpace", "StageChoices", "DEFAULT_SPACE_PATH", "MBCONV_SPACE_PATH"]

DEFAULT_SPACE_PATH = Path(__file__).with_name("default_space.toml")
# The default space before it offered the convolution and skip ops: what benchmarks that
# recorded results over random genomes of "the default space" drew from.
MBCONV_SPACE_PATH = Path(__file__).with_name("mbconv_space.toml")

_CHOICE_KEYS = tuple(field.choice_key for field in STAGE_FIELDS if field.searched)
_STAGE_KEYS = tuple(field.name for field in STAGE_FIELDS if field.skeleton) + _CHOICE_KEYS
_TOP_KEYS = ("version", "stem_channels", "head_channels", "activation", "dropout",
             "drop_connect_rate", "resolution", "choices", "stages")


class _Suggester(Protocol):
    """What :meth:`SearchSpace.sample` needs of an ``optuna.Trial``."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class StageChoices:
    """The concrete values one stage may take: ``options[field]`` for every field of
    :data:`~space.schema.STAGE_FIELDS`, resolved, de-duplicated and cheapest first.
    ``choices.kernel_size`` reads ``options["kernel_size"]``; a field the space does not
    search (``stride``) reads as its one value."""

    options: Mapping[str, tuple[Any, ...]]

    def __getattr__(self, name: str) -> Any:
        field = FIELDS_BY_NAME.get(name)
        if field is None or name not in self.__dict__.get("options", {}):
            raise AttributeError(f"'StageChoices' object has no attribute {name!r}")
        values = self.options[name]
        return values if field.searched else values[0]

    @property
    def size(self) -> int:
        return math.prod(len(self.options[field.name]) for field in STAGE_FIELDS)

    def stages(self, **fixed: Any) -> Iterator[Stage]:
        """Every stage these choices allow, with the fields in ``fixed`` set as given."""
        names = [field.name for field in STAGE_FIELDS if field.name not in fixed]
        for values in itertools.product(*(self.options[name] for name in names)):
            yield Stage(**dict(zip(names, values)), **fixed)


class SearchSpace:
    """A set of architectures; :meth:`sample` draws one genome per Optuna trial."""

    def __init__(self, *, stages: Sequence[StageChoices], stem_channels: int = 32,
                 head_channels: int = 1280, activation: str = "silu", dropout: float = 0.2,
                 drop_connect_rate: float = 0.2, resolution: int = 224,
                 source: str = "<built-in>") -> None:
        self.stages = tuple(stages)
        self.stem_channels = stem_channels
        self.head_channels = head_channels
        self.activation = activation
        self.dropout = dropout
        self.drop_connect_rate = drop_connect_rate
        self.resolution = resolution
        self.source = source
        # Building the extreme genomes validates every value against Genome's rules.
        self.smallest()
        self.largest()

    # -- construction -------------------------------------------------------------------

    @classmethod
    def default(cls) -> "SearchSpace":
        return cls.from_file(DEFAULT_SPACE_PATH)

    @classmethod
    def from_file(cls, path: str | Path) -> "SearchSpace":
        """Read a space from ``.toml`` or ``.json``."""
        path = Path(path)
        text = read_text_file(path, "space file", SpaceError)
        if path.suffix == ".json":
            return cls.from_dict(loads_json(text, f"space file {str(path)!r}", SpaceError),
                                 source=str(path))
        try:
            data = tame_integers(tomllib.loads(text))
        except RecursionError:
            raise SpaceError(f"space file {str(path)!r} is nested too deeply") from None
        except ValueError as error:  # tomllib.TOMLDecodeError is one; so is Python's
            # refusal of an integer of more than 4,300 digits
            reason = ("it holds an integer of thousands of digits"
                      if "integer string conversion" in str(error) else str(error))
            raise SpaceError(f"space file {str(path)!r} is not valid TOML: {reason}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "SearchSpace":
        if not isinstance(data, Mapping):
            raise SpaceError(f"{source}: a space must be a table/object at the top level")
        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            raise SpaceError(f"{source}: unknown key {unknown[0]!r}; allowed: {', '.join(_TOP_KEYS)}")
        if data.get("version", 1) != 1:
            raise SpaceError(f"{source}: 'version' = {data.get('version')!r}, expected 1")
        defaults = data.get("choices", {})
        if not isinstance(defaults, Mapping):
            raise SpaceError(f"{source}: 'choices' must be a table")
        bad = sorted(set(defaults) - set(_CHOICE_KEYS))
        if bad:
            raise SpaceError(f"{source}: unknown choice {bad[0]!r}; allowed: {', '.join(_CHOICE_KEYS)}")
        raw_stages = data.get("stages")
        if not isinstance(raw_stages, list) or not 1 <= len(raw_stages) <= LIMITS["stages"]:
            raise SpaceError(f"{source}: 'stages' must be a list of 1 to {LIMITS['stages']} "
                             "stage tables")
        stages = [_resolve_stage(raw, defaults, f"{source}: stages[{index}]")
                  for index, raw in enumerate(raw_stages)]
        top = {key: data[key] for key in ("stem_channels", "head_channels", "activation",
                                          "dropout", "drop_connect_rate", "resolution")
               if key in data}
        if top.get("activation", "silu") not in ACTIVATIONS:
            raise SpaceError(f"{source}: 'activation' = {top['activation']!r}, "
                             f"expected one of {ACTIVATIONS}")
        try:
            return cls(stages=stages, source=source, **top)
        except ValueError as error:
            raise SpaceError(f"{source}: {error}") from None

    # -- queries ------------------------------------------------------------------------

    def size(self) -> int:
        """Number of distinct genomes in the space."""
        return math.prod(stage.size for stage in self.stages)

    def _genome(self, stages: Sequence[Stage], name: str = "") -> Genome:
        return Genome(stages=tuple(stages), stem_channels=self.stem_channels,
                      head_channels=self.head_channels, dropout=self.dropout,
                      drop_connect_rate=self.drop_connect_rate, resolution=self.resolution,
                      activation=self.activation, name=name)

    def sample(self, trial: _Suggester, name: str = "") -> Genome:
        """Draw a genome, one categorical parameter per stage choice (``stage3_kernel_size``
        and so on) so that Optuna's parameter importances speak of stages. Choices with
        a single value are fixed and not suggested."""
        stages = []
        for index, choices in enumerate(self.stages):
            picked = {}
            for field in STAGE_FIELDS:
                options = choices.options[field.name]
                picked[field.name] = (options[0] if len(options) == 1 else
                                      trial.suggest_categorical(param_name(index, field),
                                                                list(options)))
            stages.append(Stage(**picked))
        return self._genome(stages, name)

    def random_genome(self, rng: random.Random, name: str = "") -> Genome:
        """A uniformly random genome of the space, without Optuna."""

        class _RandomSuggester:
            def suggest_categorical(self, _name: str, options: Sequence[Any]) -> Any:
                return rng.choice(list(options))

        return self.sample(_RandomSuggester(), name)

    def genome_from_params(self, params: Mapping[str, Any], name: str = "") -> Genome:
        """Rebuild the genome of a finished trial from its parameters. A trial made before
        a choice existed lacks its parameter and gets the field's default."""
        defaults = {param_name(index, field): field.default for index in range(len(self.stages))
                    for field in STAGE_FIELDS if not field.required}

        class _Replay:
            def suggest_categorical(self, param: str, options: Sequence[Any]) -> Any:
                if param in params:
                    return params[param]
                if param in defaults and defaults[param] in options:
                    return defaults[param]
                raise SpaceError(f"trial parameters lack {param!r}: the study was made "
                                 "with a different space")

        return self.sample(_Replay(), name)

    def params_of(self, genome: Genome) -> dict[str, Any]:
        """The Optuna parameters that :meth:`sample` would suggest to produce ``genome``
        (used to enqueue a known genome into a study)."""
        why = self.why_not_contained(genome)
        if why:
            raise SpaceError(f"genome is not in the space: {why}")
        return {param_name(index, field): getattr(stage, field.name)
                for index, (stage, choices) in enumerate(zip(genome.stages, self.stages))
                for field in STAGE_FIELDS if len(choices.options[field.name]) > 1}

    def _allowed(self, field: str, stage: Optional[int]) -> tuple[Any, ...]:
        if stage is None:
            return (len(self.stages),) if field == "stages" else (getattr(self, field),)
        return self.stages[stage].options[field]

    def why_not_contained(self, genome: Genome) -> Optional[str]:
        """None when the space holds ``genome``'s architecture, else the first reason.

        Training settings (dropout, drop-connect) and the deployment resolution are not
        part of the architecture and are not compared."""
        mismatch = first_mismatch(genome, self._allowed)
        return None if mismatch is None else _reason(mismatch)

    def contains(self, genome: Genome) -> bool:
        return self.why_not_contained(genome) is None

    def _extreme(self, last: bool) -> Genome:
        return self._genome([Stage(**{name: values[-1 if last else 0]
                                      for name, values in choices.options.items()})
                             for choices in self.stages])

    def smallest(self) -> Genome:
        """The genome with every smallest (cheapest) choice: the least multiply-adds in
        the space."""
        return self._extreme(last=False)

    def largest(self) -> Genome:
        """The genome with every largest (dearest) choice: the most multiply-adds in the
        space."""
        return self._extreme(last=True)

    def describe(self) -> list[dict[str, Any]]:
        """One row per stage: its choices, for tables and JSON."""
        return [{"stage": index + 1,
                 **{field.name: (list(c.options[field.name]) if field.searched
                                 else c.options[field.name][0]) for field in STAGE_FIELDS},
                 "size": c.size}
                for index, c in enumerate(self.stages)]


def _reason(mismatch: Mismatch) -> str:
    if mismatch.field == "stages":
        return f"{mismatch.value} stages, the space has {mismatch.allowed[0]}"
    if mismatch.stage is None:
        return f"{mismatch.label} is {mismatch.value!r}, the space has {mismatch.allowed[0]!r}"
    if not FIELDS_BY_NAME[mismatch.field].searched:
        return f"{mismatch.label} {mismatch.value!r}, the space has {mismatch.allowed[0]!r}"
    return f"{mismatch.label} {mismatch.value!r} not in {list(mismatch.allowed)}"


_LIST_KINDS = {int: (int, "integers"), float: ((int, float), "numbers"), str: (str, "strings")}


def _value_list(value: Any, where: str, kind: type) -> list:
    accepted, plural = _LIST_KINDS[kind]
    if not isinstance(value, list) or not value or len(value) > 64:
        raise SpaceError(f"{where} must be a non-empty list of at most 64 {plural}, "
                         f"got {value!r}")
    for item in value:
        if (isinstance(item, bool) or not isinstance(item, accepted)
                or (kind is not str and not math.isfinite(item))):
            raise SpaceError(f"{where} has {item!r}; expected {plural}")
    return value


def _field_options(field: StageField, merged: Mapping[str, Any], where: str) -> tuple:
    base = None
    if field.skeleton:
        base = merged[field.name]
        try:
            field.check(field.name, base)
        except GenomeError as error:
            raise SpaceError(f"{where}.{field.name} = {base!r}; {error.expected}") from None
    if not field.searched:
        return (base,)
    if field.choice_key not in merged:  # a choice added after version 1: today's meaning
        return (field.default,)
    key = field.choice_key
    values = _value_list(merged[key], f"{where}.{key}", field.choice_type or field.type)
    problem = field.choice_rule(values) if field.choice_rule else None
    if problem:
        raise SpaceError(f"{where}.{key} = {values}; {problem}")
    resolved = {field.resolve(base, value) if field.resolve else value for value in values}
    # Cheapest first: numbers ascending, named options in the schema's order.
    order = ((lambda value: (field.options.index(value) if value in field.options
                             else len(field.options), str(value)))
             if field.options else None)
    return tuple(sorted(resolved, key=order))


def _resolve_stage(raw: Any, defaults: Mapping[str, Any], where: str) -> StageChoices:
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{where} must be a table")
    unknown = sorted(set(raw) - set(_STAGE_KEYS))
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(_STAGE_KEYS)}")
    merged = {**defaults, **raw}
    for field in STAGE_FIELDS:
        keys = ([field.name] if field.skeleton else []) + (
            [field.choice_key] if field.searched and field.required else [])
        for key in keys:
            if key not in merged:
                raise SpaceError(f"{where}: {key!r} is missing (set it on the stage or in "
                                 "[choices])")
    choices = StageChoices({field.name: _field_options(field, merged, where)
                            for field in STAGE_FIELDS})
    _check_every_value(choices, where)
    return choices


def _check_every_value(choices: StageChoices, where: str) -> None:
    """Every value of every choice against the genome's rules, not only the extremes the
    space builds: ``kernel_size = [3, 4, 5]`` fails here, not at the trial that draws 4."""
    for field in STAGE_FIELDS:
        for value in choices.options[field.name]:
            try:
                field.check(field.name, value)
            except GenomeError as error:
                raise SpaceError(f"{where}.{field.name} includes {value!r}: "
                                 f"{error.expected}") from None
