"""The dataset registry: one opener per source, `open_dataset(name, **options)`."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..registry import Registry
from .folder import open_folder
from .imagenette import open_imagenette
from .imageset import ImageSet, TensorImageSet, read_manifest
from .shapes import TEXTURE_NAMES, make_shapes

DATASETS: Registry = Registry("dataset")


@DATASETS.register("imagenette")
def _imagenette(root: str | Path = "data", size_variant: int | None = 320, split: str = "val",
                size: int = 224, policy: str = "resize_crop", validate: bool = True) -> ImageSet:
    return open_imagenette(root=root, size_variant=size_variant, split=split, size=size,
                           policy=policy, validate=validate)


@DATASETS.register("folder")
def _folder(root: str | Path | Sequence[str | Path], size: int = 224,
            policy: str = "resize_crop",
            class_names: Sequence[str] | dict[str, str] | None = None,
            validate: bool = True) -> ImageSet:
    return open_folder(root, size=size, policy=policy, class_names=class_names,
                       validate=validate)


@DATASETS.register("shapes")
def open_shapes(n: int = 1000, split: str = "val", size: int = 64, n_classes: int = 10,
                seed: int = 0, cue_conflict: bool = False) -> ImageSet:
    """The synthetic shapes benchmark as an in-memory ImageSet with object masks."""
    batch = make_shapes(n, split=split, size=size, n_classes=n_classes, seed=seed,
                        cue_conflict=cue_conflict)
    options = {"n": n, "split": split, "size": size, "n_classes": n_classes, "seed": seed,
               "cue_conflict": cue_conflict}
    return TensorImageSet(
        name="shapes", images=batch.images, masks=batch.masks,
        ids=[f"{split}/{i:06d}" for i in range(n)], labels=batch.labels.numpy(),
        class_names=batch.class_names, class_wnids=None, size=size,
        provenance={"source": "shapes", "split": split, "seed": seed,
                    "cue_conflict": cue_conflict, "n_classes": n_classes,
                    "n_textures": len(TEXTURE_NAMES)},
        options=options, attributes={"object_texture": batch.object_texture.numpy(),
                                     "background_texture": batch.background_texture.numpy()})


def open_dataset(name: str, **options: Any) -> ImageSet:
    """Open a registered dataset source ("imagenette", "folder", "shapes") with its options."""
    opener = DATASETS.get(name)
    accepted = list(inspect.signature(opener).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(f"dataset '{name}' has no option(s) {unknown}; accepted: "
                        f"{', '.join(accepted)}")
    return opener(**options)


def open_manifest(path: str | Path) -> ImageSet:
    """Reopen the dataset a manifest was written from and select exactly its images."""
    manifest = read_manifest(path)
    source = manifest.dataset.get("source")
    if source is None:
        raise UserError(f"manifest '{path}' does not say which dataset it came from")
    image_set = open_dataset(source, **manifest.dataset.get("options", {})).select_ids(
        manifest.ids)
    if manifest.labels is not None and (
            image_set.labels is None or not np.array_equal(image_set.labels, manifest.labels)):
        raise UserError(f"labels in '{path}' differ from those of the dataset now on disk; "
                        "the dataset changed since the manifest was written")
    return image_set
