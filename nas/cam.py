"""Class activation maps (Zhou et al. 2016, "Learning Deep Features for Discriminative
Localization"), and the side-by-side grid of the EfficientNet paper's Figure 7.

For a network that ends in global average pooling and one linear layer, the logit of class
c is ``b_c + mean_xy sum_k w_ck f_k(x, y)``; the map ``M_c(x, y) = sum_k w_ck f_k(x, y)``
shows where the evidence for c lies. Here ``f`` is ``model.features(x)`` (the head's output,
before pooling) and ``w`` the classifier's weights; the map is upsampled bilinearly to the
input size and scaled to [0, 1] per image for display.

Every checkpoint in a grid must have been trained on the same dataset (the same images go
through each model, each at its own training resolution).
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from space import NasError

from .checkpoint import model_from_checkpoint
from .data import Normalization, Split, load_dataset, preprocess, split_train_val
from .memory import check_fits, inference_bytes

__all__ = ["CamError", "CamResult", "class_activation_maps", "pick_images", "cam_grid",
           "SPLITS", "MAX_IMAGES"]

log = logging.getLogger(__name__)

SPLITS = ("val", "test")
# A grid row per image: more than this many rows is no longer a figure anyone reads.
MAX_IMAGES = 32


class CamError(NasError):
    """Checkpoints that cannot share a grid, or image choices that cannot be met."""


@dataclass(frozen=True, eq=False)
class CamResult:
    """Maps of a batch for the class each image is explained for.

    ``raw`` (N, h, w): ``sum_k w_ck f_k`` on the feature grid (logit units, before the
    bias); ``maps`` (N, H, W): ``raw`` upsampled to the input size and scaled to [0, 1];
    ``classes`` (N,): the explained class (the predicted one unless given); ``logits``
    (N, num_classes) and ``probabilities`` of the explained classes (N,)."""

    raw: torch.Tensor
    maps: torch.Tensor
    classes: torch.Tensor
    logits: torch.Tensor
    probabilities: torch.Tensor


def class_activation_maps(model: nn.Module, batch: torch.Tensor,
                          classes: Optional[torch.Tensor] = None) -> CamResult:
    """CAMs of ``batch`` (normalised float input, (N, C, H, W)) for ``classes`` (default:
    the predicted class). ``model`` needs ``.features(x)`` and a linear ``.classifier``."""
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Linear) or not hasattr(model, "features"):
        raise CamError("class activation maps need a model with .features(x) and a linear "
                       ".classifier (networks built by space.build)")
    with torch.no_grad():
        features = model.features(batch)
        logits = classifier(features.mean((2, 3)))
        chosen = logits.argmax(1) if classes is None else classes.to(logits.device)
        weights = classifier.weight[chosen]  # (N, C)
        raw = torch.einsum("nc,nchw->nhw", weights, features)
        upsampled = F.interpolate(raw[:, None], size=batch.shape[-2:], mode="bilinear",
                                  align_corners=False)[:, 0]
        low = upsampled.amin((1, 2), keepdim=True)
        high = upsampled.amax((1, 2), keepdim=True)
        # A flat map (a 1x1 feature grid, or no spatial evidence at all) stays flat at 0
        # instead of stretching rounding noise to the full colour range.
        spread = high - low
        flat = spread <= 1e-5 * (high.abs() + low.abs()) + 1e-12
        maps = torch.where(flat, torch.zeros_like(upsampled),
                           (upsampled - low) / spread.clamp_min(1e-12))
        probabilities = logits.softmax(1).gather(1, chosen[:, None])[:, 0]
    return CamResult(raw=raw, maps=maps, classes=chosen, logits=logits,
                     probabilities=probabilities)


def pick_images(split: Split, count: int, seed: int) -> torch.Tensor:
    """Indices of ``count`` images of ``split``, seeded, covering as many classes as possible
    (one image per class first, in a random order, then any)."""
    if not 1 <= count <= min(MAX_IMAGES, len(split)):
        raise CamError(f"--images {count}: choose 1 to {min(MAX_IMAGES, len(split))}")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    chosen, seen = [], set()
    for index in order.tolist():
        label = int(split.labels[index])
        if label not in seen:
            seen.add(label)
            chosen.append(index)
            if len(chosen) == count:
                return torch.tensor(chosen)
    taken = set(chosen)
    rest = [i for i in order.tolist() if i not in taken]
    return torch.tensor(chosen + rest[:count - len(chosen)])


@dataclass(frozen=True, eq=False)
class _Column:
    title: str
    model: nn.Module
    resolution: int
    normalization: Normalization


def _load_columns(checkpoints: Sequence[Union[str, os.PathLike]],
                  images: int) -> tuple[list[_Column], dict]:
    columns, first = [], None
    for path in checkpoints:
        genome, model, metadata = model_from_checkpoint(path)
        check_fits(inference_bytes(genome, resolution=metadata["resolution"], batch=images,
                                   num_classes=metadata["num_classes"],
                                   in_channels=metadata["in_channels"]),
                   f"the maps of {str(path)!r} at {metadata['resolution']} px, {images} "
                   "images", advice="lower --images")
        shape = {key: metadata[key] for key in ("dataset", "num_classes", "in_channels")}
        if first is None:
            first = shape
        elif shape != first:
            differs = next(key for key in shape if shape[key] != first[key])
            raise CamError(f"checkpoint {str(path)!r} has {differs} {shape[differs]!r}, the first "
                           f"checkpoint {first[differs]!r}; a grid compares models of one "
                           "dataset")
        name = genome.name or Path(path).stem
        columns.append(_Column(title=f"{name}\n{metadata['resolution']} px",
                               model=model, resolution=int(metadata["resolution"]),
                               normalization=Normalization.from_dict(metadata["normalization"])))
    assert first is not None  # cam_grid refuses an empty list before loading
    return columns, first


def cam_grid(checkpoints: Sequence[Union[str, os.PathLike]], *, images: int = 6,
             split: str = "test", data_dir: Union[str, os.PathLike, None] = None,
             val_size: int = 5000, seed: int = 0, overlay_alpha: float = 0.5) -> bytes:
    """A PNG: one row per image (the input, then its CAM for each checkpoint, over the
    image at that model's resolution, titled with the predicted class and its
    probability: green when right, red when wrong).

    Images come from the test split (never trained on; ``nas train`` validates on it by
    default) or from the validation split carved out of the training set
    (``split_train_val(dataset, val_size, seed)``, as the search's evaluators and
    ``nas train --val-size`` do)."""
    if not checkpoints:
        raise CamError("give at least one --checkpoint")
    if split not in SPLITS:
        raise CamError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    columns, shape = _load_columns(checkpoints, images)
    dataset = load_dataset(shape["dataset"], data_dir)
    if dataset.num_classes != shape["num_classes"] or dataset.in_channels != shape["in_channels"]:
        raise CamError(f"the checkpoints expect {shape['num_classes']} classes and "
                       f"{shape['in_channels']} channel(s); the {dataset.name} data in "
                       f"{dataset.source} has {dataset.num_classes} and {dataset.in_channels}")
    if split == "val":
        _, pool = split_train_val(dataset, val_size, seed)
    else:
        pool = dataset.test
    if len(pool) == 0:
        raise CamError(f"the {split} split of {dataset.name} is empty; use --split "
                       f"{'test' if split == 'val' else 'val'}")
    chosen = pool.select(pick_images(pool, images, seed))
    results = []
    for column in columns:
        batch = preprocess(chosen.images, column.resolution, column.normalization)
        result = class_activation_maps(column.model, batch)
        if result.raw.shape[-2:] == (1, 1):
            log.warning("%s: the last feature map is 1x1 at %d px, so its activation map "
                        "cannot localize anything; train at a larger --resolution",
                        column.title.splitlines()[0], column.resolution)
        results.append(result)
    return _draw(chosen, columns, results, dataset.class_names, overlay_alpha)


def _display(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, resolution, resolution, C) in [0, 1] for imshow."""
    batch = images.to(torch.float32) / 255.0
    if batch.shape[-1] != resolution:
        batch = F.interpolate(batch, size=(resolution, resolution), mode="bilinear",
                              align_corners=False)
    return batch.clamp(0, 1).permute(0, 2, 3, 1)


