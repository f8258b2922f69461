"""Rank fidelity: do cheap scores order genomes the way longer training does?

Random genomes of ``SearchSpace.default()`` are scored by (a) the proxy training, (b) a
training 5x longer (5x the epochs on the same images, same optimiser and schedule
shape) and (c) each zero-cost proxy. Prints the Spearman rank correlation of every cheap
score with the longer training's validation accuracy and writes
benchmarks/results/rank_fidelity.json.

The CPU is shared and each genome costs 6 proxy trainings, so by default the proxy here
is smaller than the search's default (1 epoch instead of 3 on 10,000 images); pass
``--subset 10000 --epochs 3 --out benchmarks/results/rank_fidelity_default.json`` to
measure the default proxy itself (about 16 x 20 minutes on 2 cores).

    python3 benchmarks/bench_rank_fidelity.py [--genomes 16] [--subset 5000] [--epochs 1]

The results file is written after every genome; the same command again continues.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_proxy.py

import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from nas.common import atomic_write_json, format_count, format_table  # noqa: E402
from nas.evaluators import EVALUATORS, EvaluationFailed, make_evaluator  # noqa: E402
from space import SearchSpace, cost  # noqa: E402

ZERO_COST = [name for name in EVALUATORS if name != "proxy-train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genomes", type=int, default=16)
    parser.add_argument("--subset", type=int, default=5000, help="training images")
    parser.add_argument("--epochs", type=int, default=1, help="proxy epochs (long run: 5x)")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "rank_fidelity.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = SearchSpace.default()
    rng = random.Random(args.seed)
    genomes = [space.random_genome(rng, name=f"random-{index}") for index in range(args.genomes)]

    common = {"subset": args.subset, "val_size": args.val_size, "seed": args.seed}
    proxy = make_evaluator("proxy-train", epochs=args.epochs, **common)
    longer = make_evaluator("proxy-train", epochs=5 * args.epochs, **common)
    zero_cost = {name: make_evaluator(name, val_size=args.val_size, seed=args.seed)
                 for name in ZERO_COST}

    out = Path(args.out)
    settings = json.loads(json.dumps({  # as the file holds them, to compare with it
        "proxy": proxy.settings(), "long": longer.settings(),
        "zero_cost": {name: evaluator.settings() for name, evaluator in zero_cost.items()}}))
    # Written after every genome; a rerun with the same settings continues where it stopped.
    previous = json.loads(out.read_text()) if out.exists() else {}
    if previous.get("rows") and any(previous.get(k) != v for k, v in settings.items()):
        print(f"bench_rank_fidelity: error: {out} holds a run with other settings; pass --out "
              "for this one (e.g. benchmarks/results/rank_fidelity_default.json)", file=sys.stderr)
        sys.exit(2)
    rows = previous.get("rows", [])
    started = time.perf_counter() - previous.get("wall_seconds", 0) if rows else time.perf_counter()
    for index, genome in enumerate(genomes):
        if index < len(rows):
            continue
        row = {"genome": genome.name, "flops_224": cost(genome).flops,
               "genome_json": genome.to_dict()}
        for name, evaluator in zero_cost.items():
            timer = time.perf_counter()
            row[name] = _score(evaluator, genome)
            row[f"{name}_seconds"] = round(time.perf_counter() - timer, 3)
        for key, evaluator in (("proxy", proxy), ("long", longer)):
            timer = time.perf_counter()
            row[key] = _score(evaluator, genome)
            row[f"{key}_seconds"] = round(time.perf_counter() - timer, 1)
        rows.append(row)
        print(f"[{index + 1}/{len(genomes)}, {time.perf_counter() - started:.0f} s] "
              f"{format_count(row['flops_224'])} multiply-adds: proxy {row['proxy']}, "
              f"long {row['long']}, " + ", ".join(f"{n} {row[n]}" for n in ZERO_COST), flush=True)
        result = summarize(rows, settings, started, complete=len(rows) == len(genomes))
        atomic_write_json(out, result)
    print()
    print(format_table(["score", "Spearman vs 5x longer training", "genomes"],
                       [[key, f"{value['spearman']:+.3f}", value["genomes"]]
                        for key, value in result["correlations"].items()]))
    print("mean seconds per genome: " + ", ".join(
        f"{k} {v}" for k, v in result["mean_seconds_per_genome"].items()))
    print(f"wrote {out}")


def summarize(rows: list[dict], settings: dict, started: float, *, complete: bool) -> dict:
    correlations = {}
    for key in ["proxy"] + ZERO_COST + ["flops_224"]:
        pairs = [(row[key], row["long"]) for row in rows
                 if row[key] is not None and row["long"] is not None]
        rho = spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic \
            if len(pairs) > 2 else float("nan")
        correlations[key] = {"spearman": round(float(rho), 4), "genomes": len(pairs)}
    seconds = {key: round(sum(row[f"{key}_seconds"] for row in rows) / len(rows), 3)
               for key in ["proxy", "long"] + ZERO_COST}
    return {
        "benchmark": "Spearman rank correlation with a 5x longer training (Fashion-MNIST "
                     "validation accuracy)",
        **settings, "complete": complete,
        "correlations": correlations, "mean_seconds_per_genome": seconds,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": str(torch.__version__),
                    "load_average_after": os.getloadavg()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


def _score(evaluator, genome):
    try:
        return round(evaluator.evaluate(genome), 6)
    except EvaluationFailed as error:
        print(f"  {evaluator.name} failed on {genome.name}: {error}")
        return None


if __name__ == "__main__":
    main()
