"""On-disk store of per-image arrays (maps, logits, superpixels), keyed by what made them.

Layout:  ROOT/<kind>/<entry key>/meta.json
         ROOT/<kind>/<entry key>/chunks/<hash of image ids>.npz

An entry is one (model + weights, method + parameters) or (model, condition) combination;
its key is a readable prefix plus a hash of everything that determines the numbers, so a
changed parameter makes a new entry and never overwrites an old one. A chunk holds the
arrays of one batch of images. Chunks are written to a temporary file and renamed, so a
chunk is either complete or absent: a run killed at any moment resumes cleanly.
Temporary files carry the writer's pid; `remove_stale_temporaries` deletes those left by a
killed run (call it while holding the run lock, see engine/lock.py). A write that fails
because the disk is full or the folder is read-only removes its temporary file and raises
a UserError naming the folder; chunks already written stay valid.
No pickles: arrays are saved and loaded with allow_pickle=False.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import (
    UNWRITABLE,
    atomic_write,
    remove_stale_temporaries,
    unwritable_folder_error,
)


def stable_hash(obj, length: int = 12) -> str:
    """Hash of a JSON-able object, independent of dict order."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def entry_key(prefix: str, identity: dict) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix)[:80]
    return f"{safe}-{stable_hash(identity)}"


class Entry:
    """One keyed collection of per-image arrays."""

    def __init__(self, directory: Path, identity: dict,
                 expect: dict[str, tuple[int, ...]] | None = None) -> None:
        self.directory = directory
        self.identity = identity
        self.expect = dict(expect or {})  # per-image shape an array must have to be served
        self._index: dict[str, tuple[Path, int]] | None = None

    # -- writing ------------------------------------------------------------------------
    def write(self, ids: Sequence[str], arrays: dict[str, np.ndarray]) -> Path:
        """Store arrays whose first axis is aligned with `ids`, atomically."""
        ids = [str(i) for i in ids]
        for name, array in arrays.items():
            if len(array) != len(ids):
                raise ValueError(f"array '{name}' has {len(array)} rows for {len(ids)} ids")
        chunks = self.directory / "chunks"
        try:
            chunks.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if err.errno in UNWRITABLE:
                raise unwritable_folder_error(self.directory, err) from None
            raise
        meta = self.directory / "meta.json"
        if not meta.exists():
            atomic_write(meta, lambda h: h.write(json.dumps(self.identity, indent=2,
                                                                    default=str).encode()))
        path = chunks / f"{stable_hash(ids, 20)}.npz"
        payload = {"ids": np.asarray(ids, dtype=str), **{k: np.asarray(v) for k, v in arrays.items()}}
        for name, array in payload.items():
            if array.dtype == object:  # would need a pickle to save or load
                raise TypeError(f"array '{name}' has dtype object; the store holds plain arrays")
        atomic_write(path, lambda h: np.savez(h, **payload))
        if self._index is not None:  # extend it: a rebuild re-reads every chunk (quadratic)
            self._index.update((image_id, (path, row)) for row, image_id in enumerate(ids))
        return path

    # -- reading ------------------------------------------------------------------------
    def _build_index(self) -> dict[str, tuple[Path, int]]:
        index: dict[str, tuple[Path, int]] = {}
        chunks = self.directory / "chunks"
        if chunks.is_dir():
            for path in sorted(chunks.glob("*.npz")):
                try:
                    with np.load(path, allow_pickle=False) as data:
                        ids = data["ids"]
                except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
                    # A corrupt chunk is treated as missing: its images are recomputed. It is
                    # kept aside (not deleted) so a user can inspect it.
                    with contextlib.suppress(OSError):  # a read-only store still reads
                        path.rename(path.with_suffix(".corrupt"))
                    continue
                for row, image_id in enumerate(ids.tolist()):
                    index[image_id] = (path, row)
        return index

    @property
    def index(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            self._index = self._build_index()
        return self._index

    def missing(self, ids: Sequence[str]) -> list[str]:
        return [i for i in ids if str(i) not in self.index]

    def has_all(self, ids: Sequence[str]) -> bool:
        return not self.missing(ids)

    def read(self, ids: Sequence[str], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Arrays for `ids`, in that order; raises KeyError naming ids not stored."""
        missing = self.missing(ids)
        if missing:
            raise KeyError(f"{len(missing)} images not in store entry {self.directory.name}, "
                           f"e.g. {missing[:3]}")
        by_chunk: dict[Path, list[tuple[int, int]]] = {}
        for position, image_id in enumerate(ids):
            path, row = self.index[str(image_id)]
            by_chunk.setdefault(path, []).append((position, row))
        out: dict[str, np.ndarray] = {}
        for path, pairs in by_chunk.items():
            with np.load(path, allow_pickle=False) as data:
                keys = [k for k in data.files if k != "ids"] if names is None else list(names)
                for key in keys:
                    array = data[key]
                    self._check_shape(key, array, path)
                    if key not in out:
                        out[key] = np.empty((len(ids), *array.shape[1:]), dtype=array.dtype)
                    elif np.result_type(out[key], array) != out[key].dtype:
                        # e.g. a float32 chunk among float16 ones: never cast values down
                        out[key] = out[key].astype(np.result_type(out[key], array))
                    positions = [p for p, _ in pairs]
                    rows = [r for _, r in pairs]
                    out[key][positions] = array[rows]
        return out


    def _check_shape(self, key: str, array: np.ndarray, path: Path) -> None:
        """Never serve an array whose per-image shape is not the one expected now."""
        expected = self.expect.get(key)
        if expected is not None and tuple(array.shape[1:]) != tuple(expected):
            raise UserError(
                f"store entry '{self.directory}' holds '{key}' of shape {tuple(array.shape[1:])} "
                f"per image (chunk {path.name}), but {tuple(expected)} is expected now (e.g. "
                "the model's number of classes changed): it is stale, written for another "
                "configuration; delete that folder and run again to recompute it")


class Store:
    """A folder of entries. `entry(kind, prefix, identity)` gets or creates one."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry(self, kind: str, prefix: str, identity: dict,
              expect: dict[str, tuple[int, ...]] | None = None) -> Entry:
        """expect: per-image shapes reads must find (a stale entry is refused, not served)."""
        return Entry(self.root / kind / entry_key(prefix, identity), identity, expect)

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by killed writers; returns how many were removed.

        Only safe while no other process writes this store (hold the run lock).
        """
        return remove_stale_temporaries(self.root)

    def entries(self, kind: str) -> list[Entry]:
        folder = self.root / kind
        if not folder.is_dir():
            return []
        out = []
        for meta in sorted(folder.glob("*/meta.json")):
            out.append(Entry(meta.parent, json.loads(meta.read_text())))
        return out
