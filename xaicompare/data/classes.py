"""The Imagenette class space and ImageNet-1k metadata (wnids, readable names, indices)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

WNID_PATTERN = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class ImagenetteClass:
    wnid: str  # WordNet id, also the folder name inside the Imagenette archives
    name: str  # short readable name
    imagenet_index: int  # index of this class among ImageNet-1k logits


# The order is the study class space: label k of an Imagenette ImageSet is IMAGENETTE_CLASSES[k].
# It is also sorted by wnid and by ImageNet index, so folder order == class order.
# Parachute is n03888257 (ImageNet index 701); n03888605 is "parallel bars" (702).
IMAGENETTE_CLASSES: tuple[ImagenetteClass, ...] = (
    ImagenetteClass("n01440764", "tench", 0),
    ImagenetteClass("n02102040", "English springer", 217),
    ImagenetteClass("n02979186", "cassette player", 482),
    ImagenetteClass("n03000684", "chain saw", 491),
    ImagenetteClass("n03028079", "church", 497),
    ImagenetteClass("n03394916", "French horn", 566),
    ImagenetteClass("n03417042", "garbage truck", 569),
    ImagenetteClass("n03425413", "gas pump", 571),
    ImagenetteClass("n03445777", "golf ball", 574),
    ImagenetteClass("n03888257", "parachute", 701),
)
IMAGENETTE_WNIDS: tuple[str, ...] = tuple(c.wnid for c in IMAGENETTE_CLASSES)
IMAGENETTE_NAMES: tuple[str, ...] = tuple(c.name for c in IMAGENETTE_CLASSES)
IMAGENETTE_IMAGENET_INDICES: tuple[int, ...] = tuple(c.imagenet_index for c in IMAGENETTE_CLASSES)


def is_wnid(name: str) -> bool:
    return bool(WNID_PATTERN.match(name))


@lru_cache(maxsize=1)
def imagenet_wnid_names() -> dict[str, str]:
    """ImageNet-1k wnid -> short readable name (first lemma), from timm's bundled metadata.

    Empty when timm is not importable, so callers fall back to folder names.
    """
    try:
        from timm.data import ImageNetInfo
    except ImportError:  # pragma: no cover - timm is a hard dependency, but stay usable
        return {}
    info = ImageNetInfo("imagenet-1k")
    return {
        wnid: info.label_name_to_description(wnid).split(",")[0].strip()
        for wnid in info.label_names()
    }


def imagenet_index(wnid: str) -> int | None:
    """Index of `wnid` among the ImageNet-1k logits, or None when it is not an ImageNet-1k class."""
    return _imagenet_indices().get(wnid)


@lru_cache(maxsize=1)
def _imagenet_indices() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(imagenet_wnid_names())}


def readable_name(wnid: str) -> str:
    """Readable name of an ImageNet-1k wnid; the wnid itself when unknown."""
    return imagenet_wnid_names().get(wnid, wnid)
