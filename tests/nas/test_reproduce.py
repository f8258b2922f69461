"""benchmarks/reproduce.py on a tiny protocol: it trains members on real Fashion-MNIST,
writes their files, and a second run resumes without retraining."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_driver():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


TINY = ["--subset", "200", "--test-size", "200", "--epochs", "1", "--batch-size", "50",
        "--max-phi", "1", "--bases", "efficientnet-b0", "--parts", "2", "4",
        "--families", "compound", "--threads", "1", "--quiet"]


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns
            for path in (folder / "members").rglob("metrics.json")}


def test_trains_writes_and_resumes_without_retraining(tmp_path: Path) -> None:
    driver = _load_driver()
    out = tmp_path / "reference"
    first = driver.main(["--out", str(out), *TINY])
    assert (first["trained"], first["skipped"], first["failed"]) == (2, 0, 0)

    b0 = json.loads((out / "members/seed0/efficientnet-b0/b0/metrics.json").read_text())
    b1 = json.loads((out / "members/seed0/efficientnet-b0/compound-b1/metrics.json").read_text())
    assert 0.0 <= b0["test_accuracy"] <= 1.0 and b0["test_images"] == 200
    assert b0["resolution"] == 32 and b0["history"][0]["train_images"] == 200
    # phi 1 of compound scaling: resolution 224 -> 256 (gamma 1.15, rounded to 8), so the
    # proxy input is round(32 * 256 / 224) = 37 px, with more multiply-adds than B0.
    assert b1["resolution"] == 37 and b1["flops"] > b0["flops"]
    assert b1["latency_b1_ms"] > 0 and b1["train_images_per_second"] > 0
    assert (out / "families/efficientnet-b0/compound/b1.json").is_file()
    family = json.loads((out / "families/efficientnet-b0/compound/family.json").read_text())
    assert [m["phi"] for m in family["members"]] == [0, 1]
    results = json.loads((out / "results.json").read_text())
    assert {m["member"] for m in results["members"]} == {"efficientnet-b0/b0",
                                                          "efficientnet-b0/compound-b1"}
    assert (out / "part2_efficientnet-b0.png").stat().st_size > 1000
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["protocol"]["subset"] == 200 and len(protocol["runs"]) == 1

    before = _mtimes(out)
    second = driver.main(["--out", str(out), *TINY])
    assert (second["trained"], second["skipped"]) == (0, 2)
    assert _mtimes(out) == before

    # A kill between members leaves the finished ones; only the missing one is retrained.
    (out / "members/seed0/efficientnet-b0/compound-b1/metrics.json").unlink()
    third = driver.main(["--out", str(out), *TINY])
    assert (third["trained"], third["skipped"]) == (1, 1)
    after = _mtimes(out)
    key = "members/seed0/efficientnet-b0/b0/metrics.json"
    assert after[key] == before[key]
    assert len(json.loads((out / "protocol.json").read_text())["runs"]) == 3


def test_refuses_to_mix_protocols(tmp_path: Path) -> None:
    driver = _load_driver()
    out = tmp_path / "reference"
    out.mkdir()
    (out / "protocol.json").write_text(json.dumps({"protocol": {"subset": 999}, "runs": []}))
    with pytest.raises(driver.ReproduceError, match="another --out"):
        driver.main(["--out", str(out), *TINY])
    assert not (out / "members").exists()
