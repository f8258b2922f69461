"""How close nas.memory's estimate comes to the memory a network really takes.

Each case runs in a fresh process: build the network, note the peak resident memory,
then train two AdamW steps (or run one no-grad forward pass) on a random batch and note
the peak again. The difference is what the work took beyond the built model; the
estimate (:func:`nas.memory.training_bytes` / :func:`inference_bytes`, less the weights
already counted in the built model) should be close to it and above it, since commands
refuse work whose estimate exceeds the memory available.

    python3 benchmarks/bench_memory_estimate.py   # writes benchmarks/results/memory_estimate.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "memory_estimate.json"
# (genome, resolution, batch, mode): the proxy's batch at small sizes, smaller batches at
# deployment sizes; 1 input channel and 10 classes, as Fashion-MNIST.
CASES = [
    ("efficientnet-b0", 32, 128, "train"),
    ("efficientnet-b0", 64, 64, "train"),
    ("efficientnet-b0", 128, 32, "train"),
    ("mnasnet-a1", 64, 64, "train"),
    ("mnasnet-a1", 128, 32, "train"),
    ("efficientnet-b0", 64, 64, "infer"),
    ("efficientnet-b0", 128, 32, "infer"),
    ("efficientnet-b0", 224, 16, "infer"),
    ("mnasnet-a1", 224, 16, "infer"),
]

_MEASURE = textwrap.dedent("""
    import json, resource, sys
    import torch
    import torch.nn.functional as F
    from space import build, presets
    torch.set_num_threads(1)
    name, resolution, batch, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    model = build(presets.get(name), num_classes=10, in_channels=1)
    inputs = torch.randn(batch, 1, resolution, resolution)
    labels = torch.randint(0, 10, (batch,))
    built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if mode == "train":
        optimizer = torch.optim.AdamW(model.parameters())
        model.train()
        for _ in range(2):
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    else:
        model.eval()
        with torch.no_grad():
            model(inputs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"built": built, "peak": peak}))
""")


def measure(name: str, resolution: int, batch: int, mode: str) -> dict:
    from nas.memory import FLOAT_BYTES, inference_bytes, training_bytes
    from space import cost, presets

    genome = presets.get(name)
    shape = {"resolution": resolution, "batch": batch, "num_classes": 10, "in_channels": 1}
    estimate = (training_bytes(genome, **shape) if mode == "train"
                else inference_bytes(genome, **shape))
    weights = FLOAT_BYTES * cost(genome, resolution, 10, 1).params  # in the built model already
    done = subprocess.run([sys.executable, "-c", _MEASURE, name, str(resolution), str(batch), mode],
                          capture_output=True, text=True, check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    rss = json.loads(done.stdout)
    measured = rss["peak"] - rss["built"]
    return {"genome": name, "resolution": resolution, "batch": batch, "mode": mode,
            "measured_bytes": measured, "estimated_bytes": estimate - weights,
            "estimate_over_measured": round((estimate - weights) / measured, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for case in CASES:
        rows.append(measure(*case))
        row = rows[-1]
        print(f"{row['genome']:16s} {row['resolution']:4d} px batch {row['batch']:4d} "
              f"{row['mode']:5s}: measured {row['measured_bytes'] / 1e6:7.1f} MB, estimate "
              f"{row['estimated_bytes'] / 1e6:7.1f} MB ({row['estimate_over_measured']:.2f}x)",
              flush=True)
        args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                        "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
