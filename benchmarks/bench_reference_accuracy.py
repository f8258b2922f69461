"""Reference accuracies with their noise ceiling: the long trainings that every rank-fidelity
measurement of the supernet issue is scored against.

Genomes: the 16 random genomes of ``results/rank_fidelity_default.json`` (already trained
15 epochs with seed 0) and 16 more drawn from the multiply-add window where the search has to
choose (360-440 M at 224 px, 3 channels, 1000 classes: the figure the committed rows hold).
Every genome gets the 15-epoch reference training (the default proxy's settings, 5x the
epochs) with seeds 0 and 1, and the window genomes also the default 3-epoch proxy and
naswot. The Spearman correlation between the two reference seeds is the ceiling no cheap
score can be expected to beat.

    python3 benchmarks/bench_reference_accuracy.py [--workers 2]

Each finished training is written at once to ``results/reference_accuracy.json``; the same
command again continues with what is missing, so a killed run loses at most the trainings
in flight. Items run in the order that makes partial results useful soonest: both seeds of
each window genome, then the window's cheap scores (minutes, and they complete the
within-window comparison), then the second seed of the committed genomes (hours).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_proxy.py

import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench_rank_fidelity import score_or_none, start_worker  # noqa: E402
from commit_results import commit_results  # noqa: E402
from nas.common import atomic_write_json  # noqa: E402
from nas.evaluators import PROXY_DEFAULTS, make_evaluator  # noqa: E402
from space import Genome, SearchSpace, cost  # noqa: E402
from space.search_space import MBCONV_SPACE_PATH  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WINDOW = (360e6, 440e6)
WINDOW_GENOMES = 16
WINDOW_DRAW_SEED = 1  # the committed genomes were drawn with seed 0
PROXY_EPOCHS = PROXY_DEFAULTS["epochs"]
LONG_EPOCHS = 5 * PROXY_EPOCHS
SEEDS = (0, 1)


def window_genomes() -> list[Genome]:
    """The first ``WINDOW_GENOMES`` uniformly random genomes of the default space whose
    multiply-adds at 224 px fall in the window (rejection sampling: deterministic)."""
    # The default space before issue 20 added conv and skip ops: a resumed run must draw
    # the genomes its finished trainings were made for.
    space = SearchSpace.from_file(MBCONV_SPACE_PATH)
    rng, found = random.Random(WINDOW_DRAW_SEED), []
    while len(found) < WINDOW_GENOMES:
        genome = space.random_genome(rng, name=f"window-{len(found)}")
        if WINDOW[0] <= cost(genome).flops <= WINDOW[1]:
            found.append(genome)
    return found


def planned_items(committed: list[dict]) -> list[tuple[str, str, int, dict]]:
    """(key, kind, seed, genome json) in the order they are run; key = genome@kind@seed."""
    window = [(genome.name, genome.to_dict()) for genome in window_genomes()]
    old = [(row["genome"], row["genome_json"]) for row in committed]
    items = [(name, "long", seed, genome) for name, genome in window for seed in SEEDS]
    items += [(name, kind, 0, genome) for name, genome in window for kind in ("naswot", "proxy")]
    items += [(name, "long", 1, genome) for name, genome in old]
    return [(f"{name}@{kind}@{seed}", kind, seed, genome) for name, kind, seed, genome in items]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=str(RESULTS / "rank_fidelity_default.json"))
    parser.add_argument("--workers", type=int, default=2,
                        help="trainings at once, each in a single-thread process")
    parser.add_argument("--out", default=str(RESULTS / "reference_accuracy.json"))
    parser.add_argument("--commit", action="store_true",
                        help="commit --out to git after each training (a failure warns)")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    reference = json.loads(Path(args.reference).read_text())
    if not reference.get("complete") or reference["long"]["epochs"] != LONG_EPOCHS:
        parser.error(f"{args.reference} is not a finished {LONG_EPOCHS}-epoch reference run")
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    scores = previous.get("scores", {})
    for row in reference["rows"]:  # seed 0 of the committed genomes is already measured
        scores.setdefault(f"{row['genome']}@long@0",
                          {"accuracy": row["long"], "seconds": row["long_seconds"]})
        scores.setdefault(f"{row['genome']}@proxy@0",
                          {"accuracy": row["proxy"], "seconds": row["proxy_seconds"]})
        scores.setdefault(f"{row['genome']}@naswot@0",
                          {"accuracy": row["naswot"], "seconds": row["naswot_seconds"]})
    items = planned_items(reference["rows"])
    genomes = {key.split("@")[0]: genome for key, _, _, genome in items}
    pending = [item for item in items if item[0] not in scores]
    progress = tqdm(total=len(items), initial=len(items) - len(pending), unit="training",
                    desc="reference accuracy", dynamic_ncols=True)
    threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"),
                             initializer=start_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(score_item, kind, seed, genome): key
                   for key, kind, seed, genome in pending}
        for future in as_completed(futures):
            scores[futures[future]] = future.result()
            summary = summarize(reference, genomes, scores)
            atomic_write_json(out, summary)
            if args.commit:
                commit_results([out], f"Reference accuracies: {futures[future]} "
                               f"({progress.n + 1} of {len(items)}; the same command resumes)",
                               Path(__file__).resolve().parents[1])
            progress.set_postfix(last=futures[future], ceiling=summary["noise_ceiling"]["spearman"])
            progress.update(1)
    progress.close()
    summary = summarize(reference, genomes, scores)
    atomic_write_json(out, summary)
    print(json.dumps({k: summary[k] for k in ("noise_ceiling", "complete")}, indent=1))
    print(f"wrote {out}")
    return 0


_EVALUATORS: dict = {}  # per (kind, seed) in each worker: decoding the dataset is not free


def score_item(kind: str, seed: int, genome_json: dict) -> dict:
    if (kind, seed) not in _EVALUATORS:
        options = {"naswot": {}, "proxy": {"epochs": PROXY_EPOCHS},
                   "long": {"epochs": LONG_EPOCHS}}[kind]
        _EVALUATORS[kind, seed] = make_evaluator(
            "naswot" if kind == "naswot" else "proxy-train", seed=seed,
            subset=PROXY_DEFAULTS["subset"], val_size=PROXY_DEFAULTS["val_size"], **options)
    started = time.perf_counter()
    value = score_or_none(_EVALUATORS[kind, seed], Genome.from_dict(genome_json))
    return {"accuracy": value, "seconds": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]}


def summarize(reference: dict, genomes: dict, scores: dict) -> dict:
    def value(name: str, kind: str, seed: int):
        entry = scores.get(f"{name}@{kind}@{seed}")
        return None if entry is None else entry["accuracy"]

    both = [name for name in genomes
            if all(value(name, "long", seed) is not None for seed in SEEDS)]
    rho = (float(spearmanr([value(n, "long", 0) for n in both],
                           [value(n, "long", 1) for n in both]).statistic)
           if len(both) > 2 else None)
    flops = {name: cost(Genome.from_dict(genome)).flops for name, genome in genomes.items()}
    rows = [{"genome": name, "flops_224": flops[name],
             "in_window": WINDOW[0] <= flops[name] <= WINDOW[1], "genome_json": genome,
             **{f"long_seed{seed}": value(name, "long", seed) for seed in SEEDS},
             "proxy": value(name, "proxy", 0), "naswot": value(name, "naswot", 0)}
            for name, genome in genomes.items()]
    planned = [f"{name}@{kind}@{seed}" for name in genomes
               for kind, seed in [("long", s) for s in SEEDS] + [("proxy", 0), ("naswot", 0)]]
    return {"benchmark": "15-epoch reference accuracies of 32 genomes under two seeds "
                         "(Fashion-MNIST validation accuracy) and their noise ceiling",
            "reference_settings": reference["long"], "proxy_settings": reference["proxy"],
            "window_multiply_adds_224": list(WINDOW),
            "noise_ceiling": {"spearman": None if rho is None else round(rho, 4),
                              "genomes": len(both)},
            "complete": all(key in scores for key in planned),
            "machine": {"cores": os.cpu_count(), "torch": str(torch.__version__)},
            "rows": rows, "scores": scores}


if __name__ == "__main__":
    sys.exit(main())
