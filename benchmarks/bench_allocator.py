"""glibc malloc against tcmalloc for training and evaluation on the CPU (nas/allocator.py).

EfficientNet-B0 (1 channel, 10 classes, channels_last, AdamW, batch 128) trains for
``--seconds`` at 32 px (the proxy) and at 96 px, and evaluates at 96 px in batches of 1024
(the trainer's evaluation batch), each in a fresh process under each allocator. Prints
images/second and the process's user and kernel CPU seconds, and writes
benchmarks/results/allocator.json.

    python3 benchmarks/bench_allocator.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nas.allocator import QUIET_LARGE_ALLOCS, tcmalloc_path  # noqa: E402
from nas.common import atomic_write_json  # noqa: E402

CASES = (("train", 32, 128), ("train", 96, 128), ("eval", 96, 1024))


def measure(kind: str, resolution: int, batch: int, seconds: float) -> dict:
    import torch

    from space import build, presets

    model = build(presets.get("efficientnet-b0"), num_classes=10, in_channels=1)
    model = model.to(memory_format=torch.channels_last).train(kind == "train")
    images = torch.randn(batch, 1, resolution, resolution).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.AdamW(model.parameters())

    def step() -> None:
        if kind == "train":
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
        else:
            with torch.inference_mode():
                model(images)

    step()  # warm-up: first-touch allocations and oneDNN kernel selection
    before = resource.getrusage(resource.RUSAGE_SELF)
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        step()
        done += batch
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"images_per_s": round(done / wall, 1),
            "user_s": round(after.ru_utime - before.ru_utime, 1),
            "kernel_s": round(after.ru_stime - before.ru_stime, 1), "wall_s": round(wall, 1)}


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                                 float(sys.argv[5]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "allocator.json"))
    args = parser.parse_args()
    library = tcmalloc_path()
    if library is None:
        sys.exit("no libtcmalloc_minimal.so.4 here: apt-get install libtcmalloc-minimal4")
    base_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    allocators = {"glibc": base_env,
                  "tcmalloc": {**base_env, **QUIET_LARGE_ALLOCS, "LD_PRELOAD": library}}
    rows = []
    for kind, resolution, batch in CASES:
        row = {"case": f"{kind} {resolution} px, batch {batch}"}
        for name, env in allocators.items():
            out = subprocess.run([sys.executable, __file__, "--measure", kind, str(resolution),
                                  str(batch), str(args.seconds)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            row[name] = json.loads(out.strip().splitlines()[-1])
        row["speedup"] = round(row["tcmalloc"]["images_per_s"] / row["glibc"]["images_per_s"], 2)
        rows.append(row)
        print(f"{row['case']:24s} glibc {row['glibc']['images_per_s']:7.1f} img/s "
              f"(kernel {row['glibc']['kernel_s']} s of CPU)   tcmalloc "
              f"{row['tcmalloc']['images_per_s']:7.1f} img/s (kernel "
              f"{row['tcmalloc']['kernel_s']} s)   x{row['speedup']}", flush=True)
    atomic_write_json(Path(args.out), {
        "benchmark": "benchmarks/bench_allocator.py", "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor()},
        "model": "efficientnet-b0, 1 channel, 10 classes, channels_last, AdamW",
        "seconds_per_case": args.seconds, "tcmalloc": library, "rows": rows})
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