def _draw(chosen: Split, columns: Sequence[_Column], results: Sequence[CamResult],
          class_names: Sequence[str], alpha: float) -> bytes:
    from matplotlib.figure import Figure

    rows, count = len(chosen), len(columns) + 1
    figure = Figure(figsize=(1.9 * count, 2.05 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, count, squeeze=False)
    grey = chosen.images.shape[1] == 1
    originals = _display(chosen.images, chosen.images.shape[-1])
    for row in range(rows):
        label = int(chosen.labels[row])
        axis = axes[row][0]
        axis.imshow((originals[row, ..., 0] if grey else originals[row]).numpy(),
                    cmap="gray" if grey else None, vmin=0, vmax=1)
        # Headers are titles of the first row and predictions are x labels, so that the
        # constrained layout makes room for both.
        axis.set_title(("input\n" if row == 0 else "") + class_names[label], fontsize=9,
                       fontweight="bold" if row == 0 else "normal")
        axis.set_xlabel("true class", fontsize=8, color="#555")
        for column_index, (column, result) in enumerate(zip(columns, results), start=1):
            axis = axes[row][column_index]
            picture = _display(chosen.images[row:row + 1], column.resolution)[0]
            axis.imshow((picture[..., 0] if grey else picture).numpy(),
                        cmap="gray" if grey else None, vmin=0, vmax=1)
            axis.imshow(result.maps[row].numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1)
            predicted = int(result.classes[row])
            axis.set_xlabel(f"{class_names[predicted]} {result.probabilities[row]:.2f}",
                            fontsize=9, color="#007A33" if predicted == label else "#C00000")
            if row == 0:
                grid = "\u00d7".join(str(n) for n in result.raw.shape[-2:])
                axis.set_title(f"{column.title}, {grid} map", fontsize=9, fontweight="bold")
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
