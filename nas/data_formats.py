"""Readers of the dataset formats :func:`nas.data.load_dataset` decodes (nothing is
downloaded; the formats are described in :mod:`nas.data`).

Every reader checks what a file claims before it allocates for it (an IDX header's
shape, a pickled array's, an image's pixel count) and turns a bad file into a
:class:`~nas.data.DataError` that names it.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import pickle
import struct
import warnings
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .data import DataError, Dataset, Normalization, Split
from .memory import check_fits

__all__ = ["read_dataset"]

# Fashion-MNIST class names, in label order (Xiao et al. 2017, Table 1).
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm")
# Side of the square an ImageFolder of mixed image sizes is resized to.
DEFAULT_IMAGE_SIZE = 64


def read_dataset(name: str, path: Path, image_size: Optional[int]) -> Dataset:
    """Decode dataset ``name`` (one of :data:`nas.data.DATASETS`) from the folder ``path``."""
    if not path.is_dir():
        raise DataError(_missing_message(name, path))
    if name == "fashion-mnist":
        return _load_fashion_mnist(path)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, path)
    return _load_image_folder(path, image_size)


def _missing_message(name: str, path: Path) -> str:
    if name == "fashion-mnist":
        return (f"Fashion-MNIST not found in {path}: run `apt-get install -y "
                "dataset-fashion-mnist`, or pass --data DIR with train-images-idx3-ubyte.gz "
                "and the other three IDX files")
    if name in ("cifar10", "cifar100"):
        inner = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
        return (f"{name} not found in {path}: pass --data DIR pointing to the extracted "
                f"'{inner}' folder of the python version")
    return f"image folder {path} does not exist; pass --data DIR"


def _finish(name: str, source: Path, train: Split, test: Split, class_names: Sequence[str]) -> Dataset:
    if len(train) == 0:
        raise DataError(f"{source}: the training split has no images")
    num_classes = len(class_names)
    for split_name, split in (("training", train), ("test", test)):
        if len(split) and (int(split.labels.min()) < 0 or int(split.labels.max()) >= num_classes):
            raise DataError(f"{source}: {split_name} labels fall outside 0..{num_classes - 1}")
    if len(test) and test.images.shape[1:] != train.images.shape[1:]:
        raise DataError(f"{source}: test images are {tuple(test.images.shape[1:])}, training "
                        f"images {tuple(train.images.shape[1:])}; they must match")
    return Dataset(name=name, train=train, test=test, num_classes=num_classes,
                   class_names=tuple(class_names), normalization=Normalization.of(train.images),
                   source=str(source))


# Fashion-MNIST ---------------------------------------------------------------------------

_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _read_idx(folder: Path, stem: str, dimensions: int,
              count: Optional[int] = None) -> np.ndarray:
    """An IDX file (``.gz`` or plain): magic ``0x0000080D`` with D dimensions of uint8.

    Only as many bytes as the header's shape calls for are decompressed (and one more, to
    tell a longer file), after the shape is checked against ``count`` (the images' count,
    for a label file) and the memory available: a small gzip bomb cannot expand into
    gigabytes."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            path = candidate
            break
    else:
        raise DataError(f"{folder} lacks {stem}.gz; run `apt-get install -y "
                        "dataset-fashion-mnist` or pass --data DIR with the four IDX files")
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as stream:
            header = stream.read(4 + 4 * dimensions)
            if len(header) < 4 + 4 * dimensions:
                raise DataError(f"{path} is too short to be an IDX file")
            zero, dtype_code, ndim = struct.unpack(">HBB", header[:4])
            if zero != 0 or dtype_code != 0x08 or ndim != dimensions:
                raise DataError(f"{path} is not an IDX file of uint8 with {dimensions} "
                                f"dimension(s) (header {header[:4].hex()})")
            shape = struct.unpack(f">{ndim}I", header[4:])
            if count is not None and shape[0] != count:
                raise DataError(f"{path}: header says {shape[0]} labels for {count} images")
            size = math.prod(shape)
            # The bytes read, then the copy a tensor is made from.
            check_fits(2 * size, f"reading {path} (header shape {shape})",
                       advice="is the header right?")
            body = stream.read(size + 1)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {path}: {error}") from None
    if len(body) != size:
        held = "more" if len(body) > size else f"only {len(body)}"
        raise DataError(f"{path}: header says {shape} ({size} bytes) but holds {held} bytes")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _load_fashion_mnist(folder: Path) -> Dataset:
    splits = {}
    for split_name, (images_stem, labels_stem) in _IDX_FILES.items():
        images = _read_idx(folder, images_stem, 3)
        labels = _read_idx(folder, labels_stem, 1, count=images.shape[0])
        splits[split_name] = Split(images=torch.from_numpy(images.copy()).unsqueeze(1),
                                   labels=torch.from_numpy(labels.astype(np.int64)))
    return _finish("fashion-mnist", folder, splits["train"], splits["test"],
                   FASHION_MNIST_CLASSES)


# CIFAR ------------------------------------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR dicts (lists, bytes, numpy arrays) and refuses anything else,
    so a tampered file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if name == "encode":
            import codecs
            return codecs.encode
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as stream:
            data = _ArrayUnpickler(stream, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path} is missing; is {path.parent} an extracted CIFAR python "
                        "folder?") from None
    # MemoryError: an array whose pickled shape claims terabytes (numpy allocates it
    # before any data is read)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, IndexError, MemoryError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} does not hold a CIFAR dict")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value
            for key, value in data.items()}


