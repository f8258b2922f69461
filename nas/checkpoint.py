"""Checkpoints that are safe to load: tensors, numbers, strings, lists and dicts only.

A checkpoint is one ``torch.save`` file read back with ``torch.load(weights_only=True)``,
which refuses arbitrary pickled objects, so opening a checkpoint from elsewhere cannot
run code. The genome travels as its JSON text; the training set's normalisation, the
class count and input channels travel with it so that the model can be rebuilt and fed
without the dataset at hand.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from space import Genome, NasError, build

from .checkpoint_fields import FieldError, decode_payload
from .outputs import publish

__all__ = ["CheckpointError", "CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint",
           "model_from_checkpoint"]

CHECKPOINT_FORMAT = "nas-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("format", "version", "genome", "state_dict", "num_classes", "in_channels",
             "resolution", "dataset", "epoch", "metrics", "normalization")


class CheckpointError(NasError):
    """A checkpoint file that is missing, unreadable, not ours or does not fit."""


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel (its state_dict keys lack 'module.')."""
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: Union[str, os.PathLike], *, genome: Genome, model: nn.Module,
                    num_classes: int, in_channels: int, resolution: int, dataset: str,
                    epoch: int, metrics: dict[str, Any], normalization: dict[str, list[float]],
                    optimizer_state: Optional[dict] = None,
                    scheduler_state: Optional[dict] = None,
                    alongside: Optional[Mapping[Union[str, os.PathLike], bytes]] = None) -> Path:
    """Write a checkpoint atomically (a crash leaves the previous one intact), together
    with the files of ``alongside`` (path -> content): all of them new, or none.

    ``epoch`` counts completed epochs; ``resolution`` is the training input size in
    pixels; ``normalization`` is ``{"mean": [...], "std": [...]}`` in [0, 1] pixel units."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "genome": genome.to_json(indent=None),
        "state_dict": {key: value.detach().cpu() for key, value in
                       _unwrap(model).state_dict().items()},
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "resolution": int(resolution),
        "dataset": str(dataset),
        "epoch": int(epoch),
        # Through JSON: plain numbers, strings, lists and dicts, as metrics.json has them.
        "metrics": json.loads(json.dumps(metrics)),
        "normalization": {"mean": [float(v) for v in normalization["mean"]],
                          "std": [float(v) for v in normalization["std"]]},
        "optimizer_state": optimizer_state,
        "scheduler_state": scheduler_state,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    publish({path: buffer.getvalue(), **(alongside or {})})
    return Path(path)


def load_checkpoint(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """Read and check a checkpoint (on the CPU); raises :class:`CheckpointError`.

    Returns the saved dict with ``"genome"`` decoded into a :class:`~space.Genome`."""
    target = Path(path)
    if not target.is_file():
        raise CheckpointError(f"checkpoint {str(target)!r} does not exist")
    if not zipfile.is_zipfile(target):  # torch.save writes a zip archive
        raise CheckpointError(f"checkpoint {str(target)!r} is not a readable torch file "
                              "(not a zip archive)")
    try:
        payload = torch.load(target, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        culprit = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = culprit.group(1) if culprit else type(error).__name__
        raise CheckpointError(f"checkpoint {str(target)!r} holds objects that are not safe to "
                              f"load ({what}); only tensors, numbers, strings, lists and dicts "
                              "are accepted") from None
    except (RuntimeError, OSError, EOFError, ValueError, TypeError, AttributeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {str(target)!r} is not a readable torch file "
                              f"({first[:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(target)!r} is not a nas checkpoint (written by `nas train`)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {str(target)!r} has version "
                              f"{payload.get('version')!r}; this program reads version "
                              f"{CHECKPOINT_VERSION}")
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {str(target)!r} lacks {missing[0]!r}")
    try:
        return decode_payload(payload)
    except FieldError as error:
        raise CheckpointError(f"checkpoint {str(target)!r} {error}") from None


def model_from_checkpoint(path: Union[str, os.PathLike],
                          device: Union[str, torch.device] = "cpu"
                          ) -> tuple[Genome, nn.Module, dict[str, Any]]:
    """Rebuild the trained network of a checkpoint, in eval mode on ``device``.

    Returns ``(genome, model, metadata)``; metadata has num_classes, in_channels,
    resolution (training input size, pixels), dataset, normalization (mean/std) and
    metrics."""
    payload = load_checkpoint(path)
    genome = payload["genome"]
    try:
        model = build(genome, num_classes=payload["num_classes"], in_channels=payload["in_channels"])
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError, TypeError) as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {str(path)!r} weights do not fit its genome "
                              f"({first[:160]})") from None
    model.to(device).eval()
    metadata = {key: payload[key] for key in ("num_classes", "in_channels", "resolution",
                                              "dataset", "normalization", "metrics", "epoch")}
    return genome, model, metadata
