"""The MnasNet factorized hierarchical search space over a fixed stage skeleton.

A space is a set of choices per stage (Tan et al. 2019, Section 4): kernel size,
expansion ratio, squeeze-and-excitation ratio, layers relative to the skeleton and
output width relative to it. It is declared in a TOML (or JSON) file a user can copy
and edit; ``space/default_space.toml`` is the built-in one, over the EfficientNet-B0
skeleton.

Choices are resolved to the distinct concrete values they produce (a width
multiplier of 0.75 and 1.0 both give 16 channels for a 16-channel stage), so each
Optuna parameter has no aliases and :meth:`SearchSpace.size` counts distinct genomes.
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence

from .blocks import round_channels
from .errors import GenomeError, SpaceError
from .files import loads_json, read_text_file, tame_integers
from .genome import ACTIVATIONS, LIMITS, Genome, Stage

__all__ = ["SearchSpace", "StageChoices", "DEFAULT_SPACE_PATH"]

DEFAULT_SPACE_PATH = Path(__file__).with_name("default_space.toml")

_CHOICE_KEYS = ("kernel_size", "expand_ratio", "se_ratio", "layers_delta", "width_multiplier")
_STAGE_KEYS = ("out_channels", "num_layers", "stride") + _CHOICE_KEYS
_TOP_KEYS = ("version", "stem_channels", "head_channels", "activation", "dropout",
             "drop_connect_rate", "resolution", "choices", "stages")


class _Suggester(Protocol):
    """What :meth:`SearchSpace.sample` needs of an ``optuna.Trial``."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class StageChoices:
    """The concrete values one stage may take (already resolved and de-duplicated)."""

    stride: int
    kernel_size: tuple[int, ...]
    expand_ratio: tuple[float, ...]
    se_ratio: tuple[float, ...]
    num_layers: tuple[int, ...]
    out_channels: tuple[int, ...]

    @property
    def size(self) -> int:
        return (len(self.kernel_size) * len(self.expand_ratio) * len(self.se_ratio)
                * len(self.num_layers) * len(self.out_channels))


def _param_names(index: int) -> dict[str, str]:
    """Optuna parameter names, per stage (1-based like the papers' tables)."""
    return {field: f"stage{index + 1}_{field}" for field in
            ("kernel_size", "expand_ratio", "se_ratio", "num_layers", "out_channels")}


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
            names = _param_names(index)
            picked = {}
            for field, param in names.items():
                options = getattr(choices, field)
                picked[field] = (options[0] if len(options) == 1
                                 else trial.suggest_categorical(param, list(options)))
            stages.append(Stage(stride=choices.stride, **picked))
        return self._genome(stages, name)

    def random_genome(self, rng: random.Random, name: str = "") -> Genome:
        """A uniformly random genome of the space, without Optuna."""

        class _RandomSuggester:
            def suggest_categorical(self, _name: str, options: Sequence[Any]) -> Any:
                return rng.choice(list(options))

        return self.sample(_RandomSuggester(), name)

    def genome_from_params(self, params: Mapping[str, Any], name: str = "") -> Genome:
        """Rebuild the genome of a finished trial from its parameters."""

        class _Replay:
            def suggest_categorical(self, param: str, options: Sequence[Any]) -> Any:
                if param not in params:
                    raise SpaceError(f"trial parameters lack {param!r}: the study was made "
                                     "with a different space")
                return params[param]

        return self.sample(_Replay(), name)

    def params_of(self, genome: Genome) -> dict[str, Any]:
        """The Optuna parameters that :meth:`sample` would suggest to produce ``genome``
        (used to enqueue a known genome into a study)."""
        why = self.why_not_contained(genome)
        if why:
            raise SpaceError(f"genome is not in the space: {why}")
        params = {}
        for index, (stage, choices) in enumerate(zip(genome.stages, self.stages)):
            for field, param in _param_names(index).items():
                if len(getattr(choices, field)) > 1:
                    params[param] = getattr(stage, field)
        return params

    def why_not_contained(self, genome: Genome) -> Optional[str]:
        """None when the space holds ``genome``'s architecture, else the first reason.

        Training settings (dropout, drop-connect) and the deployment resolution are not
        part of the architecture and are not compared."""
        for field in ("stem_channels", "head_channels", "activation"):
            if getattr(genome, field) != getattr(self, field):
                return f"{field} is {getattr(genome, field)!r}, the space has {getattr(self, field)!r}"
        if len(genome.stages) != len(self.stages):
            return f"{len(genome.stages)} stages, the space has {len(self.stages)}"
        for index, (stage, choices) in enumerate(zip(genome.stages, self.stages)):
            if stage.stride != choices.stride:
                return f"stage {index + 1} stride {stage.stride}, the space has {choices.stride}"
            for field in ("kernel_size", "expand_ratio", "se_ratio", "num_layers", "out_channels"):
                allowed = getattr(choices, field)
                if getattr(stage, field) not in allowed:
                    return (f"stage {index + 1} {field} {getattr(stage, field)!r} not in "
                            f"{list(allowed)}")
        return None

    def contains(self, genome: Genome) -> bool:
        return self.why_not_contained(genome) is None

    def _extreme(self, pick) -> Genome:
        return self._genome([
            Stage(kernel_size=pick(c.kernel_size), expand_ratio=pick(c.expand_ratio),
                  se_ratio=pick(c.se_ratio), num_layers=pick(c.num_layers),
                  out_channels=pick(c.out_channels), stride=c.stride)
            for c in self.stages])

    def smallest(self) -> Genome:
        """The genome with every smallest choice: the least multiply-adds in the space."""
        return self._extreme(min)

    def largest(self) -> Genome:
        """The genome with every largest choice: the most multiply-adds in the space."""
        return self._extreme(max)

    def describe(self) -> list[dict[str, Any]]:
        """One row per stage: its choices, for tables and JSON."""
        return [{"stage": index + 1, "stride": c.stride, "kernel_size": list(c.kernel_size),
                 "expand_ratio": list(c.expand_ratio), "se_ratio": list(c.se_ratio),
                 "num_layers": list(c.num_layers), "out_channels": list(c.out_channels),
                 "size": c.size}
                for index, c in enumerate(self.stages)]


