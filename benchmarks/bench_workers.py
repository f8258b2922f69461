"""Load benchmark: many `nas search` workers on one study, per storage.

8 worker processes share one study with a budget of 8 x 200 zero-cost (naswot) trials, on
PostgreSQL (a throw-away server on 127.0.0.1, as in the tests), SQLite and a journal file.
Each worker stops at the budget or after --time-limit seconds, whichever comes first.
Reported per storage: trials finished, trials per second over the whole run (start-up
included) and in steady state (first trial start to last trial end), failed trials, workers
that exited with an error, and storage errors in their logs ("database is locked" and the
like).

    python3 benchmarks/bench_workers.py                   # all three, ~5 minutes each at most
    python3 benchmarks/bench_workers.py --storages sqlite --workers 4 --trials-per-worker 50

Writes benchmarks/results/workers.json. On a small machine the workers compete with each
other (and with anything else running) for the CPU; the figures say how many cores there were.
"""

from __future__ import annotations

import argparse
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

# Storage trouble as the drivers word it; anything here in a worker's log is a failure.
STORAGE_ERRORS = re.compile(r"database is locked|OperationalError|IntegrityError|"
                            r"deadlock|could not serialize|Traceback", re.IGNORECASE)


def run_storage(kind: str, url: str, *, workers: int, n_trials: int, time_limit: float,
                folder: Path) -> dict:
    runs = folder / kind
    runs.mkdir()
    command = [sys.executable, "-m", "nas", "search", "--target-flops", "400M",
               "--evaluator", "naswot", "--proxy-subset", "64", "--proxy-resolution", "16",
               "--cost-window", "0", "--n-trials", str(n_trials), "--study", "load",
               "--storage", url, "--runs", str(runs), "--timeout", str(time_limit), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    logs = [runs / f"worker{i}.log" for i in range(workers)]
    started = time.monotonic()
    with ExitStack() as stack:
        processes = [subprocess.Popen(command, cwd=runs, env=env, stdout=subprocess.DEVNULL,
                                      stderr=stack.enter_context(open(log, "w")))
                     for log in logs]
        codes = []
        for process in processes:
            try:
                codes.append(process.wait(timeout=max(1.0, started + time_limit + 180 - time.monotonic())))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
    wall = time.monotonic() - started
    study = optuna.load_study(study_name="load", storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    error_lines = [line.strip() for log in logs for line in log.read_text().splitlines()
                   if STORAGE_ERRORS.search(line)]
    steady = None
    if complete:
        first = min(t.datetime_start for t in trials if t.datetime_start)
        last = max(t.datetime_complete for t in complete)
        steady = len(complete) / max(1e-9, (last - first).total_seconds())
    return {
        "storage": kind, "url": mask_url(url).replace(str(folder), "<tmp>"),
        "budget": n_trials, "trials_finished": len(complete),
        "budget_used": budget_used(trials), "budget_reached": budget_used(trials) >= n_trials,
        "trials_recorded": len(trials), "failed_trials": len(failed),
        "failed_with_reason": sum("fail_reason" in t.user_attrs for t in failed),
        "over_budget_pruned": sum(t.state == TrialState.PRUNED and "over_budget" in t.user_attrs
                                  for t in trials),
        "left_running": sum(t.state == TrialState.RUNNING for t in trials),
        "workers_with_errors": sum(code != 0 for code in codes), "exit_codes": codes,
        "storage_error_lines": len(error_lines), "storage_error_examples": error_lines[:5],
        "wall_s": round(wall, 1),
        "trials_per_s": round(len(complete) / wall, 2),
        "steady_trials_per_s": round(steady, 2) if steady else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials-per-worker", type=int, default=200)
    parser.add_argument("--time-limit", type=float, default=270,
                        help="seconds each worker may search (default 270)")
    parser.add_argument("--storages", default="postgresql,sqlite,journal")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "workers.json"))
    args = parser.parse_args()
    n_trials = args.workers * args.trials_per_worker
    results = []
    with tempfile.TemporaryDirectory(prefix="nas-bench-workers-") as temp:
        folder = Path(temp)
        for kind in args.storages.split(","):
            if kind not in ("postgresql", "sqlite", "journal"):
                parser.error(f"unknown storage {kind!r}; use postgresql, sqlite, journal")
            print(f"{kind}: {args.workers} workers x {args.trials_per_worker} trials ...",
                  flush=True)
            with ExitStack() as stack:
                url = {"postgresql": lambda: stack.enter_context(postgres_server()),
                       "sqlite": lambda: f"sqlite:///{folder / 'load.db'}",
                       "journal": lambda: f"journal:{folder / 'load.journal'}"}[kind]()
                result = run_storage(kind, url, workers=args.workers, n_trials=n_trials,
                                     time_limit=args.time_limit, folder=folder)
            results.append(result)
            print(f"  {result['trials_finished']}/{n_trials} trials in {result['wall_s']} s: "
                  f"{result['trials_per_s']} trials/s ({result['steady_trials_per_s']} in "
                  f"steady state), {result['failed_trials']} failed trials, "
                  f"{result['workers_with_errors']} workers exited with an error, "
                  f"{result['storage_error_lines']} storage error lines", flush=True)
    atomic_write_json(args.out, {
        "benchmark": "bench_workers.py: N `nas search` workers, one study, naswot evaluator "
                     "on 64 Fashion-MNIST images at 16 px, --cost-window 0",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "optuna": optuna.__version__, "platform": platform.platform()},
        "workers": args.workers, "trials_per_worker": args.trials_per_worker,
        "time_limit_s": args.time_limit, "results": results})
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
