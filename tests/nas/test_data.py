"""Data: the real Fashion-MNIST files, the CIFAR and ImageFolder formats, splits, batches,
augmentation and preprocessing."""

from __future__ import annotations

import gzip
import pickle
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.cli import main
from nas.data import (DataError, Normalization, augment, batches, load_dataset, preprocess,
                      proxy_resolution, split_train_val, take_subset)
from space import NasError



@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion-mnist")


def test_fashion_mnist_is_decoded_from_the_idx_files(fashion):
    assert fashion.train.images.shape == (60000, 1, 28, 28)
    assert fashion.test.images.shape == (10000, 1, 28, 28)
    assert fashion.train.images.dtype == torch.uint8 and fashion.train.labels.dtype == torch.int64
    assert fashion.num_classes == 10 and fashion.in_channels == 1
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    # Balanced: 6,000 training and 1,000 test images per class (Xiao et al. 2017).
    assert torch.bincount(fashion.train.labels).tolist() == [6000] * 10
    assert torch.bincount(fashion.test.labels).tolist() == [1000] * 10
    # The well-known pixel statistics of the training set.
    assert fashion.normalization.mean[0] == pytest.approx(0.2860, abs=1e-4)
    assert fashion.normalization.std[0] == pytest.approx(0.3530, abs=1e-4)
    # Decoded once per process.
    assert load_dataset("fashion-mnist") is fashion


def test_validation_split_is_seeded_disjoint_and_never_touches_the_test_set(fashion):
    train, val = split_train_val(fashion, 5000, seed=0)
    again_train, again_val = split_train_val(fashion, 5000, seed=0)
    _, other_val = split_train_val(fashion, 5000, seed=1)
    assert len(train) == 55000 and len(val) == 5000
    assert torch.equal(val.images, again_val.images) and torch.equal(train.labels, again_train.labels)
    assert not torch.equal(val.images, other_val.images)
    # Disjoint and complete: every training image lands in exactly one part.
    assert not _fingerprints(val.images) & _fingerprints(train.images[:20000])
    assert torch.bincount(torch.cat([train.labels, val.labels])).tolist() == [6000] * 10
    whole, empty = split_train_val(fashion, 0, seed=0)
    assert len(whole) == 60000 and len(empty) == 0


def _fingerprints(images: torch.Tensor) -> set[float]:
    """One number per image (a random projection of its pixels), for set arithmetic."""
    weights = torch.rand(images[0].numel(), generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    return set((images.reshape(len(images), -1).double() @ weights).tolist())


@pytest.mark.parametrize("size", [-1, 60000, 10**9, 2.5])
def test_out_of_range_validation_size_is_a_clear_error(fashion, size):
    with pytest.raises(DataError, match=r"validation size .* out of range: .* 60000 images"):
        split_train_val(fashion, size, seed=0)


def test_subset_and_batches_cover_every_image_once(fashion):
    subset = take_subset(fashion.train, 1000, seed=3)
    assert len(subset) == 1000 and torch.equal(subset.labels, take_subset(fashion.train, 1000, 3).labels)
    seen = torch.cat([labels for _, labels in batches(subset, 128, shuffle=True, seed=7)])
    assert len(seen) == 1000
    assert torch.equal(seen.sort().values, subset.labels.sort().values)
    first = next(batches(subset, 128, shuffle=True, seed=7))[1]
    assert torch.equal(first, next(batches(subset, 128, shuffle=True, seed=7))[1])
    assert not torch.equal(first, next(batches(subset, 128, shuffle=True, seed=8))[1])
    assert [len(b[1]) for b in batches(subset, 300, shuffle=False, drop_last=True)] == [300] * 3
    # Two ranks take disjoint, equal shares of the same permutation.
    shards = [torch.cat([images.reshape(len(images), -1) for images, _ in
                         batches(subset, 64, shuffle=True, seed=1, rank=r, world_size=2)])
              for r in (0, 1)]
    assert shards[0].shape == shards[1].shape == (500, 784)
    assert not _fingerprints(shards[0]) & _fingerprints(shards[1])


def test_augment_is_a_padded_crop_or_its_mirror_of_each_image(fashion):
    images = fashion.train.images[:16]
    out = augment(images, padding=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flipped = 0
    for index in range(16):
        crops = [padded[index, :, y:y + 28, x:x + 28] for y in range(9) for x in range(9)]
        if any(torch.equal(out[index], crop) for crop in crops):
            continue
        assert any(torch.equal(out[index], crop.flip(-1)) for crop in crops)
        flipped += 1
    assert 0 < flipped < 16  # about half are mirrored


def test_preprocess_resizes_and_normalises(fashion):
    batch = preprocess(fashion.train.images[:2000], 32, fashion.normalization, channels_last=True)
    assert batch.shape == (2000, 1, 32, 32) and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert abs(float(batch.mean())) < 0.05 and float(batch.std()) == pytest.approx(1.0, abs=0.05)
    native = preprocess(fashion.train.images[:4], 28, Normalization(mean=(0.0,), std=(1.0,)))
    assert torch.equal(native * 255, fashion.train.images[:4].float())
    assert proxy_resolution(32, 1.0) == 32 and proxy_resolution(32, 1.15 ** 3) == 49


# -- errors on missing or malformed data ---------------------------------------------------


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as raised:
        load_dataset("fashion-mnist", tmp_path / "nowhere")
    assert "apt-get install -y dataset-fashion-mnist" in str(raised.value)
    assert "--data DIR" in str(raised.value)
    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_wrong_shaped_idx_files_are_rejected(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((10, 784)))  # 2-D, not 3-D
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(10))
    with pytest.raises(DataError, match="not an IDX file of uint8 with 3 dimension"):
        load_dataset("fashion-mnist", tmp_path)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((10, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(9))
    with pytest.raises(DataError, match="header says 9 labels for 10 images"):
        load_dataset("fashion-mnist", tmp_path)


def test_unknown_dataset_and_imagefolder_without_data_are_errors():
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="needs --data DIR"):
        load_dataset("imagefolder")
    assert issubclass(DataError, NasError)


def test_cli_reports_an_empty_dataset_folder_in_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["train", "--genome", "efficientnet-b0", "--dataset", "imagefolder", "--data",
                 str(empty), "--out", str(tmp_path / "out")])
    stderr = capsys.readouterr().err
    assert code == 2
    assert stderr.count("\n") == 1 and "has no class folders" in stderr
    assert not (tmp_path / "out").exists()


