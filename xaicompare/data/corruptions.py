"""Common image corruptions (Hendrycks & Dietterich, ICLR 2019, "ImageNet-C") in torch.

`corrupt(images, name, severity, seed, image_seeds)` works on canonical images (float
[B, 3, H, W] in [0, 1]) on their own device and returns images of the same shape, dtype and
device, clipped to [0, 1]. Severity parameters are those of the `imagecorruptions` package
(ImageNet-C at 224 x 224); lengths in pixels (blur sigmas, disk radii) are scaled by
min(H, W) / 224 so a small image is blurred as much, relative to its size, as a 224 one.
Severity 0 returns an unchanged copy.

Randomness: every image has its own generator, seeded from (seed, corruption name,
image seed), so an image is corrupted the same way whatever batch it sits in. Pass
image_seeds (e.g. dataset indices); without them the position in the batch is used, which
is batch-independent only if batches are always built the same way. Random numbers are
drawn on the CPU (then moved), so results are identical on CPU and GPU. The seed does not
depend on severity: severities share the same underlying noise (common random numbers),
which makes curves over severity smoother.

At 224 x 224 every deterministic corruption equals the `imagecorruptions` package (the
reference ImageNet-C code) at severities 1-5, and the random ones equal it given the same
noise (tests/test_corruptions_reference.py). Differences: outputs are not quantised to
uint8 (except jpeg; pixelate's small image stays float where PIL rounds it, at most one
level apart), and the noise comes from per-image torch generators. At small sizes the
scaled blur of the lowest severities can be (almost) the identity: a defocus disk with a
scaled radius below 1 pixel holds only its centre.
"""

from __future__ import annotations

import functools
import io
import math
import zlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import UserError
from ..registry import Registry
from .colour import hsv_to_rgb, rgb_to_hsv

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIZE = 224  # ImageNet-C parameters are for 224 x 224 images

# Severity parameters from the imagecorruptions package (ImageNet-C).
PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "saturate": ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)),
    "jpeg_compression": (25, 18, 15, 10, 7),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
}


# Bumped when a corruption's output changes, so stored predictions of the old version are
# not reused (the version is part of the store's condition key; absent means 1).
VERSIONS: dict[str, int] = {
    "defocus_blur": 2,  # 2: ImageNet-C's kernel sums at severities 4-5 (1.013 / 1.011)
}


