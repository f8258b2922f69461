"""Memory a network needs, estimated from its analytic costs before anything is built.

A genome the schema allows can need terabytes (B0 trained at 1024 px with batch 256; the
largest genome of a generous space); building and running it would end in an allocator
traceback, or take the machine down where no memory limit stops it first. So every
command that builds a network first compares this estimate with the memory available
and refuses with one line that gives both, and a search fails that trial with the same
line as its reason and goes on.

The estimate is in float32 bytes, from :func:`space.cost` (per-image parameters and
activations: the outputs of conv and linear layers):

- training: weights, gradients and the optimizer's state per parameter, plus the
  activations kept for the backward pass for every image of the batch;
- inference: weights plus the tensors alive at once during one forward pass.

The factors below turn counted activations into bytes; they were measured as the peak
resident memory of B0 and MnasNet-A1 (1 input channel, 10 classes) above the memory of
the built model (``benchmarks/bench_memory_estimate.py`` compares the estimate with it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from space import Genome, NasError, cost

__all__ = ["InsufficientMemory", "training_bytes", "inference_bytes", "available_bytes",
           "check_fits", "max_jobs", "WORKER_BYTES"]

FLOAT_BYTES = 4
# Elements stored per counted activation for the backward pass (batch-norm and activation
# outputs, squeeze-and-excitation, the conv outputs themselves): two AdamW steps measured
# 4.0 (A1, 64 px) to 5.6 (B0, 32 px); the largest is used.
TRAIN_ELEMENTS_PER_ACTIVATION = 5.6
# The tensors alive at the peak of one no-grad forward pass: measured 0.62-0.70 of the
# counted activations (B0 at 64-224 px, A1 at 224 px); an ONNX export (trace, then run
# on 3 images) measured the same 0.68.
INFER_ELEMENTS_PER_ACTIVATION = 0.7
# Values held per parameter in training: weight and gradient, plus AdamW's two moments
# or SGD's momentum.
TRAIN_VALUES_PER_PARAMETER = {"adamw": 4, "sgd": 3}
# Resident memory of one more search worker process (torch, the decoded dataset, a
# proxy network), the figure issue 24 measured for `nas search --jobs`.
WORKER_BYTES = 235_000_000


class InsufficientMemory(NasError):
    """A network (or a number of workers) that would not fit in the memory available."""


def training_bytes(genome: Genome, *, resolution: int, batch: int, num_classes: int,
                   in_channels: int, optimizer: str = "adamw", eval_batch: int = 0) -> int:
    """Bytes to train ``genome`` on ``batch`` images of ``resolution`` pixels, or to
    score it on ``eval_batch`` images at once between epochs, whichever needs more."""
    costs = cost(genome, resolution, num_classes, in_channels)
    values = (TRAIN_VALUES_PER_PARAMETER.get(optimizer, 4) * costs.params
              + batch * (TRAIN_ELEMENTS_PER_ACTIVATION * costs.activations
                         + in_channels * resolution ** 2))
    scoring = inference_bytes(genome, resolution=resolution, batch=eval_batch,
                              num_classes=num_classes, in_channels=in_channels)
    return max(int(FLOAT_BYTES * values), scoring)


def inference_bytes(genome: Genome, *, resolution: int, batch: int, num_classes: int,
                    in_channels: int) -> int:
    """Bytes to run ``genome`` forward (no gradients) on ``batch`` images."""
    costs = cost(genome, resolution, num_classes, in_channels)
    values = costs.params + batch * (INFER_ELEMENTS_PER_ACTIVATION * costs.activations
                                     + in_channels * resolution ** 2)
    return int(FLOAT_BYTES * values)


def _meminfo_available() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_number(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _cgroup_room() -> Optional[int]:
    """Bytes left under this process's cgroup memory limit, or None without a limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),  # cgroup v2
                                   ("memory/memory.limit_in_bytes",
                                    "memory/memory.usage_in_bytes")):  # cgroup v1
        root = Path("/sys/fs/cgroup")
        limit, usage = _read_number(root / limit_file), _read_number(root / usage_file)
        # v1 writes a huge number (2^63 rounded to pages) for no limit.
        if limit is not None and usage is not None and limit < 1 << 60:
            return max(0, limit - usage)
    return None


def available_bytes(device: Optional[object] = None) -> Optional[tuple[int, str]]:
    """Bytes available to allocate now and where the figure comes from, or None where
    this machine does not say. ``device``: a torch device; for CUDA, its free memory."""
    if device is not None and getattr(device, "type", str(device)) == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free), f"free on {device}"
    found = []
    meminfo = _meminfo_available()
    if meminfo is not None:
        found.append((meminfo, "MemAvailable"))
    room = _cgroup_room()
    if room is not None:
        found.append((room, "left under the cgroup memory limit"))
    return min(found) if found else None


def format_bytes(count: float) -> str:
    """1.23e9 -> '1.2 GB' (decimal units, as `free -h --si` and disk vendors write)."""
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e3:.1f} kB"


def check_fits(needed: int, what: str, *, device: Optional[object] = None,
               advice: str = "lower the resolution or the batch size") -> None:
    """Raise :class:`InsufficientMemory` if ``needed`` bytes exceed what is available.

    ``what`` names the work (``training efficientnet-b0 at 1024 px, batch 256``)."""
    available = available_bytes(device)
    if available is None or needed <= available[0]:
        return
    room, source = available
    raise InsufficientMemory(f"{what} needs about {format_bytes(needed)} of memory, more "
                             f"than the {format_bytes(room)} available ({source}); {advice}")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def max_jobs() -> tuple[int, str]:
    """The most search workers this machine can run side by side, and why: one per
    usable core, each with :data:`WORKER_BYTES` of memory."""
    cores = usable_cores()
    available = available_bytes()
    if available is None:
        return cores, f"{cores} usable core(s)"
    by_memory = max(1, available[0] // WORKER_BYTES)
    reason = (f"{cores} usable core(s), {format_bytes(available[0])} available "
              f"({available[1]}) for workers of about {format_bytes(WORKER_BYTES)} each")
    return min(cores, by_memory), reason