# -- CIFAR python folders (the real format, written small) -----------------------------------


def _pickle_dump(path: Path, data: dict) -> None:
    with path.open("wb") as stream:
        pickle.dump(data, stream, protocol=2)


def _cifar_rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 3072), dtype=np.uint8)


def test_cifar10_python_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for index in range(1, 6):
        _pickle_dump(folder / f"data_batch_{index}",
                     {b"data": _cifar_rows(4, index), b"labels": [index % 10] * 4,
                      b"batch_label": b"training batch"})
    test_rows = _cifar_rows(3, 9)
    _pickle_dump(folder / "test_batch", {b"data": test_rows, b"labels": [0, 1, 2]})
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                  "frog", "horse", "ship", "truck")]
    _pickle_dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    data = load_dataset("cifar10", tmp_path)  # the parent folder works too
    assert data.train.images.shape == (20, 3, 32, 32) and data.test.images.shape == (3, 3, 32, 32)
    assert data.num_classes == 10 and data.class_names[9] == "truck" and data.in_channels == 3
    # Rows are 1024 red, then 1024 green, then 1024 blue values, row-major.
    assert torch.equal(data.test.images[1, 2].flatten(), torch.from_numpy(test_rows[1, 2048:]))
    assert data.test.labels.tolist() == [0, 1, 2]


def test_cifar100_python_folder_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _pickle_dump(folder / "train", {b"data": _cifar_rows(6, 1), b"fine_labels": [99, 0, 5, 5, 1, 2],
                                    b"coarse_labels": [0] * 6})
    _pickle_dump(folder / "test", {b"data": _cifar_rows(2, 2), b"fine_labels": [3, 4],
                                   b"coarse_labels": [0, 0]})
    _pickle_dump(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [b"x"] * 20})
    data = load_dataset("cifar100", folder)
    assert data.num_classes == 100 and data.train.labels.tolist() == [99, 0, 5, 5, 1, 2]


class _Exploit:
    def __reduce__(self):
        return (subprocess.call, (["touch", "/tmp/nas-pwned"],))


def test_cifar_loader_refuses_pickles_that_would_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for index in range(1, 6):
        _pickle_dump(folder / f"data_batch_{index}", {b"data": _Exploit(), b"labels": []})
    with pytest.raises(DataError, match="refusing to load .*call"):
        load_dataset("cifar10", folder)
    assert not Path("/tmp/nas-pwned").exists()


def test_cifar_rows_of_the_wrong_width_are_rejected(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for index in range(1, 6):
        _pickle_dump(folder / f"data_batch_{index}",
                     {b"data": np.zeros((2, 784), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match=r"expected uint8 \(N, 3072\)"):
        load_dataset("cifar10", folder)


# -- ImageFolder (PNG files) --------------------------------------------------------------------


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_with_train_and_test_folders(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        for name in ("cat", "dog"):
            for index in range(count):
                _write_png(tmp_path / split / name / f"{index}.png",
                           rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    data = load_dataset("imagefolder", tmp_path)
    assert data.class_names == ("cat", "dog") and data.num_classes == 2
    assert data.train.images.shape == (6, 3, 20, 20) and data.test.images.shape == (4, 3, 20, 20)
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_flat_grey_image_folder_of_mixed_sizes_is_resized(tmp_path):
    _write_png(tmp_path / "a" / "0.png", np.full((30, 40), 200, np.uint8))
    _write_png(tmp_path / "b" / "0.png", np.full((64, 64), 10, np.uint8))
    data = load_dataset("imagefolder", tmp_path, image_size=16)
    assert data.train.images.shape == (2, 1, 16, 16) and len(data.test) == 0
    assert int(data.train.images[0].float().mean()) == 200


def test_image_folder_with_classes_but_no_images(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="class folders but no images"):
        load_dataset("imagefolder", tmp_path)
