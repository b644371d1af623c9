"""Decode any image file into the canonical frame: float RGB in [0, 1], [3, size, size]."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import UserError

POLICIES = ("resize_crop", "resize", "pad")
# Same bound as PIL's default; checked explicitly so a global override cannot disable it.
MAX_PIXELS = 89_478_485


class BadImageError(UserError):
    """An image file that cannot be used: unreadable, truncated, empty, not an image, too large."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"bad image '{self.path}': {reason}")


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise UserError(f"unknown resize policy '{policy}'; accepted: {', '.join(POLICIES)}")
    return policy


def open_rgb(path: str | Path, *, draft_size: int | None = None,
             max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open, fully decode and convert to 8-bit RGB (EXIF orientation applied).

    `draft_size` lets JPEG decode at a reduced scale that still covers draft_size x draft_size
    (the whole stream is still read, so truncation is still caught). Raises BadImageError.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImageError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that: make it an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise BadImageError(
                        path, f"decompression bomb refused: {width}x{height} pixels "
                        f"exceeds the limit of {max_pixels}")
                if width == 0 or height == 0:
                    raise BadImageError(path, f"image has no pixels ({width}x{height})")
                if draft_size is not None and im.format == "JPEG":
                    im.draft("RGB", (draft_size, draft_size))
                _load_strict(im)
                im = ImageOps.exif_transpose(im)
                return to_rgb(im)
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(path, "file not found") from None
    except IsADirectoryError:
        raise BadImageError(path, "is a directory, not a file") from None
    except PermissionError:
        raise BadImageError(path, "permission denied") from None
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImageError(path, f"decompression bomb refused: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        # PIL reports truncation as OSError("image file is truncated ...") or similar.
        kind = "truncated file" if "truncat" in str(err).lower() else "cannot decode"
        raise BadImageError(path, f"{kind} ({err})") from None


def _load_strict(im: Image.Image) -> None:
    """Decode all pixels; a truncated file is an error even if PIL was relaxed globally."""
    relaxed = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        im.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = relaxed


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited on white."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(im)
    if im.mode == "P" or im.mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "La", "RGBa"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return im


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    values = np.asarray(im).astype(np.float64)
    if im.mode.startswith("I;16"):
        scale = 65535.0
    elif im.mode == "F":
        scale = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
    else:  # "I" (32-bit): 16-bit PNGs open as "I" in older Pillow; 8-bit data stays 8-bit
        scale = 65535.0 if values.max(initial=0.0) > 255 else 255.0
    gray = np.clip(np.rint(values / scale * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def fit_to_frame(im: Image.Image, size: int, policy: str = "resize_crop") -> Image.Image:
    """Geometric map of an RGB image to size x size: crop, squash or letterbox (black)."""
    width, height = im.size
    resample = Image.Resampling.BICUBIC
    if policy == "resize":
        return im.resize((size, size), resample)
    if policy == "resize_crop":
        # Crop the centred square (in source pixels) and resample it once.
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return im.resize((size, size), resample, box=(left, top, left + side, top + side))
    if policy == "pad":
        scale = size / max(width, height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        canvas = Image.new("RGB", (size, size), (0, 0, 0))
        canvas.paste(im.resize((new_w, new_h), resample), ((size - new_w) // 2, (size - new_h) // 2))
        return canvas
    check_policy(policy)
    raise AssertionError("unreachable")


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> float32 [3, H, W] in [0, 1]."""
    array = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def load_image(path: str | Path, size: int = 224, policy: str = "resize_crop", *,
               max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Load one image file into the canonical frame: float32 [3, size, size] in [0, 1].

    policy: "resize_crop" (shorter side to `size`, centre crop), "resize" (squash) or
    "pad" (letterbox on black). Raises BadImageError for unusable files.
    """
    check_policy(policy)
    if not isinstance(size, int) or size < 1:
        raise UserError(f"image size must be a positive int, got {size!r}")
    im = open_rgb(path, draft_size=size, max_pixels=max_pixels)
    return pil_to_tensor(fit_to_frame(im, size, policy))


def check_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> str | None:
    """Reason why `path` is unusable, or None when it opens and fully decodes."""
    try:
        open_rgb(path, draft_size=8, max_pixels=max_pixels)
    except BadImageError as err:
        return err.reason
    return None
