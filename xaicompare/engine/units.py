"""One unit of the explain plan: one model on one shard of images.

Both executors call `explain_unit`: the local one in a loop, the Ray one inside a worker
actor. A unit reads what the store already holds, computes only what is missing (logits,
then each method's maps) and writes it through the store. The stored numbers therefore do
not depend on which executor ran a unit, only on the shard (the same rows for both
executors), the device and the number of intra-op threads.

A unit never logs: it returns a `UnitReport` (counts, seconds, non-finite outputs) that the
driver merges into the `RunSummary`, so warnings appear once, on the driver.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..attribution import applies_to, explain_full
from ..attribution.passes import within_pass_limit
from ..attribution.registry import method_info
from ..errors import UserError
from ..models.representation import logits_and_features
from ..store import Entry, Store
from ..store.keys import (
    SEGMENT_PARAMS,
    features_entry,
    logits_entry,
    maps_entry,
    segments_entry,
    takes_image_seeds,
)
from .memory import counting_passes, memory_budget
from .scope import engine_unit

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def image_seeds(ids: Sequence[str], seed: int) -> torch.Tensor:
    """A seed per image from its id, so random draws never depend on batch composition."""
    values = [int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:12], 16) for i in ids]
    return torch.tensor(values, dtype=torch.long)


@dataclass(frozen=True, eq=False)  # eq on a labels array would be ambiguous
class Shard:
    """A batch of dataset rows: everything a worker needs to know about them but pixels."""

    rows: tuple[int, ...]
    ids: tuple[str, ...]
    labels: np.ndarray | None  # labels of these rows; None for an unlabelled dataset

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def name(self) -> str:
        return self.ids[0] if len(self.ids) == 1 else f"{self.ids[0]}..{self.ids[-1]}"


def make_shards(dataset, size: int) -> list[Shard]:
    """Consecutive rows in shards of `size`: the same shards for every executor."""
    labels = None if dataset.labels is None else np.asarray(dataset.labels)
    shards = []
    for start in range(0, len(dataset), size):
        rows = tuple(range(start, min(start + size, len(dataset))))
        shards.append(Shard(rows, tuple(str(dataset.ids[r]) for r in rows),
                            None if labels is None else labels[list(rows)]))
    return shards


@dataclass(frozen=True)
class ExplainJob:
    """What every unit of one explain run shares (besides the store)."""

    methods: dict[str, dict]
    dataset_identity: dict
    target: str = "predicted"
    seed: int = 0
    map_dtype: str = "float16"
    autocast: str = "none"  # none | bf16 | fp16: passes under torch.autocast (own store keys)
    memory: str | int = "none"  # executor.memory: caps the inputs per pass (engine/memory.py)


@dataclass
class UnitReport:
    """What one unit did: rows for RunSummary.add and the non-finite outputs it found."""

    model: str
    shard: str
    counts: list[tuple[str, int, int, float]] = field(default_factory=list)
    nonfinite: list[tuple[str, str, str]] = field(default_factory=list)
    progress: int = 0  # images x (logits + methods) accounted for
    restored: int = 0  # of which found in the store (or not applicable): nothing to compute
    # ("model/method", forward passes, most inputs in one) of the methods computed, and the
    # largest cap on inputs per pass (backward, forward) the memory budget set (engine/memory.py)
    passes: list[tuple[str, int, int]] = field(default_factory=list)
    pass_limit: tuple[int, int] | None = None

    def add(self, what: str, computed: int, skipped: int, seconds: float = 0.0) -> None:
        self.counts.append((f"{self.model}/{what}", computed, skipped, seconds))
        self.progress += computed + skipped
        self.restored += skipped

    def cap(self, backward: int, forward: int) -> None:
        old = self.pass_limit or (0, 0)
        self.pass_limit = (max(old[0], backward), max(old[1], forward))

    def flag(self, what: str, ids: Sequence[str], finite: np.ndarray) -> None:
        self.nonfinite.extend((self.model, what, i)
                              for i, ok in zip(ids, finite.tolist(), strict=True) if not ok)


def finite_rows(array: np.ndarray) -> np.ndarray:
    """Per-row flag: every value of that row is finite."""
    return np.isfinite(array.reshape(len(array), -1)).all(axis=1)


def map_array(maps: np.ndarray, dtype: str) -> np.ndarray:
    """Maps in the storage dtype, unless that dtype would overflow finite values to inf."""
    with np.errstate(over="ignore"):  # overflow is detected right below
        stored = maps.astype(dtype)
    if not np.array_equal(np.isfinite(stored), np.isfinite(maps)):
        return maps.astype(np.float32)  # too large for float16: keep the exact values
    return stored


def stored_finite(entry: Entry, ids: Sequence[str], name: str) -> np.ndarray:
    """`finite` flags of stored rows; computed from the array for chunks written without."""
    try:
        return entry.read(ids, ["finite"])["finite"].astype(bool)
    except KeyError:
        return finite_rows(entry.read(ids, [name])[name])


@contextlib.contextmanager
def autocast(device: torch.device, mode: str, model: torch.nn.Module | None = None
             ) -> Iterator[None]:
    """torch.autocast for `mode` bf16 / fp16; nothing for none.

    With `model`, its outputs are cast back to float32 inside the block, so attribution
    code that mixes them with float32 tensors (IG's score buffer, KernelSHAP's solve)
    sees the dtype it expects while the network itself runs in reduced precision.
    """
    if mode == "none":
        yield
        return
    if mode not in AUTOCAST_DTYPES:
        raise UserError(f"autocast: got {mode!r}; accepted: none, bf16, fp16")
    hook = None if model is None else model.register_forward_hook(
        lambda module, args, out: out.float())
    try:
        with torch.autocast(device.type, dtype=AUTOCAST_DTYPES[mode]):
            yield
    finally:
        if hook is not None:
            hook.remove()


def shard_segments(store: Store, shard: Shard, params: dict, dataset_identity: dict,
                   images: torch.Tensor) -> torch.Tensor:
    """SLIC superpixels of a shard, computed once (then read from the store) for all models."""
    from ..attribution.superpixels import compute_segments

    entry = segments_entry(store, params, dataset_identity)
    if not entry.has_all(shard.ids):
        kwargs = {k: params[k] for k in SEGMENT_PARAMS if k in params}
        segments = compute_segments(images.cpu(), **kwargs)
        segments = segments[0] if isinstance(segments, tuple) else segments
        entry.write(shard.ids, {"segments": segments.numpy().astype(np.int32)})
    return torch.from_numpy(entry.read(shard.ids)["segments"].astype(np.int64))


@dataclass
class ModelEntries:
    """A model's store entries for a job. Build once per model and run: an entry indexes
    its chunks when first asked, so a fresh one per shard would re-read every chunk."""

    logits: Entry
    maps: dict[str, Entry]
    features: Entry

    @classmethod
    def of(cls, store: Store, model, job: ExplainJob) -> ModelEntries:
        return cls(logits_entry(store, model, job.dataset_identity, autocast=job.autocast),
                   {m: maps_entry(store, model, m, p, job.dataset_identity, job.target,
                                  job.autocast, job.seed) for m, p in job.methods.items()
                    if applies_to(m, model)},  # e.g. rollout: ViT-style models only
                   features_entry(store, model, job.dataset_identity, job.autocast))

    def done(self, ids: Sequence[str]) -> bool:
        """Logits, features and every method's maps are stored for every image of `ids`."""
        return (self.logits.has_all(ids) and self.features.has_all(ids)
                and all(e.has_all(ids) for e in self.maps.values()))


