"""Latency-table benchmarks of issue 21, each printed and written to
benchmarks/results/latency.json (one section per part, written as it finishes):

  build    table build time for the default space at 224 px (1 channel, 10 classes,
           batch 1), with torch eager on the CPU and with onnxruntime on the CPU, from
           an empty table each
  check    predictor accuracy on N random genomes of the space, the presets and
           EfficientNet B0..B3 (official table), measured whole: share within +-5% and
           +-10%, RMSE, Spearman; and the same networks' correlation of measured latency
           with multiply-adds, activations and parameters
  search   a latency-target search (target = EfficientNet-B0's measured latency here)
           against B0 itself: measured latency and proxy accuracy of both (same proxy,
           same seed)
  scale    the searched genome scaled to three latency budgets: predicted against
           measured per member
  repeat   the noise floor: the table's fit networks measured twice more, against each
           other, against the build's measurement and against the fitted line

Run each under the shared lock (`flock /tmp/nas-heavy.lock python3 benchmarks/bench_latency.py
build`). Tables are written to runs/latency-bench/ (git-ignored, machine-specific).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from nas.evaluators import make_evaluator
from nas.latency import (LatencyTable, Network, Predictor, TimingSettings, build_table,
                         check_networks, check_predictor, measure_networks)
from nas.latency.use import LatencyBudgets
from nas.search import SearchConfig, run_search
from scaling import family
from space import Genome, SearchSpace, cost, presets

RESULTS = Path(__file__).parent / "results" / "latency.json"
TABLES = Path("runs") / "latency-bench"
NUM_CLASSES, IN_CHANNELS = 10, 1


def save(section: str, data: dict) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[section] = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch "
                                   f"threads, {platform.python_version()}; load average "
                                   f"{os.getloadavg()[0]:.2f} when written",
                        "when": time.strftime("%Y-%m-%d %H:%M"), **data}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def table_file(backend: str) -> Path:
    return TABLES / f"{backend}.json"


def build(args) -> None:
    space = SearchSpace.default()
    rows = {}
    for backend in args.backends.split(","):
        path = table_file(backend)
        path.unlink(missing_ok=True)
        report = build_table(space, path=path,
                             settings=TimingSettings(backend=backend, threads=args.threads),
                             num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)
        rows[backend] = {"units": report.units_total, "networks": report.networks_measured,
                         "seconds": round(report.seconds, 1),
                         "measuring_seconds": round(report.table.build_seconds, 1),
                         "overhead": {"scale": report.table.overhead.scale,
                                      "offset_ms": 1e3 * report.table.overhead.offset},
                         "fingerprint": report.table.fingerprint}
        print(f"{backend}: {report.units_total} units + {report.networks_measured} networks "
              f"in {report.seconds:.0f} s")
    earlier = json.loads(RESULTS.read_text()).get("build", {}) if RESULTS.exists() else {}
    for backend, row in rows.items():
        row["command"] = f"bench_latency.py build --backends {backend} --threads {args.threads}"
    save("build", {"space": "default, 224 px, 1 channel, 10 classes, batch 1",
                   **{key: value for key, value in earlier.items()
                      if key not in ("machine", "when", "command")}, **rows})


def check(args) -> None:
    table = LatencyTable.load(table_file(args.backend))
    space = SearchSpace.default()
    networks = check_networks(space, space.resolution, random_count=args.random,
                              family_top=3, seed=args.seed, num_classes=NUM_CLASSES,
                              in_channels=IN_CHANNELS)
    result = check_predictor(table, networks)
    summary = result.summary
    print(json.dumps(summary, indent=2))
    rows = [{"network": r.label, "resolution": r.resolution, "predicted_ms": 1e3 * r.predicted,
             "measured_ms": 1e3 * r.measured, "spread": r.spread, "flops": r.flops,
             "activations": r.activations, "params": r.params} for r in result.rows]
    save(f"check_{args.backend}", {
        "command": f"bench_latency.py check --backend {args.backend} --random {args.random} "
                   f"--seed {args.seed}", "summary": summary, "rows": rows})


def search(args) -> None:
    table = LatencyTable.load(table_file("torch"))
    b0 = presets.get("efficientnet-b0")
    (b0_timing,) = measure_networks(
        [Network("efficientnet-b0", b0, b0.resolution, NUM_CLASSES, IN_CHANNELS)],
        table.settings)
    target = b0_timing.seconds
    runs = Path(args.runs)
    config = SearchConfig(target=target, metric="latency", evaluator=args.evaluator,
                          n_trials=args.n_trials, timeout=args.timeout, seed=args.seed,
                          cost_window=args.cost_window,
                          study=f"latency-b0-{args.evaluator}-w{args.cost_window:g}-s{args.seed}",
                          runs_dir=str(runs), latency_table=str(table_file("torch")),
                          references="none")  # B0 is measured whole above
    started = time.perf_counter()
    result = run_search(config)
    search_seconds = time.perf_counter() - started
    best = Genome.from_dict(result.best.user_attrs["genome"])
    evaluator = make_evaluator(args.evaluator, seed=args.seed)
    b0_accuracy = evaluator.evaluate(b0)
    # B0 and the searched genome timed together, interleaved, for a fair ratio.
    pair = measure_networks([Network("efficientnet-b0", b0, 224, NUM_CLASSES, IN_CHANNELS),
                             Network("searched", best, 224, NUM_CLASSES, IN_CHANNELS)],
                            table.settings)
    predictor = Predictor(table)
    rows = {}
    for name, genome, timing, accuracy in (("efficientnet-b0", b0, pair[0], b0_accuracy),
                                           ("searched", best, pair[1],
                                            result.best.user_attrs["accuracy"])):
        rows[name] = {"measured_ms": 1e3 * timing.seconds,
                      "predicted_ms": 1e3 * predictor.seconds(genome, 224, NUM_CLASSES,
                                                              IN_CHANNELS),
                      "score": accuracy, "evaluator": args.evaluator,
                      "flops": cost(genome, 224, NUM_CLASSES, IN_CHANNELS).flops,
                      "genome": genome.to_dict()}
    ratio = rows["searched"]["measured_ms"] / rows["efficientnet-b0"]["measured_ms"]
    print(json.dumps({k: {x: y for x, y in v.items() if x != "genome"}
                      for k, v in rows.items()}, indent=2), f"\nlatency ratio {ratio:.3f}")
    # one section per evaluator, so a proxy-trained search does not replace the zero-cost one
    save(f"search_{args.evaluator}", {
        "command": f"bench_latency.py search --evaluator {args.evaluator} --n-trials "
                   f"{args.n_trials} --timeout {args.timeout} --seed {args.seed} "
                   f"--cost-window {args.cost_window}",
        "target_ms": 1e3 * target, "search_seconds": round(search_seconds, 1),
        "counts": result.counts, "measured_top": result.latency_measured,
        "latency_ratio_searched_over_b0": ratio, **rows})


def scale(args) -> None:
    results = json.loads(RESULTS.read_text())
    searched = results[f"search_{args.search}"]["searched"]
    genome = Genome.from_dict(searched["genome"])
    base_ms = searched["predicted_ms"]
    budgets = ",".join(f"{factor * base_ms:.2f}ms" for factor in (1.5, 2.5, 4.0))
    started = time.perf_counter()
    plan = LatencyBudgets(genome, budgets, table=str(table_file("torch")), allow_foreign=False,
                          method=args.method, coefficients={}, num_classes=NUM_CLASSES,
                          in_channels=IN_CHANNELS)
    members = family(genome, plan.phis, args.method, num_classes=NUM_CLASSES,
                     in_channels=IN_CHANNELS)
    report = json.loads(plan.report(members))
    save(f"scale_{args.method}", {"command": f"bench_latency.py scale --method {args.method}",
                                  "budgets": budgets, "seconds": round(time.perf_counter() - started, 1),
                                  "members": report["members"]})


def repeat(args) -> None:
    """Noise floor: the table's own fit networks measured again, twice, minutes after the
    build; how far two measurements of one network lie apart, beside the fit's residuals."""
    table = LatencyTable.load(table_file(args.backend))
    predictor = Predictor(table)
    networks = [Network(n["genome"].get("name") or f"network-{i}",
                        Genome.from_dict(n["genome"]), n["resolution"], n["num_classes"],
                        n["in_channels"]) for i, n in enumerate(table.networks)]
    passes = [measure_networks(networks, table.settings) for _ in range(2)]
    rows = []
    for index, network in enumerate(networks):
        predicted = predictor.seconds(network.genome, network.resolution, NUM_CLASSES,
                                      IN_CHANNELS)
        build = table.networks[index]["seconds"]
        first, second = (p[index].seconds for p in passes)
        rows.append({"network": network.label, "predicted_ms": 1e3 * predicted,
                     "build_ms": 1e3 * build, "again_ms": [1e3 * first, 1e3 * second],
                     "again_vs_again": second / first - 1, "again_vs_build": first / build - 1,
                     "fit_residual": predicted / build - 1})
    summary = {key: statistics.median(abs(row[key]) for row in rows)
               for key in ("again_vs_again", "again_vs_build", "fit_residual")}
    print(json.dumps(summary, indent=2))
    save(f"repeat_{args.backend}", {"command": f"bench_latency.py repeat --backend {args.backend}",
                                    "median_abs": summary, "rows": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    p = parts.add_parser("build")
    p.add_argument("--backends", default="torch,onnxruntime")
    # One thread by default: on a 2-core machine shared with other jobs, a 2-thread
    # parallel region waits for a descheduled thread (a scheduler time slice per op),
    # and the timings measure the other jobs instead of the network.
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(run=build)
    p = parts.add_parser("check")
    p.add_argument("--backend", default="torch")
    p.add_argument("--random", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(run=check)
    p = parts.add_parser("repeat")
    p.add_argument("--backend", default="torch")
    p.set_defaults(run=repeat)
    p = parts.add_parser("search")
    p.add_argument("--n-trials", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cost-window", type=float, default=0.0)
    p.add_argument("--evaluator", default="proxy-train")
    p.add_argument("--timeout", type=float, help="seconds for the search (no trial starts "
                   "that would overrun them)")
    p.add_argument("--runs", default=str(TABLES / "runs"))
    p.set_defaults(run=search)
    p = parts.add_parser("scale")
    p.add_argument("--method", default="compound")
    p.add_argument("--search", default="naswot",
                   help="the evaluator of the search whose best genome is scaled")
    p.set_defaults(run=scale)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
