"""Many workers on one study: PostgreSQL and journal storages, heartbeats, password masking.

Real servers and real processes: the PostgreSQL server comes from tests/conftest.py, every
worker is a ``python3 -m nas search`` process, and a worker is killed with SIGKILL in the
middle of a trial. Heartbeats run at 1 s with a 3 s grace (NAS_HEARTBEAT_INTERVAL /
NAS_HEARTBEAT_GRACE) so that a dead worker is noticed within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.storage import (HEARTBEAT_ATTR, HeartbeatJournalStorage, StorageError,
                         fail_stale_trials, heartbeat_settings, mask_url, open_storage,
                         storage_of, study_system_attrs, wait_for_running_trials)

REPO = Path(__file__).resolve().parents[2]
INTERVAL, GRACE = 1, 3
HEARTBEAT_ENV = {"NAS_HEARTBEAT_INTERVAL": str(INTERVAL), "NAS_HEARTBEAT_GRACE": str(GRACE)}
# naswot on 64 images at 16 px: a fraction of a second per genome. The kill test uses
# proxy training on 64 images instead, so that a trial lasts long enough to be killed in.
ZERO_COST = ["--evaluator", "naswot", "--proxy-subset", "64", "--proxy-resolution", "16"]
SLOW = ["--evaluator", "proxy-train", "--proxy-subset", "64", "--proxy-epochs", "1",
        "--proxy-resolution", "16", "--pruner", "none"]
KINDS = ("postgresql", "journal")


@pytest.fixture
def heartbeat_env(monkeypatch):
    for name, value in HEARTBEAT_ENV.items():
        monkeypatch.setenv(name, value)


def storage_for(kind: str, request, tmp_path: Path) -> str:
    if kind == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"journal:{tmp_path / 'study.journal'}"


def password_of(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).password or ""


def worker_env() -> dict[str, str]:
    # One thread each: four workers share two cores.
    return {**os.environ, **HEARTBEAT_ENV, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def start_workers(count: int, *, runs: Path, storage: str, study: str, n_trials: int,
                  evaluator: list[str]) -> list[subprocess.Popen]:
    command = [sys.executable, "-m", "nas", "--verbose", "search", "--target-flops", "400M",
               "--cost-window", "0", "--runs", str(runs), "--storage", storage,
               "--study", study, "--n-trials", str(n_trials), "--quiet", "--references", "none",
               *evaluator]
    return [subprocess.Popen(command, cwd=runs, env=worker_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(count)]


def finish(workers: list[subprocess.Popen], timeout: float = 150) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + timeout
    results = []
    for worker in workers:
        try:
            out, err = worker.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            raise
        results.append((worker.returncode, out, err))
    return results


def check_trials_intact(study: optuna.Study, n_trials: int, pids: set[int]) -> list:
    """Exactly ``n_trials`` complete, numbered without gaps, each with its attributes."""
    from nas.search import budget_used
    from space import Genome, cost

    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(len(trials)))
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert budget_used(trials) == n_trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials
    # Anything else was stopped by the budget check, never evaluated.
    for trial in trials:
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs.get("over_budget") is True
    evaluated = [t for t in complete if "reused_from" not in t.user_attrs]
    assert len({t.user_attrs["digest"] for t in evaluated}) == len(evaluated)
    for trial in complete:
        attrs = trial.user_attrs
        genome = Genome.from_dict(attrs["genome"])
        assert int(attrs["worker"].rsplit(":", 1)[1]) in pids
        assert attrs["flops"] == cost(genome, 224, 10, 1).flops
        assert attrs["params"] == cost(genome, 224, 10, 1).params
        assert trial.value == pytest.approx(attrs["reward"])
        assert attrs["reward"] == pytest.approx(
            attrs["accuracy"] * (attrs["flops"] / 400e6) ** -0.07)
        assert {"activations", "eval_seconds", "evaluator", "cost"} <= set(attrs)
    return trials


def everything_written(runs: Path, results, study: optuna.Study) -> str:
    """All text a run leaves where a user or another program can read it."""
    parts = [out + err for _, out, err in results]
    for path in runs.rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    system_attrs = study_system_attrs(study)
    parts.append(json.dumps([study.user_attrs, system_attrs], default=str))
    for trial in study.get_trials(deepcopy=False):
        parts.append(json.dumps([trial.user_attrs, trial.system_attrs], default=str))
    return "\n".join(parts)


# -- many workers, one budget ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_four_workers_share_one_budget_exactly(kind, request, tmp_path, heartbeat_env):
    storage, study_name, n_trials = storage_for(kind, request, tmp_path), f"four-{kind}", 12
    workers = start_workers(4, runs=tmp_path, storage=storage, study=study_name,
                            n_trials=n_trials, evaluator=ZERO_COST)
    results = finish(workers)
    assert [code for code, _, _ in results] == [0] * 4, [err[-2000:] for _, _, err in results]
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    trials = check_trials_intact(study, n_trials, {w.pid for w in workers})
    rows = (tmp_path / study_name / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + len(trials)  # the last worker to stop saw every trial
    best = optuna.load_study(study_name=study_name, storage=open_storage(storage)).best_trial
    from space import Genome

    assert Genome.from_json(tmp_path / study_name / "best.json").key() == \
        Genome.from_dict(best.user_attrs["genome"]).key()
    if kind == "postgresql":
        # The password is nowhere: not in logs (--verbose), outputs, or study attributes.
        written = everything_written(tmp_path, results, study)
        assert password_of(storage) not in written
        assert mask_url(storage) in study.user_attrs["storage"]


# -- a worker killed mid-trial -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_killed_worker_trial_fails_by_heartbeat_and_is_retried(kind, request, tmp_path,
                                                               heartbeat_env):
    # One trial per worker: the survivors finish theirs while the dead trial still holds the
    # last share of the budget, so they must notice it (heartbeat) and run it themselves.
    storage, study_name, n_trials = storage_for(kind, request, tmp_path), f"kill-{kind}", 4
    workers = start_workers(4, runs=tmp_path, storage=storage, study=study_name,
                            n_trials=n_trials, evaluator=SLOW)
    pids = {w.pid: w for w in workers}
    watcher = None
    victim, killed, killed_at = None, None, 0.0
    deadline = time.monotonic() + 90
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            watcher = watcher or optuna.load_study(study_name=study_name,
                                                   storage=open_storage(storage))
        except KeyError:
            continue  # no worker has created the study yet
        for trial in watcher.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid = int(trial.user_attrs.get("worker", ":0").rsplit(":", 1)[1])
            # "flops" is set just before the trial claims its share of the budget; half a
            # second later a trial still running without a result is in its evaluation.
            attrs = trial.user_attrs
            if pid in pids and "flops" in attrs and "over_budget" not in attrs \
                    and "accuracy" not in attrs \
                    and time.time() - trial.datetime_start.timestamp() > 0.5:
                victim, killed = pids[pid], trial.number
                os.kill(pid, signal.SIGKILL)
                killed_at = time.time()
                break
    assert victim is not None, "no worker was ever caught in the middle of a trial"
    survivors = [w for w in workers if w is not victim]
    results = finish(survivors, timeout=180)
    victim.wait()
    assert [code for code, _, _ in results] == [0] * 3, [err[-2000:] for _, _, err in results]

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    check_trials_intact(study, n_trials, set(pids))
    trials = study.get_trials(deepcopy=False)
    dead = trials[killed]
    assert dead.state == TrialState.FAIL and "fail_reason" not in dead.user_attrs
    # Failed by the heartbeat, i.e. after the grace period, not by a check of the process.
    assert dead.datetime_complete.timestamp() - killed_at >= GRACE - INTERVAL - 0.5
    # The system attributes of Optuna's RetryHeartbeatStaleTrialCallback.
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.system_attrs["retry_history"] == [killed]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert int(retry.user_attrs["worker"].rsplit(":", 1)[1]) != victim.pid
    from space import Genome

    best = Genome.from_json(tmp_path / study_name / "best.json")
    assert best.key() == Genome.from_dict(study.best_trial.user_attrs["genome"]).key()


# -- workers that start together on a new storage ---------------------------------------

_OPENER = textwrap.dedent("""
    import sys, time, optuna
    from nas.storage import open_storage
    storage_url, start = sys.argv[1], float(sys.argv[2])
    time.sleep(max(0.0, start - time.time()))
    optuna.create_study(study_name="together", storage=open_storage(storage_url),
                        load_if_exists=True)
