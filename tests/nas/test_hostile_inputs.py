"""Resource bombs, networks no machine holds and seeds at the edge of 32 bits: each is
refused with one line, or (inside a search) fails one trial with its reason, before it
can exhaust memory (issue 24, classes 7, 10 and 11)."""

from __future__ import annotations

import csv
import gzip
import struct
import sys
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import pytest

from nas.cli import main
from nas.data import DataError, load_dataset
from nas.memory import InsufficientMemory, check_fits, training_bytes
from space import GenomeError, presets
from space.files import MAX_TEXT_BYTES, read_text_file

sys.path.insert(0, str(Path(__file__).parent))
from test_signals import TINY_SPACE, write_tiny_fashion_mnist  # noqa: E402


def _gzip_bomb(path: Path, header: bytes, gigabytes: int) -> None:
    """``header`` then ``gigabytes`` of zeros, as gzip members of 1 MiB each (about 1 KB
    apiece compressed): a file of a few MB that decompresses into gigabytes."""
    member = gzip.compress(bytes(1 << 20), compresslevel=9)
    with path.open("wb") as out:
        out.write(gzip.compress(header))
        for _ in range(gigabytes * 1024):
            out.write(member)


def test_a_gzip_bomb_label_file_is_refused_after_reading_what_its_header_promises(tmp_path):
    data = write_tiny_fashion_mnist(tmp_path / "data", train=60, test=10)
    labels = data / "t10k-labels-idx1-ubyte.gz"
    _gzip_bomb(labels, struct.pack(">HBBI", 0, 8, 1, 10), gigabytes=1)
    assert labels.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"header says \(10,\) \(10 bytes\) but holds more"):
            load_dataset("fashion-mnist", data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000  # the gigabyte was never read


def test_an_idx_header_claiming_terabytes_is_refused_before_reading(tmp_path):
    data = write_tiny_fashion_mnist(tmp_path / "data", train=60, test=10)
    header = struct.pack(">HBBIII", 0, 8, 3, 2**32 - 1, 28, 28)  # 3.4 TB of 28 x 28 images
    (data / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header))
    with pytest.raises(InsufficientMemory, match="needs about .* TB"):
        load_dataset("fashion-mnist", data)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` grey pixels (no real pixel data)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20_000, 10_000])  # past Pillow's error and warning limits
def test_an_image_claiming_hundreds_of_megapixels_is_refused_before_decoding(tmp_path, side):
    from PIL import Image

    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / name / "small.png")
    (tmp_path / "dogs" / "huge.png").write_bytes(_png_header(side, side))
    with pytest.raises(DataError, match="too large to decode"):
        load_dataset("imagefolder", tmp_path)


class _TerabyteArray:
    """Unpickles, through numpy's own reconstructor (which the CIFAR reader admits), into
    an array of 10^13 bytes: numpy allocates it before reading any data."""

    def __reduce__(self):
        import numpy as np

        reconstruct = np.empty(0).__reduce__()[0]  # numpy's, whatever module holds it
        return reconstruct, (np.ndarray, (10**13,), b"b")


def test_a_cifar_batch_claiming_terabytes_is_refused(tmp_path):
    import pickle

    batch = pickle.dumps({b"data": _TerabyteArray(), b"labels": [0]}, protocol=2)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (tmp_path / name).write_bytes(batch)
    with pytest.raises(DataError, match="Unable to allocate"):
        load_dataset("cifar10", tmp_path)


def test_a_genome_file_of_more_than_16_mib_is_not_read(tmp_path, capsys):
    huge = tmp_path / "huge.json"
    with huge.open("wb") as stream:
        stream.truncate(MAX_TEXT_BYTES + 1)  # sparse: nothing written, nothing read
    with pytest.raises(GenomeError, match="larger than 16 MiB"):
        read_text_file(huge, "genome file", GenomeError)
    assert main(["show", "--genome", str(huge)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_memory_estimate_names_both_figures(monkeypatch):
    b0 = presets.get("efficientnet-b0")
    needed = training_bytes(b0, resolution=1024, batch=256, num_classes=10, in_channels=1)
    assert 5e11 < needed < 2e12  # B0 at 1024 px, batch 256: hundreds of GB
    monkeypatch.setattr("nas.memory.available_bytes",
                        lambda device=None: (8_000_000_000, "MemAvailable"))
    with pytest.raises(InsufficientMemory) as refused:
        check_fits(needed, "training B0")
    assert str(refused.value).startswith("training B0 needs about ")
    assert "more than the 8.0 GB available (MemAvailable)" in str(refused.value)
    check_fits(7_000_000_000, "training B0")  # fits: no error


# One stage of 16,384 channels, expansion 16 and 64 layers: about 2 TB of weights.
HUGE_SPACE = textwrap.dedent("""
    [choices]
    kernel_size = [3]
    expand_ratio = [16]
    se_ratio = [0]
    layers_delta = [0]
    width_multiplier = [1.0]
    [[stages]]
    out_channels = 16384
    num_layers = 64
    stride = 2
""")


def test_a_genome_too_big_for_memory_fails_its_trial_and_the_search_goes_on(tmp_path, capsys):
    data = write_tiny_fashion_mnist(tmp_path / "data")
    (tmp_path / "huge.toml").write_text(HUGE_SPACE)
    argv = ["search", "--target-flops", "1M", "--cost-window", "0", "--evaluator", "naswot",
            "--space", str(tmp_path / "huge.toml"), "--data", str(data), "--proxy-val-size",
            "50", "--n-trials", "1", "--runs", str(tmp_path / "runs"), "--study", "s",
            "--quiet", "--references", "none"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 failed" in out and "no trial completed yet" in out
    [row] = csv.DictReader((tmp_path / "runs" / "s" / "trials.csv").open())
    assert row["state"] == "FAIL" and row["note"].startswith("naswot at 32 px, batch 64 needs "
                                                             "about ")
    assert "TB of memory" in row["note"] and "not evaluated" in row["note"]


def test_a_study_seeded_near_2_to_the_32_resumes(tmp_path, capsys):
    data = write_tiny_fashion_mnist(tmp_path / "data")
    (tmp_path / "tiny.toml").write_text(TINY_SPACE)
    argv = ["search", "--target-flops", "1M", "--cost-window", "0", "--evaluator", "naswot",
            "--space", str(tmp_path / "tiny.toml"), "--data", str(data), "--proxy-val-size",
            "50", "--seed", str(2**32 - 1), "--runs", str(tmp_path / "runs"), "--study", "s",
            "--quiet", "--references", "none"]
    assert main([*argv, "--n-trials", "1"]) == 0
    assert main([*argv, "--n-trials", "2"]) == 0  # its sampler's seed passes 2^32 - 1
    assert "2 complete" in capsys.readouterr().out
