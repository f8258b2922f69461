"""The trial record: one state per trial, the same in the search's summary and trials.csv,
the report, the screened count and the budget, read back from a real SQLite storage."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.report import collect
from nas.results import write_outputs
from nas.run import RunFolder, locate_study
from nas.storage import fail_dead_local_workers, open_storage
from nas.study_view import ScreenedCount, count_screened
from nas.trial import (STATES, TrialRecord, budget_used, classify, mark_reference,
                       name_objectives, not_evaluated, objective_names, record_failure,
                       record_genome, record_prescreen, record_result)
from space import cost, presets

RESOLUTION, NUM_CLASSES, IN_CHANNELS = 32, 10, 1
# Trials here are made with ask/tell, as the search's workers' are by Optuna's optimize.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _dead_worker() -> str:
    """``host:pid`` of a process that has exited, as a killed search leaves on its trial."""
    import socket

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}"


def _ask(study: optuna.Study, name: str = "efficientnet-b0") -> optuna.Trial:
    trial = study.ask()
    genome = presets.get(name)
    costs = cost(genome, RESOLUTION, NUM_CLASSES, IN_CHANNELS)
    record_genome(trial, genome, costs, cost=costs.flops, evaluator="proxy-train")
    return trial


def _evaluated(study: optuna.Study, trial: optuna.Trial, accuracy: float, **kw) -> None:
    record_result(trial, accuracy=accuracy, reward=accuracy - 0.01, eval_seconds=1.5, **kw)
    study.tell(trial, accuracy - 0.01)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> tuple[Path, dict[int, str]]:
    """A study with one trial (two failed) of every state, made the way the search makes
    them; returns the run folder and the state each trial number must have."""
    run = RunFolder(tmp_path_factory.mktemp("runs") / "states")
    study = optuna.create_study(study_name="states", storage=run.open_storage(),
                                direction="maximize")
    for key, value in {"target": 400_000_000, "metric": "flops", "evaluator": "proxy-train",
                       "resolution": RESOLUTION, "num_classes": NUM_CLASSES,
                       "in_channels": IN_CHANNELS}.items():
        study.set_user_attr(key, value)
    expected = {}
    trial = _ask(study)  # complete
    _evaluated(study, trial, 0.80)
    expected[trial.number] = "complete"
    trial = _ask(study)  # the same genome again: its accuracy reused
    _evaluated(study, trial, 0.80, reused_from=0)
    expected[trial.number] = "reused"
    trial = _ask(study, "mnasnet-a1")  # a hand-designed network beside the search
    mark_reference(trial, "mnasnet-a1")
    _evaluated(study, trial, 0.82)
    expected[trial.number] = "reference"
    trial = _ask(study)  # stopped by the pruner after one epoch
    trial.report(0.5, 0)
    study.tell(trial, state=TrialState.PRUNED)
    expected[trial.number] = "pruned"
    for state, reason in (("screened", "multiply-adds outside the target window"),
                          ("over_budget", "the study's trial budget was reached"),
                          ("interrupted", "interrupted by SIGTERM")):
        trial = _ask(study)
        assert str(not_evaluated(trial, state, reason)) == reason  # what the search raises
        study.tell(trial, state=TrialState.PRUNED)
        expected[trial.number] = state
    trial = _ask(study)  # in the window, below the prescreen's bar
    record_prescreen(trial, -3.5)
    not_evaluated(trial, "screened", "naswot score below the median")
    study.tell(trial, state=TrialState.PRUNED)
    expected[trial.number] = "prescreened"
    trial = _ask(study)  # its evaluation failed
    record_failure(trial, "out of memory")
    study.tell(trial, state=TrialState.FAIL)
    expected[trial.number] = "failed"
    dead = _ask(study)  # its worker was killed: failed and re-queued by the next worker
    dead.set_user_attr("worker", _dead_worker())
    running = _ask(study)
    assert fail_dead_local_workers(study) == [dead.number]
    expected[dead.number] = "failed"
    expected[running.number] = "running"
    expected[len(expected)] = "waiting"  # the dead trial's copy
    return run.path, expected


def test_every_state_is_classified_once(study_dir):
    run_dir, expected = study_dir
    study = optuna.load_study(study_name="states",
                              storage=open_storage(RunFolder(run_dir).storage_url, read_only=True))
    trials = study.get_trials()
    assert {t.number: classify(t) for t in trials} == expected
    assert set(expected.values()) == set(STATES)
    records = {t.number: TrialRecord(t) for t in trials}
    notes = {records[n].state: records[n].note for n in expected if expected[n] != "failed"}
    assert notes["over_budget"] == "budget reached by other workers; not evaluated"
    assert notes["interrupted"] == "interrupted by SIGTERM"
    assert notes["prescreened"] == "naswot score below the median"
    assert notes["complete"] == notes["pruned"] == ""
    assert notes["reference"] == "reference network mnasnet-a1; outside the search's budget"
    failed = sorted(records[n].note for n in expected if expected[n] == "failed")
    assert failed == ["out of memory", "worker died; re-queued"]
    assert records[0].genome.key() == presets.get("efficientnet-b0").key()
    assert records[0].evaluated and records[1].evaluated and records[2].evaluated
    assert not records[3].evaluated  # pruned: no accuracy of a whole evaluation


def test_the_budget_counts_what_was_evaluated_or_runs(study_dir):
    """complete, reused, pruned, failed by its own evaluation, running: five shares. The
    reference, the screened, over-budget and interrupted trials hold none; the dead
    worker's trial passed its share to its queued copy, which holds it once it runs."""
    run_dir, _ = study_dir
    study = optuna.load_study(study_name="states",
                              storage=open_storage(RunFolder(run_dir).storage_url, read_only=True))
    assert budget_used(study.get_trials()) == 5


