"""The `imagecorruptions` package (the reference ImageNet-C code), importable on current
setuptools / scikit-image / numpy through small compatibility shims kept here, not in
xaicompare.

Shims: `pkg_resources` (gone from setuptools >= 81; the package imports resource_filename
for its frost images), `skimage.filters.gaussian(multichannel=True)` (now channel_axis=-1),
and a seedable `skimage.util.random_noise` (the package calls it without an rng).
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from pathlib import Path

import numpy as np


def _install_pkg_resources() -> None:
    if "pkg_resources" in sys.modules or importlib.util.find_spec("pkg_resources"):
        return
    module = types.ModuleType("pkg_resources")

    def resource_filename(package: str, name: str) -> str:
        return str(Path(importlib.util.find_spec(package).origin).parent / name)

    module.resource_filename = resource_filename
    sys.modules["pkg_resources"] = module


def load():
    """The imagecorruptions.corruptions module with the shims applied."""
    _install_pkg_resources()
    with warnings.catch_warnings():  # its scipy.ndimage.interpolation import is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        from imagecorruptions import corruptions
    from skimage.filters import gaussian

    def gaussian_multichannel(image, sigma=1, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(image, sigma=sigma, **kwargs)

    corruptions.gaussian = gaussian_multichannel
    return corruptions


class seeded_random_noise:  # noqa: N801 - used as a context manager, like a function
    """Within the block, the package's skimage random_noise draws from default_rng(seed)."""

    def __init__(self, corruptions, seed: int) -> None:
        self.corruptions, self.seed = corruptions, seed

    def __enter__(self):
        util = self.corruptions.sk.util
        self.original = util.random_noise
        util.random_noise = lambda image, **kw: self.original(image, rng=self.seed, **kw)
        return self

    def __exit__(self, *exc) -> None:
        self.corruptions.sk.util.random_noise = self.original


def reference(corruptions, image: np.ndarray, name: str, severity: int) -> np.ndarray:
    """The package's corruption of a uint8 HWC image, as its `corrupt` returns it (uint8)."""
    from PIL import Image

    return np.uint8(getattr(corruptions, name)(Image.fromarray(image), severity))
