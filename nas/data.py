"""Image classification data as compact uint8 tensors, decoded once per process.

Datasets (nothing is downloaded):

- ``fashion-mnist``: the four standard IDX files (Xiao, Rasul & Vollgraf 2017), 60,000
  training and 10,000 test images, 28 x 28 grey. Debian's ``dataset-fashion-mnist``
  installs them in ``/usr/share/datasets/fashion-mnist``.
- ``cifar10`` / ``cifar100``: the "python version" folders (``cifar-10-batches-py`` with
  ``data_batch_1..5``, ``test_batch`` and ``batches.meta``; ``cifar-100-python`` with
  ``train``, ``test`` and ``meta``), read with an unpickler that only admits numpy arrays.
- ``imagefolder``: ``DIR/<class>/<image>`` (any format Pillow reads), or ``DIR/train/<class>/...``
  plus ``DIR/test/<class>/...`` (or ``val``). Images are decoded with Pillow; a folder of
  mixed sizes is resized (shorter side, then centre crop) to ``image_size``.

The readers of these formats live in :mod:`nas.data_formats`; this module holds the
decoded types, the per-process cache, splits, batches and the network input.

Images stay ``uint8`` in ``(N, C, H, W)`` until :func:`preprocess` turns one batch into
the network input (resize to the training resolution, scale, normalise). Batches are
slices of a seeded permutation (:func:`batches`): no Python work per image.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import torch
import torch.nn.functional as F

from space import NasError

__all__ = ["DATASETS", "DEFAULT_DIRS", "DataError", "Split", "Normalization", "Dataset",
           "load_dataset", "split_train_val", "take_subset", "batches", "preprocess",
           "augment", "proxy_resolution"]

log = logging.getLogger(__name__)

DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder")
DEFAULT_DIRS = {
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
    "cifar10": Path("/usr/share/datasets/cifar10"),
    "cifar100": Path("/usr/share/datasets/cifar100"),
}


class DataError(NasError):
    """A dataset that is missing, malformed or asked for in an impossible way."""


@dataclass(frozen=True, eq=False)
class Split:
    """Images ``uint8 (N, C, H, W)`` and their labels ``int64 (N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def select(self, index: torch.Tensor) -> "Split":
        return Split(images=self.images[index], labels=self.labels[index])


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and standard deviation of the training pixels, in [0, 1] units."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalization":
        return cls(mean=tuple(float(v) for v in data["mean"]),
                   std=tuple(float(v) for v in data["std"]))

    @classmethod
    def of(cls, images: torch.Tensor) -> "Normalization":
        """Statistics of a uint8 image tensor, computed in float64 chunks (exact, low memory)."""
        channels = images.shape[1]
        total = torch.zeros(channels, dtype=torch.float64)
        squares = torch.zeros(channels, dtype=torch.float64)
        for start in range(0, images.shape[0], 4096):
            chunk = images[start:start + 4096].to(torch.float64) / 255.0
            total += chunk.sum((0, 2, 3))
            squares += chunk.square().sum((0, 2, 3))
        count = images.shape[0] * images.shape[2] * images.shape[3]
        mean = total / count
        std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
        return cls(mean=tuple(round(float(v), 6) for v in mean),
                   std=tuple(round(float(v), 6) for v in std))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A decoded dataset. ``test`` may be empty (an ImageFolder without a test folder)."""

    name: str
    train: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    normalization: Normalization
    source: str

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])


# -- loading ------------------------------------------------------------------------------


def load_dataset(name: str = "fashion-mnist", data_dir: Union[str, os.PathLike, None] = None,
                 *, image_size: Optional[int] = None) -> Dataset:
    """Decode a dataset (``fashion-mnist``, ``cifar10``, ``cifar100`` or ``imagefolder``).

    The result is cached per process by (name, resolved folder, image size), so every
    evaluator and trainer in one process shares a single decoded copy."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if data_dir is None:
        if name == "imagefolder":
            raise DataError("--dataset imagefolder needs --data DIR (a folder of "
                            "<class>/<image> files, or train/ and test/ folders of them)")
        data_dir = DEFAULT_DIRS[name]
    folder = Path(data_dir).expanduser().resolve()
    if image_size is not None and not 8 <= image_size <= 1024:
        raise DataError(f"image size {image_size} is out of range; expected 8 to 1024 pixels")
    return _load_cached(name, str(folder), image_size)


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, folder: str, image_size: Optional[int]) -> Dataset:
    # Imported here: the readers build this module's types, so they import it first.
    from .data_formats import read_dataset

    dataset = read_dataset(name, Path(folder), image_size)
    log.info("loaded %s from %s: %d train, %d test, %d classes, %s", name, folder,
             len(dataset.train), len(dataset.test), dataset.num_classes,
             tuple(dataset.train.images.shape[1:]))
    return dataset


