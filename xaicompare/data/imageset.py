"""ImageSet: the images, labels and provenance every other part of xaicompare works on."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from .images import check_image, check_policy, load_image

FOLDER_ORDER = "sorted folder names"


class ImageSet:
    """A list of images in one canonical frame, with labels in the study class space.

    Subclasses say where pixels come from (`_load_rows`, `_mask_rows`, `_take`).
    """

    name: str
    ids: list[str]
    labels: np.ndarray | None
    class_names: list[str]
    class_wnids: list[str] | None
    size: int
    skipped: list[tuple[str, str]]

    def __init__(self, *, name: str, ids: Sequence[str], labels: np.ndarray | None,
                 class_names: Sequence[str], class_wnids: Sequence[str] | None, size: int,
                 skipped: Sequence[tuple[str, str]] = (), provenance: dict | None = None,
                 options: dict | None = None,
                 attributes: dict[str, np.ndarray] | None = None) -> None:
        self.name = name
        self.ids = list(ids)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None and self.labels.shape != (len(self.ids),):
            raise ValueError(f"labels shape {self.labels.shape} does not match {len(self.ids)} ids")
        self.class_names = list(class_names)
        self.class_wnids = None if class_wnids is None else list(class_wnids)
        self.size = int(size)
        self.skipped = list(skipped)
        self._provenance = dict(provenance or {})
        self._options = dict(options or {})  # open_dataset(name, **options) reopens the source
        # Per-image values beside the label (e.g. the shapes' object texture), [N] each.
        self.attributes = {k: np.asarray(v) for k, v in (attributes or {}).items()}
        for key, value in self.attributes.items():
            if value.shape[:1] != (len(self.ids),):
                raise ValueError(f"attribute '{key}' has {value.shape[:1]} rows, not {len(ids)}")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, n={len(self)}, size={self.size}, "
                f"classes={len(self.class_names)}, skipped={len(self.skipped)})")

    @property
    def class_order_defined(self) -> bool:
        """The label order is the source's own definition (shapes, Imagenette, a folder with
        a class_names option), not merely the sorted names of class folders."""
        return self._provenance.get("class_order") != FOLDER_ORDER

    def _rows(self, indices: Sequence[int]) -> np.ndarray:
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"indices out of range for an ImageSet of {len(self)} images")
        return rows % max(len(self), 1)

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """float32 [b, 3, size, size] in [0, 1]."""
        rows = self._rows(indices)
        if rows.size == 0:
            return torch.zeros(0, 3, self.size, self.size)
        return self._load_rows(rows)

    def masks(self, indices: Sequence[int]) -> torch.Tensor | None:
        """bool [b, size, size] object masks, or None when the source has none."""
        return self._mask_rows(self._rows(indices))

    def subset(self, indices: Sequence[int]) -> ImageSet:
        """The images at `indices`, in that order (skipped files stay reported)."""
        rows = self._rows(indices)
        clone = copy.copy(self)
        clone.ids = [self.ids[i] for i in rows]
        clone.labels = None if self.labels is None else self.labels[rows]
        clone.attributes = {k: v[rows] for k, v in self.attributes.items()}
        clone._take(rows)
        return clone

    def select_ids(self, ids: Sequence[str]) -> ImageSet:
        """The images with these ids, in this order; UserError naming ids that are missing."""
        position = {image_id: i for i, image_id in enumerate(self.ids)}
        missing = [i for i in ids if i not in position]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise UserError(f"{len(missing)} image id(s) not in dataset '{self.name}': "
                            f"{shown}{more}")
        return self.subset([position[i] for i in ids])

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance: source, root, split, size, policy, seed, n, n_skipped, ..."""
        info = {"source": self.name, "root": None, "split": None, "size": self.size,
                "policy": None, "seed": None}
        info.update(self._provenance)
        info.update({"n": len(self), "n_skipped": len(self.skipped),
                     "n_classes": len(self.class_names), "options": dict(self._options)})
        return info

    # -- hooks for subclasses
    def _load_rows(self, rows: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def _mask_rows(self, rows: np.ndarray) -> torch.Tensor | None:
        return None

    def _take(self, rows: np.ndarray) -> None:
        """Restrict per-image storage of a shallow copy to `rows`."""


class FileImageSet(ImageSet):
    """Images read from files under `root` (ids are paths relative to it), decoded on demand."""

    def __init__(self, *, root: Path, policy: str = "resize_crop", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.policy = check_policy(policy)
        self._provenance.setdefault("policy", policy)
        self._provenance.setdefault("root", str(root))

    def path(self, index: int) -> Path:
        return self.root / self.ids[index]

    def _load_rows(self, rows: np.ndarray) -> torch.Tensor:
        return torch.stack([load_image(self.path(i), self.size, self.policy) for i in rows])


class TensorImageSet(ImageSet):
    """Images held in memory as uint8 [N, 3, S, S] (synthetic sets), with optional masks."""

    def __init__(self, *, images: torch.Tensor, masks: torch.Tensor | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if images.dtype != torch.uint8 or images.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"images must be uint8 [N, 3, {self.size}, {self.size}]")
        self._images = images
        self._masks = masks

    def _load_rows(self, rows: np.ndarray) -> torch.Tensor:
        return self._images[torch.from_numpy(rows)].float().div_(255.0)

    def _mask_rows(self, rows: np.ndarray) -> torch.Tensor | None:
        return None if self._masks is None else self._masks[torch.from_numpy(rows)]

    def _take(self, rows: np.ndarray) -> None:
        index = torch.from_numpy(rows)
        self._images = self._images[index]
        self._masks = None if self._masks is None else self._masks[index]


def validate_files(root: Path, relative_paths: Sequence[str]
                   ) -> tuple[list[int], list[tuple[str, str]]]:
    """Fully decode every file once: (positions of good files, [(path, reason)] for bad ones)."""
    keep, skipped = [], []
    for i, rel in enumerate(relative_paths):
        reason = check_image(Path(root) / rel)
        if reason is None:
            keep.append(i)
        else:
            skipped.append((rel, reason))
    return keep, skipped


def select_subset(image_set: ImageSet, n_images: int, seed: int = 0,
                  stratify: bool = True) -> ImageSet:
    """`n_images` images chosen deterministically from `seed`, in dataset order.

    With labels and `stratify`, each class (unknown = -1 counts as one) gets a share
    proportional to its size (largest remainder, ties to the lower label).
    """
    n_total = len(image_set)
    if not isinstance(n_images, int | np.integer) or n_images < 1:
        raise UserError(f"n_images must be a positive int, got {n_images!r}")
    if n_images > n_total:
        raise UserError(f"n_images={n_images} but dataset '{image_set.name}' has only "
                        f"{n_total} images")
    rng = np.random.default_rng(seed)
    if not stratify or image_set.labels is None:
        chosen = rng.choice(n_total, size=n_images, replace=False)
    else:
        classes, counts = np.unique(image_set.labels, return_counts=True)
        quotas = _largest_remainder(counts, n_images)
        chosen = np.concatenate([
            rng.choice(np.flatnonzero(image_set.labels == c), size=q, replace=False)
            for c, q in zip(classes, quotas, strict=True)
        ])
    return image_set.subset(np.sort(chosen))


def _largest_remainder(counts: np.ndarray, n: int) -> np.ndarray:
    exact = counts * (n / counts.sum())
    quotas = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[: n - quotas.sum()]] += 1
    return quotas


MANIFEST_FORMAT = "xaicompare.manifest"


@dataclass(frozen=True)
class Manifest:
    ids: list[str]
    labels: np.ndarray | None
    class_names: list[str]
    dataset: dict[str, Any]  # ImageSet.describe() of the set the ids were taken from


def manifest_json(image_set: ImageSet) -> str:
    """The manifest of a set (ids, labels, provenance) as JSON text."""
    payload = {
        "format": MANIFEST_FORMAT, "version": 1, "dataset": image_set.describe(),
        "class_names": image_set.class_names, "ids": image_set.ids,
        "labels": None if image_set.labels is None else image_set.labels.tolist(),
    }
    return json.dumps(payload, indent=1)


def write_manifest(image_set: ImageSet, path: str | Path) -> Path:
    """Record the exact images of a set (ids, labels, provenance) as JSON (a study writes
    manifest_json atomically instead, see Study.dataset)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manifest_json(image_set))
    return path


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest written by write_manifest."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"manifest '{path}' does not exist") from None
    except json.JSONDecodeError as err:
        raise UserError(f"manifest '{path}' is not valid JSON ({err})") from None
    if not isinstance(payload, dict) or payload.get("format") != MANIFEST_FORMAT:
        raise UserError(f"'{path}' is not an xaicompare manifest (format={MANIFEST_FORMAT!r})")
    labels = payload.get("labels")
    return Manifest(ids=list(payload["ids"]),
                    labels=None if labels is None else np.asarray(labels, dtype=np.int64),
                    class_names=list(payload.get("class_names", [])),
                    dataset=dict(payload.get("dataset", {})))
