"""What each field of a checkpoint may hold, checked when one is loaded.

A checkpoint comes from elsewhere. ``torch.load(weights_only=True)`` keeps it from
running code; this schema keeps its fields from being misread: the genome is the JSON
text of a genome object (never a path: ``"/dev/zero"`` is a string too), counts are
integers in range, the normalisation holds one finite mean and one positive finite
standard deviation per input channel, and the settings of a ``nas train`` checkpoint
hold every key that ``--resume`` reads, each of its type. A field that breaks the schema
raises :class:`FieldError` naming it.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from space import Genome, GenomeError
from space.files import loads_json
from space.genome import LIMITS

from .train import OPTIMIZERS, SCHEDULES

__all__ = ["FieldError", "decode_payload", "check_resume_metrics"]

# Characters of a genome's JSON text: one at every limit of the schema is under 200,000.
MAX_GENOME_TEXT = 1_000_000
MAX_CLASSES = 1_000_000
MAX_CHANNELS = 64
MAX_EPOCHS = 1_000_000
MAX_SEED = 2**32 - 1  # numpy's and Optuna's seeds are 32-bit


class FieldError(ValueError):
    """A checkpoint field that does not hold what the schema says."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(low: int, high: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high,
            f"an integer in [{low}, {high}]")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _optional_number(value: Any) -> bool:
    return value is None or _finite(value)


def _require(fields: dict[str, Any], key: str, check: Callable[[Any], bool],
             expected: str, where: str = "") -> Any:
    if key not in fields:
        raise FieldError(f"lacks '{where}{key}'")
    if not check(fields[key]):
        raise FieldError(f"field '{where}{key}' = {_short(fields[key])}: expected {expected}")
    return fields[key]


def _genome(value: Any) -> Genome:
    """A genome from its JSON text (as ``nas train`` saves it) or an object; never a path."""
    if isinstance(value, str):
        if len(value) > MAX_GENOME_TEXT or not value.lstrip().startswith("{"):
            raise FieldError(f"field 'genome' = {_short(value)}: expected the JSON text of a "
                             "genome object")
        value = loads_json(value, "field 'genome'", FieldError)
    if not isinstance(value, dict):
        raise FieldError(f"field 'genome' = {_short(value)}: expected the JSON text of a "
                         "genome object")
    try:
        return Genome.from_dict(value)
    except GenomeError as error:
        raise FieldError(f"holds a bad genome: {error}") from None


def _normalization(value: Any, channels: int) -> dict[str, list[float]]:
    def per_channel(numbers: Any, positive: bool) -> bool:
        return (isinstance(numbers, list) and len(numbers) == channels
                and all(_finite(x) and (x > 0 or not positive) for x in numbers))

    expected = f"{{'mean': [...], 'std': [...]}} with {channels} number(s) each, std > 0"
    if not isinstance(value, dict) or set(value) != {"mean", "std"} \
            or not per_channel(value["mean"], False) or not per_channel(value["std"], True):
        raise FieldError(f"field 'normalization' = {_short(value)}: expected {expected}")
    return value


def decode_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Check every field of a loaded checkpoint; returns it with the genome decoded."""
    _require(payload, "state_dict", lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items()),
        "a dict of named tensors")
    _require(payload, "num_classes", *_integer(1, MAX_CLASSES))
    channels = _require(payload, "in_channels", *_integer(1, MAX_CHANNELS))
    _require(payload, "resolution", *_integer(8, LIMITS["resolution"]))
    _require(payload, "dataset", lambda v: isinstance(v, str) and 0 < len(v) <= 100,
             "a dataset name")
    _require(payload, "epoch", *_integer(0, MAX_EPOCHS))
    _require(payload, "metrics", lambda v: isinstance(v, dict), "a dict")
    for key in ("optimizer_state", "scheduler_state"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            raise FieldError(f"field {key!r} = {_short(payload[key])}: expected a dict or None")
    _normalization(payload.get("normalization"), channels)
    return {**payload, "genome": _genome(payload.get("genome"))}


# What `nas train --resume` reads of a checkpoint's metrics["settings"]; the ranges are
# the command line's, checked again when the run resumes.
_SETTINGS = {
    "epochs": _integer(1, MAX_EPOCHS),
    "batch_size": _integer(2, 1 << 20),
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    "lr": (_optional_number, "a number or null"),
    "weight_decay": (_optional_number, "a number or null"),
    "schedule": (lambda v: v in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
    "label_smoothing": (_finite, "a number"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "resolution": _integer(8, LIMITS["resolution"]),
    "seed": _integer(0, MAX_SEED),
}


def check_resume_metrics(metrics: dict[str, Any]) -> None:
    """The parts of a ``nas train`` checkpoint's metrics that a resumed run reads."""
    settings = _require(metrics, "settings", lambda v: isinstance(v, dict), "a dict",
                        "metrics.")
    for key, (check, expected) in _SETTINGS.items():
        _require(settings, key, check, expected, "metrics.settings.")
    _require(metrics, "history", lambda v: isinstance(v, list) and all(
        isinstance(h, dict) and _finite(h.get("train_seconds"))
        and _finite(h.get("train_images")) for h in v),
        "a list of epochs (dicts with train_seconds and train_images)", "metrics.")
    _require(metrics, "wall_seconds", _finite, "a number", "metrics.")
