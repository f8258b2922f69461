"""The search end to end, on the real Fashion-MNIST files and real Optuna storages."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.cli import main
from nas.search import SearchConfig, budget_used, run_search
from nas.storage import open_storage
from space import Genome, SearchSpace, cost

# Small but real: zero-cost scores on a slice of the training set; the reference networks
# have tests of their own (test_references.py).
FAST = ["--evaluator", "naswot", "--proxy-subset", "256", "--proxy-resolution", "32",
        "--quiet", "--references", "none"]


def search(tmp_path: Path, *extra: str) -> int:
    return main(["search", "--target-flops", "400M", "--runs", str(tmp_path), *FAST, *extra])


def load(tmp_path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / name / 'study.db'}")


def test_zero_cost_search_writes_best_trials_and_attributes(tmp_path, capsys):
    assert search(tmp_path, "--n-trials", "6", "--study", "s") == 0
    out = capsys.readouterr().out
    assert "next: nas scale --genome" in out and "best: trial" in out
    study = load(tmp_path, "s")
    trials = study.get_trials(deepcopy=False)
    assert budget_used(trials) == 6
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    for trial in complete:
        attrs = trial.user_attrs
        genome = Genome.from_dict(attrs["genome"])
        assert attrs["flops"] == cost(genome, 224, 10, 1).flops  # deployment cost, dataset's shape
        assert 360e6 <= attrs["flops"] <= 440e6  # inside the 10% window
        assert attrs["reward"] == pytest.approx(attrs["accuracy"] * (attrs["flops"] / 400e6) ** -0.07)
        assert {"params", "activations", "eval_seconds", "evaluator"} <= set(attrs)
    screened = [t for t in trials if "screened" in t.user_attrs]
    assert all(t.state == TrialState.PRUNED for t in screened)
    best = Genome.from_json(tmp_path / "s" / "best.json")
    assert best.key() == Genome.from_dict(study.best_trial.user_attrs["genome"]).key()
    assert study.user_attrs["target"] == 400_000_000 and study.user_attrs["num_classes"] == 10
    rows = list(csv.DictReader(open(tmp_path / "s" / "trials.csv")))
    assert len(rows) == len(trials)
    # the dashboard note of every evaluated trial holds its per-stage table
    from nas.trial_notes import read_trial_note
    for trial in complete:
        note = read_trial_note(study, trial)
        assert "MBConv" in note or "SepConv" in note


def test_rerun_resumes_and_counts_trials_in_total(tmp_path):
    assert search(tmp_path, "--n-trials", "3", "--study", "r") == 0
    first = {t.number: t.value for t in load(tmp_path, "r").trials if t.state == TrialState.COMPLETE}
    assert search(tmp_path, "--n-trials", "5", "--study", "r") == 0
    study = load(tmp_path, "r")
    assert budget_used(study.trials) == 5
    after = {t.number: t.value for t in study.trials if t.state == TrialState.COMPLETE}
    assert all(after[number] == value for number, value in first.items())
    # A rerun with the budget already spent evaluates nothing more.
    assert search(tmp_path, "--n-trials", "5", "--study", "r") == 0
    assert len(load(tmp_path, "r").trials) == len(study.trials)


def test_jobs_share_one_study_and_its_trial_budget(tmp_path, whole_machine):
    # 12 trials: the helper needs a few seconds to start, and must get some of them.
    assert search(tmp_path, "--n-trials", "12", "--study", "j", "--jobs", "2") == 0
    trials = load(tmp_path, "j").trials
    assert budget_used(trials) == 12
    evaluated = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len({t.user_attrs["worker"] for t in evaluated}) == 2  # both processes worked
    rows = list(csv.DictReader(open(tmp_path / "j" / "trials.csv")))
    assert len(rows) == len(trials)  # written after the helper's last trial


def test_time_budget_stops_between_trials_and_a_rerun_continues(tmp_path, capsys):
    # A naswot trial takes a fraction of a second: 2 s cannot hold 500 of them. Without
    # screening every trial counts, and the first always runs.
    budget = ["--n-trials", "500", "--timeout", "2", "--cost-window", "0", "--study", "t"]
    assert search(tmp_path, *budget) == 0
    assert "stopped by the time budget" in capsys.readouterr().out
    trials = load(tmp_path, "t").trials
    first = budget_used(trials)
    assert 1 <= first < 500
    # The budget ends between trials: none is cut off as failed or left running.
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert search(tmp_path, *budget) == 0
    assert budget_used(load(tmp_path, "t").trials) > first


def test_default_budget_is_twelve_trials_or_eighteen_minutes():
    from nas.cli import build_parser
    from nas.commands.search import config_from_args

    def config(*extra: str) -> SearchConfig:
        argv = ["search", "--target-flops", "400M", *extra]
        return config_from_args(build_parser(argv).parse_args(argv))

    assert (config().n_trials, config().timeout) == (12, 18 * 60)
    # A budget the user gives replaces the default one entirely.
    assert (config("--n-trials", "40").n_trials, config("--n-trials", "40").timeout) == (40, None)
    assert (config("--timeout", "60").n_trials, config("--timeout", "60").timeout) == (12, 60)


def test_duplicate_genome_is_reused_not_evaluated_again(tmp_path):
    # Kernel size is the only choice, in stages 1-3 alone: 8 genomes, so 10 trials must
    # draw one twice.
    text = (Path(__file__).parents[2] / "space" / "default_space.toml").read_text()
    for old, new in (("kernel_size = [3, 5]", "kernel_size = [3]"),
                     ("expand_ratio = [1, 3, 6]", "expand_ratio = [6]"),
                     ("se_ratio = [0, 0.25]", "se_ratio = [0.25]"),
                     ("layers_delta = [-1, 0, 1]", "layers_delta = [0]"),
                     ("width_multiplier = [0.75, 1.0, 1.25]", "width_multiplier = [1.0]"),
                     ('conv_op = ["mbconv", "fused"]', 'conv_op = ["mbconv"]'),
                     ('skip_op = ["identity", "none"]', 'skip_op = ["identity"]'),
                     *((f"out_channels = {c}\n", f"out_channels = {c}\nkernel_size = [3, 5]\n")
                       for c in (16, 24, 40))):
        assert old in text
        text = text.replace(old, new)
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(text)
    assert SearchSpace.from_file(tiny).size() == 2 ** 3
    assert main(["search", "--target-flops", "400M", "--runs", str(tmp_path), *FAST,
                 "--space", str(tiny), "--cost-window", "0", "--n-trials", "10",
                 "--sampler", "random", "--study", "tiny"]) == 0
    trials = load(tmp_path, "tiny").trials
    reused = [t for t in trials if "reused_from" in t.user_attrs]
    assert len(reused) >= 2 and len(trials) - len(reused) <= 8
    for trial in reused:
        original = trials[trial.user_attrs["reused_from"]]
        assert "reused_from" not in original.user_attrs
        assert original.user_attrs["digest"] == trial.user_attrs["digest"]
        assert original.user_attrs["accuracy"] == trial.user_attrs["accuracy"]


def test_proxy_training_search_reports_epochs(tmp_path):
    config = SearchConfig(target=400e6, evaluator="proxy-train", proxy_subset=300,
                          proxy_epochs=2, proxy_resolution=16, proxy_val_size=400, n_trials=2,
                          runs_dir=str(tmp_path), study="proxy", quiet=True, pruner="none",
                          references="none")
    result = run_search(config)
    assert result.counts["complete"] == 2
    study = load(tmp_path, "proxy")
    assert study.user_attrs["proxy_val_size"] == 400
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            accuracy = trial.user_attrs["accuracy"]
            assert 0.0 < accuracy <= 1.0
            assert abs(accuracy * 400 - round(accuracy * 400)) < 1e-6  # of 400 images
            # its standard error: the binomial one of the 400 validation images
            assert trial.user_attrs["noise"] == pytest.approx(
                (accuracy * (1 - accuracy) / 400) ** 0.5)
            assert sorted(trial.intermediate_values) == [1, 2]  # epochs are 1-based
            assert trial.intermediate_values[2] == accuracy
    page = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "proxy"), "--out", str(page)]) == 0
    assert '<td class="l">proxy validation images</td><td>400</td>' in page.read_text()


def test_prescreen_trains_only_genomes_at_or_above_the_median_zero_cost_score(tmp_path, capsys):
    assert main(["search", "--target-flops", "400M", "--runs", str(tmp_path), "--study", "pre",
                 "--evaluator", "proxy-train", "--proxy-subset", "300", "--proxy-epochs", "1",
                 "--proxy-resolution", "16", "--proxy-val-size", "500", "--n-trials", "4",
                 "--pruner", "none", "--quiet", "--references", "none"]) == 0
    study = load(tmp_path, "pre")
    assert study.user_attrs["prescreen"] == "naswot"
    in_window = [t for t in study.trials if "prescreen_score" in t.user_attrs]
    trained = [t for t in in_window if t.state == TrialState.COMPLETE]
    rejected = [t for t in in_window if "screened" in t.user_attrs]
    assert len(trained) == 4 and rejected and len(trained) + len(rejected) == len(in_window)
    assert budget_used(study.trials) == 4  # a rejected genome costs no budget
    for trial in in_window:
        earlier = [t.user_attrs["prescreen_score"] for t in in_window if t.number < trial.number]
        bar = statistics.median(earlier) if earlier else float("-inf")
        assert (trial.user_attrs["prescreen_score"] >= bar) == (trial in trained), trial.number
    for trial in rejected:
        assert trial.state == TrialState.PRUNED and "not trained" in trial.user_attrs["screened"]
        assert "accuracy" not in trial.user_attrs
    assert f"{len(rejected)} in it by their naswot score" in capsys.readouterr().out


def test_prescreen_applies_only_where_size_is_held_in_a_window():
    def active(**options) -> object:
        return SearchConfig(target=400e6, **options).active_prescreen

    assert active() == "naswot" and active(prescreen="synflow") == "synflow"
    assert active(prescreen="none") is None
    assert active(evaluator="naswot") is None  # the score is already zero-cost
    # Across all sizes a zero-cost score would just prefer the larger genomes.
    assert active(objective="multi") is None and active(cost_window=0) is None


def test_multi_objective_writes_the_pareto_front(tmp_path, capsys):
    assert search(tmp_path, "--n-trials", "8", "--objective", "multi", "--study", "m") == 0
    assert "Pareto front" in capsys.readouterr().out
    front = json.loads((tmp_path / "m" / "pareto.json").read_text())["members"]
    assert front
    costs = [m["cost"] for m in front]
    accuracies = [m["accuracy"] for m in front]
    assert costs == sorted(costs)
    # along a Pareto front sorted by cost, accuracy never drops
    assert accuracies == sorted(accuracies)
    Genome.from_json(tmp_path / "m" / "best.json")


def test_killed_search_resumes_with_finished_trials_kept(tmp_path):
    args = [sys.executable, "-m", "nas", "search", "--target-flops", "400M", "--runs",
            str(tmp_path), "--study", "k", "--quiet", "--evaluator", "proxy-train",
            "--proxy-subset", "600", "--proxy-epochs", "2", "--proxy-resolution", "16",
            "--proxy-val-size", "500", "--n-trials", "2", "--pruner", "none",
            "--cost-window", "0", "--references", "none"]
    worker = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = f"sqlite:///{tmp_path / 'k' / 'study.db'}"
    deadline = time.monotonic() + 600
    finished_before_kill: dict[int, float] = {}
    try:
        while time.monotonic() < deadline and not finished_before_kill:
            time.sleep(0.3)
            if not (tmp_path / "k" / "study.db").exists():
                continue
            try:
                # open_storage waits out the worker creating the schema at this moment.
                trials = optuna.load_study(study_name="k", storage=open_storage(storage)).trials
            except KeyError:  # the study is not created yet
                continue
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            # a running trial with its cost recorded is training (no window screens it)
            running = [t for t in trials if t.state == TrialState.RUNNING
                       and "flops" in t.user_attrs]
            if complete and running:
                finished_before_kill = {t.number: t.value for t in complete}
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    assert finished_before_kill, "the search never had a finished and a running trial"
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, timeout=300)
    study = optuna.load_study(study_name="k", storage=storage)
    assert budget_used(study.trials) == 2
    for number, value in finished_before_kill.items():
        assert study.trials[number].value == value
    killed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert killed and all("fail_reason" not in t.user_attrs for t in killed)
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") is not None]
    assert retried and retried[0].state == TrialState.COMPLETE


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert search(runs, "--n-trials", "2", "--study", "keep") == 0
    return runs


def snapshot(folder: Path) -> tuple[list, list]:
    """Every file's bytes, and the study's content (SQLite may fold its write-ahead log
    into the database file when opened, which changes bytes but not the study)."""
    files = sorted((str(p.relative_to(folder)), hashlib.sha1(p.read_bytes()).hexdigest())
                   for p in folder.rglob("*") if p.is_file() and "study.db" not in p.name)
    study = load(folder, "keep")
    trials = [(t.number, t.state.name, t.values, t.params, t.user_attrs) for t in study.trials]
    return files, [study.user_attrs, trials]


@pytest.mark.parametrize("extra, message", [
    (["--target-flops", "400X"], "--target-flops '400X'"),
    (["--target-flops", "-5"], "--target-flops"),
    (["--target-flops", "400M", "--space", "/nonexistent/space.toml"], "does not exist"),
    (["--target-flops", "1M"], "every genome of the space exceeds the target"),
    (["--target-flops", "400M", "--storage", "postgresql://u:secret@127.0.0.1:1/db"], "cannot open storage"),
    (["--target-flops", "400M", "--evaluator", "magic"], "unknown evaluator 'magic'"),
    (["--target-flops", "400M", "--prescreen", "magic"], "--prescreen: invalid choice: 'magic'"),
    (["--target-flops", "300M"], "was made with target=400000000"),
])
def test_bad_search_input_exits_2_and_leaves_the_study(finished_study, extra, message):
    before = snapshot(finished_study)
    result = subprocess.run([sys.executable, "-m", "nas", "search", "--runs", str(finished_study),
                             "--study", "keep", *FAST, *extra],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr
    assert snapshot(finished_study) == before


def test_outside_a_terminal_progress_is_one_line_per_trial(tmp_path, capsys):
    # capsys's stderr is not a terminal, as a log file or CI is not.
    assert main(["search", "--target-flops", "400M", "--runs", str(tmp_path), "--study", "log",
                 "--evaluator", "naswot", "--proxy-subset", "256", "--cost-window", "0",
                 "--n-trials", "4", "--references", "none"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4, err
    assert lines[-1].startswith("trial 3 complete: 4/4 trials, best_reward ")
