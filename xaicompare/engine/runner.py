"""Runs the plan models x methods x image batches, writing through the store.

Idempotent: a (model, method, batch) whose maps are stored is skipped, so an interrupted
run resumes where it stopped, and adding a model to a finished study computes only it.
One forward pass per batch serves both the stored logits and the explained targets.

Numerical safety: logits or maps with NaN/inf are stored as they are (so the numbers are
never silently changed), flagged per image in the chunk (`finite`), logged as a warning
naming model, method and image id, and listed in `RunSummary.nonfinite`. Downstream, the
compare stage treats a non-finite map as degenerate and excludes it by its declared rule
(`compare.degenerate`), with counts in degenerate_maps.csv.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..attribution import explain_full
from ..errors import UserError
from ..store import Entry, Store

log = logging.getLogger("xaicompare")

SEGMENT_PARAMS = ("n_segments", "compactness")


def image_seeds(ids: Sequence[str], seed: int) -> torch.Tensor:
    """A seed per image from its id, so random draws never depend on batch composition."""
    values = [int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:12], 16) for i in ids]
    return torch.tensor(values, dtype=torch.long)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def auto_batch_size(device: torch.device) -> int:
    return 32 if device.type == "cuda" else 8


def model_identity(model) -> dict:
    return {"model": model.name, "weights": getattr(model, "weights_id", "unknown")}


def logits_entry(store: Store, model, dataset_identity: dict, condition: str = "clean") -> Entry:
    identity = {**model_identity(model), "dataset": dataset_identity, "condition": condition}
    return store.entry("logits", f"{model.name}__{condition}", identity)


def maps_entry(store: Store, model, method: str, params: dict, dataset_identity: dict,
               target: str) -> Entry:
    identity = {**model_identity(model), "method": method, "params": params,
                "dataset": dataset_identity, "target": target}
    return store.entry("maps", f"{model.name}__{method}", identity)


def segments_entry(store: Store, params: dict, dataset_identity: dict) -> Entry:
    identity = {"params": {k: params[k] for k in SEGMENT_PARAMS if k in params},
                "dataset": dataset_identity}
    return store.entry("segments", "slic", identity)


@dataclass
class RunSummary:
    computed: dict[str, int] = field(default_factory=dict)  # "model/method" -> images computed
    skipped: dict[str, int] = field(default_factory=dict)  # already in the store
    seconds: dict[str, float] = field(default_factory=dict)
    # (model, "logits" or method, image id) of every stored result with NaN or inf, found
    # when computed or, for stored results, from the chunk's `finite` flags.
    nonfinite: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, key: str, computed: int, skipped: int, seconds: float) -> None:
        self.computed[key] = self.computed.get(key, 0) + computed
        self.skipped[key] = self.skipped.get(key, 0) + skipped
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds


def _finite_rows(array: np.ndarray) -> np.ndarray:
    """Per-row flag: every value of that row is finite."""
    return np.isfinite(array.reshape(len(array), -1)).all(axis=1)


def _map_array(maps: np.ndarray, dtype: str) -> np.ndarray:
    """Maps in the storage dtype, unless that dtype would overflow finite values to inf."""
    with np.errstate(over="ignore"):  # overflow is detected right below
        stored = maps.astype(dtype)
    if not np.array_equal(np.isfinite(stored), np.isfinite(maps)):
        return maps.astype(np.float32)  # too large for float16: keep the exact values
    return stored


def _record_nonfinite(summary: RunSummary, model: str, what: str, ids: Sequence[str],
                      finite: np.ndarray) -> None:
    bad = [i for i, ok in zip(ids, finite.tolist(), strict=True) if not ok]
    if bad:
        log.warning("model '%s': non-finite %s (NaN or inf) for %d image(s): %s; excluded "
                    "from the statistics they would corrupt", model, what, len(bad),
                    ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
        summary.nonfinite.extend((model, what, i) for i in bad)


def _stored_finite(entry: Entry, ids: Sequence[str], name: str) -> np.ndarray:
    """`finite` flags of stored rows; computed from the array for chunks written without."""
    try:
        return entry.read(ids, ["finite"])["finite"].astype(bool)
    except KeyError:
        return _finite_rows(entry.read(ids, [name])[name])


def _batches(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def _with_oom_backoff(fn: Callable[[int], None], batch_size: int) -> None:
    """Call fn(batch_size); on CUDA out-of-memory halve the batch size and retry."""
    while True:
        try:
            fn(batch_size)
            return
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise
            torch.cuda.empty_cache()
            batch_size //= 2
            log.warning("out of memory; retrying with batch size %d", batch_size)


def _segments_for(store: Store, dataset, params: dict, dataset_identity: dict,
                  rows: Sequence[int], images: torch.Tensor) -> torch.Tensor:
    """SLIC superpixels computed once per image in the canonical frame, shared by all models."""
    from ..attribution.superpixels import compute_segments

    entry = segments_entry(store, params, dataset_identity)
    ids = [dataset.ids[r] for r in rows]
    if not entry.has_all(ids):
        kwargs = {k: params[k] for k in SEGMENT_PARAMS if k in params}
        segments = compute_segments(images.cpu(), **kwargs)
        segments = segments[0] if isinstance(segments, tuple) else segments
        entry.write(ids, {"segments": segments.numpy().astype(np.int32)})
    return torch.from_numpy(entry.read(ids)["segments"].astype(np.int64))


def run_explanations(
    models: Sequence,
    dataset,
    methods: dict[str, dict],
    store: Store,
    *,
    dataset_identity: dict,
    target: str = "predicted",
    batch_size: int | str = "auto",
    device: str = "auto",
    seed: int = 0,
    map_dtype: str = "float16",
    progress: bool = True,
) -> RunSummary:
    """Compute (or find in the store) logits and maps for every model x method x image."""
    device_ = resolve_device(device)
    size = auto_batch_size(device_) if batch_size == "auto" else int(batch_size)
    summary = RunSummary()
    n = len(dataset)
    for model in models:
        model = model.to(device_)
        logits = logits_entry(store, model, dataset_identity)
        entries = {m: maps_entry(store, model, m, p, dataset_identity, target)
                   for m, p in methods.items()}
        bar = tqdm(total=n * (1 + len(methods)), desc=model.name, disable=not progress,
                   unit="map", leave=False)

        def run_all(batch: int, model=model, logits=logits, entries=entries, bar=bar) -> None:
            for rows in _batches(n, batch):
                ids = [dataset.ids[r] for r in rows]
                todo = {m: e for m, e in entries.items() if not e.has_all(ids)}
                if logits.has_all(ids) and not todo:
                    summary.add(f"{model.name}/logits", 0, len(ids), 0.0)
                    _record_nonfinite(summary, model.name, "logits", ids,
                                      _stored_finite(logits, ids, "logits"))
                    for method, entry in entries.items():
                        summary.add(f"{model.name}/{method}", 0, len(ids), 0.0)
                        _record_nonfinite(summary, model.name, method, ids,
                                          _stored_finite(entry, ids, "maps"))
                    bar.update(len(ids) * (1 + len(methods)))
                    continue
                images = dataset.load(list(rows)).to(device_)
                start = time.perf_counter()
                if logits.has_all(ids):
                    out = torch.from_numpy(logits.read(ids, ["logits"])["logits"]).to(device_)
                    summary.add(f"{model.name}/logits", 0, len(ids), 0.0)
                else:
                    with torch.no_grad():
                        out = model(images).float()
                    values = out.cpu().numpy()
                    logits.write(ids, {"logits": values, "finite": _finite_rows(values)})
                    summary.add(f"{model.name}/logits", len(ids), 0,
                                time.perf_counter() - start)
                _record_nonfinite(summary, model.name, "logits", ids,
                                  _finite_rows(out.cpu().numpy()))
                bar.update(len(ids))
                targets = _targets(out, dataset, rows, target, device_, model.name)
                for method, params in methods.items():
                    if method not in todo:
                        summary.add(f"{model.name}/{method}", 0, len(ids), 0.0)
                        _record_nonfinite(summary, model.name, method, ids,
                                          _stored_finite(entries[method], ids, "maps"))
                        bar.update(len(ids))
                        continue
                    start = time.perf_counter()
                    call = dict(params)
                    if method == "kernelshap":
                        call["segments"] = _segments_for(store, dataset, params,
                                                         dataset_identity, rows, images).to(device_)
                        call["image_seeds"] = image_seeds(ids, seed + params.get("seed", 0))
                    result = explain_full(model, images, method, targets, **call)
                    maps = result.maps.detach().float().cpu().numpy()
                    arrays = {"maps": _map_array(maps, map_dtype), "finite": _finite_rows(maps)}
                    for key, value in result.extras.items():
                        if (isinstance(value, torch.Tensor) and value.shape[:1] == (len(ids),)
                                and key not in arrays):
                            arrays[key] = value.detach().cpu().numpy()
                    todo[method].write(ids, arrays)
                    _record_nonfinite(summary, model.name, method, ids, arrays["finite"])
                    summary.add(f"{model.name}/{method}", len(ids), 0,
                                time.perf_counter() - start)
                    bar.update(len(ids))

        _with_oom_backoff(run_all, size)
        bar.close()
    summary.nonfinite = list(dict.fromkeys(summary.nonfinite))  # an OOM retry repeats batches
    return summary


def _targets(logits: torch.Tensor, dataset, rows, target: str, device,
             model: str = "model") -> torch.Tensor:
    """Classes to explain: predicted, or the label (unlabelled images: predicted)."""
    if target == "label":
        if dataset.labels is None:
            raise UserError("target 'label' needs a dataset with labels; this one has none "
                            "(use target: predicted)")
        labels = torch.as_tensor(np.asarray(dataset.labels)[list(rows)], device=device)
        outside = (labels >= logits.shape[1]).nonzero().flatten().tolist()
        if outside:
            examples = [f"{dataset.ids[rows[i]]} (label {int(labels[i])})" for i in outside[:3]]
            raise UserError(f"labels outside the class space of model '{model}': it has "
                            f"{logits.shape[1]} outputs, but images {', '.join(examples)} have "
                            "larger labels; match num_classes / class_indices to the dataset")
        return torch.where(labels >= 0, labels, logits.argmax(1))
    return logits.argmax(1)
