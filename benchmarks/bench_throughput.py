"""Training throughput: ``build(efficientnet-b0)`` under our trainer vs timm's efficientnet_b0.

Both train on the same input: one batch of real Fashion-MNIST images at 32 x 32 px
(1 channel, 10 classes, batch 256), saved to a file that both sides load. timm needs
torchvision, which the project's environment does not have, so timm runs in a separate
venv as a subprocess:

    python3 -m venv /tmp/timmvenv
    /tmp/timmvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm

timm is used the way its README shows (``timm.create_model("efficientnet_b0", ...)`` and a
plain PyTorch training loop, NCHW tensors), and also with channels_last for reference. Our
side is measured twice: through ``nas.train.fit`` (the real trainer, with its defaults),
and with the same plain loop as timm inside the venv, so that the torch version is equal.
Prints a table and writes benchmarks/results/throughput.json.

    python3 benchmarks/bench_throughput.py [--venv /tmp/timmvenv] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_proxy.py

import torch  # noqa: E402

from nas.common import atomic_write_json, format_table  # noqa: E402
from nas.data import load_dataset, preprocess, take_subset  # noqa: E402
from nas.train import TrainConfig, fit  # noqa: E402
from space import build, presets  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# The plain loop both models run inside the venv: forward, loss, backward, AdamW step.
PLAIN_LOOP = r"""
import json, sys, time, torch
batch_file, threads, which, memory, steps = sys.argv[1:6]
torch.set_num_threads(int(threads))
inputs, labels = torch.load(batch_file)
torch.manual_seed(0)
if which == "timm":
    import timm
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=10, in_chans=1)
else:
    from space import build, presets
    model = build(presets.get("efficientnet-b0"), num_classes=10, in_channels=1)
if memory == "channels_last":
    model = model.to(memory_format=torch.channels_last)
    inputs = inputs.contiguous(memory_format=torch.channels_last)
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
def step():
    optimizer.zero_grad()
    loss = loss_fn(model(inputs), labels)
    loss.backward()
    optimizer.step()
for _ in range(3):
    step()
started = time.perf_counter()
for _ in range(int(steps)):
    step()
seconds = time.perf_counter() - started
print(json.dumps({"images_per_second": int(steps) * len(labels) / seconds,
                  "params": sum(p.numel() for p in model.parameters()),
                  "torch": torch.__version__}))
"""


def _venv_run(python: Path, batch_file: Path, threads: int, which: str, memory: str,
              steps: int) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(python), "-c", PLAIN_LOOP, str(batch_file), str(threads), which,
                           memory, str(steps)], capture_output=True, text=True,
                          env=environment, timeout=1800)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", default="/tmp/timmvenv")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist")
    images = take_subset(data.train, args.batch_size * (args.steps + 3), seed=0)
    batch_file = Path(tempfile.mkdtemp(prefix="nas-throughput-")) / "batch.pt"
    torch.save((preprocess(images.images[:args.batch_size], 32, data.normalization),
                images.labels[:args.batch_size]), batch_file)

    rows = []
    genome = presets.get("efficientnet-b0")
    for channels_last in (True, False):
        # Epoch 1 warms up (allocator, oneDNN kernels); epoch 2 is measured.
        torch.manual_seed(0)
        model = build(genome, num_classes=10, in_channels=1)
        config = TrainConfig(epochs=2, batch_size=args.batch_size, channels_last=channels_last)
        result = fit(model, train=images, val=images.select(torch.arange(0)),
                     normalization=data.normalization, config=config)
        rows.append({"model": "ours: build(efficientnet-b0)",
                     "how": "nas.train.fit defaults" + ("" if channels_last else
                                                        ", channels_last off"),
                     "torch": str(torch.__version__),
                     "images_per_second": round(result.history[-1]["images_per_second"], 1),
                     "params": sum(p.numel() for p in model.parameters())})
        print(rows[-1], flush=True)

    python = Path(args.venv) / "bin" / "python"
    if not python.exists():
        print(f"no venv at {args.venv}; timm side skipped (see the docstring to create it)")
    else:
        for which, memory, how in (("timm", "contiguous", "timm README: create_model + plain loop"),
                                   ("timm", "channels_last", "plain loop, channels_last"),
                                   ("ours", "contiguous", "same plain loop as timm"),
                                   ("ours", "channels_last", "same plain loop, channels_last")):
            measured = _venv_run(python, batch_file, args.threads, which, memory, args.steps)
            label = "timm: efficientnet_b0" if which == "timm" else "ours: build(efficientnet-b0)"
            rows.append({"model": label, "how": how, **measured})
            print(rows[-1], flush=True)

    print()
    print(format_table(["model", "how", "torch", "img/s", "params"],
                       [[r["model"], r["how"], r.get("torch", "-"),
                         f"{r['images_per_second']:.0f}" if "images_per_second" in r else r.get("error"),
                         f"{r.get('params', 0):,}"] for r in rows]))
    ours = rows[0]["images_per_second"]
    readme = next((r for r in rows if r["how"].startswith("timm README")), None)
    ratio = (ours / readme["images_per_second"]) if readme and "images_per_second" in readme else None
    if ratio:
        print(f"\nour trainer's default / timm as its README shows: {ratio:.2f}x")
    result = {
        "benchmark": "training images/second, EfficientNet-B0, 32x32x1 input, 10 classes, "
                     f"batch {args.batch_size}, AdamW",
        "rows": rows, "ours_default_over_timm_readme": None if ratio is None else round(ratio, 2),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": args.threads, "python": sys.version.split()[0],
                    "load_average_after": os.getloadavg()},
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
