"""The copy of a figure embedded in the HTML report: smaller than the file on disk (which
keeps its full quality), so the quickstart report stays under 5 MB."""

from __future__ import annotations

import io
from pathlib import Path

IMAGE_MIME = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
HTML_MAX_WIDTH = 1600
WEBP_QUALITY = 80
PHOTO_COLOURS = 4096


def html_image(path: Path, max_width: int = HTML_MAX_WIDTH) -> tuple[str, bytes]:
    """(mime, bytes) of a figure's copy for the HTML page: the file on disk keeps its full
    quality. Raster figures wider than `max_width` px are scaled down; plots with few
    colours become palette PNGs (exact up to 256 shades), photographic pages (atlases:
    photos under heat maps) lossy WebP. The original bytes are kept when they are smaller."""
    data = path.read_bytes()
    if path.suffix.lower() != ".png":
        return IMAGE_MIME[path.suffix.lower()], data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGBA")
    if image.getextrema()[3][0] == 255:  # opaque (matplotlib's white background)
        image = image.convert("RGB")
    if image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image.getcolors(maxcolors=PHOTO_COLOURS) is None:  # photographic: lossy WebP
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=6)
        mime = "image/webp"
    else:
        method = Image.Quantize.FASTOCTREE if image.mode == "RGBA" else \
            Image.Quantize.MEDIANCUT
        image.quantize(256, method=method).save(buffer, format="PNG", optimize=True)
        mime = "image/png"
    if len(buffer.getvalue()) >= len(data):
        return "image/png", data
    return mime, buffer.getvalue()
