"""Which proxy settings rank genomes best for their cost?

Takes the genomes of a finished rank-fidelity run (benchmarks/bench_rank_fidelity.py,
default ``results/rank_fidelity_default.json``) and their 5x-longer-training accuracies,
trains each genome again under other proxy settings, and prints every setting's Spearman
correlation with the long training, with the default proxy's ranking, and its seconds per
genome. The long training is reused, not repeated: it is the costly part (5x the proxy).

A setting is ``key=value`` pairs joined by commas, from ``epochs``, ``subset``,
``resolution``, ``batch_size``, ``seed`` (data split, subset and initialisation) and ``lr``;
what a setting leaves out is the reference proxy's. ``seed=1`` alone measures how much of
the default proxy's ranking is seed noise.

    python3 benchmarks/bench_proxy_settings.py --settings seed=1 epochs=1,subset=30000 [--workers 2]

The results file (``results/proxy_settings.json``) is written after every genome; the same
command again continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
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
from nas.common import atomic_write_json, format_table  # noqa: E402
from nas.evaluators import PROXY_DEFAULTS, make_evaluator  # noqa: E402
from nas.train import TrainConfig  # noqa: E402
from space import Genome  # noqa: E402

RESULTS = Path(__file__).parent / "results"
INTEGER_KEYS = ("epochs", "subset", "resolution", "batch_size", "seed")


def parse_setting(text: str) -> dict:
    setting = {}
    for pair in text.split(","):
        key, separator, value = pair.partition("=")
        if not separator or key not in INTEGER_KEYS + ("lr",):
            raise ValueError(f"{pair!r}: expected key=value with key one of "
                             f"{', '.join(INTEGER_KEYS + ('lr',))}")
        setting[key] = float(value) if key == "lr" else int(value)
    return setting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=str(RESULTS / "rank_fidelity_default.json"))
    parser.add_argument("--settings", nargs="+", required=True,
                        help="e.g. seed=1 epochs=1,subset=30000")
    parser.add_argument("--workers", type=int, default=2,
                        help="genomes trained at once, each in a single-thread process")
    parser.add_argument("--out", default=str(RESULTS / "proxy_settings.json"))
    args = parser.parse_args()
    args.reference = os.path.relpath(args.reference)  # the results file is committed
    try:
        changes = {text: parse_setting(text) for text in args.settings}
    except ValueError as error:
        parser.error(str(error))
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    reference = json.loads(Path(args.reference).read_text())
    if not reference.get("complete"):
        parser.error(f"{args.reference} is not a finished rank-fidelity run")
    # lr is left out of the base so that a changed batch size gets its own default lr
    base = {key: reference["proxy"][key] for key in INTEGER_KEYS + ("val_size",)}
    settings = {text: {**base, **change} for text, change in changes.items()}
    rows = reference["rows"]
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    if previous and previous.get("reference") != args.reference:
        parser.error(f"{out} was measured against {previous.get('reference')}; pass --out")
    scores = previous.get("scores", {})  # setting -> genome -> {"accuracy", "seconds"}
    jobs = [(text, row) for text in settings for row in rows
            if row["genome"] not in scores.get(text, {})]
    threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
    total = len(settings) * len(rows)
    progress = tqdm(total=total, initial=total - len(jobs),
                    unit="genome", desc="proxy settings", dynamic_ncols=True)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"),
                             initializer=start_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(train_under, settings[text], row["genome_json"]): (text, row)
                   for text, row in jobs}
        for future in as_completed(futures):
            text, row = futures[future]
            scores.setdefault(text, {})[row["genome"]] = future.result()
            summary = summarize(args.reference, reference, base, scores)
            atomic_write_json(out, summary)
            progress.set_postfix(setting=text, rho=summary["settings"][text]["spearman_vs_long"])
            progress.update(1)
    progress.close()
    summary = summarize(args.reference, reference, base, scores)
    atomic_write_json(out, summary)
    table = [["reference: " + _describe(base), reference["correlations"]["proxy"]["spearman"], 1.0,
              reference["mean_seconds_per_genome"]["proxy"], len(rows)]]
    table += [[_describe(entry["setting"]), entry["spearman_vs_long"],
               entry["spearman_vs_reference_proxy"], entry["mean_seconds"], entry["genomes"]]
              for text, entry in summary["settings"].items()]
    print(format_table(["proxy", "rho vs 5x longer", "rho vs reference proxy", "s/genome",
                        "genomes"], table))
    print(f"wrote {out}")


def _describe(setting: dict) -> str:
    text = f"{setting['epochs']} ep x {setting['subset']} img @ {setting['resolution']} px"
    shown = ("epochs", "subset", "resolution", "val_size")
    return text + "".join(f", {key} {value}" for key, value in setting.items()
                          if key not in shown and value != PROXY_DEFAULTS.get(key, 0))


_EVALUATORS: dict = {}  # one per setting in each worker: decoding the dataset is not free


def train_under(setting: dict, genome_json: dict) -> dict:
    key = json.dumps(setting, sort_keys=True)
    if key not in _EVALUATORS:
        options = {k: v for k, v in setting.items() if k != "lr"}
        config = dataclasses.replace(TrainConfig(), lr=setting["lr"]) if "lr" in setting else None
        _EVALUATORS[key] = make_evaluator("proxy-train", train_config=config, **options)
    started = time.perf_counter()
    accuracy = score_or_none(_EVALUATORS[key], Genome.from_dict(genome_json))
    return {"accuracy": accuracy, "seconds": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads()}


def summarize(reference_path: str, reference: dict, base: dict, scores: dict) -> dict:
    long = {row["genome"]: row["long"] for row in reference["rows"]}
    default = {row["genome"]: row["proxy"] for row in reference["rows"]}
    summary = {}
    for text, by_genome in scores.items():
        scored = [name for name, entry in by_genome.items()
                  if entry["accuracy"] is not None and long[name] is not None]
        accuracies = [by_genome[name]["accuracy"] for name in scored]

        def rho(against: dict) -> float | None:
            if len(scored) < 3:
                return None
            value = float(spearmanr(accuracies, [against[name] for name in scored]).statistic)
            return round(value, 4) if math.isfinite(value) else None  # null: NaN is not JSON

        summary[text] = {"setting": {**base, **parse_setting(text)},
                         "genomes": len(scored),
                         "spearman_vs_long": rho(long), "spearman_vs_reference_proxy": rho(default),
                         "mean_seconds": round(sum(e["seconds"] for e in by_genome.values())
                                               / len(by_genome), 1),
                         "accuracy_range":
                             [min(accuracies), max(accuracies)] if accuracies else None}
    return {"benchmark": "Spearman rank correlation of other proxy settings with the reference "
                         "run's 5x longer training (Fashion-MNIST validation accuracy)",
            "reference": reference_path, "reference_long": reference["long"],
            "machine": {"cores": os.cpu_count(), "torch": str(torch.__version__),
                        "load_average_after": os.getloadavg()},
            "settings": summary, "scores": scores}


if __name__ == "__main__":
    sys.exit(main())
