"""Latency measured on this machine: the ``--metric latency`` of the search, and the
runtime figures of the benchmarks."""

from __future__ import annotations

import statistics
import time

import torch

from space import Genome, build

__all__ = ["measure_latency"]


def measure_latency(genome: Genome, *, resolution: int, num_classes: int, in_channels: int,
                    batch_size: int = 1, repeats: int = 15, warmup: int = 3,
                    device: str = "cpu") -> float:
    """Median seconds of one forward pass in eval mode, after ``warmup`` untimed runs
    (first calls pay for allocation and kernel selection)."""
    model = build(genome, num_classes=num_classes, in_channels=in_channels).eval().to(device)
    model = model.to(memory_format=torch.channels_last)
    image = torch.randn(batch_size, in_channels, resolution, resolution, device=device)
    image = image.contiguous(memory_format=torch.channels_last)
    samples = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(image)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if index >= warmup:
                samples.append(time.perf_counter() - start)
    return statistics.median(samples)
