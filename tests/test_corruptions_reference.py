"""Corruptions against the reference ImageNet-C code itself (the `imagecorruptions`
package, through the shims in tests/imagecorruptions_ref.py) at 224 x 224, severities 1-5.

The package returns uint8 by truncation (np.uint8 of float), so where its pipeline is float
our float value v must satisfy ref <= 255 v < ref + 1. Random corruptions are compared with
the same noise: the package's numpy draws are fed to our recipe through a stand-in rng.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import imagecorruptions_ref as ref
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xaicompare.diversity import CORRUPTIONS, corrupt

if importlib.util.find_spec("imagecorruptions") is None:  # in the dev extra
    pytest.skip("the imagecorruptions package is not installed", allow_module_level=True)

SAMPLES = Path("/work/shared/data/imagenet-samples")
TRUNCATED = ("gaussian_blur", "defocus_blur", "contrast", "brightness", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)
LEVEL_TOL = 1e-4  # in 0..255 levels: float rounding at the truncation boundary


@pytest.fixture(scope="module")
def package():
    return ref.load()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real ImageNet photo at 224 x 224 (uint8 HWC), or a photo-like stand-in."""
    from PIL import Image

    files = sorted(SAMPLES.glob("*.JPEG"))
    if files:
        image = Image.open(files[0]).convert("RGB").resize((224, 224), Image.BILINEAR)
        return np.asarray(image).copy()
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(224, 224),
                           mode="bicubic", align_corners=False)
    texture = 0.1 * torch.rand(1, 3, 224, 224, generator=g)
    image = ((smooth + texture).clamp(0, 1) * 255).round().to(torch.uint8)[0]
    return image.permute(1, 2, 0).numpy().copy()


def ours(photo: np.ndarray, name: str, severity: int) -> np.ndarray:
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].double() / 255
    return corrupt(x, name, severity)[0].permute(1, 2, 0).numpy() * 255


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", TRUNCATED)
def test_float_corruptions_equal_the_package(package, photo, name, severity):
    expected = ref.reference(package, photo, name, severity).astype(np.float64)
    diff = ours(photo, name, severity) - expected
    assert diff.min() >= -LEVEL_TOL and diff.max() < 1 + LEVEL_TOL, (diff.min(), diff.max())


def test_defocus_kernel_equals_the_package_kernel_sums_included(package):
    from xaicompare.data.corruptions import PARAMS, disk_kernel

    sums = []
    for radius, alias_blur in PARAMS["defocus_blur"]:
        expected = package.disk(radius=radius, alias_blur=alias_blur)
        got = disk_kernel(radius, alias_blur).numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-7)
        sums.append(float(got.sum()))
    np.testing.assert_allclose(sums, [1, 1, 1, 1.01298, 1.01079], atol=1e-5)
    # at another size the kernel keeps the reference's sum (the same ~1% brightening)
    assert float(disk_kernel(8, 0.5, scale=0.25).sum()) == pytest.approx(sums[3], abs=1e-12)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_jpeg_equals_the_package_byte_for_byte(package, photo, severity):
    expected = ref.reference(package, photo, "jpeg_compression", severity)
    np.testing.assert_array_equal(np.round(ours(photo, "jpeg_compression", severity)), expected)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_pixelate_equals_the_package_up_to_pils_uint8_rounding(package, photo, severity):
    # the package resizes a uint8 PIL image (BOX down, NEAREST up), rounding the small image
    # to uint8 with PIL's fixed-point arithmetic; ours stays in float (equal to PIL's float
    # BOX + NEAREST, see test_diversity_corruptions): at most one level apart
    expected = ref.reference(package, photo, "pixelate", severity).astype(np.float64)
    diff = ours(photo, "pixelate", severity) - expected
    assert np.abs(diff).max() <= 1 + LEVEL_TOL
    assert np.abs(diff).mean() < 0.5  # rounding, not a different recipe


class PackageNoise:
    """Stand-in for PerImageRandom: the draws numpy makes in the package's own call, in the
    package's (HWC) order, handed to our recipe as [1, C, H, W]."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.generator = np.random.default_rng(seed)  # skimage random_noise (impulse)

    @staticmethod
    def _chw(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]

    def randn(self, shape):
        np.random.seed(self.seed)
        return self._chw(np.random.normal(size=(shape[1], shape[2], shape[0])))

    def rand(self, shape):
        return self._chw(self.generator.random((shape[1], shape[2], shape[0])))

    def poisson(self, rates):
        np.random.seed(self.seed)
        hwc = rates[0].permute(1, 2, 0).double().numpy()
        return self._chw(np.random.poisson(hwc).astype(np.float64))


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", ["gaussian_noise", "speckle_noise", "shot_noise",
                                  "impulse_noise"])
def test_random_corruptions_equal_the_package_given_the_same_noise(package, photo, name,
                                                                   severity):
    seed = 100 + severity
    np.random.seed(seed)
    with ref.seeded_random_noise(package, seed):
        expected = ref.reference(package, photo, name, severity).astype(np.float64)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].double() / 255
    got = CORRUPTIONS.get(name)(x, severity, PackageNoise(seed)).clamp(0, 1)
    diff = got[0].permute(1, 2, 0).numpy() * 255 - expected
    assert diff.min() >= -LEVEL_TOL and diff.max() < 1 + LEVEL_TOL, (diff.min(), diff.max())


def test_the_changed_defocus_blur_gets_a_new_store_key():
    from xaicompare.stages.diversity import corrupted_condition

    # predictions stored before the kernel-sum fix must not be reused by a resumed run
    assert corrupted_condition("defocus_blur", 4, 0) == "defocus_blur-v2-s4-seed0"
    assert corrupted_condition("gaussian_noise", 4, 0) == "gaussian_noise-s4-seed0"  # unchanged
