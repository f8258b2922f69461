"""Rank fidelity: do cheap scores order genomes the way longer training does?

Random genomes of ``SearchSpace.default()`` are scored by (a) the proxy training, (b) a
training 5x longer (5x the epochs on the same images, same optimiser and schedule
shape) and (c) each zero-cost proxy. Prints the Spearman rank correlation of every cheap
score with the longer training's validation accuracy and writes
benchmarks/results/rank_fidelity.json.

The CPU is shared and each genome costs 6 proxy trainings, so by default the proxy here
is smaller than the search's default (1 epoch instead of 3 on 10,000 images); pass
``--subset 10000 --epochs 3 --out benchmarks/results/rank_fidelity_default.json`` to
measure the default proxy itself. ``--workers 2`` scores two genomes at once in
single-thread processes, which on 2 cores gets more images/second out of these small
networks than one 2-thread process.

    python3 benchmarks/bench_rank_fidelity.py [--genomes 16] [--subset 5000] [--epochs 1] [--workers 2]

The results file is written after every genome; the same command again continues.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_proxy.py

import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from tqdm import tqdm  # noqa: E402

from nas.common import atomic_write_json, die_with_parent, format_count, format_table  # noqa: E402
from nas.evaluators import EVALUATORS, EvaluationFailed, make_evaluator  # noqa: E402
from space import SearchSpace, cost  # noqa: E402
from space.search_space import MBCONV_SPACE_PATH  # noqa: E402

ZERO_COST = [name for name in EVALUATORS if name != "proxy-train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genomes", type=int, default=16)
    parser.add_argument("--subset", type=int, default=5000, help="training images")
    parser.add_argument("--epochs", type=int, default=1, help="proxy epochs (long run: 5x)")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: cores / --workers)")
    parser.add_argument("--workers", type=int, default=1,
                        help="genomes scored at once, each in its own process (default 1)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "rank_fidelity.json"))
    args = parser.parse_args()
    if args.workers < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--workers and --threads must be >= 1")
    threads = args.threads or max(1, len(os.sched_getaffinity(0)) // args.workers)
    torch.set_num_threads(threads)
    # The space the recorded results were drawn from (the default before issue 20 added
    # conv and skip ops), so that a seed names the same genomes as in the results file.
    space = SearchSpace.from_file(MBCONV_SPACE_PATH)
    rng = random.Random(args.seed)
    genomes = [space.random_genome(rng, name=f"random-{index}") for index in range(args.genomes)]

    scorer_args = (args.subset, args.epochs, args.val_size, args.seed, threads)
    start_scorer(*scorer_args)
    out = Path(args.out)
    settings = json.loads(json.dumps({  # as the file holds them, to compare with it
        "proxy": _SCORER["proxy"].settings(), "long": _SCORER["long"].settings(),
        "zero_cost": {name: evaluator.settings()
                      for name, evaluator in _SCORER["zero_cost"].items()}}))
    # Written after every genome; a rerun with the same settings continues where it stopped.
    previous = json.loads(out.read_text()) if out.exists() else {}
    if previous.get("rows") and any(previous.get(k) != v for k, v in settings.items()):
        print(f"bench_rank_fidelity: error: {out} holds a run with other settings; pass --out "
              "for this one (e.g. benchmarks/results/rank_fidelity_default.json)", file=sys.stderr)
        sys.exit(2)
    rows = previous.get("rows", [])
    done = {row["genome"] for row in rows}
    pending = [genome for genome in genomes if genome.name not in done]
    order = {genome.name: index for index, genome in enumerate(genomes)}
    started = time.perf_counter() - previous.get("wall_seconds", 0) if rows else time.perf_counter()
    progress = tqdm(total=len(genomes), initial=len(genomes) - len(pending), unit="genome",
                    desc="rank fidelity", dynamic_ncols=True)
    for row in _score_all(pending, args.workers, scorer_args):
        rows.append(row)
        rows.sort(key=lambda r: order[r["genome"]])
        progress.write(f"{row['genome']}, {format_count(row['flops_224'])} multiply-adds: proxy "
                       f"{row['proxy']}, long {row['long']}, "
                       + ", ".join(f"{n} {row[n]}" for n in ZERO_COST))
        summary = summarize(rows, settings, started, complete=len(rows) == len(genomes))
        atomic_write_json(out, summary)
        progress.set_postfix(proxy_rho=summary["correlations"]["proxy"]["spearman"],
                             last_s=row["proxy_seconds"] + row["long_seconds"])
        progress.update(1)
    progress.close()
    result = summarize(rows, settings, started, complete=True)
    print()
    print(format_table(["score", "Spearman vs 5x longer training", "genomes"],
                       [[key, "n/a" if value["spearman"] is None else f"{value['spearman']:+.3f}",
                         value["genomes"]]
                        for key, value in result["correlations"].items()]))
    print("mean seconds per genome: " + ", ".join(
        f"{k} {v}" for k, v in result["mean_seconds_per_genome"].items()))
    print(f"wrote {out}")


def start_worker(threads: int) -> None:
    """A benchmark's worker process: dies with its parent, uses ``threads`` threads."""
    die_with_parent()
    torch.set_num_threads(threads)


