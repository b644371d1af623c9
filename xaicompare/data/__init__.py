"""Data: images in one canonical frame, labels, masks, subsets and manifests.

`open_dataset("imagenette" | "folder" | "shapes", **options) -> ImageSet` is the entry point.
"""

from .archive import download, safe_extract
from .classes import IMAGENETTE_CLASSES, ImagenetteClass, imagenet_index, readable_name
from .folder import open_folder
from .imagenette import ARCHIVES, open_imagenette, prepare_imagenette
from .images import POLICIES, BadImageError, check_image, load_image
from .imageset import (
    FileImageSet,
    ImageSet,
    Manifest,
    TensorImageSet,
    read_manifest,
    select_subset,
    write_manifest,
)
from .shapes import SHAPE_NAMES, TEXTURE_NAMES, ShapesBatch, make_shapes
from .sources import DATASETS, open_dataset, open_manifest, open_shapes

__all__ = [
    "ARCHIVES", "DATASETS", "IMAGENETTE_CLASSES", "POLICIES", "SHAPE_NAMES", "TEXTURE_NAMES",
    "BadImageError", "FileImageSet", "ImageSet", "ImagenetteClass", "Manifest", "ShapesBatch",
    "TensorImageSet", "check_image", "download", "imagenet_index", "load_image", "make_shapes",
    "open_dataset", "open_folder", "open_imagenette", "open_manifest", "open_shapes",
    "prepare_imagenette", "read_manifest", "readable_name", "safe_extract", "select_subset",
    "write_manifest",
]
