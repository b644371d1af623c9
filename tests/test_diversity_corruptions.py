"""Corruptions: contract (shape, dtype, range, determinism, batch independence), severity
ordering, and agreement with ImageNet-C's own recipe rebuilt from skimage / OpenCV / PIL."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.color import hsv2rgb, rgb2hsv
from skimage.filters import gaussian

from xaicompare.data.colour import hsv_to_rgb, rgb_to_hsv
from xaicompare.diversity import CORRUPTIONS, PARAMS, corrupt, list_corruptions
from xaicompare.errors import UserError

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"}


def smooth_images(b: int, size: int, seed: int = 0) -> torch.Tensor:
    """Photo-like test images: smooth colour fields plus a little texture, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, 6, 6, generator=g)
    img = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    img = img + 0.05 * torch.rand(b, 3, size, size, generator=g)
    return img.clamp(0, 1)


def to_hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).double().numpy()


def test_registry_holds_the_imagenet_c_set():
    expected = {"gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur",
                "defocus_blur", "contrast", "brightness", "saturate", "jpeg_compression",
                "pixelate"}  # fmt: skip
    assert expected <= set(list_corruptions())
    assert all(len(PARAMS[name]) == 5 for name in list_corruptions())


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_contract_shape_dtype_range(name, dtype):
    x = smooth_images(2, 24).to(dtype)
    for severity in (1, 5):
        y = corrupt(x, name, severity, seed=3)
        assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
        assert y.min() >= 0 and y.max() <= 1
        assert not torch.equal(y, x) or name in ("defocus_blur", "gaussian_blur")
    assert torch.equal(corrupt(x, name, 0), x)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_deterministic_and_batch_independent(name):
    x = smooth_images(3, 24, seed=1)
    seeds = torch.tensor([10, 11, 12])
    full = corrupt(x, name, 3, seed=7, image_seeds=seeds)
    assert torch.equal(full, corrupt(x, name, 3, seed=7, image_seeds=seeds))
    alone = corrupt(x[2:3], name, 3, seed=7, image_seeds=seeds[2:3])
    torch.testing.assert_close(alone[0], full[2], rtol=0, atol=1e-6)
    reordered = corrupt(x[[2, 0]], name, 3, seed=7, image_seeds=seeds[[2, 0]])
    torch.testing.assert_close(reordered[1], full[0], rtol=0, atol=1e-6)
    if name in RANDOM:
        assert not torch.equal(full, corrupt(x, name, 3, seed=8, image_seeds=seeds))


@pytest.mark.parametrize("name", sorted(set(CORRUPTIONS) - {"saturate"}))
def test_change_from_clean_grows_with_severity(name):
    x = smooth_images(6, 48, seed=2)
    change = [(corrupt(x, name, s, seed=0) - x).abs().mean().item() for s in range(1, 6)]
    assert all(b >= a - 1e-6 for a, b in zip(change, change[1:], strict=False)), change
    assert change[-1] > change[0]


def test_saturate_follows_imagenet_c_order():
    # severities 1-2 desaturate (x0.3, x0.1), 3-5 oversaturate (x2, x5 +.1, x20 +.2)
    x = smooth_images(6, 32, seed=3)
    sat = [rgb_to_hsv(corrupt(x, "saturate", s))[:, 1].mean().item() for s in range(1, 6)]
    clean = rgb_to_hsv(x)[:, 1].mean().item()
    assert sat[1] < sat[0] < clean < sat[2] < sat[3] < sat[4]


def test_hsv_matches_skimage_and_round_trips():
    x = smooth_images(2, 16, seed=4)
    x[0, :, :4, :4] = 0.5  # grey pixels: hue 0, saturation 0
    x[1, :, :2, :2] = 0.0  # black
    hsv = rgb_to_hsv(x.double())
    for i in range(2):
        np.testing.assert_allclose(to_hwc(hsv[i]), rgb2hsv(to_hwc(x[i])), atol=1e-12)
        np.testing.assert_allclose(to_hwc(hsv_to_rgb(hsv)[i]), to_hwc(x[i]), atol=1e-12)
        np.testing.assert_allclose(
            to_hwc(hsv_to_rgb(hsv)[i]), hsv2rgb(rgb2hsv(to_hwc(x[i]))), atol=1e-12
        )


@pytest.mark.parametrize("severity", [1, 4])
def test_brightness_and_saturate_match_imagenet_c_recipe(severity):
    x = smooth_images(1, 20, seed=5).double()
    x[0, :, :2, :2] = 0.0  # black: brightness makes it grey
    x[0, :, 2:4, 2:4] = 0.5  # grey: hue 0, so added saturation turns it red, as in skimage
    img = to_hwc(x[0])
    hsv = rgb2hsv(img)
    hsv[..., 2] = np.clip(hsv[..., 2] + PARAMS["brightness"][severity - 1], 0, 1)
    ref = np.clip(hsv2rgb(hsv), 0, 1)
    np.testing.assert_allclose(to_hwc(corrupt(x, "brightness", severity)[0]), ref, atol=1e-10)
    hsv = rgb2hsv(img)
    scale, shift = PARAMS["saturate"][severity - 1]
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    ref = np.clip(hsv2rgb(hsv), 0, 1)
    np.testing.assert_allclose(to_hwc(corrupt(x, "saturate", severity)[0]), ref, atol=1e-10)


