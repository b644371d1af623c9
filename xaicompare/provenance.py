"""Provenance: the library versions that decide a result, recorded beside it (a run's
meta.json, the zoo's index)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

LIBRARIES = ("xaicompare", "torch", "torchvision", "timm", "captum", "shap", "numpy",
             "scikit-learn", "scipy", "scikit-image", "networkx", "python-louvain", "matplotlib")


def library_versions() -> dict[str, str]:
    """Python's and each library's installed version ("not installed" when absent)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
