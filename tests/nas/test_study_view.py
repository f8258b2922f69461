"""A study of many screened genomes and a few evaluated ones (issue 26): the dashboard serves
the evaluated trials with their notes and artifacts, the summary and the report count the
screened ones, and a resumed search recognises them."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from nas.run import locate_study, open_study
from nas.report import collect, render_html
from nas.search import SearchConfig, budget_used, run_search
from nas.storage import study_id, study_system_attrs
from nas.study_view import ScreenedCount, count_screened, evaluated_trials
from space import SearchSpace, cost

sys.path.insert(0, str(Path(__file__).parent))
from _study_fixture import _unsynced_sqlite  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WINDOW_SCREENED, PRESCREENED = 40, 4


class _Recorder:
    """Draws a genome of the space uniformly, keeping the trial's parameters."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.params, self.distributions = rng, {}, {}

    def suggest_categorical(self, name, options):
        self.distributions[name] = CategoricalDistribution(list(options))
        self.params[name] = self.rng.choice(list(options))
        return self.params[name]


def _screened_record(space: SearchSpace, rng: random.Random, *, prescreened: bool):
    """A trial as the search records a screened genome (outside the window, or rejected by
    the prescreen with its zero-cost score)."""
    while True:  # a prescreened genome was in the window; any other outside it
        recorder = _Recorder(rng)
        genome = space.sample(recorder)
        costs = cost(genome, 224, 10, 1)
        if (360e6 <= costs.flops <= 440e6) == prescreened:
            break
    attrs = {"worker": "earlier:1", "genome": genome.to_dict(),
             "digest": hashlib.sha1(genome.key().encode()).hexdigest()[:16],
             "flops": costs.flops, "params": costs.params, "activations": costs.activations,
             "cost": costs.flops, "evaluator": "proxy-train",
             "screened": "flops outside the target window; not evaluated"}
    if prescreened:  # a score below any real one: later window genomes pass the median
        attrs.update(prescreen_score=-1e9, screened="naswot score below the median; not trained")
    return optuna.trial.create_trial(state=TrialState.PRUNED, params=recorder.params,
                                     distributions=recorder.distributions, user_attrs=attrs)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A study holding 44 screened genomes from an earlier run, resumed by a real search
    (proxy training, naswot prescreen) for one evaluated trial; the first genome the
    resumed search is given is one the earlier run's prescreen rejected."""
    runs = tmp_path_factory.mktemp("runs")
    (runs / "big").mkdir()
    study = optuna.create_study(study_name="big", storage=_unsynced_sqlite(runs / "big" / "study.db"),
                                direction="maximize")
    rng = random.Random(0)
    space = SearchSpace.default()
    records = [_screened_record(space, rng, prescreened=i < PRESCREENED)
               for i in range(WINDOW_SCREENED + PRESCREENED)]
    study.add_trials(records)
    study.enqueue_trial(records[0].params)
    config = SearchConfig(target=400e6, runs_dir=str(runs), study="big", n_trials=1,
                          proxy_resolution=16, proxy_subset=100, proxy_epochs=1,
                          proxy_val_size=50, pruner="none", quiet=True, references="none")
    result = run_search(config)
    return runs / "big", result, records


def test_resumed_search_recognises_screened_genomes(resumed):
    run_dir, result, records = resumed
    trials = optuna.load_study(study_name="big",
                               storage=f"sqlite:///{run_dir / 'study.db'}").get_trials()
    earlier, new = trials[:len(records)], trials[len(records):]
    assert [t.user_attrs for t in earlier] == [r.user_attrs for r in records]  # left as they were
    again = new[0]  # the genome the earlier prescreen rejected, proposed again
    assert again.params == records[0].params and again.state == TrialState.PRUNED
    assert again.user_attrs["screened"] == ("the same genome as trial 0, which the prescreen "
                                            "did not train")
    assert again.user_attrs["prescreen_score"] == -1e9  # its old score: no new evaluation
    # one evaluated trial, whatever was screened on the way: screened genomes cost no budget
    assert budget_used(trials) == 1
    assert [t.state for t in trials if "screened" not in t.user_attrs] == [TrialState.COMPLETE]
    new_screened = sum("screened" in t.user_attrs for t in new)
    assert result.counts["prescreened"] == PRESCREENED + sum(
        "prescreen_score" in t.user_attrs and "screened" in t.user_attrs for t in new)
    assert result.counts["screened"] + result.counts["prescreened"] == \
        WINDOW_SCREENED + PRESCREENED + new_screened
    assert result.counts["complete"] == 1


