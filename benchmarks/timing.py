"""Timing helpers shared by the attribution benchmarks (run as scripts: benchmarks/ is on
sys.path)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` runs after one warm-up (the CPU is shared: min filters noise)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def timed_once(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    """(seconds, result) of one run: for peers too slow to repeat (per-sample loops)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def display_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max, as pytorch-grad-cam shows its maps."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
    return (maps - low) / (high - low + 1e-7)
