"""Memory sizes as users write them ('8GB', '512 MB', '16GiB') and as the terminal shows them;
below every package, so the config schema can check `executor.memory` without the engine."""

from __future__ import annotations

import re

UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
ACCEPTED = "auto, none, or a size such as 512MB, 8GB, 16GiB"


def parse_memory(value) -> str | int:
    """'auto', 'none', or a size in bytes from '8GB' / '512 MB' / '16GiB' / an integer."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "none"):
        return value.strip().lower()
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)\s*", value, re.I)
        if match:
            size = int(float(match.group(1)) * UNITS[match.group(2).upper()])
            if size > 0:
                return size
    raise ValueError(f"got {value!r}; accepted: {ACCEPTED}")


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
