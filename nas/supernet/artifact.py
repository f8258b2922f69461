"""A trained supernet as a file: keyed by space, dataset and training settings, built
once however many processes ask for it, refused in one line when it does not fit.

The default place is ``<runs>/supernets/<digest>.pt``, where the digest is that of the
key (space, dataset, settings): a search with the same three finds the file and reuses
it, and every worker of a study on the machine finds the same one. Building takes an
exclusive lock on ``<artifact>.lock`` (``flock``, released by the kernel when its
holder dies), so a second process asking for the same missing supernet waits and then
reads the one the first built. Training checkpoints to ``<artifact>.partial`` and
resumes from it. The artifact is written atomically, and an existing one that cannot be
read is refused, never overwritten, except by ``nas supernet train`` (``rebuild``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import torch

from space import SearchSpace

from ..common import atomic_write_bytes
from ..data import Dataset
from .model import Supernet, SupernetError
from .training import SupernetSettings

__all__ = ["CorruptArtifact", "ARTIFACT_FORMAT", "ARTIFACT_VERSION", "supernet_key", "key_digest",
           "default_path", "save_artifact", "load_artifact", "build_lock", "obtain"]

ARTIFACT_FORMAT = "nas-supernet"
ARTIFACT_VERSION = 1
PathLike = Union[str, os.PathLike]


class CorruptArtifact(SupernetError):
    """An artifact that cannot be read at all (truncated, corrupt, not ours)."""


def space_identity(space: SearchSpace) -> dict[str, Any]:
    """The architecture choices of a space (not where it was read from)."""
    return {"stem_channels": space.stem_channels, "head_channels": space.head_channels,
            "activation": space.activation,
            "stages": [{key: value for key, value in row.items() if key != "size"}
                       for row in space.describe()]}


def dataset_identity(data: Dataset) -> dict[str, Any]:
    return {"name": data.name, "num_classes": data.num_classes,
            "in_channels": data.in_channels, "train_images": len(data.train),
            "image_size": list(data.image_size)}


def supernet_key(space: SearchSpace, data: Dataset, settings: SupernetSettings) -> dict[str, Any]:
    """Everything the trained weights depend on. The space's dropout and drop-connect
    regularise the largest sub-network's training, so they count as settings."""
    return {"space": space_identity(space), "dataset": dataset_identity(data),
            "settings": {**settings.to_dict(), "dropout": space.dropout,
                         "drop_connect_rate": space.drop_connect_rate}}


def key_digest(key: dict[str, Any]) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def default_path(runs_dir: PathLike, key: dict[str, Any]) -> Path:
    return Path(runs_dir) / "supernets" / f"{key_digest(key)}.pt"


def partial_path(path: PathLike) -> Path:
    return Path(f"{path}.partial")