SegmentsFn = Callable[[str, dict, torch.Tensor], torch.Tensor]  # (method, params, images)


@engine_unit
def explain_unit(model, shard: Shard, job: ExplainJob, store: Store, device: torch.device,
                 load_images: Callable[[], torch.Tensor],
                 segments: SegmentsFn | None = None,
                 entries: ModelEntries | None = None) -> UnitReport:
    """Logits and maps of `model` (already on `device`) for one shard, through the store.

    load_images() gives the shard's canonical images; it is only called when something is
    missing. segments(method, params, images) gives the superpixels of methods that share them (default: computed
    once per shard and stored, see `shard_segments`). entries: the model's store entries
    (ModelEntries.of(store, model, job)), passed in by loops over many shards.
    """
    ids = list(shard.ids)
    report = UnitReport(model.name, shard.name)
    entries = entries or ModelEntries.of(store, model, job)
    logits, features, entries = entries.logits, entries.features, entries.maps
    todo = {m for m, e in entries.items() if not e.has_all(ids)}
    not_applicable = len(ids) * (len(job.methods) - len(entries))  # done: nothing to do
    report.progress += not_applicable
    report.restored += not_applicable
    if logits.has_all(ids) and features.has_all(ids) and not todo:
        report.add("logits", 0, len(ids))
        report.flag("logits", ids, stored_finite(logits, ids, "logits"))
        for method, entry in entries.items():
            report.add(method, 0, len(ids))
            report.flag(method, ids, stored_finite(entry, ids, "maps"))
        return report
    images = load_images().to(device)
    start = time.perf_counter()
    if not (logits.has_all(ids) and features.has_all(ids)):
        with torch.no_grad(), autocast(device, job.autocast):  # one pass gives both
            out, feats = logits_and_features(model, images)
        if not features.has_all(ids):
            features.write(ids, {"features": feats.float().cpu().numpy()})
    if logits.has_all(ids):  # stored logits choose the targets, as when the maps were made
        out = torch.from_numpy(logits.read(ids, ["logits"])["logits"]).to(device)
        report.add("logits", 0, len(ids))
    else:
        out = out.float()
        values = out.cpu().numpy()
        logits.write(ids, {"logits": values, "finite": finite_rows(values)})
        report.add("logits", len(ids), 0, time.perf_counter() - start)
    logits_ok = finite_rows(out.cpu().numpy())
    report.flag("logits", ids, logits_ok)
    targets = explained_targets(out, shard, job.target, model.name)
    for method, params in job.methods.items():
        if method not in entries:
            continue  # the method does not apply to this model
        if method not in todo:
            report.add(method, 0, len(ids))
            report.flag(method, ids, stored_finite(entries[method], ids, "maps"))
            continue
        start = time.perf_counter()
        call = dict(params)
        if "segments" in method_info(method).shared_inputs:  # one segmentation, every model
            shared = segments or (lambda m, p, x: shard_segments(store, shard, p,
                                                                 job.dataset_identity, x))
            call["segments"] = shared(method, params, images).to(device)
        if takes_image_seeds(method):  # random draws per image id: shared by every model
            call["image_seeds"] = image_seeds(ids, job.seed + params.get("seed", 0))
        with (autocast(device, job.autocast, model),
              memory_budget(model, images, job.memory) as limit,
              counting_passes(model) as count):
            result = explain_full(model, images, method, targets, check_logits=False, **call)
        report.passes.append((f"{model.name}/{method}", count.passes, count.largest))
        if limit is not None:
            report.cap(limit.backward, limit.forward)
        maps = result.maps.detach().float().cpu().numpy()
        maps[~logits_ok] = np.nan  # a map of a score that is not a number explains nothing
        arrays = {"maps": map_array(maps, job.map_dtype), "finite": finite_rows(maps)}
        for key, value in result.extras.items():
            if (isinstance(value, torch.Tensor) and value.shape[:1] == (len(ids),)
                    and key not in arrays):
                value = value.detach().cpu()
                # numpy has no bfloat16 (extras of an autocast run): widen to float32
                arrays[key] = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
        entries[method].write(ids, arrays)
        report.flag(method, ids, arrays["finite"])
        report.add(method, len(ids), 0, time.perf_counter() - start)
    return report


