"""Full training: EfficientNet-B0 to >= 93% Fashion-MNIST test accuracy with `nas train`.

Runs the command itself (``python3 -m nas train --genome efficientnet-b0 ...``) with the
default settings unless flags say otherwise, then reads its metrics.json and writes
benchmarks/results/full_train.json: the test accuracy after every epoch, the first epoch
at or above 93%, the wall time and the training throughput. Long on 2 CPU cores: run it
in the background, e.g.

    nohup python3 benchmarks/bench_full_train.py > /tmp/full_train.log 2>&1 &

A stopped run continues with ``--resume`` (the command's own resume).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nas.full_train import DEFAULTS  # noqa: E402
TARGET = 0.93


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"],
                        help="default: nas train's own (%(default)s)")
    parser.add_argument("--out-dir", default=str(REPO / "runs" / "bench-full-train"))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--nproc", type=int, default=1,
                        help="DDP processes (torchrun); on a 2-core CPU two 1-thread ranks "
                             "train faster than one 2-thread process")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "full_train.json"))
    parser.add_argument("extra", nargs="*", help="more `nas train` flags, after --")
    args = parser.parse_args()
    train_args = ["-m", "nas", "train", "--genome", "efficientnet-b0", "--epochs",
                  str(args.epochs), "--out", args.out_dir, "--quiet", *args.extra]
    if args.resume:
        train_args.append("--resume")
    if args.nproc > 1:
        ranks = ["--standalone", f"--nproc_per_node={args.nproc}"]
        command = [sys.executable, "-m", "torch.distributed.run", *ranks, *train_args]
        shown = ["torchrun", *ranks, *train_args]
    else:
        command, shown = [sys.executable, *train_args], ["nas", *train_args[2:]]
    print("$ " + " ".join(shown), flush=True)
    environment = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    done = subprocess.run(command, cwd=REPO, env=environment)
    if done.returncode:
        sys.exit(done.returncode)
    metrics = json.loads((Path(args.out_dir) / "metrics.json").read_text())
    history = metrics["history"]
    reached = next((h["epoch"] for h in history if h["test_accuracy"] >= TARGET), None)
    seconds_to_target = (sum(h["seconds"] for h in history if h["epoch"] <= reached)
                         if reached else None)
    result = {
        "benchmark": "EfficientNet-B0 trained by `nas train` on Fashion-MNIST (60,000 "
                     "training images), scored on the 10,000 test images",
        "command": " ".join(shown),
        "target": f"test accuracy >= {TARGET}",
        "test_accuracy": metrics["test_accuracy"],
        "best_epoch_test_accuracy": max(h["test_accuracy"] for h in history),
        "epochs": metrics["epochs_completed"],
        "first_epoch_at_target": reached,
        "seconds_to_target": None if seconds_to_target is None else round(seconds_to_target, 1),
        "wall_seconds": metrics["wall_seconds"],
        "images_per_second": metrics["images_per_second"],
        "resolution": metrics["resolution"],
        "config": metrics["config"],
        "per_epoch": [{"epoch": h["epoch"], "test_accuracy": h["test_accuracy"],
                       "train_loss": h["train_loss"], "seconds": h["seconds"]} for h in history],
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "processes": metrics["world_size"],
                    "torch_threads_per_process": metrics["threads"], "torch": metrics["torch"],
                    "load_average_after": os.getloadavg()},
        "met": metrics["test_accuracy"] >= TARGET,
    }
    sys.path.insert(0, str(REPO))
    from nas.common import atomic_write_json

    atomic_write_json(args.out, result)
    print(f"test accuracy {result['test_accuracy']:.4f} after {result['epochs']} epochs, "
          f"{result['wall_seconds'] / 60:.1f} min; first epoch >= {TARGET}: {reached}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