def test_summary_csv_report_and_screened_count_agree(study_dir):
    run_dir, expected = study_dir
    study = optuna.load_study(study_name="states",
                              storage=open_storage(RunFolder(run_dir).storage_url, read_only=True))
    result = write_outputs(study, run_dir)
    wanted = {state: list(expected.values()).count(state) for state in STATES}
    assert result.counts == {**wanted, "complete": 2}  # reused ones are complete too there
    assert result.best.number == 0  # the reference scores higher, but was not searched
    rows = list(csv.DictReader(RunFolder(run_dir).trials_csv.open()))
    assert [row["state"] for row in rows][4:7] == ["PRUNED"] * 3  # Optuna's states, as before
    assert rows[5]["note"] == "budget reached by other workers; not evaluated"
    assert count_screened(study) == ScreenedCount(window=1, prescreened=1)
    report = collect(locate_study(run_dir=run_dir))
    # Over budget is its own state in the report too, not "pruned" (issue 20).
    assert report.counts == {"complete": 1, "reused": 1, "reference": 1, "pruned": 1,
                             "screened": 2, "over_budget": 1, "interrupted": 1, "failed": 2,
                             "running": 1, "waiting": 1}
    assert report.best.number == 0


def test_objectives_are_named_for_the_dashboard(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    single = optuna.create_study(study_name="single", storage=open_storage(url))
    multi = optuna.create_study(study_name="multi", storage=open_storage(url),
                                directions=["maximize", "minimize"])
    assert single.metric_names is None  # a study made before objectives had names
    name_objectives(single, objective_names("single", "flops"))
    name_objectives(multi, objective_names("multi", "params"))
    storage = open_storage(url, read_only=True)
    assert optuna.load_study(study_name="single", storage=storage).metric_names == ["reward"]
    assert optuna.load_study(study_name="multi", storage=storage).metric_names == ["accuracy",
                                                                                  "params"]


def test_a_search_names_its_objectives(tmp_path):
    """What optuna-dashboard shows instead of "Objective 0": written by the search when it
    makes the study, and on a study made before objectives had names when it resumes."""
    from nas.cli import main

    common = ["search", "--target-flops", "400M", "--runs", str(tmp_path), "--evaluator",
              "naswot", "--proxy-subset", "64", "--proxy-resolution", "16", "--quiet",
              "--n-trials", "1", "--cost-window", "0"]
    assert main([*common, "--study", "multi", "--objective", "multi"]) == 0
    url = RunFolder(tmp_path / "multi").storage_url
    study = optuna.load_study(study_name="multi", storage=open_storage(url, read_only=True))
    assert study.metric_names == ["accuracy", "flops"]
    old = RunFolder(tmp_path / "old")
    optuna.create_study(study_name="old", storage=old.open_storage(), direction="maximize")
    assert main([*common, "--study", "old"]) == 0
    study = optuna.load_study(study_name="old", storage=open_storage(old.storage_url,
                                                                      read_only=True))
    assert study.metric_names == ["reward"]