@engine_unit
def corrupted_logits_unit(model, shard: Shard, images: torch.Tensor, condition: str,
                          store: Store, dataset_identity: dict, device: torch.device,
                          entry=None, memory: str | int = "none") -> int:
    """Store `model`'s logits on a shard's corrupted images; returns images computed.
    memory: executor.memory, capping the images per forward pass (engine/memory.py)."""
    entry = entry or logits_entry(store, model, dataset_identity, condition)
    if entry.has_all(shard.ids):
        return 0
    model, images = model.to(device), images.to(device)
    with torch.no_grad(), memory_budget(model, images, memory):
        per_pass = within_pass_limit(len(images), backward=False)
        logits = torch.cat([model(part) for part in images.split(per_pass)])
        logits = logits.float().cpu().numpy()
    entry.write(shard.ids, {"logits": logits})
    return len(shard)


def explained_targets(logits: torch.Tensor, shard: Shard, target: str,
                      model: str = "model") -> torch.Tensor:
    """Classes to explain: predicted, or the label (unlabelled images: predicted)."""
    if target == "label":
        if shard.labels is None:
            raise UserError("target 'label' needs a dataset with labels; this one has none "
                            "(use target: predicted)")
        labels = torch.as_tensor(shard.labels, device=logits.device)
        outside = (labels >= logits.shape[1]).nonzero().flatten().tolist()
        if outside:
            examples = [f"{shard.ids[i]} (label {int(labels[i])})" for i in outside[:3]]
            raise UserError(f"labels outside the class space of model '{model}': it has "
                            f"{logits.shape[1]} outputs, but images {', '.join(examples)} have "
                            "larger labels; match num_classes / class_indices to the dataset")
        return torch.where(labels >= 0, labels, logits.argmax(1))
    return logits.argmax(1)
