"""Fast compound scaling (Dollar, Singh & Girshick 2021): activation growth and runtime.

1. For a = 0 (depth and resolution), 1/3 (uniform) and 0.8 (the paper's "dWr"), scale
   efficientnet-b0 over phi 0..7 and fit log(activations) against log(multiply-adds);
   the paper's theory says the slope is 1 - a/2 (1, 5/6, 0.6).
2. Measure the forward latency of each member on this machine (eval mode, median of
   warm runs, batch 1 and batch 8) at a moderate base resolution so that the run takes
   minutes, and correlate latency with multiply-adds, activations and parameters over
   all distinct members of the three families: the paper reports that activations
   predict (GPU) runtime far better than multiply-adds.

Prints tables and writes benchmarks/results/fast_scaling.json. Usage:
    python3 benchmarks/bench_fast_scaling.py [--resolution 128] [--max-phi 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from nas.common import format_count, format_table
from nas.latency import measure_latency
from scaling import family
from space import presets

STRATEGIES = (("dr", 0.0), ("dwr", 1 / 3), ("dWr", 0.8))


def exponent_rows() -> list[dict]:
    base = presets.get("efficientnet-b0")
    rows = []
    for label, a in STRATEGIES:
        members = family(base, range(8), "fast", alpha=a)
        flops = np.log([m.cost.flops for m in members])
        slope = float(np.polyfit(flops, np.log([m.cost.activations for m in members]), 1)[0])
        rows.append({"strategy": label, "a": a, "fitted_exponent": slope, "theory": 1 - a / 2,
                     "flops_ratio_b7": members[-1].flops_ratio,
                     "activations_ratio_b7": members[-1].cost.activations
                     / members[0].cost.activations})
    return rows


def latency_rows(resolution: int, max_phi: int, repeats: int) -> list[dict]:
    base = dataclasses.replace(presets.get("efficientnet-b0"), resolution=resolution)
    rows, seen = [], {}
    for label, a in STRATEGIES:
        for member in family(base, range(max_phi + 1), "fast", alpha=a):
            key = member.genome.key()
            if key in seen:  # phi 0 is the same network for every a
                continue
            start = time.perf_counter()
            timings = {f"latency_b{batch}_ms": 1e3 * measure_latency(
                member.genome, resolution=member.resolution, num_classes=1000, in_channels=3,
                batch_size=batch, repeats=repeats if batch == 1 else max(3, repeats // 2),
                warmup=2 if batch == 1 else 1) for batch in (1, 8)}
            row = {"strategy": label, "a": a, "phi": member.phi, "resolution": member.resolution,
                   "flops": member.cost.flops, "params": member.cost.params,
                   "activations": member.cost.activations, **timings}
            seen[key] = row
            rows.append(row)
            print(f"  {label} phi {member.phi}: {format_count(row['flops'])} multiply-adds, "
                  f"{row['latency_b1_ms']:.1f} ms (b1), {row['latency_b8_ms']:.1f} ms (b8) "
                  f"[{time.perf_counter() - start:.0f} s]", flush=True)
    return rows


def correlations(rows: list[dict]) -> dict:
    result = {}
    for batch in (1, 8):
        latency = [row[f"latency_b{batch}_ms"] for row in rows]
        for metric in ("flops", "activations", "params"):
            values = [row[metric] for row in rows]
            result[f"b{batch}_{metric}"] = {
                "pearson": float(stats.pearsonr(values, latency)[0]),
                "spearman": float(stats.spearmanr(values, latency)[0]),
                "pearson_log": float(stats.pearsonr(np.log(values), np.log(latency))[0]),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=128,
                        help="base (phi 0) resolution for the latency part")
    parser.add_argument("--max-phi", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs at batch 1 "
                        "(batch 8: half as many, at least 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                             / "fast_scaling.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    exponents = exponent_rows()
    print("activation growth exponent over efficientnet-b0 phi 0..7 (fit of log activations "
          "vs log multiply-adds)")
    print(format_table(["strategy", "a", "fitted", "theory 1-a/2", "b7 multiply-adds",
                        "b7 activations"],
                       [[r["strategy"], f"{r['a']:.3f}", f"{r['fitted_exponent']:.3f}",
                         f"{r['theory']:.3f}", f"{r['flops_ratio_b7']:.1f}x",
                         f"{r['activations_ratio_b7']:.1f}x"] for r in exponents]))

    print(f"\nforward latency, base resolution {args.resolution}, phi 0..{args.max_phi}, "
          f"{args.threads} torch threads")
    started = time.perf_counter()
    rows = latency_rows(args.resolution, args.max_phi, args.repeats)
    print(format_table(["strategy", "phi", "res", "multiply-adds", "params", "activations",
                        "b1 ms", "b8 ms"],
                       [[r["strategy"], r["phi"], r["resolution"], format_count(r["flops"]),
                         format_count(r["params"]), format_count(r["activations"]),
                         f"{r['latency_b1_ms']:.1f}", f"{r['latency_b8_ms']:.1f}"]
                        for r in rows]))
    corr = correlations(rows)
    print(f"\ncorrelation of latency with each cost over {len(rows)} distinct members")
    print(format_table(["batch", "cost", "pearson", "spearman", "pearson (log-log)"],
                       [[key.split("_")[0], key.split("_", 1)[1], f"{v['pearson']:.3f}",
                         f"{v['spearman']:.3f}", f"{v['pearson_log']:.3f}"]
                        for key, v in corr.items()]))
    summary = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
               "note": "CPU timings on a shared 2-core machine; other work may have run "
                       "concurrently",
               "exponents": exponents, "latency_base_resolution": args.resolution,
               "latency_max_phi": args.max_phi, "latency_seconds_total":
                   time.perf_counter() - started,
               "members": rows, "correlations": corr}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