def test_contrast_matches_imagenet_c_recipe():
    x = smooth_images(1, 20, seed=6).double()
    img = to_hwc(x[0])
    means = img.mean(axis=(0, 1), keepdims=True)
    ref = np.clip((img - means) * PARAMS["contrast"][2] + means, 0, 1)
    np.testing.assert_allclose(to_hwc(corrupt(x, "contrast", 3)[0]), ref, atol=1e-12)


def test_gaussian_blur_matches_skimage_at_224():
    x = smooth_images(1, 224, seed=7).double()
    ref = gaussian(to_hwc(x[0]), sigma=PARAMS["gaussian_blur"][1], mode="nearest",
                   truncate=4.0, channel_axis=-1)  # fmt: skip
    np.testing.assert_allclose(to_hwc(corrupt(x, "gaussian_blur", 2)[0]), ref, atol=1e-6)


def test_defocus_blur_matches_opencv_recipe_at_224():
    cv2 = pytest.importorskip("cv2")  # OpenCV comes with the grad-cam dev dependency
    radius, alias_blur = PARAMS["defocus_blur"][1]
    t = np.arange(-8, 8 + 1)
    xx, yy = np.meshgrid(t, t)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    kernel = cv2.GaussianBlur(disk, ksize=(3, 3), sigmaX=alias_blur)
    x = smooth_images(1, 224, seed=8)
    img = to_hwc(x[0]).astype(np.float32)
    ref = np.stack([cv2.filter2D(img[..., c], -1, kernel) for c in range(3)], axis=-1)
    np.testing.assert_allclose(to_hwc(corrupt(x, "defocus_blur", 2)[0]), ref, atol=1e-5)


@pytest.mark.parametrize("size", [224, 40])
def test_pixelate_matches_pil_box(size):
    x = smooth_images(1, size, seed=9)
    uint8 = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    x = torch.from_numpy(uint8).permute(2, 0, 1)[None].float() / 255
    for severity in (1, 5):
        c = PARAMS["pixelate"][severity - 1]
        im = Image.fromarray(uint8)
        small = im.resize((int(size * c), int(size * c)), Image.BOX)
        ref = np.asarray(small.resize((size, size), Image.BOX), float) / 255
        got = to_hwc(corrupt(x, "pixelate", severity)[0])
        np.testing.assert_allclose(got, ref, atol=1 / 255 + 1e-6)  # PIL rounds to uint8


def test_jpeg_matches_pil_at_same_quality():
    x = smooth_images(1, 64, seed=10)
    uint8 = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(uint8).save(buf, "JPEG", quality=PARAMS["jpeg_compression"][2])
    ref = np.asarray(Image.open(buf), float) / 255
    got = to_hwc(corrupt(x, "jpeg_compression", 3)[0])
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert np.abs(got - to_hwc(x[0])).mean() > 1e-3  # it did compress


def test_noise_statistics():
    grey = torch.full((4, 3, 32, 32), 0.5)
    noise = corrupt(grey, "gaussian_noise", 1) - grey  # sigma 0.08: no clipping at 0.5
    assert noise.mean().abs() < 0.005 and abs(noise.std().item() - 0.08) < 0.004
    shot = corrupt(grey, "shot_noise", 1)  # Poisson(0.5 * 60) / 60
    assert abs(shot.mean().item() - 0.5) < 0.005
    assert abs(shot.var().item() - 0.5 / 60) < 0.0015
    impulse = corrupt(grey, "impulse_noise", 5)
    changed = impulse != grey
    assert set(impulse[changed].unique().tolist()) <= {0.0, 1.0}
    assert abs(changed.float().mean().item() - PARAMS["impulse_noise"][4]) < 0.02


def test_rejects_bad_input():
    x = smooth_images(1, 8)
    with pytest.raises(UserError, match="did you mean 'gaussian_noise'"):
        corrupt(x, "gausian_noise", 1)
    with pytest.raises(UserError, match="severity"):
        corrupt(x, "contrast", 6)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        corrupt(x * 255, "contrast", 1)
    with pytest.raises(UserError, match=r"\[B, 3, H, W\]"):
        corrupt(x[0], "contrast", 1)
    with pytest.raises(UserError, match="image_seeds"):
        corrupt(x, "contrast", 1, image_seeds=torch.tensor([1, 2]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    x = smooth_images(2, 32, seed=11)
    for name in sorted(CORRUPTIONS):
        on_gpu = corrupt(x.cuda(), name, 3, seed=1)
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), corrupt(x, name, 3, seed=1), rtol=0, atol=1e-4)
