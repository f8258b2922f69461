"""The latency table on a tiny space, measured for real on this machine: build, resume,
fingerprint, prediction of whole networks, the space's fastest genome, search and scale."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import random
import shutil
import statistics

import pytest

import nas.latency.build as latency_build
from nas.cli import main
from nas.common import UsageError
from nas.latency import (LatencyTable, Predictor, TableError, TimingSettings, build_table,
                         space_units)
from nas.latency.use import SearchLatency, open_for_use, parse_duration
from nas.run import locate_study
from nas.report import collect
from nas.search import SearchConfig, run_search
from space import Genome, SearchSpace, SpaceError, Unit, units

TINY = """
version = 1
stem_channels = 8
head_channels = 32
resolution = 32
[choices]
kernel_size = [3, 5]
expand_ratio = [1, 4]
se_ratio = [0, 0.25]
layers_delta = [0, 1]
width_multiplier = [1.0]
[[stages]]
out_channels = 8
num_layers = 1
stride = 1
[[stages]]
out_channels = 16
num_layers = 1
stride = 2
[[stages]]
out_channels = 24
num_layers = 1
stride = 2
"""
# One thread: the timings do not fight the other tests' threads for the two cores.
SETTINGS = TimingSettings(threads=1, rounds=3, repeats=3)
QUICK = TimingSettings(threads=1, warmup=0, rounds=1, repeats=1, retries=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("latency")
    (folder / "tiny.toml").write_text(TINY)
    space = SearchSpace.from_file(folder / "tiny.toml")
    report = build_table(space, path=folder / "table.json", settings=SETTINGS, networks=6,
                         progress=False)
    return folder, space, report


def test_build_measures_every_unit_and_predicts_its_own_networks(tiny):
    folder, space, report = tiny
    assert report.units_measured == report.units_total == len(space_units(space, 32, 10, 1))
    table = LatencyTable.load(folder / "table.json")
    assert table.overhead.networks == 6 and table.build_seconds > 0
    # Every unit of random genomes of the space has an entry: the enumeration is complete.
    rng = random.Random(3)
    for _ in range(50):
        assert not table.missing(units(space.random_genome(rng), None, 10, 1))
    predictor = Predictor(table)
    errors = [predictor.seconds(Genome.from_dict(n["genome"])) / n["seconds"] - 1
              for n in table.networks]
    # Loose: the machine is shared and these networks take a millisecond.
    assert statistics.median(abs(e) for e in errors) < 0.3, errors


def test_fastest_and_slowest_bound_the_space(tiny):
    folder, space, _ = tiny
    predictor = Predictor(LatencyTable.load(folder / "table.json"))
    fastest, slowest = predictor.extremes(space, 32, 10, 1)
    assert space.contains(fastest.genome) and space.contains(slowest.genome)
    assert predictor.seconds(fastest.genome) == pytest.approx(fastest.seconds)
    rng = random.Random(4)
    for _ in range(200):
        seconds = predictor.seconds(space.random_genome(rng))
        assert fastest.seconds <= seconds + 1e-12 and seconds <= slowest.seconds + 1e-12


def test_killed_build_resumes_without_measuring_again(tiny, monkeypatch, tmp_path):
    _, space, report = tiny
    measured: list[int] = []
    real = latency_build.time_modules

    def killed_after_one_chunk(items, settings):
        if measured:
            raise KeyboardInterrupt  # as a kill between two saves
        measured.append(len(items))
        return real(items, settings)

    monkeypatch.setattr(latency_build, "time_modules", killed_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        build_table(space, path=tmp_path / "t.json", settings=QUICK, networks=0, progress=False)
    saved = len(LatencyTable.load(tmp_path / "t.json").entries)
    assert saved == measured[0] == latency_build.UNIT_CHUNK

    def counting(items, settings):
        measured.append(len(items))
        return real(items, settings)

    monkeypatch.setattr(latency_build, "time_modules", counting)
    resumed = build_table(space, path=tmp_path / "t.json", settings=QUICK, networks=0,
                          progress=False)
    assert resumed.units_measured == report.units_total - saved == sum(measured[1:])
    assert build_table(space, path=tmp_path / "t.json", settings=QUICK, networks=0,
                       progress=False).units_measured == 0


def test_other_machine_is_refused_unless_allowed(tiny, tmp_path, caplog):
    folder, _, _ = tiny
    data = json.loads((folder / "table.json").read_text())
    data["fingerprint"]["cpu"] = "Some Other CPU"
    (tmp_path / "foreign.json").write_text(json.dumps(data))
    with pytest.raises(TableError, match="another machine.*cpu"):
        open_for_use(tmp_path / "foreign.json", allow_foreign=False, build_command="x")
    with caplog.at_level(logging.WARNING):
        table = open_for_use(tmp_path / "foreign.json", allow_foreign=True, build_command="x")
    assert table.entries and "another machine" in caplog.text
    with pytest.raises(TableError, match="another machine"):  # it cannot be measured into
        latency_build.measure_units(table, [Unit("stem", 1, 8, 99, "silu")])


def test_missing_corrupt_and_partial_tables(tiny, tmp_path):
    folder, space, _ = tiny
    with pytest.raises(TableError, match="nas latency build"):
        LatencyTable.load(tmp_path / "none.json")
    text = (folder / "table.json").read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(TableError, match="truncated"):
        LatencyTable.load(tmp_path / "cut.json")
    for spoil in (lambda d: d["networks"][0].update(resolution="big"),
                  lambda d: d["fingerprint"].pop("cpu"),
                  lambda d: d["entries"].update(x={"seconds": -1.0, "spread": 0.0})):
        data = json.loads(text)
        spoil(data)
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(TableError, match="malformed"):
            LatencyTable.load(tmp_path / "bad.json")
    data = json.loads(text)
    data["entries"].popitem()
    (tmp_path / "partial.json").write_text(json.dumps(data))
    with pytest.raises(TableError, match="lacks 1 of the"):
        SearchLatency(tmp_path / "partial.json", allow_foreign=False, space=space,
                      space_path=None, resolution=32, num_classes=10, in_channels=1)


def test_durations_and_backends():
    assert parse_duration("12ms") == pytest.approx(0.012)
    assert parse_duration("800us") == pytest.approx(800e-6)
    assert parse_duration("0.5 s") == 0.5
    for text, message in [("12", "give a unit"), ("12 parsecs", "unknown unit"),
                          ("fast", "not a number"), ("0ms", "more than 0")]:
        with pytest.raises(UsageError, match=message):
            parse_duration(text)
    # No GPU here: choosing CUDA is refused with one line, before anything is measured.
    with pytest.raises(UsageError, match="CUDA"):
        latency_build.check_backend("cuda")


def test_latency_search_end_to_end(tiny, tmp_path):
    folder, space, _ = tiny
    latency = SearchLatency(folder / "table.json", allow_foreign=False, space=space,
                            space_path=None, resolution=32, num_classes=10, in_channels=1)
    with pytest.raises(SpaceError, match="fastest genome"):
        latency.check_target(latency.fastest.seconds / 2, 0.1)
    target = (latency.fastest.seconds + latency.slowest.seconds) / 2
    config = SearchConfig(target=target, metric="latency", evaluator="naswot", n_trials=4,
                          cost_window=0.3, study="lat", runs_dir=str(tmp_path / "runs"),
                          space_path=str(folder / "tiny.toml"),
                          latency_table=str(folder / "table.json"), quiet=True,
                          references="none")
    result = run_search(config)
    assert result.counts["complete"] == 4
    measured = result.latency_measured
    assert 1 <= len(measured) <= 3 and all(row["measured_s"] > 0 for row in measured)
    assert measured[0]["trial"] == result.best.number
    assert result.best.user_attrs["latency_predicted"] == result.best.user_attrs["cost"]
    written = json.loads((tmp_path / "runs" / "lat" / "latency.json").read_text())
    assert written["table_digest"] == latency.digest and written["trials"] == measured
    with open(tmp_path / "runs" / "lat" / "trials.csv") as stream:
        assert sum(bool(row["latency_predicted"]) for row in csv.DictReader(stream)) >= 4
    report = collect(locate_study(run_dir=tmp_path / "runs" / "lat"))
    (figure,) = [f for f in report.figures if f.key == "latency"]
    points = figure.panels[0].series
    assert len(points[0].x) == 6 and len(points[1].x) == len(measured)  # fit networks, trials
    # A worker whose table prices the space differently may not join the study.
    data = json.loads((folder / "table.json").read_text())
    data["entries"] = {key: {"seconds": 2 * e["seconds"], "spread": 0.0}
                       for key, e in data["entries"].items()}
    (tmp_path / "other.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match="latency_table"):
        run_search(dataclasses.replace(config, latency_table=str(tmp_path / "other.json")))


def test_scale_to_latency_budgets(tiny, tmp_path, capsys):
    folder, space, _ = tiny
    table_copy = tmp_path / "table.json"
    shutil.copy(folder / "table.json", table_copy)
    genome = space.smallest()
    (tmp_path / "g.json").write_text(genome.to_json())
    base = Predictor(LatencyTable.load(table_copy)).seconds(genome)
    budgets = [base * 1.5, base * 3]
    assert main(["scale", "--genome", str(tmp_path / "g.json"), "--method", "fast",
                 "--target-latency", ",".join(f"{1e6 * b:.0f}us" for b in budgets),
                 "--latency-table", str(table_copy), "--num-classes", "10",
                 "--in-channels", "1", "--out", str(tmp_path / "family")]) == 0
    rows = json.loads((tmp_path / "family" / "latency.json").read_text())["members"]
    assert [row["budget_s"] for row in rows] == pytest.approx(budgets, rel=1e-3)
    assert all(row["predicted_s"] <= row["budget_s"] for row in rows)
    assert 0 < rows[0]["phi"] < rows[1]["phi"] and all(row["measured_s"] > 0 for row in rows)
    # The entries measured for the members were kept: a second run measures nothing.
    table = LatencyTable.load(table_copy)
    assert len(table.entries) > len(LatencyTable.load(folder / "table.json").entries)
    for row in rows:
        member = Genome.from_json(tmp_path / "family" / f"b{row['phi']:g}.json")
        assert not table.missing(units(member, None, 10, 1))
    assert "measured/budget" in capsys.readouterr().out
