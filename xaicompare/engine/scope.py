"""Marks the engine's own model passes: every forward and backward pass of a study runs
inside `unit_scope` (a unit of work, or the engine probing a model's memory), so a test can
count the passes made anywhere else (there should be none) with `inside_unit()`."""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

_INSIDE = contextvars.ContextVar("xaicompare_engine_unit", default=False)
F = TypeVar("F", bound=Callable)


def inside_unit() -> bool:
    """Is the caller running inside an engine unit (or an engine probe)?"""
    return _INSIDE.get()


@contextlib.contextmanager
def unit_scope() -> Iterator[None]:
    token = _INSIDE.set(True)
    try:
        yield
    finally:
        _INSIDE.reset(token)


def engine_unit(fn: F) -> F:
    """Decorator: `fn` runs inside `unit_scope`."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with unit_scope():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