""")


@pytest.mark.parametrize("kind", ("sqlite", "postgresql"))
def test_workers_starting_together_all_open_a_new_database(kind, request, tmp_path):
    """Every worker creates Optuna's tables on a new database; the losers of that race
    must open it, not exit ("table studies already exists" on SQLite, seen with 8 workers)."""
    if kind == "sqlite":
        storage = f"sqlite:///{tmp_path / 'new.db'}"
    else:
        import psycopg2
        from sqlalchemy.engine import make_url

        url = make_url(request.getfixturevalue("postgres_url"))
        connection = psycopg2.connect(host=url.host, port=url.port, user=url.username,
                                      password=url.password, dbname=url.database)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE together")
        connection.close()
        storage = url.set(database="together").render_as_string(hide_password=False)
    start = time.time() + 4  # after every process has imported optuna
    openers = [subprocess.Popen([sys.executable, "-c", _OPENER, storage, str(start)],
                                env=worker_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = finish(openers, timeout=120)
    assert [code for code, _, _ in results] == [0] * 6, [err[-500:] for _, _, err in results]
    assert optuna.get_all_study_names(storage=open_storage(storage)) == ["together"]


# -- the heartbeat itself, without the search --------------------------------------------

_SLEEPER = textwrap.dedent("""
    import sys, time, optuna
    from nas.storage import open_storage
    study = optuna.create_study(study_name=sys.argv[2], storage=open_storage(sys.argv[1]),
                                load_if_exists=True)
    def objective(trial):
        trial.suggest_int("x", 0, 1000)
        time.sleep(60)
        return 0.0
    study.optimize(objective, n_trials=1)
