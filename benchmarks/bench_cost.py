"""How much faster the analytic cost is than building the model and counting in torch.

Prints a table and writes benchmarks/results/cost_speed.json. Usage:
    python3 benchmarks/bench_cost.py [--genomes 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from space import SearchSpace, build, cost, presets


def time_call(function, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def torch_count(genome, resolution: int) -> int:
    model = build(genome).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, resolution, resolution))
    return counter.get_total_flops() // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--genomes", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cost_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = random.Random(0)
    space = SearchSpace.default()
    genomes = [presets.get("efficientnet-b0")] + [space.random_genome(rng)
                                                  for _ in range(args.genomes - 1)]
    rows = []
    for genome in genomes:
        analytic = time_call(lambda: cost(genome), 5)
        counted = time_call(lambda: torch_count(genome, 224), 2)
        assert cost(genome).flops == torch_count(genome, 224)
        rows.append({"flops": cost(genome).flops, "analytic_s": analytic, "torch_s": counted,
                     "speedup": counted / analytic})
    speedups = [row["speedup"] for row in rows]
    summary = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
               "genomes": len(rows), "resolution": 224,
               "median_analytic_ms": statistics.median(r["analytic_s"] for r in rows) * 1e3,
               "median_torch_ms": statistics.median(r["torch_s"] for r in rows) * 1e3,
               "min_speedup": min(speedups), "median_speedup": statistics.median(speedups),
               "rows": rows}
    print(f"analytic cost(): median {summary['median_analytic_ms']:.2f} ms; build + "
          f"FlopCounterMode at 224 px: median {summary['median_torch_ms']:.1f} ms")
    print(f"speedup over {len(rows)} genomes: min {summary['min_speedup']:.0f}x, "
          f"median {summary['median_speedup']:.0f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
