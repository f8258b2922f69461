"""Search benchmarks of issue 5, each printed and written to benchmarks/results/search.json:

  readme-command  the README's first command (`nas search --target-flops 400M`, nothing
              else) in a fresh runs folder: wall time (target < 20 min on 2 CPU cores),
              trials, and the best genome's multiply-adds against the target (within 10%)
  zero-cost   300 trials of `nas search --evaluator naswot` on 2 CPU cores (target < 3 min)
  samplers    TPE against random sampling at equal budget, several seeds: best reward
              reached after N evaluated trials (median and spread)
  baselines   the best genome of the default search against EfficientNet-B0 and
              MnasNet-A1, all trained by the same default proxy protocol

Usage: python3 benchmarks/bench_search.py readme-command|zero-cost|samplers|baselines [options]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from nas.evaluators import PROXY_DEFAULTS, make_evaluator
from nas.run import RunFolder
from nas.search import SearchConfig, run_search
from space import Genome, cost, presets

RESULTS = Path(__file__).parent / "results" / "search.json"


def save(section: str, data: dict) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[section] = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch "
                                   f"threads, {platform.python_version()}",
                        "when": time.strftime("%Y-%m-%d %H:%M"), **data}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def readme_command(args) -> None:
    target = 400e6
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "nas", "search", "--target-flops", "400M"]
        started = time.perf_counter()
        # The README runs it from the repository root; only the runs folder is redirected,
        # through the working directory, so that the command line stays the README's.
        done = subprocess.run(command, cwd=runs, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"the README command failed ({done.returncode}): {done.stderr[-2000:]}")
        (run_dir,) = Path(runs, "runs").iterdir()
        best_genome = Genome.from_json(RunFolder(run_dir).best_json)
        rows = list(csv.DictReader(RunFolder(run_dir).trials_csv.open()))
        selection = json.loads(RunFolder(run_dir).selection_json.read_text())
    # reference networks (EfficientNet-B0, MnasNet-A1) have rewards too but are never the best
    searched = [row for row in rows if "reference network" not in row["note"]]
    best = max((row for row in searched if row["reward"]), key=lambda row: float(row["reward"]))
    assert json.loads(best["genome"])["stages"] == best_genome.to_dict()["stages"]
    flops = int(best["flops"])  # at 224 px, for Fashion-MNIST's 1 channel and 10 classes
    # "not evaluated": outside the cost window; "not trained": below the prescreen's bar
    kinds = {"screened": "not evaluated", "prescreened": "not trained",
             "reference": "reference network"}
    states = {kind: sum(marker in row["note"] for row in rows) for kind, marker in kinds.items()}
    states.update({state: sum(row["state"] == state and not any(
        marker in row["note"] for marker in kinds.values()) for row in rows)
        for state in ("COMPLETE", "PRUNED", "FAIL")})
    summary = [line for line in done.stdout.splitlines() if line.strip()][-12:]
    print("\n".join(summary))
    print(f"README command: {seconds / 60:.1f} min wall, best {flops / 1e6:.1f}M multiply-adds "
          f"({100 * (flops - target) / target:+.1f}% of the target), trials {states}")
    save("readme_command", {"command": "nas search --target-flops 400M",
                            "wall_seconds": round(seconds, 1), "trials_by_state": states,
                            "best_multiply_adds": flops,
                            "best_accuracy": float(best["accuracy"]),
                            "best_reward": float(best["reward"]),
                            "deviation_from_target": round((flops - target) / target, 4),
                            "references": {
                                row["note"].split(";")[0].removeprefix("reference network "):
                                    {"accuracy": float(row["accuracy"]),
                                     "reward": float(row["reward"])}
                                for row in rows if row not in searched and row["reward"]},
                            "selection": selection,
                            "summary_tail": summary})


def zero_cost(args) -> None:
    with tempfile.TemporaryDirectory() as runs:
        started = time.perf_counter()
        result = run_search(SearchConfig(target=400e6, evaluator="naswot", n_trials=args.trials,
                                         runs_dir=runs, study="zc", quiet=True,
                                         references="none"))
        seconds = time.perf_counter() - started
    print(f"{args.trials} naswot trials: {seconds:.1f} s wall ({result.counts})")
    save("zero_cost", {"trials": args.trials, "wall_seconds": round(seconds, 1),
                       "counts": result.counts,
                       "best_reward": result.best.user_attrs["reward"]})


def samplers(args) -> None:
    rows = {}
    for sampler in ("tpe", "random"):
        bests = []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as runs:
                result = run_search(SearchConfig(
                    target=400e6, evaluator=args.evaluator, n_trials=args.trials, seed=seed,
                    sampler=sampler, runs_dir=runs, study="q", quiet=True,
                    references="none"))
            bests.append(result.best.user_attrs["reward"])
            print(f"{sampler} seed {seed}: best reward {bests[-1]:.4f} after {args.trials} trials")
        rows[sampler] = {"best_rewards": bests, "median": statistics.median(bests),
                         "min": min(bests), "max": max(bests)}
    for sampler, row in rows.items():
        print(f"{sampler:6s} median {row['median']:.4f}  range {row['min']:.4f}..{row['max']:.4f}")
    save("samplers", {"evaluator": args.evaluator, "trials": args.trials, "seeds": args.seeds,
                      "target_flops": 400e6, **rows})


def baselines(args) -> None:
    evaluator = make_evaluator("proxy-train", quiet=False)
    genomes = {"searched": Genome.from_json(args.best),
               "efficientnet-b0": presets.get("efficientnet-b0"),
               "mnasnet-a1": presets.get("mnasnet-a1")}
    rows = {}
    for name, genome in genomes.items():
        started = time.perf_counter()
        accuracy = evaluator.evaluate(genome)
        madds = cost(genome, 224, evaluator.num_classes, evaluator.in_channels).flops
        rows[name] = {"proxy_val_accuracy": accuracy, "multiply_adds_224": madds,
                      "params": cost(genome, 224, evaluator.num_classes, evaluator.in_channels).params,
                      "seconds": round(time.perf_counter() - started, 1)}
        print(f"{name:16s} accuracy {accuracy:.4f}  multiply-adds {madds / 1e6:.1f}M  "
              f"({rows[name]['seconds']} s)")
    save("baselines", {"protocol": {**PROXY_DEFAULTS, "evaluator": "proxy-train"},
                       "best_json": str(args.best), **rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("readme-command")
    p.set_defaults(run=readme_command)
    p = sub.add_parser("zero-cost")
    p.add_argument("--trials", type=int, default=300)
    p.set_defaults(run=zero_cost)
    p = sub.add_parser("samplers")
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--evaluator", default="naswot")
    p.set_defaults(run=samplers)
    p = sub.add_parser("baselines")
    p.add_argument("--best", default="runs/fashion-mnist-400M-proxy-train/best.json")
    p.set_defaults(run=baselines)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