def save_artifact(path: PathLike, supernet: Supernet, key: dict[str, Any], *,
                  normalization: dict[str, list[float]], training: dict[str, Any]) -> Path:
    buffer = io.BytesIO()
    torch.save({"format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION,
                "digest": key_digest(key), "key": json.dumps(key, sort_keys=True),
                "state_dict": {name: value.detach().cpu()
                               for name, value in supernet.state_dict().items()},
                "num_classes": supernet.num_classes, "in_channels": supernet.in_channels,
                "normalization": normalization, "training": json.dumps(training)}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def _read(path: Path) -> dict[str, Any]:
    rebuild = f"; rebuild it with `nas supernet train --out {path}`"
    try:
        if not zipfile.is_zipfile(path):
            raise CorruptArtifact(f"supernet {str(path)!r} is corrupt or truncated (not a torch "
                                f"zip archive){rebuild}")
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except CorruptArtifact:
        raise
    except pickle.UnpicklingError:
        raise CorruptArtifact(f"supernet {str(path)!r} holds objects that are not safe to "
                            f"load{rebuild}") from None
    except Exception as error:  # torch reports truncation as RuntimeError, EOFError, ...
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise CorruptArtifact(f"supernet {str(path)!r} is corrupt or truncated "
                            f"({first}){rebuild}") from None
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise SupernetError(f"{str(path)!r} is not a supernet (written by `nas supernet "
                            "train`)")
    if payload.get("version") != ARTIFACT_VERSION:
        raise CorruptArtifact(f"supernet {str(path)!r} has version {payload.get('version')!r}; "
                            f"this program reads version {ARTIFACT_VERSION}{rebuild}")
    return payload


def _mismatch(found: dict[str, Any], expected: dict[str, Any]) -> Optional[str]:
    """Why an artifact's key does not serve ``expected``: another space, dataset or
    validation split (the images a genome is scored on must not have been trained on)."""
    if found["dataset"] != expected["dataset"]:
        return (f"was trained on {found['dataset']['name']} ({found['dataset']['train_images']}"
                f" training images), not on {expected['dataset']['name']} "
                f"({expected['dataset']['train_images']})")
    if found["space"] != expected["space"]:
        for field in ("stem_channels", "head_channels", "activation"):
            have, want = found["space"].get(field), expected["space"][field]
            if have != want:
                return (f"was trained over another space ({field} {have} where this space "
                        f"has {want})")
        stages = len(found["space"]["stages"]), len(expected["space"]["stages"])
        if stages[0] != stages[1]:
            return (f"was trained over another space ({stages[0]} stages where this space "
                    f"has {stages[1]})")
        for index, (have, want) in enumerate(zip(found["space"]["stages"],
                                                 expected["space"]["stages"])):
            if have != want:
                field = next(k for k in sorted({*have, *want}) if have.get(k) != want.get(k))
                return (f"was trained over another space (stage {index + 1} {field} "
                        f"{have.get(field)} where this space has {want.get(field)})")
        return "was trained over another space"
    for setting in ("resolution", "val_size", "seed"):
        if found["settings"].get(setting) != expected["settings"][setting]:
            return (f"was trained with {setting} {found['settings'].get(setting)}, this "
                    f"evaluation uses {expected['settings'][setting]}")
    return None


def load_artifact(path: PathLike, space: SearchSpace, expected: dict[str, Any]
                  ) -> tuple[Supernet, dict[str, Any]]:
    """The supernet stored at ``path``, checked against ``expected`` (a key); returns it
    (CPU, eval mode) and the stored metadata (key, normalization, training)."""
    path = Path(path)
    payload = _read(path)
    try:
        key = json.loads(payload["key"])
        why = _mismatch(key, expected)
        training = json.loads(payload.get("training") or "{}")
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CorruptArtifact(f"supernet {str(path)!r} is corrupt (its key is unreadable); "
                              f"rebuild it with `nas supernet train --out {path}`") from None
    if why:
        raise SupernetError(f"supernet {str(path)!r} {why}; train one for this evaluation "
                            "with `nas supernet train` (same --space, --dataset and settings)")
    try:
        supernet = Supernet(space, num_classes=payload["num_classes"],
                            in_channels=payload["in_channels"])
        supernet.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        # torch's first line only says "Error(s) in loading state_dict for Supernet:".
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        lines = [line for line in lines if not line.endswith(":")] or [type(error).__name__]
        raise CorruptArtifact(f"supernet {str(path)!r} weights do not fit its space "
                              f"({lines[0][:120]}); rebuild it with `nas supernet train "
                              f"--out {path}`") from None
    metadata = {"key": key, "normalization": payload.get("normalization"),
                "training": training}
    return supernet.eval(), metadata


@contextlib.contextmanager
def build_lock(path: PathLike) -> Iterator[None]:
    """Hold the exclusive build lock of the artifact at ``path`` (waits for it)."""
    lock = Path(f"{path}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a+")
    except OSError as error:
        raise SupernetError(f"cannot create the supernet's lock file {str(lock)!r}: "
                            f"{error.strerror or error}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def obtain(path: PathLike, space: SearchSpace, key: dict[str, Any],
           build: Callable[[Path], None], *, rebuild: bool = False, force: bool = False
           ) -> tuple[Supernet, dict[str, Any], bool]:
    """The supernet at ``path``: loaded when it exists, else built by ``build(partial)``
    (which must write the artifact at ``path``, checkpointing to ``partial``) under the
    build lock, so that concurrent callers build it once. Returns (supernet, metadata,
    whether this call built it). An existing artifact that does not fit is refused; one
    that cannot be read at all is refused too, never overwritten, unless ``rebuild``
    (``nas supernet train``), which trains a new one in its place; ``force`` trains anew
    whatever is there."""
    path = Path(path)
    if path.exists() and not (rebuild or force):
        return (*load_artifact(path, space, key), False)
    with build_lock(path):
        if path.exists() and not force:
            try:
                return (*load_artifact(path, space, key), False)
            except CorruptArtifact:
                if not rebuild:
                    raise
        build(partial_path(path))
        partial_path(path).unlink(missing_ok=True)
        return (*load_artifact(path, space, key), True)
