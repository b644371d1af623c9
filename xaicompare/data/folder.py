"""Any folder of images: class subfolders (labelled), a flat folder, or a list of files."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from .classes import imagenet_wnid_names, is_wnid, readable_name
from .imageset import FOLDER_ORDER, FileImageSet, validate_files


def _visible_files(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Regular files below `folder`, recursively, skipping hidden files and folders; and
    (path, reason) for what is not read: symlinked folders (not followed) and symlinks to
    files outside `folder` (a folder of images never reads files elsewhere)."""
    root = folder.resolve()
    found, refused = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        links = sorted(d for d in dirnames if not d.startswith(".") and (here / d).is_symlink())
        refused += [((here / d).relative_to(folder).as_posix() + "/",
                     "symlinked folder, not followed (copy it into the image folder)")
                    for d in links]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in links)
        for name in sorted(f for f in filenames if not f.startswith(".")):
            path = here / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                refused.append((path.relative_to(folder).as_posix(),
                                "symlink to a file outside the image folder, not read"))
            else:
                found.append(path)
    return found, refused


def _empty_class_folders(root: Path, folders: list[str]) -> list[tuple[str, str]]:
    """Top-level folders without any image file: reported, since they are no class."""
    present = set(folders)
    return [(f"{d.name}/", "class folder without files, not a class")
            for d in sorted(root.iterdir())
            if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
            and d.name not in present]


def _warn_layout(root: Path, rel: list[str], size: int, keep: list[int]) -> None:
    """Warn (not skip) about images that count but may surprise: files in sub-folders of a
    class folder, and tiny images upscaled more than 4x to the canonical size."""
    nested = [r for r in rel if r.count("/") >= 2]
    if nested:
        classes = sorted({r.split("/")[0] for r in nested})
        warnings.warn(f"'{root}': {len(nested)} image(s) in sub-folders of class folder(s) "
                      f"{classes[:5]} count for that class (e.g. '{nested[0]}')",
                      UserWarning, stacklevel=4)
    tiny = []
    for i in keep:
        with contextlib.suppress(OSError), Image.open(root / rel[i]) as im:
            if min(im.size) * 4 <= size:
                tiny.append(f"{rel[i]} ({im.size[0]}x{im.size[1]})")
    if tiny:
        warnings.warn(f"'{root}': {len(tiny)} tiny image(s) upscaled more than 4x to {size} px, "
                      f"e.g. {', '.join(tiny[:3])}", UserWarning, stacklevel=4)


def _class_names_for(folders: list[str]) -> tuple[list[str], list[str] | None]:
    """Readable names for class folders; wnids too when every folder is an ImageNet wnid."""
    known = imagenet_wnid_names()
    if folders and all(is_wnid(f) and f in known for f in folders):
        return [readable_name(f) for f in folders], list(folders)
    return list(folders), None


def open_folder(root: str | Path | Sequence[str | Path], size: int = 224,
                policy: str = "resize_crop",
                class_names: Sequence[str] | Mapping[str, str] | None = None,
                validate: bool = True) -> FileImageSet:
    """Images from a folder or a list of files.

    - a folder with class subfolders: label k = k-th subfolder in sorted order (wnid folders
      get readable ImageNet names); files directly in the root are reported as skipped;
    - a flat folder or a list of files: labels None.
    Every candidate file (all visible files) is fully decoded once; bad ones land in
    `skipped` with their reason. `class_names` fixes the class space (order) of a labelled
    folder: entries match folder names or their readable names; other folders get label -1.
    A mapping {folder: class name} instead renames folders into the model's class names
    (order stays that of the sorted folders; a study then matches classes by name).
    """
    if isinstance(root, str | Path):
        return _open_directory(Path(root), size, policy, class_names, validate)
    return _open_file_list([Path(p) for p in root], size, policy, validate)


