"""Load benchmark: many workers on one study, per storage (PostgreSQL, SQLite, journal).

Two modes, each 8 worker processes x 200 trials on one study by default:

- ``search``: real ``nas search`` workers with the zero-cost naswot evaluator (64
  Fashion-MNIST images at 16 px, ``--cost-window 0``). Each worker also stops after
  ``--time-limit`` seconds; on a 2-core machine that limit, not the budget, ends the run.
- ``storage``: the same storage traffic without the network: each trial samples a genome
  of the default space (35 parameters), records the search's user attributes and reads
  the study's trials three times (the search's budget and progress checks), with Optuna's
  random sampler. This isolates what the storage can sustain under contention.

Reported per storage: trials finished, trials per second over the whole run (start-up
included) and in steady state (first trial start to last trial end), failed trials,
workers that exited with an error, and storage error lines in their logs ("database is
locked" and the like). PostgreSQL is a throw-away server on 127.0.0.1, as in the tests.

    python3 benchmarks/bench_workers.py                              # both modes, ~25 min
    python3 benchmarks/bench_workers.py --modes storage --storages sqlite --workers 4

Writes benchmarks/results/workers.json, keeping the other mode's figures when only one
mode runs. The workers compete with each other (and with anything else running) for the
CPU; the file records how many cores there were.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from conftest import postgres_server  # noqa: E402  (the tests' server, reused)
from nas.common import atomic_write_json  # noqa: E402
from nas.search import budget_used  # noqa: E402
from nas.storage import mask_url, open_storage  # noqa: E402

STORAGES = ("postgresql", "sqlite", "journal")
MODES = ("search", "storage")
# Storage trouble as the drivers word it; any of it in a worker's log is a failure.
STORAGE_ERRORS = re.compile(r"database is locked|OperationalError|IntegrityError|"
                            r"deadlock|could not serialize|Traceback", re.IGNORECASE)


def storage_worker(url: str, study_name: str, n_trials: int, seed: int, deadline: float) -> None:
    """One ``storage``-mode worker: the search's storage traffic, no evaluation; stops
    after ``n_trials`` or at ``deadline`` (Unix time), like a search's ``--timeout``."""
    from nas.storage import worker_id
    from space import SearchSpace, cost

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=open_storage(url),
                                load_if_exists=True, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    space = SearchSpace.default()

    def objective(trial: optuna.Trial) -> float:
        genome = space.sample(trial, name=f"trial{trial.number}")
        costs = cost(genome, 224, 10, 1)
        for _ in range(2):  # the budget claim and the progress refresh
            study.get_trials(deepcopy=False)
        for key, value in {"worker": worker_id(), "genome": genome.to_dict(),
                           "digest": genome.key()[:16], "flops": costs.flops,
                           "params": costs.params, "activations": costs.activations,
                           "cost": costs.flops, "evaluator": "none", "accuracy": 0.5,
                           "reward": 0.5, "eval_seconds": 0.0}.items():
            trial.set_user_attr(key, value)
        return 0.5

    for _ in range(n_trials):
        if time.time() > deadline:
            break
        study.optimize(objective, n_trials=1)
        study.get_trials(deepcopy=False)  # the search's look for this worker's last trial


