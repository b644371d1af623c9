"""Where each stage writes inside the run folder (README: "What a run writes")."""

from __future__ import annotations

from pathlib import Path


def table_path(study, *parts: str) -> Path:
    path = study.run_dir / "tables" / Path(*parts[:-1]) / f"{parts[-1]}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def array_path(study, *parts: str) -> Path:
    path = study.run_dir / "arrays" / Path(*parts[:-1]) / f"{parts[-1]}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def figure_path(study, *parts: str) -> Path:
    """Path without suffix: figures are saved in every configured format."""
    path = study.run_dir / "figures" / Path(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_arrays(path: Path, **arrays) -> Path:
    """np.savez written atomically: a killed run never leaves a truncated file."""
    import numpy as np

    from ..store import atomic_write

    atomic_write(path, lambda handle: np.savez(handle, **arrays))
    return path