# The evaluators of this process, made once by start_scorer (in every worker, too).
_SCORER: dict = {}


def start_scorer(subset: int, epochs: int, val_size: int, seed: int, threads: int,
                 worker: bool = False) -> None:
    if worker:
        start_worker(threads)
    torch.set_num_threads(threads)
    common = {"subset": subset, "val_size": val_size, "seed": seed}
    _SCORER.update(
        proxy=make_evaluator("proxy-train", epochs=epochs, **common),
        long=make_evaluator("proxy-train", epochs=5 * epochs, **common),
        zero_cost={name: make_evaluator(name, val_size=val_size, seed=seed)
                   for name in ZERO_COST})


def score_genome(genome) -> dict:
    row = {"genome": genome.name, "flops_224": cost(genome).flops,
           "genome_json": genome.to_dict()}
    for name, evaluator in _SCORER["zero_cost"].items():
        timer = time.perf_counter()
        row[name] = score_or_none(evaluator, genome)
        row[f"{name}_seconds"] = round(time.perf_counter() - timer, 3)
    for key in ("proxy", "long"):
        timer = time.perf_counter()
        row[key] = score_or_none(_SCORER[key], genome)
        row[f"{key}_seconds"] = round(time.perf_counter() - timer, 1)
    row["threads"] = torch.get_num_threads()
    return row


def _score_all(genomes: list, workers: int, scorer_args: tuple) -> Iterator[dict]:
    """Rows as genomes finish: in this process, or in ``workers`` processes (several
    single-thread trainers beat one multi-thread trainer on these small networks)."""
    if workers == 1:
        yield from map(score_genome, genomes)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=start_scorer,
                             initargs=(*scorer_args, True)) as pool:
        for future in as_completed([pool.submit(score_genome, genome) for genome in genomes]):
            yield future.result()


def summarize(rows: list[dict], settings: dict, started: float, *, complete: bool) -> dict:
    correlations = {}
    for key in ["proxy"] + ZERO_COST + ["flops_224"]:
        pairs = [(row[key], row["long"]) for row in rows
                 if row[key] is not None and row["long"] is not None]
        rho = float(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic) \
            if len(pairs) > 2 else math.nan
        # null, not NaN: NaN is not JSON, and strict readers of the results file reject it
        correlations[key] = {"spearman": round(rho, 4) if math.isfinite(rho) else None,
                             "genomes": len(pairs)}
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


def score_or_none(evaluator, genome):
    try:
        return round(evaluator.evaluate(genome), 6)
    except EvaluationFailed as error:
        print(f"  {evaluator.name} failed on {genome.name}: {error}")
        return None


if __name__ == "__main__":
    main()