def _open_directory(root: Path, size: int, policy: str, class_names: Sequence[str] | None,
                    validate: bool) -> FileImageSet:
    if not root.is_dir():
        kind = "is not a folder" if root.exists() else "does not exist"
        raise UserError(f"image folder '{root}' {kind}")
    option = dict(class_names) if isinstance(class_names, Mapping) else (
        None if class_names is None else list(class_names))  # as given, for reopening
    files, skipped = _visible_files(root)
    rel = [f.relative_to(root).as_posix() for f in files]
    folders = sorted({r.split("/")[0] for r in rel if "/" in r})
    if folders:
        skipped += _empty_class_folders(root, folders)
        skipped += [(r, "not inside a class folder") for r in rel if "/" not in r]
        rel = [r for r in rel if "/" in r]
        names, wnids = _class_names_for(folders)
        if isinstance(class_names, Mapping):  # folder -> class name in the model's terms
            names = _renamed(root, folders, names, class_names)
            class_names = None
        folder_label = _folder_labels(folders, names, class_names)
        if class_names is not None:
            names, wnids = list(class_names), _wnids_for(class_names, folders, names, wnids)
        labels = np.array([folder_label[r.split("/")[0]] for r in rel], dtype=np.int64)
    else:
        names, wnids, labels = [], None, None
    keep, bad = validate_files(root, rel) if validate else (list(range(len(rel))), [])
    skipped += bad
    if not keep:
        raise UserError(f"no readable images in '{root}' ({len(skipped)} file(s) skipped"
                        + (f", e.g. '{skipped[0][0]}': {skipped[0][1]}" if skipped else "") + ")")
    if validate:
        _warn_layout(root, rel, size, keep)
    return FileImageSet(
        name="folder", root=root, ids=[rel[i] for i in keep],
        labels=None if labels is None else labels[keep], class_names=names,
        class_wnids=wnids, size=size, policy=policy, skipped=skipped,
        provenance={"source": "folder", "root": str(root), "layout":
                    "class_folders" if folders else "flat",
                    # sorted folder names are no class order a model knows: match by name
                    **({"class_order": FOLDER_ORDER if class_names is None
                        else "class_names option"} if folders else {})},
        options={"root": str(root), "size": size, "policy": policy,
                 "class_names": option},
    )


def _renamed(root: Path, folders: list[str], names: list[str],
             mapping: Mapping[str, str]) -> list[str]:
    unknown = sorted(set(mapping) - set(folders))
    if unknown:
        raise UserError(f"class_names maps folder(s) {unknown} that are not class folders of "
                        f"'{root}'; its class folders: {', '.join(folders)}")
    return [str(mapping.get(f, n)) for f, n in zip(folders, names, strict=True)]


def _folder_labels(folders: list[str], names: list[str],
                   class_names: Sequence[str] | None) -> dict[str, int]:
    if class_names is None:
        return {f: k for k, f in enumerate(folders)}
    position = {c: k for k, c in enumerate(class_names)}
    return {f: position.get(f, position.get(n, -1)) for f, n in zip(folders, names, strict=True)}


def _wnids_for(class_names: Sequence[str], folders: list[str], names: list[str],
               wnids: list[str] | None) -> list[str] | None:
    if wnids is None:
        return None
    by_name = dict(zip(names, wnids, strict=True)) | dict(zip(folders, wnids, strict=True))
    found = [by_name.get(c) for c in class_names]
    return None if None in found else found  # type: ignore[return-value]


def _open_file_list(paths: list[Path], size: int, policy: str, validate: bool) -> FileImageSet:
    if not paths:
        raise UserError("the list of image files is empty")
    absolute = [p.resolve() for p in paths]
    base = Path(os.path.commonpath([p.parent for p in absolute]))
    rel = [p.relative_to(base).as_posix() for p in absolute]
    keep, skipped = validate_files(base, rel) if validate else (list(range(len(rel))), [])
    if not keep:
        raise UserError(f"none of the {len(paths)} listed files is a readable image "
                        f"(e.g. '{paths[0]}': {skipped[0][1]})")
    return FileImageSet(
        name="folder", root=base, ids=[rel[i] for i in keep], labels=None, class_names=[],
        class_wnids=None, size=size, policy=policy, skipped=skipped,
        provenance={"source": "folder", "root": str(base), "layout": "file_list"},
        options={"root": [str(p) for p in absolute], "size": size, "policy": policy},
    )
