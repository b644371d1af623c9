"""Devices and threads: which compute devices a study may name and which this machine has,
the cores this process may use, and torch's intra-op thread count for a block.

One rule for the CLI flag, the YAML and the Python API: `auto`, `cpu`, `cuda`, `cuda:N` or
`mps`, and a device this machine does not have is a UserError naming the ones it has, raised
before any compute (not a crash minutes in, nor a silent fallback to the CPU).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import torch

from .errors import UserError

DEVICE_SYNTAX = "auto, cpu, cuda, cuda:N, mps"
_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def available_devices() -> list[str]:
    """The devices torch can use here, e.g. ['cpu', 'cuda:0', 'cuda:1']."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def device_syntax_problem(device: object) -> str | None:
    """What is wrong with `device` as a device name (whatever this machine has), or None."""
    if isinstance(device, str) and _PATTERN.match(device):
        return None
    return (f"got {device!r}; accepted: {DEVICE_SYNTAX} "
            f"(this machine has: {', '.join(available_devices())})")


def check_device_syntax(device: object, where: str = "device") -> str:
    """`device` as text if it is a device name at all (whatever this machine has)."""
    text = str(device)
    problem = device_syntax_problem(text)
    if problem:
        raise UserError(f"{where}: {problem}")
    return text


def check_device(device: object, where: str = "device") -> str:
    """`device` as text if this machine has it (auto always resolves); else a UserError."""
    text = check_device_syntax(device, where)
    if text in ("auto", "cpu"):
        return text
    have = available_devices()
    missing = (text == "cuda" and not any(d.startswith("cuda") for d in have)) or (
        text != "cuda" and text not in have)
    if missing:
        raise UserError(f"{where}: '{text}' is not available on this machine; it has: "
                        f"{', '.join(have)} (or use auto)")
    return text


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for a checked name; auto: the first CUDA GPU if any, else the CPU."""
    text = check_device(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(text)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a cpuset, not the host's count;
    a CPU quota such as `docker --cpus` is not visible here)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count for a block (None: leave it as it is)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