def run_storage(kind: str, url: str, *, mode: str, workers: int, per_worker: int,
                time_limit: float, folder: Path) -> dict:
    runs = folder / f"{mode}-{kind}"
    runs.mkdir()
    n_trials = workers * per_worker
    if mode == "search":
        commands = [[sys.executable, "-m", "nas", "search", "--target-flops", "400M",
                     "--evaluator", "naswot", "--proxy-subset", "64", "--proxy-resolution",
                     "16", "--cost-window", "0", "--n-trials", str(n_trials), "--study",
                     "load", "--storage", url, "--runs", str(runs), "--timeout",
                     str(time_limit), "--quiet", "--references", "none"]] * workers
    else:
        deadline = time.time() + time_limit
        commands = [[sys.executable, str(Path(__file__).resolve()), "--storage-worker", url,
                     "load", str(per_worker), str(seed), str(deadline)]
                    for seed in range(workers)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    logs = [runs / f"worker{i}.log" for i in range(workers)]
    started = time.monotonic()
    with ExitStack() as stack:
        processes = [subprocess.Popen(command, cwd=runs, env=env, stdout=subprocess.DEVNULL,
                                      stderr=stack.enter_context(open(log, "w")))
                     for command, log in zip(commands, logs)]
        codes, killed = [], 0
        for process in processes:
            try:
                codes.append(process.wait(
                    timeout=max(1.0, started + time_limit + 180 - time.monotonic())))
            except subprocess.TimeoutExpired:
                process.kill()
                killed += 1
                codes.append(process.wait())
    wall = time.monotonic() - started
    trials = optuna.load_study(study_name="load", storage=open_storage(url)).get_trials(
        deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    error_lines = [line.strip() for log in logs for line in log.read_text().splitlines()
                   if STORAGE_ERRORS.search(line)]
    # The last line of a crashed worker's log is the exception itself, which says more
    # than the "Traceback" line that matched.
    crashes = [lines[-1].strip() for code, log in zip(codes, logs) if code > 0
               for lines in [log.read_text().splitlines()] if lines]
    steady = None
    if complete:
        first = min(t.datetime_start for t in trials if t.datetime_start)
        last = max(t.datetime_complete for t in complete)
        steady = len(complete) / max(1e-9, (last - first).total_seconds())
    return {
        "storage": kind, "url": mask_url(url).replace(str(folder), "<tmp>"),
        "budget": n_trials, "trials_finished": len(complete),
        "budget_used": budget_used(trials), "trials_recorded": len(trials),
        "failed_trials": len(failed),
        "over_budget_pruned": sum(t.state == TrialState.PRUNED and "over_budget" in t.user_attrs
                                  for t in trials),
        "left_running": sum(t.state == TrialState.RUNNING for t in trials),
        "workers_with_errors": sum(code > 0 for code in codes),
        "workers_killed_after_limit": killed, "exit_codes": codes,
        "storage_error_lines": len(error_lines), "crash_messages": crashes[:3],
        "date": datetime.date.today().isoformat(), "time_limit_s": time_limit,
        "wall_s": round(wall, 1), "trials_per_s": round(len(complete) / wall, 2),
        "steady_trials_per_s": round(steady, 2) if steady else None,
    }


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--storage-worker":
        storage_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
                       float(sys.argv[6]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--storages", default=",".join(STORAGES))
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials-per-worker", type=int, default=200)
    parser.add_argument("--time-limit", type=float, default=270,
                        help="seconds each worker may run trials (default 270)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "workers.json"))
    args = parser.parse_args()
    modes, storages = args.modes.split(","), args.storages.split(",")
    if not set(modes) <= set(MODES) or not set(storages) <= set(STORAGES):
        parser.error(f"--modes from {', '.join(MODES)}; --storages from {', '.join(STORAGES)}")
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report.update({
        "benchmark": "benchmarks/bench_workers.py (see its docstring for the two modes)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "optuna": optuna.__version__, "platform": platform.platform()}})
    report.setdefault("modes", {})
    with tempfile.TemporaryDirectory(prefix="nas-bench-workers-") as temp:
        folder = Path(temp)
        for mode in modes:
            # Storages not run this time keep their last figures (each row has its date).
            results = [row for row in report["modes"].get(mode, {}).get("results", [])
                       if row["storage"] not in storages]
            for kind in storages:
                print(f"{mode} / {kind}: {args.workers} workers x {args.trials_per_worker} "
                      "trials ...", flush=True)
                with ExitStack() as stack:
                    url = {"postgresql": lambda: stack.enter_context(postgres_server()),
                           "sqlite": lambda: f"sqlite:///{folder / f'{mode}.db'}",
                           "journal": lambda: f"journal:{folder / f'{mode}.journal'}"}[kind]()
                    result = run_storage(kind, url, mode=mode, workers=args.workers,
                                         per_worker=args.trials_per_worker,
                                         time_limit=args.time_limit, folder=folder)
                # Other work on the machine competes for the same cores: keep a record of it.
                result["load_average_at_end"] = round(os.getloadavg()[0], 1)
                results.append(result)
                results.sort(key=lambda row: STORAGES.index(row["storage"]))
                report["modes"][mode] = {"workers": args.workers,
                                         "trials_per_worker": args.trials_per_worker,
                                         "results": results}
                atomic_write_json(out, report)  # after each storage: a long run keeps its figures
                print(f"  {result['trials_finished']}/{result['budget']} trials in "
                      f"{result['wall_s']} s: {result['trials_per_s']} trials/s "
                      f"({result['steady_trials_per_s']} in steady state), "
                      f"{result['failed_trials']} failed trials, "
                      f"{result['workers_with_errors']} workers exited with an error, "
                      f"{result['storage_error_lines']} storage error lines", flush=True)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
