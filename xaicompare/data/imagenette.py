"""Imagenette (imagenette2): download, verify, extract, and open a split as an ImageSet."""

from __future__ import annotations

import csv
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .archive import Fetch, download, file_md5, safe_extract
from .classes import IMAGENETTE_CLASSES, IMAGENETTE_NAMES, IMAGENETTE_WNIDS
from .imageset import FileImageSet, validate_files

BUCKET = "https://s3.amazonaws.com/fast-ai-imageclas/"
CSV_NAME = "noisy_imagenette.csv"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class ImagenetteArchive:
    size: int | None  # None = full size
    filename: str
    folder: str  # top-level folder inside the archive
    md5: str  # as published with torchvision.datasets.Imagenette


ARCHIVES: dict[int | None, ImagenetteArchive] = {
    None: ImagenetteArchive(None, "imagenette2.tgz", "imagenette2",
                            "fe2fc210e6bb7c5664d602c3cd71e612"),
    320: ImagenetteArchive(320, "imagenette2-320.tgz", "imagenette2-320",
                           "3df6f0d01a2c9592104656642f5e78a3"),
    160: ImagenetteArchive(160, "imagenette2-160.tgz", "imagenette2-160",
                           "e793b78cc4c9e9a4ccc0c1155377a412"),
}


def archive_info(size: int | None) -> ImagenetteArchive:
    if size not in ARCHIVES:
        raise UserError(f"unknown Imagenette size variant {size!r}; accepted: 160, 320, "
                        "None (full size)")
    return ARCHIVES[size]


def is_prepared(folder: Path) -> bool:
    """An extracted imagenette2 folder: the labels csv and both split folders."""
    return (folder / CSV_NAME).is_file() and all((folder / s).is_dir() for s in SPLITS)


def prepare_command(size: int | None, root: Path | str) -> str:
    size_arg = "full" if size is None else str(size)
    return f"xaicompare datasets prepare imagenette --size {size_arg} --root {root}"


def prepare_imagenette(size: int | None = 320, root: str | Path = "data", archive: Path | None = None,
                       url: str | None = None, progress: bool = True, *,
                       md5: str | None = None, fetch: Fetch | None = None,
                       verify: bool = True) -> Path:
    """Make `root/imagenette2[-size]/` ready to use and return it.

    An already extracted folder is recognised and left untouched. Otherwise the archive is
    taken from `archive` (a .tgz the user already has) or downloaded from `url` (default:
    fastai's bucket) into `root/cache/`, resuming a partial download. The md5 is checked
    when known (the official archives, or `md5=`); for other URLs the tar is checked to be
    complete and readable during extraction. `fetch(url, part_path)` replaces the network.
    """
    info = archive_info(size)
    root = Path(root)
    folder = root / info.folder
    if is_prepared(folder):
        return folder
    official = archive is None and url is None
    expected_md5 = md5 if md5 is not None else (info.md5 if verify and official else None)
    if archive is not None:
        archive = Path(archive)
        if not archive.is_file():
            raise UserError(f"Imagenette archive '{archive}' does not exist")
        if expected_md5 is not None:
            if file_md5(archive) != expected_md5:
                raise UserError(f"archive '{archive}' does not match md5 {expected_md5}")
    else:
        archive = download(url or BUCKET + info.filename, root / "cache" / info.filename,
                           cache=root / "cache", md5=expected_md5, fetch=fetch,
                           progress=progress)
    _extract_atomically(archive, root, info.folder)
    if not is_prepared(folder):
        raise UserError(f"archive '{archive}' did not contain '{info.folder}/{CSV_NAME}' with "
                        f"train/ and val/ folders; is it an imagenette2 archive?")
    return folder


def _extract_atomically(archive: Path, root: Path, folder: str) -> None:
    """Extract into a temporary sibling, then rename: a crash never leaves a half folder."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        safe_extract(archive, staging)
        extracted = staging / folder
        if not extracted.is_dir():
            raise UserError(f"archive '{archive}' has no top-level folder '{folder}/'")
        target = root / folder
        if target.exists():  # a stale, incomplete earlier attempt
            shutil.rmtree(target)
        extracted.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_split(folder: Path, split: str) -> list[tuple[str, str]]:
    """(relative path, wnid) for every image of `split`, from noisy_imagenette.csv."""
    if split not in SPLITS:
        raise UserError(f"unknown Imagenette split '{split}'; accepted: {', '.join(SPLITS)}")
    want_valid = split == "val"
    rows = []
    with (folder / CSV_NAME).open(newline="") as f:
        for row in csv.DictReader(f):
            if (row["is_valid"].strip().lower() == "true") == want_valid:
                rows.append((row["path"], row["noisy_labels_0"]))  # 0% noise = clean labels
    return sorted(rows)


def open_imagenette(root: str | Path = "data", size_variant: int | None = 320, split: str = "val",
                    size: int = 224, policy: str = "resize_crop",
                    validate: bool = True) -> FileImageSet:
    """The prepared Imagenette `split` as an ImageSet in the 10-class Imagenette space."""
    info = archive_info(size_variant)
    folder = Path(root) / info.folder
    if not is_prepared(folder):
        raise UserError(f"Imagenette ({info.folder}) is not prepared under '{root}'; run "
                        f"`{prepare_command(size_variant, root)}` (or "
                        f"xaicompare.data.prepare_imagenette) first")
    rows = read_split(folder, split)
    wnid_to_label = {wnid: k for k, wnid in enumerate(IMAGENETTE_WNIDS)}
    unknown = sorted({wnid for _, wnid in rows} - set(wnid_to_label))
    if unknown:
        raise UserError(f"'{folder / CSV_NAME}' has labels outside the Imagenette classes: "
                        f"{unknown}")
    ids = [path for path, _ in rows]
    labels = np.array([wnid_to_label[wnid] for _, wnid in rows], dtype=np.int64)
    keep, skipped = validate_files(folder, ids) if validate else (list(range(len(ids))), [])
    return FileImageSet(
        name="imagenette", root=folder, ids=[ids[i] for i in keep], labels=labels[keep],
        class_names=list(IMAGENETTE_NAMES), class_wnids=[c.wnid for c in IMAGENETTE_CLASSES],
        size=size, policy=policy, skipped=skipped,
        provenance={"source": "imagenette", "root": str(folder), "split": split,
                    "size_variant": size_variant, "archive": info.filename},
        options={"root": str(root), "size_variant": size_variant, "split": split,
                 "size": size, "policy": policy},
    )
