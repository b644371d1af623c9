"""Shared by the methods that evaluate many inputs: how many go into one forward(+backward)
pass, and how channel attributions become one map.

A memory budget (the engine's `executor.memory`, see engine/memory.py) caps the inputs per
pass through `pass_limit`: every method that chunks its evaluations with `inputs_per_pass`
(or `within_pass_limit`) then runs at most that many per pass, splitting the steps of one
image over several passes when needed. The split never changes a map: every evaluation is
accumulated in the same order whatever the chunk size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from ..errors import UserError

REDUCTIONS = ("max", "sum", "abs", "l2")


@dataclass(frozen=True)
class PassLimit:
    """Most inputs in one pass: with a backward pass (gradients) and forward only."""

    backward: int
    forward: int


_LIMIT: ContextVar[PassLimit | None] = ContextVar("xaicompare_pass_limit", default=None)


@contextlib.contextmanager
def pass_limit(limit: PassLimit | None) -> Iterator[None]:
    """Cap the inputs per pass of every method called in this block (None: no cap)."""
    token = _LIMIT.set(limit)
    try:
        yield
    finally:
        _LIMIT.reset(token)


def current_pass_limit() -> PassLimit | None:
    return _LIMIT.get()


def within_pass_limit(n: int, backward: bool = True) -> int:
    """`n` inputs per pass, lowered to the memory budget's cap when one is set."""
    limit = _LIMIT.get()
    if limit is None:
        return n
    return max(1, min(n, limit.backward if backward else limit.forward))


def inputs_per_pass(images: torch.Tensor, internal_batch_size: int | None, cpu: int,
                    cuda: int, backward: bool = True) -> int:
    """`internal_batch_size`, or a budget (`cpu` / `cuda` inputs at 224 x 224) scaled by area;
    either capped by the memory budget's `pass_limit` (backward: the passes take gradients)."""
    if internal_batch_size is not None:
        if isinstance(internal_batch_size, bool) or internal_batch_size < 1:
            raise UserError(f"internal_batch_size must be >= 1 or None, got "
                            f"{internal_batch_size!r}")
        return within_pass_limit(int(internal_batch_size), backward)
    budget = cuda if images.device.type == "cuda" else cpu
    area = images.shape[-2] * images.shape[-1] / (224 * 224)
    return within_pass_limit(max(1, int(budget / max(area, 1e-6))), backward)


def reduce_channels(attributions: torch.Tensor, reduction: str) -> torch.Tensor:
    """[B, 3, H, W] -> [B, H, W]: max |.|, signed sum, sum of magnitudes, or L2 norm."""
    if reduction == "max":
        return attributions.abs().amax(dim=1)
    if reduction == "sum":
        return attributions.sum(dim=1)
    if reduction == "abs":
        return attributions.abs().sum(dim=1)
    if reduction == "l2":
        return attributions.norm(dim=1)
    raise UserError(f"unknown reduction '{reduction}'; accepted: {', '.join(REDUCTIONS)}")