class PerImageRandom:
    """Random tensors for a batch, each image drawn from its own CPU generator."""

    def __init__(self, seeds: list[int], device: torch.device) -> None:
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.device = device

    def _draw(self, fn: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
        return torch.stack([fn(g) for g in self.generators]).to(self.device)

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._draw(lambda g: torch.randn(shape, generator=g))

    def rand(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._draw(lambda g: torch.rand(shape, generator=g))

    def poisson(self, rates: torch.Tensor) -> torch.Tensor:
        cpu = rates.detach().to("cpu", torch.float32)
        return torch.stack(
            [torch.poisson(r, generator=g) for r, g in zip(cpu, self.generators, strict=True)]
        ).to(self.device, rates.dtype)


Corruption = Callable[[torch.Tensor, int, PerImageRandom], torch.Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def register_corruption(name: str) -> Callable[[Corruption], Corruption]:
    """Decorator: fn(images float [B,3,H,W], severity 1..5, rng) -> images (unclipped ok)."""
    return CORRUPTIONS.register(name)


def list_corruptions() -> list[str]:
    return CORRUPTIONS.names()


def _param(name: str, severity: int):
    return PARAMS[name][severity - 1]


def _length_scale(x: torch.Tensor) -> float:
    return min(x.shape[-2:]) / REFERENCE_SIZE


def _pad(x: torch.Tensor, radius: int, mode: str = "reflect") -> torch.Tensor:
    # reflect (OpenCV's default border) needs the pad smaller than the image; else replicate
    if mode == "reflect" and radius >= min(x.shape[-2:]):
        mode = "replicate"
    return F.pad(x, (radius, radius, radius, radius), mode=mode)


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve each channel with the same 2-D kernel [k, k] (k odd)."""
    radius = kernel.shape[-1] // 2
    weight = kernel.to(x).expand(x.shape[1], 1, *kernel.shape)
    return F.conv2d(_pad(x, radius), weight, groups=x.shape[1])


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    radius = max(1, int(math.ceil(truncate * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / max(sigma, 1e-12)) ** 2)
    return k / k.sum()


def disk_kernel(radius: float, alias_blur: float, scale: float = 1.0) -> torch.Tensor:
    """ImageNet-C's defocus kernel; at scale 1 exactly imagecorruptions' `disk`.

    There: a filled disk on a grid of half-width 8 (radius <= 8) or `radius` (larger),
    normalised to sum 1, then cv2.GaussianBlur(ksize 3, or 5 above radius 8,
    sigmaX=alias_blur) with OpenCV's reflect-101 border and no renormalisation. Where the
    disk touches the grid's edge (radius 8 and 10: severities 4-5) the border reflects mass
    back in and the kernel sums to 1.013 / 1.011: those severities also brighten the image
    ~1%. scale (image size / 224) != 1: the disk of radius * scale on a grid with room to
    spare, smoothed, then given the reference kernel's sum (the same brightening).
    """
    reference = _reference_disk(radius, alias_blur)
    if scale == 1.0:
        return reference
    scaled = radius * scale
    half = int(math.ceil(scaled)) + 1  # +1 leaves room for the smoothing
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= scaled**2).double()
    disk = _gaussian_smooth(disk, 3, alias_blur, "constant")
    return disk * (reference.sum() / disk.sum())


def _reference_disk(radius: float, alias_blur: float) -> torch.Tensor:
    ksize = 3 if radius <= 8 else 5
    half = 8 if radius <= 8 else int(radius)
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).double()
    return _gaussian_smooth(disk / disk.sum(), ksize, alias_blur, "reflect")  # reflect-101


def _gaussian_smooth(kernel: torch.Tensor, ksize: int, sigma: float, border: str):
    """cv2.GaussianBlur(kernel, (ksize, ksize), sigma) with the given border."""
    offsets = torch.arange(ksize, dtype=torch.float64) - ksize // 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g = (g / g.sum())[None, None]
    padded = F.pad(kernel[None, None], (ksize // 2,) * 4, mode=border)
    return F.conv2d(F.conv2d(padded, g[..., None, :]), g[..., :, None])[0, 0]


@register_corruption("gaussian_noise")
def gaussian_noise(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    return x + rng.randn(tuple(x.shape[1:])).to(x.dtype) * _param("gaussian_noise", severity)


@register_corruption("shot_noise")
def shot_noise(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    c = _param("shot_noise", severity)
    return rng.poisson(x.clamp(0, 1) * c) / c


@register_corruption("impulse_noise")
def impulse_noise(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    # salt & pepper on each value (every channel separately), half salt, half pepper,
    # as skimage.util.random_noise(mode="s&p") does for ImageNet-C
    flipped = rng.rand(tuple(x.shape[1:])) < _param("impulse_noise", severity)
    salt = rng.rand(tuple(x.shape[1:])) < 0.5
    out = torch.where(flipped & salt, torch.ones_like(x), x)
    return torch.where(flipped & ~salt, torch.zeros_like(x), out)


@register_corruption("speckle_noise")
def speckle_noise(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    c = _param("speckle_noise", severity)
    return x + x * rng.randn(tuple(x.shape[1:])).to(x.dtype) * c


@register_corruption("gaussian_blur")
def gaussian_blur(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    sigma = _param("gaussian_blur", severity) * _length_scale(x)
    k1 = gaussian_kernel1d(sigma).to(x)
    radius = k1.numel() // 2
    weight = k1.expand(x.shape[1], 1, 1, k1.numel())
    # separable: along rows, then along columns (same result as the 2-D kernel, faster)
    # edge values repeat, as skimage.filters.gaussian(mode="nearest") in ImageNet-C
    x = F.conv2d(_pad(x, radius, "replicate"), weight, groups=x.shape[1])  # rows stay padded
    return F.conv2d(x, weight.transpose(-1, -2), groups=x.shape[1])


@register_corruption("defocus_blur")
def defocus_blur(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    radius, alias_blur = _param("defocus_blur", severity)
    return _depthwise(x, disk_kernel(radius, alias_blur, _length_scale(x)))


@register_corruption("contrast")
def contrast(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    means = x.mean(dim=(-2, -1), keepdim=True)  # per image and channel, as ImageNet-C
    return (x - means) * _param("contrast", severity) + means


@register_corruption("brightness")
def brightness(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    # ImageNet-C raises V in HSV with H and S fixed. Every RGB channel is v * (1 - s f(h)),
    # so that is a rescaling of the pixel by v_new / v (black pixels become grey v_new).
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + _param("brightness", severity)).clamp(0, 1)
    return torch.where(v > 0, x * (v_new / torch.where(v > 0, v, torch.ones_like(v))), v_new)


@register_corruption("saturate")
def saturate(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    # ImageNet-C's order: severities 1-2 desaturate, 3-5 oversaturate (so the change from
    # the clean image is not monotone in severity for every image)
    scale, shift = _param("saturate", severity)
    hsv = rgb_to_hsv(x)
    s = (hsv[:, 1] * scale + shift).clamp(0, 1)
    return hsv_to_rgb(torch.stack([hsv[:, 0], s, hsv[:, 2]], dim=1))


@register_corruption("jpeg_compression")
def jpeg_compression(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    quality = _param("jpeg_compression", severity)
    as_uint8 = (x.clamp(0, 1) * 255).round().to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()
    decoded = []
    for img in as_uint8:  # PIL, as ImageNet-C: encode at `quality`, decode
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, "JPEG", quality=quality)
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)
    return out.to(x.device, x.dtype) / 255.0


@functools.lru_cache(maxsize=64)
def pil_box_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """[out, in] weights of PIL's BOX resampling along one axis (Image.resize, BOX filter):
    each output pixel averages the input pixels whose centres fall in its box; when
    up-sampling this is nearest neighbour."""
    scale = in_size / out_size
    support = 0.5 * max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for out_index in range(out_size):
        center = (out_index + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        for i in range(lo, hi):
            t = (i - center + 0.5) * inv
            weights[out_index, i] = 1.0 if -0.5 < t <= 0.5 else 0.0
        total = weights[out_index].sum()
        if total > 0:
            weights[out_index] /= total
    return weights


def _box_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    rows = pil_box_matrix(x.shape[-2], size[0]).to(x)
    cols = pil_box_matrix(x.shape[-1], size[1]).to(x)
    return torch.einsum("oh,bchw,pw->bcop", rows, x, cols)


@register_corruption("pixelate")
def pixelate(x: torch.Tensor, severity: int, rng: PerImageRandom) -> torch.Tensor:
    c = _param("pixelate", severity)
    h, w = x.shape[-2:]
    small = _box_resize(x, (max(1, int(h * c)), max(1, int(w * c))))
    return _box_resize(small, (h, w))


def image_generator_seeds(
    seed: int, name: str, batch_size: int, image_seeds: torch.Tensor | None
) -> list[int]:
    """One 64-bit seed per image from (seed, corruption name, image seed)."""
    if image_seeds is None:
        per_image = list(range(batch_size))
    else:
        if image_seeds.ndim != 1 or image_seeds.shape[0] != batch_size:
            raise UserError(
                f"image_seeds must be a 1-D tensor with one seed per image ({batch_size}), "
                f"got shape {tuple(image_seeds.shape)}"
            )
        if image_seeds.is_floating_point() or (image_seeds < 0).any():
            raise UserError("image_seeds must be non-negative integers")
        per_image = [int(s) for s in image_seeds.tolist()]
    if int(seed) != seed or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed}")
    tag = zlib.crc32(name.encode())
    return [
        int(np.random.SeedSequence([int(seed), tag, s]).generate_state(1, np.uint64)[0])
        for s in per_image
    ]


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise UserError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise UserError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise UserError(f"images must be float in [0, 1], got dtype {images.dtype}")
    if images.numel() and (images.min() < -1e-6 or images.max() > 1 + 1e-6):
        raise UserError(
            f"images must lie in [0, 1] (the canonical frame), got range "
            f"[{images.min().item():.3g}, {images.max().item():.3g}]"
        )


def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int,
    seed: int = 0,
    image_seeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply corruption `name` at `severity` (0 = none, 1..5 = ImageNet-C levels).

    images: float [B, 3, H, W] in [0, 1]; image_seeds: LongTensor [B] or None (position in
    the batch). Returns a new tensor of the same shape, dtype and device, in [0, 1].
    """
    _check_images(images)
    fn = CORRUPTIONS.get(name)
    if severity not in (0, *SEVERITIES):
        raise UserError(f"severity must be one of 0, 1, 2, 3, 4, 5, got {severity}")
    seeds = image_generator_seeds(seed, name, images.shape[0], image_seeds)
    if severity == 0:
        return images.clone()
    work_dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    rng = PerImageRandom(seeds, images.device)
    with torch.no_grad():
        out = fn(images.detach().to(work_dtype), int(severity), rng)
    return out.clamp(0.0, 1.0).to(images.dtype)