def _number_list(value: Any, where: str, *, integer: bool) -> list:
    if not isinstance(value, list) or not value or len(value) > 64:
        raise SpaceError(f"{where} must be a non-empty list of at most 64 numbers, got {value!r}")
    for item in value:
        ok_type = int if integer else (int, float)
        if isinstance(item, bool) or not isinstance(item, ok_type) or not math.isfinite(item):
            raise SpaceError(f"{where} has {item!r}; expected {'integers' if integer else 'numbers'}")
    return value


def _resolve_stage(raw: Any, defaults: Mapping[str, Any], where: str) -> StageChoices:
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{where} must be a table")
    unknown = sorted(set(raw) - set(_STAGE_KEYS))
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(_STAGE_KEYS)}")
    merged = {**defaults, **raw}
    for key in ("out_channels", "num_layers", "stride") + _CHOICE_KEYS:
        if key not in merged:
            raise SpaceError(f"{where}: {key!r} is missing (set it on the stage or in [choices])")
    base_channels, base_layers, stride = merged["out_channels"], merged["num_layers"], merged["stride"]
    for key, value in (("out_channels", base_channels), ("num_layers", base_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LIMITS["channels"]:
            raise SpaceError(f"{where}.{key} = {value!r}; expected a positive integer")
    if stride not in (1, 2) or isinstance(stride, bool):
        raise SpaceError(f"{where}.stride = {stride!r}; expected 1 or 2")
    kernels = _number_list(merged["kernel_size"], f"{where}.kernel_size", integer=True)
    expands = _number_list(merged["expand_ratio"], f"{where}.expand_ratio", integer=False)
    ses = _number_list(merged["se_ratio"], f"{where}.se_ratio", integer=False)
    deltas = _number_list(merged["layers_delta"], f"{where}.layers_delta", integer=True)
    widths = _number_list(merged["width_multiplier"], f"{where}.width_multiplier", integer=False)
    if any(not 0 < w <= 64 for w in widths):
        raise SpaceError(f"{where}.width_multiplier = {widths}; expected numbers in (0, 64]")
    if any(abs(d) > LIMITS["num_layers"] for d in deltas):
        raise SpaceError(f"{where}.layers_delta = {deltas}; expected small integers")

    def distinct(values):
        return tuple(sorted(set(values)))

    choices = StageChoices(
        stride=stride,
        kernel_size=distinct(kernels),
        expand_ratio=distinct(expands),
        se_ratio=distinct(ses),
        # A stage never vanishes: the MnasNet layer delta stops at one layer.
        num_layers=distinct(max(1, base_layers + d) for d in deltas),
        out_channels=distinct(round_channels(base_channels * w) for w in widths),
    )
    _check_every_value(choices, where)
    return choices


# A stage every rule of the genome accepts: one field at a time is replaced by a choice.
_PLAIN_STAGE = {"kernel_size": 3, "expand_ratio": 1, "se_ratio": 0, "num_layers": 1,
                "out_channels": 8}


def _check_every_value(choices: StageChoices, where: str) -> None:
    """Every value of every choice against the genome's rules, not only the extremes the
    space builds: ``kernel_size = [3, 4, 5]`` fails here, not at the trial that draws 4."""
    for field in _PLAIN_STAGE:
        for value in getattr(choices, field):
            try:
                Stage(stride=choices.stride, **{**_PLAIN_STAGE, field: value})
            except GenomeError as error:
                reason = str(error).split(": ", 1)[-1]  # past "genome field 'stage.x' = v"
                raise SpaceError(f"{where}.{field} includes {value!r}: {reason}") from None