def _cifar_split(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path} lacks 'data' or '{label_key}'")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 "
                        "(N, 3072) rows of 32 x 32 RGB")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar(name: str, folder: Path) -> Dataset:
    inner = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    if (folder / inner).is_dir():
        folder = folder / inner
    if name == "cifar10":
        label_key, meta_file, names_key = "labels", "batches.meta", "label_names"
        train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
        test_file = folder / "test_batch"
    else:
        label_key, meta_file, names_key = "fine_labels", "meta", "fine_label_names"
        train_files, test_file = [folder / "train"], folder / "test"
    if not all(path.is_file() for path in train_files):
        raise DataError(_missing_message(name, folder))
    parts = [_cifar_split(path, label_key) for path in train_files]
    train = Split(images=torch.from_numpy(np.concatenate([p[0] for p in parts])),
                  labels=torch.from_numpy(np.concatenate([p[1] for p in parts])))
    test_images, test_labels = _cifar_split(test_file, label_key)
    test = Split(images=torch.from_numpy(test_images), labels=torch.from_numpy(test_labels))
    meta = _unpickle(folder / meta_file)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, [])]
    expected = 10 if name == "cifar10" else 100
    if len(names) != expected:
        raise DataError(f"{folder / meta_file}: '{names_key}' has {len(names)} names, "
                        f"expected {expected}")
    return _finish(name, folder, train, test, names)


# ImageFolder -----------------------------------------------------------------------------


def _load_image_folder(folder: Path, image_size: Optional[int]) -> Dataset:
    if importlib.util.find_spec("PIL") is None:  # only image folders need Pillow
        raise DataError("reading an image folder needs Pillow: pip install pillow")
    test_root = next((folder / sub for sub in ("test", "val") if (folder / sub).is_dir()), None)
    train_root = folder / "train" if (folder / "train").is_dir() and test_root else folder
    class_names = _class_folders(train_root)
    train_files = _image_files(train_root, class_names)
    test_files = _image_files(test_root, class_names) if test_root else []
    size = image_size or _common_size([path for path, _ in train_files + test_files])
    channels = 1 if all(_is_grey(path) for path, _ in train_files[:64]) else 3
    train = _decode_images(train_files, size, channels)
    test = (_decode_images(test_files, size, channels) if test_files
            else Split(images=torch.empty((0, channels, size, size), dtype=torch.uint8),
                       labels=torch.empty(0, dtype=torch.int64)))
    return _finish("imagefolder", folder, train, test, class_names)


def _class_folders(root: Path) -> list[str]:
    classes = sorted(entry.name for entry in root.iterdir()
                     if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class folders; expected {root}/<class>/<image>.png "
                        "(or train/ and test/ folders of those)")
    return classes


def _image_files(root: Path, class_names: Sequence[str]) -> list[tuple[Path, int]]:
    found = sorted(entry.name for entry in root.iterdir() if entry.is_dir()
                   and not entry.name.startswith("."))
    if found != list(class_names):
        raise DataError(f"{root} has class folders {found}, but the training folder has "
                        f"{list(class_names)}; they must match")
    files = []
    for label, name in enumerate(class_names):
        images = sorted(path for path in (root / name).iterdir()
                        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
        files.extend((path, label) for path in images)
    if not files:
        raise DataError(f"{root} has class folders but no images "
                        f"({', '.join(IMAGE_SUFFIXES)})")
    return files


def _open_header(path: Path):
    """A lazily opened image (its header read, its pixels not), refused when it claims
    more pixels than Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, about
    89 million): a 20000 x 20000 PNG of a few kilobytes would decode into 1.2 GB. Pillow
    only warns up to twice the limit; here the warning is an error too."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"image {path} is too large to decode: {error}") from None
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"cannot decode image {path}: {error}") from None


def _open_image(path: Path):
    image = _open_header(path)
    try:
        image.load()
    except OSError as error:
        raise DataError(f"cannot decode image {path}: {error}") from None
    return image


def _is_grey(path: Path) -> bool:
    return _open_image(path).mode in ("1", "L", "LA", "I", "I;16", "F")


def _common_size(paths: Sequence[Path]) -> int:
    """The side of square images that all share it; otherwise the default cache size."""
    sizes = set()
    for path in paths:
        with _open_header(path) as image:
            sizes.add(image.size)
        if len(sizes) > 1:
            return DEFAULT_IMAGE_SIZE
    width, height = sizes.pop()
    return width if width == height else DEFAULT_IMAGE_SIZE


def _decode_images(files: Sequence[tuple[Path, int]], size: int, channels: int) -> Split:
    from PIL import Image

    check_fits(len(files) * size * size * channels,
               f"decoding {len(files):,} images at {size} x {size} px", advice="use fewer images")
    images = np.empty((len(files), size, size, channels), dtype=np.uint8)
    for index, (path, _) in enumerate(files):
        image = _open_image(path).convert("L" if channels == 1 else "RGB")
        if image.size != (size, size):
            scale = size / min(image.size)
            width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
            image = image.resize((width, height), Image.BILINEAR)
            left, top = (width - size) // 2, (height - size) // 2
            image = image.crop((left, top, left + size, top + size))
        images[index] = np.asarray(image).reshape(size, size, channels)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return Split(images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels=labels)
