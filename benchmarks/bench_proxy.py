"""Proxy fidelity: EfficientNet-B0 under the search's default proxy training.

Target (issue 4): at least 85% Fashion-MNIST validation accuracy within 2 minutes on 2
CPU cores. The validation split is 5,000 images held out of the training set; the test
set is not used. Prints the per-epoch numbers and writes benchmarks/results/proxy.json.

    python3 benchmarks/bench_proxy.py [--seeds 0 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

# Sleeping instead of spinning OpenMP threads: on a shared machine a spinning thread that
# waits for a busy core makes training many times slower (see docs/training.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from nas.common import atomic_write_json  # noqa: E402
from nas.evaluators import PROXY_DEFAULTS, make_evaluator  # noqa: E402
from space import presets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "proxy.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    genome = presets.get("efficientnet-b0")
    runs = []
    for seed in args.seeds:
        load_started = time.perf_counter()
        evaluator = make_evaluator("proxy-train", seed=seed)
        setup_seconds = time.perf_counter() - load_started
        epochs = []
        started = time.perf_counter()

        def report(epoch: int, accuracy: float) -> None:
            epochs.append({"epoch": epoch, "val_accuracy": accuracy,
                           "seconds": round(time.perf_counter() - started, 1)})
            print(f"seed {seed} epoch {epoch}: validation accuracy {accuracy:.4f} at "
                  f"{epochs[-1]['seconds']:.1f} s", flush=True)

        accuracy = evaluator.evaluate(genome, on_epoch=report)
        seconds = time.perf_counter() - started
        runs.append({"seed": seed, "val_accuracy": accuracy, "train_and_eval_seconds":
                     round(seconds, 1), "setup_seconds": round(setup_seconds, 1),
                     "epochs": epochs})
        print(f"seed {seed}: {accuracy:.4f} validation accuracy in {seconds:.1f} s "
              f"(+{setup_seconds:.1f} s decoding the dataset once per process)")
    result = {
        "benchmark": "EfficientNet-B0 under the default proxy (Fashion-MNIST validation split)",
        "target": "val_accuracy >= 0.85 within 120 s on 2 CPU cores",
        "settings": evaluator.settings(),
        "defaults": PROXY_DEFAULTS,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": str(torch.__version__),
                    "load_average_after": os.getloadavg()},
        "runs": runs,
        "met": all(r["val_accuracy"] >= 0.85 and r["train_and_eval_seconds"] <= 120 for r in runs),
    }
    atomic_write_json(args.out, result)
    print(f"target met: {result['met']}; wrote {args.out}")


if __name__ == "__main__":
    main()
