"""Timing on this machine: the backends, the fingerprint of what was timed, and interleaved
medians that a busy machine disturbs as little as possible.

A latency is the median seconds of one forward pass in eval mode at a fixed batch size.
Several modules are timed together in *rounds*: each round times every module ``repeats``
times in turn and keeps the fastest call (other processes only ever add time, and a
burst of their load then spoils a round rather than an entry), so load hits all the
modules alike instead of one; the entry is the median of the rounds, and its *spread*
``(max - min) / median`` of the rounds. Entries whose spread exceeds
``max_spread`` are timed again (up to ``retries`` times) and the steadiest timing is kept.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from space import Genome, build

from ..common import UsageError

__all__ = ["BACKENDS", "TimingSettings", "Timing", "fingerprint", "machine_mismatch",
           "time_modules", "measure_latency", "check_backend"]

BACKENDS = ("torch", "onnxruntime", "cuda")
# Fingerprint fields that describe the machine and its software; the rest (backend,
# threads, batch size) are settings a table was measured with, applied again when it is used.
MACHINE_FIELDS = ("cpu", "cores", "torch", "backend_version", "gpu")


@dataclass(frozen=True)
class TimingSettings:
    """How entries are timed; recorded in a table so that later timings match."""

    backend: str = "torch"
    threads: int = 0  # CPU threads of torch or onnxruntime; 0: torch's current setting
    batch_size: int = 1
    warmup: int = 3  # untimed calls first: allocation, kernel selection, caches
    rounds: int = 5
    repeats: int = 5  # calls per round; the round keeps the fastest
    max_spread: float = 0.25
    retries: int = 2

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UsageError(f"unknown latency backend {self.backend!r}; choose one of "
                             f"{', '.join(BACKENDS)}")
        if self.threads == 0:
            object.__setattr__(self, "threads", torch.get_num_threads())
        checks = [(self.threads >= 1, "--threads must be at least 1"),
                  (1 <= self.batch_size <= 4096, "--batch-size must be in [1, 4096]"),
                  (self.warmup >= 0, "warm-up calls must be >= 0"),
                  (self.rounds >= 1 and self.repeats >= 1, "--rounds and --repeats must be >= 1"),
                  (self.max_spread > 0, "the spread limit must be positive")]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Timing:
    seconds: float  # median over the rounds of each round's fastest call
    spread: float  # (max - min) / median of the rounds


def check_backend(backend: str) -> None:
    """Fail with one line when ``backend`` cannot run here."""
    if backend == "cuda" and not torch.cuda.is_available():
        raise UsageError("--backend cuda: torch sees no CUDA device here (this torch is "
                         f"{torch.__version__}); use --backend torch or onnxruntime")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(settings: TimingSettings) -> dict:
    """What a timing depends on: the CPU and its core count, torch, the backend and its
    version, the GPU for CUDA, and the threads and batch size it ran with."""
    if settings.backend == "onnxruntime":
        import onnxruntime

        version = onnxruntime.__version__
    elif settings.backend == "cuda":
        version = torch.version.cuda or "none"
    else:
        version = torch.__version__
    gpu = (torch.cuda.get_device_name() if settings.backend == "cuda"
           and torch.cuda.is_available() else None)
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "backend": settings.backend, "backend_version": version, "gpu": gpu,
            "threads": settings.threads, "batch_size": settings.batch_size}


def machine_mismatch(recorded: dict, settings: TimingSettings) -> str:
    """'' when a table with fingerprint ``recorded`` was measured on this machine and
    software, else the first difference, e.g. ``cpu 'Intel Xeon' here, 'AMD EPYC' in the table``."""
    here = fingerprint(settings)
    for name in MACHINE_FIELDS:
        if recorded.get(name) != here[name]:
            return f"{name} {here[name]!r} here, {recorded.get(name)!r} in the table"
    return ""


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _prepare(module: nn.Module, in_shape: Sequence[int],
             settings: TimingSettings) -> Callable[[], object]:
    """A no-argument call that runs ``module`` once on a random batch, on the backend."""
    module = module.eval()
    example = torch.randn(settings.batch_size, *in_shape)
    if settings.backend == "onnxruntime":
        import onnxruntime

        from ..export import INPUT_NAME, export_onnx

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = settings.threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(export_onnx(module, example), options,
                                               providers=["CPUExecutionProvider"])
        feed = {INPUT_NAME: example.numpy()}
        return lambda: session.run(None, feed)
    if settings.backend == "cuda":
        module, example = module.cuda(), example.cuda()

        def call() -> object:
            output = module(example)
            torch.cuda.synchronize()  # kernels run asynchronously: wait for them
            return output

        return call
    module = module.to(memory_format=torch.channels_last)
    example = example.contiguous(memory_format=torch.channels_last)
    return lambda: module(example)


def _rounds(calls: Sequence[Callable[[], object]], settings: TimingSettings) -> list[Timing]:
    samples: list[list[float]] = [[] for _ in calls]
    for call in calls:
        for _ in range(settings.warmup):
            call()
    if settings.backend == "cuda":
        torch.cuda.synchronize()
    for _ in range(settings.rounds):
        for index, call in enumerate(calls):
            times = []
            for _ in range(settings.repeats):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            samples[index].append(min(times))
    result = []
    for values in samples:
        median = statistics.median(values)
        result.append(Timing(seconds=median, spread=(max(values) - min(values)) / median))
    return result


def time_modules(items: Sequence[tuple[nn.Module, Sequence[int]]],
                 settings: TimingSettings) -> list[Timing]:
    """Interleaved timings of ``(module, input shape without the batch)`` pairs, with
    noisy entries timed again (see the module docstring)."""
    with _threads(settings.threads), torch.inference_mode():
        calls = [_prepare(module, shape, settings) for module, shape in items]
        timings = _rounds(calls, settings)
        for _ in range(settings.retries):
            noisy = [index for index, t in enumerate(timings) if t.spread > settings.max_spread]
            if not noisy:
                break
            again = _rounds([calls[index] for index in noisy], settings)
            for index, timing in zip(noisy, again):
                if timing.spread < timings[index].spread:
                    timings[index] = timing
    return timings


def measure_latency(genome: Genome, *, resolution: int, num_classes: int, in_channels: int,
                    batch_size: int = 1, repeats: int = 15, warmup: int = 3,
                    device: str = "cpu") -> float:
    """Median seconds of one forward pass of the whole ``genome`` in eval mode, after
    ``warmup`` untimed runs, with torch's current threads."""
    settings = TimingSettings(backend="cuda" if device.startswith("cuda") else "torch",
                              batch_size=batch_size, warmup=warmup, rounds=1, repeats=repeats,
                              retries=0)
    model = build(genome, num_classes=num_classes, in_channels=in_channels)
    (timing,) = time_modules([(model, (in_channels, resolution, resolution))], settings)
    return timing.seconds
