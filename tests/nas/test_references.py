"""Reference networks in every study: evaluated once, outside the budget, shown everywhere."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.cli import main
from nas.evaluators import make_evaluator
from nas.references import enqueue_references
from nas.trial import budget_used
from space import Genome, cost, presets

# Zero-cost scores of the whole space (no window): a trial takes a fraction of a second.
FAST = ["--target-flops", "400M", "--evaluator", "naswot", "--cost-window", "0", "--quiet"]


def load(runs: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / name / 'study.db'}")


def references(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if "reference" in t.user_attrs]


def test_references_are_evaluated_once_outside_the_budget_and_shown(tmp_path, capsys):
    assert main(["search", *FAST, "--runs", str(tmp_path), "--study", "ref",
                 "--n-trials", "3"]) == 0
    out = capsys.readouterr().out
    study = load(tmp_path, "ref")
    refs = references(study)
    # queued first, in the order of --references, and scored by the search's evaluator
    assert [(t.number, t.state, t.user_attrs["reference"]) for t in refs] == [
        (0, TrialState.COMPLETE, "efficientnet-b0"), (1, TrialState.COMPLETE, "mnasnet-a1")]
    assert budget_used(study.trials) == 3 and len(study.trials) == 5
    b0 = refs[0].user_attrs
    naswot = make_evaluator("naswot", seed=0)
    assert b0["accuracy"] == naswot.evaluate(presets.get("efficientnet-b0"))
    # costed for the dataset's 10 classes and 1 channel, as any genome of the search
    assert b0["flops"] == cost(presets.get("efficientnet-b0"), 224, 10, 1).flops
    assert b0["reward"] == pytest.approx(b0["accuracy"] * (b0["flops"] / 400e6) ** -0.07)
    assert b0["evaluator"] == "naswot" and "noise" not in b0  # a zero-cost score's is unknown
    assert "3 complete (0 reused)" in out and "2 reference networks outside the budget" in out
    assert "vs efficientnet-b0 (reference, trial 0): reward " in out and "(noise unknown)" in out
    rows = {row["number"]: row for row in csv.DictReader(open(tmp_path / "ref" / "trials.csv"))}
    assert rows["1"]["note"] == "reference network mnasnet-a1; outside the search's budget"
    assert rows["1"]["state"] == "COMPLETE" and float(rows["1"]["accuracy"]) == \
        refs[1].user_attrs["accuracy"]
    selection = json.loads((tmp_path / "ref" / "selection.json").read_text())
    assert [r["reference"] for r in selection["references"]] == ["efficientnet-b0", "mnasnet-a1"]
    assert selection["best"]["trial"] >= 2 and selection["basis"] == "proxy"
    best = Genome.from_json(tmp_path / "ref" / "best.json")
    assert best.key() == Genome.from_dict(study.trials[selection["best"]["trial"]].user_attrs[
        "genome"]).key()
    page = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "ref"), "--out", str(page)]) == 0
    text = page.read_text()
    assert "Reference networks (outside the search's budget)" in text
    assert '<td class="l">mnasnet-a1</td><td class="l">1</td><td class="l">naswot</td>' in text

    # Resumed: the references are not evaluated again, the search goes on.
    assert main(["search", *FAST, "--runs", str(tmp_path), "--study", "ref",
                 "--n-trials", "5"]) == 0
    study = load(tmp_path, "ref")
    assert [t.number for t in references(study)] == [0, 1]
    assert budget_used(study.trials) == 5 and len(study.trials) == 7


def test_a_reference_queued_by_two_workers_is_evaluated_once(tmp_path):
    assert main(["search", *FAST, "--runs", str(tmp_path), "--study", "two",
                 "--n-trials", "1", "--references", "none"]) == 0
    study = load(tmp_path, "two")
    # Two workers that start together both find no mnasnet-a1 and both queue it.
    assert enqueue_references(study, ["mnasnet-a1"]) == ["mnasnet-a1"]
    study.enqueue_trial({}, user_attrs={"reference": "mnasnet-a1"})
    assert enqueue_references(study, ["mnasnet-a1"]) == []  # queued: nobody queues a third
    assert main(["search", *FAST, "--runs", str(tmp_path), "--study", "two",
                 "--n-trials", "1", "--references", "mnasnet-a1"]) == 0
    refs = references(load(tmp_path, "two"))
    assert [(t.number, t.state) for t in refs] == [(1, TrialState.COMPLETE),
                                                  (2, TrialState.PRUNED)]
    assert refs[1].user_attrs["screened"] == ("reference network mnasnet-a1 is evaluated by "
                                              "trial 1; not evaluated twice")
    assert "accuracy" not in refs[1].user_attrs
    assert budget_used(load(tmp_path, "two").trials) == 1


def test_references_option_names_presets_or_none():
    from nas.search_config import SearchConfig
    from nas.settings import SettingError

    assert SearchConfig(target=1).reference_names == ("efficientnet-b0", "mnasnet-a1")
    assert SearchConfig(target=1, references="none").reference_names == ()
    assert SearchConfig(target=1, references="mnasnet-a1, mnasnet-a1").reference_names == (
        "mnasnet-a1",)
    with pytest.raises(SettingError, match="unknown network 'resnet50'"):
        SearchConfig(target=1, references="efficientnet-b0,resnet50")


def test_the_sampler_and_the_pruner_see_the_searched_trials_only():
    from nas.search_config import SearchConfig
    from nas.search_study import SearchedOnly, make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"x": optuna.distributions.FloatDistribution(0, 1),
             "y": optuna.distributions.IntDistribution(0, 3)}
    study = optuna.create_study(direction="maximize")
    for number in range(2):  # reference networks: no parameters of the space, no epochs
        study.add_trial(optuna.create_trial(value=0.99, user_attrs={"reference": f"r{number}"}))
    study.add_trial(optuna.create_trial(value=0.5, params={"x": 0.5, "y": 1}, distributions=space,
                                        intermediate_values={0: 0.9}))
    running = study.ask()
    running.report(0.1, 0)
    frozen = study.trials[-1]
    def tpe() -> optuna.samplers.TPESampler:  # a new one each time: it caches the space
        return optuna.samplers.TPESampler(multivariate=True, seed=0)

    # A trial without parameters empties the intersection search space of multivariate TPE.
    assert tpe().infer_relative_search_space(study, frozen) == {}
    assert SearchedOnly(tpe()).infer_relative_search_space(study, frozen) == space
    # Counted in, the references would let the median pruner start after one searched trial.
    assert optuna.pruners.MedianPruner(n_startup_trials=3).prune(study, frozen)
    assert not make_pruner(SearchConfig(target=1)).prune(study, frozen)


def _supernet_search(tmp_path: Path) -> tuple[Path, list[str]]:
    """A supernet search over the tiny space of test_supernet_search.py, its supernet
    trained, with MnasNet-A1 (outside that three-stage space) as its only reference."""
    from nas.data import load_dataset
    from nas.supernet import SupernetSettings
    from nas.supernet.artifact import default_path, supernet_key

    from _supernet_space import TINY_SETTINGS, TINY_SPACE, tiny_space

    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(TINY_SPACE))
    runs = tmp_path / "runs"
    wanted = SupernetSettings(resolution=16, val_size=500, seed=0)
    path = default_path(runs, supernet_key(tiny_space(), load_dataset("fashion-mnist"), wanted))
    make_evaluator("supernet", space=tiny_space(), supernet=path,
                   supernet_settings=SupernetSettings(**TINY_SETTINGS))
    target = cost(tiny_space().largest(), 224, 10, 1).flops / 4
    argv = ["search", "--target-flops", str(int(target)), "--space", str(space_file),
            "--evaluator", "supernet", "--proxy-resolution", "16", "--proxy-val-size", "500",
            "--proxy-subset", "128", "--proxy-epochs", "1", "--n-trials", "2",
            "--cost-window", "0", "--references", "mnasnet-a1", "--confirm-epochs", "1",
            "--runs", str(runs), "--study", "sn", "--quiet"]
    return runs, argv


def test_a_supernet_search_trains_a_reference_outside_its_space_at_the_confirm_fidelity(
        tmp_path, capsys):
    from nas.selection import confirmed_score
    from nas.trial import genome_digest

    runs, argv = _supernet_search(tmp_path)
    assert main(argv) == 0
    out = capsys.readouterr().out
    study = load(runs, "sn")
    [ref] = references(study)
    # Trained after the searched trials, so that its training cannot eat their time.
    assert ref.number == max(t.number for t in study.trials)
    attrs = ref.user_attrs
    assert attrs["evaluator"] == "proxy-train"  # not the supernet's score
    entry = study.user_attrs["confirmed:" + genome_digest(presets.get("mnasnet-a1"))]
    assert entry["reference"] == "mnasnet-a1" and entry["epochs"] == 1
    assert len(entry["accuracies"]) == 2  # two seeds
    assert (attrs["accuracy"], attrs["noise"]) == pytest.approx(confirmed_score(entry))
    assert all(t.user_attrs["evaluator"] == "supernet" for t in study.trials
               if "reference" not in t.user_attrs)
    selection = json.loads((runs / "sn" / "selection.json").read_text())
    assert selection["references"] == [] and "mnasnet-a1" in selection["references_not_compared"]
    assert "vs mnasnet-a1: not compared (trained by proxy-train at the confirmation's " \
           "fidelity, the best scored by supernet; compared once confirmed" in out
    assert main(argv) == 0  # resumed: the reference is not trained again
    assert [t.number for t in references(load(runs, "sn"))] == [ref.number]


def test_a_spent_time_budget_leaves_a_reference_outside_the_space_untrained(tmp_path, capsys):
    runs, argv = _supernet_search(tmp_path)
    assert main([*argv, "--timeout", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "reference network(s) mnasnet-a1 not evaluated: the supernet evaluator cannot " \
           "score them and the time budget left no room for their training" in out
    assert references(load(runs, "sn")) == []  # nothing queued for a later run to trip on


def test_a_reference_training_stops_at_the_deadline_and_a_rerun_goes_on(tmp_path, capsys):
    import time

    from nas.commands.search import config_from_args
    from nas.cli import build_parser
    from nas.search import _Search

    runs, argv = _supernet_search(tmp_path)
    search = _Search(config_from_args(build_parser(argv).parse_args(argv)))
    # The deadline a --timeout sets, already passed when the reference's training starts.
    search.objective.deadline = time.monotonic()
    result = search.run()
    assert not result.interrupted  # running out of time is not a stop by the user
    [ref] = references(load(runs, "sn"))
    assert ref.state == TrialState.PRUNED and "when the time budget ran out" in \
        ref.user_attrs["interrupted"]
    rows = {r["number"]: r for r in csv.DictReader((runs / "sn" / "trials.csv").open())}
    assert rows[str(ref.number)]["note"].startswith("reference network mnasnet-a1 (which the "
                                                    "supernet evaluator cannot score)")
    selection = json.loads((runs / "sn" / "selection.json").read_text())
    assert selection["references_not_compared"]["mnasnet-a1"].startswith(
        f"not evaluated: its trial {ref.number} was stopped before it finished")
    assert main(argv) == 0  # no time budget now: the same command trains it
    refs = references(load(runs, "sn"))
    assert [t.state for t in refs] == [TrialState.PRUNED, TrialState.COMPLETE]
    assert json.loads((runs / "sn" / "selection.json").read_text())[
        "references_not_compared"]["mnasnet-a1"].startswith("trained by proxy-train")