""")


@pytest.mark.parametrize("kind", KINDS)
def test_live_trial_keeps_beating_and_dead_one_is_requeued(kind, request, tmp_path,
                                                           heartbeat_env):
    storage, study_name = storage_for(kind, request, tmp_path), f"beat-{kind}"
    child = subprocess.Popen([sys.executable, "-c", _SLEEPER, storage, study_name],
                             env=worker_env(), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        study = None
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                study = study or optuna.load_study(study_name=study_name,
                                                   storage=open_storage(storage))
            except KeyError:
                continue
            if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                break
        assert study is not None
        # Alive for twice the grace period: the heartbeat keeps its trial from going stale.
        alive_until = time.monotonic() + 2 * GRACE
        while time.monotonic() < alive_until:
            assert fail_stale_trials(study) == []
            time.sleep(0.5)
        assert wait_for_running_trials(study, timeout=0.1) == []  # still running, not stale
    finally:
        child.kill()
        child.wait()
    killed_at = time.monotonic()
    assert wait_for_running_trials(study, timeout=30) == [0]
    assert time.monotonic() - killed_at >= GRACE - INTERVAL - 0.5
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == trials[0].params
    assert trials[1].system_attrs["retry_history"] == [0]
    assert trials[1].user_attrs == {}
    assert HEARTBEAT_ATTR not in trials[1].system_attrs
    if kind == "journal":
        assert isinstance(storage_of(study), HeartbeatJournalStorage)
        assert HEARTBEAT_ATTR in trials[0].system_attrs
    # Nothing is running now: waiting returns at once.
    assert wait_for_running_trials(study) == []


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
@pytest.mark.parametrize("kind", ("sqlite", "journal"))
def test_dead_trial_holds_its_budget_share_until_its_copy_is_queued(kind, tmp_path,
                                                                    heartbeat_env):
    """Optuna fails a stale trial and queues its copy in two steps; in between, a worker
    that saw the budget free would start a new genome and leave the copy unrun (seen with
    four workers on PostgreSQL). The stale mark keeps the share taken in that window."""
    from nas.search import budget_used
    from nas.storage import STALE_ATTR, requeue, stale_trial_ids, trial_id

    url = (f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite"
           else f"journal:{tmp_path / 'study.journal'}")
    study = optuna.create_study(study_name="window", storage=open_storage(url))
    done = study.ask()
    done.suggest_int("x", 0, 9)
    study.tell(done, 1.0)
    interrupted = study.ask()  # Ctrl-C: failed by its own worker, never re-queued
    study.tell(interrupted, state=TrialState.FAIL)
    dead = study.ask()
    dead.suggest_int("x", 0, 9)
    storage, dead_id = storage_of(study), trial_id(dead)
    if kind == "sqlite":
        storage.record_heartbeat(dead_id)  # RDB storages judge by the beat table
    time.sleep(GRACE + 1.5)  # SQLite's clock has whole seconds
    assert stale_trial_ids(study) == [dead_id]
    assert storage.get_trial(dead_id).system_attrs[STALE_ATTR] is True
    assert storage.set_trial_state_values(dead_id, TrialState.FAIL)
    assert budget_used(study.get_trials()) == 2  # the window: the dead trial keeps its share
    requeue(study, storage.get_trial(dead_id))
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL,
                                         TrialState.WAITING]
    assert STALE_ATTR not in trials[3].system_attrs
    assert budget_used(trials) == 1  # the share waits for whoever runs the copy
    retry = study.ask()
    assert retry.number == 3
    assert budget_used(study.get_trials()) == 2


# Run as its own process so that its stderr is what a user sees, Optuna's handler included.
_TAKE_THE_FIRST_TRIAL = textwrap.dedent("""
    import sys
    import optuna
    from optuna.trial import TrialState
    from nas import evaluators
    from nas.cli import main
    from nas.storage import STALE_ATTR, open_storage, requeue, storage_of

    url = sys.argv[1]
    evaluate, taken = evaluators.NaswotEvaluator.evaluate, []

    def evaluate_while_another_worker_takes_the_trial(self, genome, **options):
        score = evaluate(self, genome, **options)
        if not taken:  # what another worker's Optuna does to a trial whose beat lapsed
            study = optuna.load_study(study_name="taken", storage=open_storage(url))
            [running] = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            storage = storage_of(study)
            storage.set_trial_system_attr(running._trial_id, STALE_ATTR, True)
            assert storage.set_trial_state_values(running._trial_id, TrialState.FAIL)
            requeue(study, storage.get_trial(running._trial_id))
            taken.append(running.number)
        return score

    evaluators.NaswotEvaluator.evaluate = evaluate_while_another_worker_takes_the_trial
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("kind", ("sqlite", "journal"))
def test_a_live_worker_whose_trial_was_taken_as_stale_goes_on(kind, tmp_path):
    """A worker starved past the grace period (seen under load: four workers and a second
    test run on two cores) finds its trial failed and re-queued by another worker when it
    writes the result. It must drop that result and go on, not die with a traceback."""
    from nas.search import budget_used

    url = (f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite"
           else f"journal:{tmp_path / 'study.journal'}")
    done = subprocess.run(
        [sys.executable, "-c", _TAKE_THE_FIRST_TRIAL, url, "search", "--target-flops", "400M",
         "--cost-window", "0", "--runs", str(tmp_path), "--storage", url, "--study", "taken",
         "--n-trials", "3", "--quiet", "--references", "none", *ZERO_COST],
        env=worker_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Trial 0 failed" not in done.stderr, done.stderr
    assert "trial 0 of this worker was failed and re-queued by another worker" in done.stderr
    trials = optuna.load_study(study_name="taken", storage=open_storage(url)).get_trials()
    assert trials[0].state == TrialState.FAIL
    assert "accuracy" not in trials[0].user_attrs  # the dropped result is not written
    [copy] = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert copy.state == TrialState.COMPLETE
    assert budget_used(trials) == 3
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 3

# -- passwords and settings --------------------------------------------------------------


@pytest.mark.parametrize("text, masked", [
    ("postgresql://nas:s3cret@db:5432/nas", "postgresql://nas:***@db:5432/nas"),
    ("postgresql+psycopg2://u:p@ss:w@h/db", "postgresql+psycopg2://u:***@h/db"),
    ("error at 'mysql://root:hunter2@10.0.0.1/x' here", "error at 'mysql://root:***@10.0.0.1/x' here"),
    ("host=db user=nas password=s3cret dbname=nas", "host=db user=nas password=*** dbname=nas"),
    ("sqlite:////tmp/a:b/study.db", "sqlite:////tmp/a:b/study.db"),
    ("postgresql://nas@db/nas", "postgresql://nas@db/nas"),
    ("journal:runs/a.journal", "journal:runs/a.journal"),
])
def test_mask_url(text, masked):
    assert mask_url(text) == masked


def test_malformed_url_error_shows_no_part_of_the_password():
    with pytest.raises(StorageError) as caught:
        open_storage("postgresql://nas:pa@ss:w0rd42@127.0.0.1:5432/nas")
    assert "w0rd42" not in str(caught.value) and "pa@ss" not in str(caught.value)


def test_wrong_password_is_one_masked_line(postgres_url):
    wrong = postgres_url.replace(f":{password_of(postgres_url)}@", ":not-the-password@")
    with pytest.raises(StorageError) as caught:
        open_storage(wrong)
    message = str(caught.value)
    assert "password authentication failed" in message and "\n" not in message
    assert "not-the-password" not in message and "nas:***@" in message


@pytest.mark.parametrize("interval, grace, problem", [
    ("abc", "30", "whole number"), ("0", "30", "1..3600"), ("10", "10", "more than")])
def test_heartbeat_settings_are_validated(monkeypatch, interval, grace, problem):
    monkeypatch.setenv("NAS_HEARTBEAT_INTERVAL", interval)
    monkeypatch.setenv("NAS_HEARTBEAT_GRACE", grace)
    with pytest.raises(StorageError, match=problem):
        heartbeat_settings()


def test_heartbeat_defaults(monkeypatch):
    monkeypatch.delenv("NAS_HEARTBEAT_INTERVAL", raising=False)
    monkeypatch.delenv("NAS_HEARTBEAT_GRACE", raising=False)
    assert heartbeat_settings() == (10, 30)


def test_password_can_stay_off_the_command_line(postgres_url, monkeypatch):
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    bare = f"postgresql://{url.username}@{url.host}:{url.port}/{url.database}"
    assert url.password not in bare
    monkeypatch.setenv("PGPASSWORD", url.password)  # libpq also reads ~/.pgpass
    assert isinstance(optuna.get_all_study_names(storage=open_storage(bare)), list)