def test_report_counts_screened_genomes_without_reading_them(resumed):
    run_dir, result, _ = resumed
    location = locate_study(run_dir=run_dir)
    study = open_study(location)
    assert [t.state for t in evaluated_trials(study)] == [TrialState.COMPLETE]
    screened = count_screened(study)
    assert (screened.window, screened.prescreened) == (result.counts["screened"],
                                                       result.counts["prescreened"])
    report = collect(location)
    assert report.counts == {"complete": 1, "screened": screened.total}
    page = render_html(report)
    assert f"1 complete, {screened.total} screened" in page
    states = next(f for f in report.figures if f.key == "states")
    assert (f"{screened.total:,} screened genomes were not trained ({screened.window:,} outside "
            f"the cost window, {screened.prescreened:,} below the prescreen's bar)") in states.caption
    durations = [s for panel in states.panels for s in panel.series if panel.title == "trial durations"]
    assert [s.name for s in durations] == ["complete"]  # screened trials are not read


def test_dashboard_view_hides_screened_trials_also_from_an_optuna_study_on_it(resumed):
    """optuna-dashboard computes importances on an optuna.Study of its storage, whose trial
    cache reads the storage another way than get_all_trials."""
    from nas.storage import open_storage
    from nas.study_view import hide_screened

    run_dir, _, _ = resumed
    storage = hide_screened(open_storage(f"sqlite:///{run_dir / 'study.db'}", read_only=True))
    assert [t.state for t in storage.get_all_trials(1)] == [TrialState.COMPLETE]
    study = optuna.load_study(study_name="big", storage=storage)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]


def test_dashboard_serves_the_evaluated_trials_with_notes_and_artifacts(resumed):
    run_dir, result, records = resumed
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "nas", "dashboard", str(run_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        assert ": http://127.0.0.1:" in line, server.stderr.read()
        url = line.split(": ", 1)[1].strip()
        base, study_id = url.split("/dashboard/")[0], url.rsplit("/", 1)[1]
        screened = result.counts["screened"] + result.counts["prescreened"]
        assert f"the {screened:,} screened genomes (never trained)" in server.stdout.readline()
        with urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=20) as response:
            trials = json.loads(response.read())["trials"]
        assert len(trials) == 1 and trials[0]["state"] == "Complete"
        trial = trials[0]
        assert trial["number"] > len(records)
        attrs = {a["key"] for a in trial["user_attrs"]}
        assert {"genome", "flops", "accuracy", "reward", "prescreen_score"} <= attrs
        assert "| stage | operator |" in trial["note"]["body"]
        assert sorted(a["filename"] for a in trial["artifacts"]) == [
            f"architecture-trial{trial['number']}.svg", f"genome-trial{trial['number']}.json"]
        # the page's incremental refresh asks for the trials after those it holds
        with urllib.request.urlopen(f"{base}/api/studies/{study_id}?after=1", timeout=20) as response:
            assert json.loads(response.read())["trials"] == []
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_indexed_trial_lookups_serialise_every_trial_as_optuna_dashboard_does(resumed):
    from optuna_dashboard import _serializer

    from nas.dashboard_lookups import _indexed

    run_dir, _, _ = resumed
    study = open_study(locate_study(run_dir=run_dir))
    attrs = study_system_attrs(study)
    assert any(key.endswith(":note_ver") for key in attrs)  # the evaluated trial's note
    original = getattr(_serializer.serialize_frozen_trial, "__wrapped__",
                       _serializer.serialize_frozen_trial)
    indexed = _indexed(original)
    for trial in study.get_trials(deepcopy=False):
        assert indexed(study_id(study), trial, attrs) == original(study_id(study), trial, attrs)


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_view_on_a_journal_and_on_postgresql(kind, tmp_path, request):
    """A journal storage is replayed into memory and the view filters it there; on
    PostgreSQL the view's queries run as on SQLite."""
    from nas.storage import open_storage
    from nas.study_view import hide_screened

    url = (f"journal:{tmp_path / 'study.log'}" if kind == "journal"
           else request.getfixturevalue("postgres_url"))
    study = optuna.create_study(study_name=f"view-{kind}", storage=open_storage(url))
    rng = random.Random(1)
    space = SearchSpace.default()
    study.add_trials([_screened_record(space, rng, prescreened=i == 0) for i in range(3)])
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"accuracy": 0.5}))
    assert [t.number for t in evaluated_trials(study)] == [3]
    assert count_screened(study) == ScreenedCount(window=2, prescreened=1)
    view = hide_screened(open_storage(url, read_only=True))
    assert [t.number for t in view.get_all_trials(study_id(study))] == [3]


def test_dashboard_view_drops_a_trial_screened_after_it_was_read_running(tmp_path):
    """The view's trial cache refreshes unfinished trials: one the search screens after the
    dashboard saw it running does not stay behind as a running trial."""
    from nas.storage import open_storage
    from nas.study_view import hide_screened

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="live", storage=url)
    done = study.ask()
    study.tell(done, 1.0)
    running = study.ask()
    view = hide_screened(open_storage(url, read_only=True))
    assert [t.state for t in view.get_all_trials(study_id(study))] == [TrialState.COMPLETE,
                                                                      TrialState.RUNNING]
    running.set_user_attr("screened", "outside the target window")
    study.tell(running, state=TrialState.PRUNED)
    later = study.ask()
    assert [t.number for t in view.get_all_trials(study_id(study))] == [done.number, later.number]