# -- splits and batches ---------------------------------------------------------------------


def split_train_val(dataset: Dataset, val_size: int, seed: int) -> tuple[Split, Split]:
    """Carve a seeded validation split of ``val_size`` images out of the training set.

    The same (dataset, size, seed) always gives the same split; the test set is never
    touched. ``val_size`` 0 returns the whole training set and an empty validation split."""
    total = len(dataset.train)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < total:
        raise DataError(f"validation size {val_size!r} is out of range: the {dataset.name} "
                        f"training set has {total} images; use 0 to {total - 1}")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return dataset.train.select(order[val_size:].sort().values), dataset.train.select(
        order[:val_size].sort().values)


def take_subset(split: Split, size: Optional[int], seed: int) -> Split:
    """A seeded random ``size`` images of ``split`` (all of it when ``size`` is None or
    not smaller)."""
    if size is None or size >= len(split):
        return split
    if size < 1:
        raise DataError(f"subset size {size} must be at least 1")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed + 1))
    return split.select(order[:size].sort().values)


def batches(split: Split, batch_size: int, *, shuffle: bool, seed: int = 0,
            drop_last: bool = False, rank: int = 0,
            world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(uint8 images, labels)`` batches as tensor slices of one permutation.

    With ``world_size`` > 1 each rank takes every ``world_size``-th image of the same
    permutation, cut to an equal count on every rank (DistributedDataParallel needs the
    same number of steps everywhere)."""
    total = len(split)
    order = (torch.randperm(total, generator=torch.Generator().manual_seed(seed)) if shuffle
             else torch.arange(total))
    if world_size > 1:
        order = order[: total - total % world_size][rank::world_size]
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield split.images[index], split.labels[index]


def proxy_resolution(resolution: int, multiplier: float) -> int:
    """The training resolution of a genome on a small-image dataset: the proxy resolution
    times the genome's resolution multiplier, rounded (never below 8 pixels)."""
    return max(8, int(round(resolution * multiplier)))


def augment(images: torch.Tensor, *, padding: int = 4,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a whole uint8 batch
    (the standard light CIFAR augmentation), by tensor indexing."""
    count, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    shift = torch.randint(0, 2 * padding + 1, (2, count), generator=generator)
    rows = (shift[0][:, None] + torch.arange(height))[:, None, :, None]
    cols = (shift[1][:, None] + torch.arange(width))[:, None, None, :]
    flip = torch.rand(count, generator=generator) < 0.5
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    batch = torch.arange(count)[:, None, None, None]
    channel = torch.arange(channels)[None, :, None, None]
    return padded[batch, channel, rows.to(images.device), cols.to(images.device)]


def preprocess(images: torch.Tensor, resolution: int, normalization: Normalization, *,
               channels_last: bool = False) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 network input at ``resolution`` x ``resolution``,
    normalised with the training set's per-channel mean and std (on the images' device)."""
    batch = images.to(torch.float32).div_(255.0)
    if batch.shape[-2:] != (resolution, resolution):
        batch = F.interpolate(batch, size=(resolution, resolution), mode="bilinear",
                              align_corners=False, antialias=resolution < batch.shape[-1])
    mean = torch.tensor(normalization.mean, device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(normalization.std, device=batch.device).view(1, -1, 1, 1)
    batch = (batch - mean) / std
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch
