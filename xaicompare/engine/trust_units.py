"""The trust stage's units: faithfulness curves and a randomised model's explanations.

Like explain units (engine/units.py), each reads what the store holds, computes only what
is missing and writes it through the store; both executors run the same function on the
same shards, so the stored numbers do not depend on where a unit ran.

- `faithfulness_unit`: one (model, method, shard, order): deletion and insertion curves
  (attribution/faithfulness.py) of the stored maps, scored on the class the stored logits
  predict. A random order is drawn per image id, so it does not depend on the shard.
- `randomized_maps_unit`: one (model, shard): the maps of the model's randomised copy
  (models/randomization.py) for every method of the job, explaining the same targets as the
  stored maps (the stored logits and the study's target rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..attribution import explain_full
from ..attribution.faithfulness import deletion_insertion_curves
from ..attribution.passes import within_pass_limit
from ..models.randomization import randomize_weights
from ..store import Entry, Store
from ..store.keys import (
    faithfulness_entry,
    logits_entry,
    maps_entry,
    randomized_maps_entry,
    takes_image_seeds,
)
from .memory import memory_budget
from .scope import engine_unit
from .units import (
    Shard,
    autocast,
    explained_targets,
    finite_rows,
    image_seeds,
    map_array,
)

CURVE_BATCH = 64  # (image, step) points per pass; a pass scores each point deleted and inserted


def random_order_seeds(ids: Sequence[str], seed: int) -> torch.Tensor:
    """Seeds of the random-order null per image id: salted, so the null never draws from
    the generator a method's noise or coalitions draw from (`image_seeds(ids, seed)`)."""
    return image_seeds([f"faithfulness random order:{i}" for i in ids], seed)


@dataclass(frozen=True)
class FaithfulnessJob:
    """What every faithfulness unit of a run shares: the maps' keys and the curves' settings."""

    methods: dict[str, dict]
    dataset_identity: dict
    target: str = "predicted"  # of the stored maps (part of their key)
    seed: int = 0
    autocast: str = "none"  # of the stored maps and logits; the curves run in float32
    steps: int = 10
    baseline: str = "black"
    orders: tuple[str, ...] = ("descending", "random")
    memory: str | int = "none"  # executor.memory: caps the inputs per pass (not in keys)


def stored_maps_entry(store: Store, model, method: str, job) -> Entry:
    return maps_entry(store, model, method, job.methods[method], job.dataset_identity,
                      job.target, job.autocast, job.seed)


def curves_entry(store: Store, model, method: str, order: str, job: FaithfulnessJob) -> Entry:
    return faithfulness_entry(store, model, stored_maps_entry(store, model, method, job),
                              job.steps, job.baseline, order, job.seed)


def stored_predictions(store: Store, model, ids: Sequence[str], job) -> np.ndarray:
    """The stored clean logits of `ids` [B, K] (the precision the maps were made in)."""
    entry = logits_entry(store, model, job.dataset_identity, autocast=job.autocast)
    return entry.read(ids, ["logits"])["logits"].astype(np.float32)


@engine_unit
def faithfulness_unit(model, shard: Shard, images: torch.Tensor, method: str, order: str,
                      job: FaithfulnessJob, store: Store, device: torch.device,
                      entry: Entry | None = None) -> int:
    """Store the curves of `model` on one shard for `method` in `order`; returns images
    computed (0 when they were stored)."""
    ids = list(shard.ids)
    entry = entry or curves_entry(store, model, method, order, job)
    if entry.has_all(ids):
        return 0
    maps = stored_maps_entry(store, model, method, job).read(ids, ["maps"])["maps"]
    target = torch.from_numpy(stored_predictions(store, model, ids, job).argmax(-1))
    model, images = model.to(device), images.to(device)
    with memory_budget(model, images, job.memory):
        curves = deletion_insertion_curves(
            model, images, torch.from_numpy(maps.astype(np.float32)), target,
            steps=job.steps, baseline=job.baseline, order=order,
            # each pass holds 2 x batch_size inputs (the deleted and the inserted images)
            batch_size=max(1, within_pass_limit(2 * CURVE_BATCH, backward=False) // 2),
            seed=job.seed,
            image_seeds=random_order_seeds(ids, job.seed) if order == "random" else None)
    entry.write(ids, {"deletion": curves.deletion, "insertion": curves.insertion,
                      "deletion_auc": curves.deletion_auc,
                      "insertion_auc": curves.insertion_auc, "target": curves.target})
    return len(ids)


@dataclass(frozen=True)
class RandomizationJob:
    """What every randomisation unit of a run shares (methods: those the test runs)."""

    methods: dict[str, dict]
    dataset_identity: dict
    target: str = "predicted"
    seed: int = 0  # the study seed: of the randomised weights and of per-image draws
    autocast: str = "none"
    map_dtype: str = "float16"
    mode: str = "full"  # every parameter redrawn (the only mode a study runs)
    memory: str | int = "none"  # executor.memory: caps the inputs per pass (not in keys)


def randomized_entries(store: Store, model, job: RandomizationJob) -> dict[str, Entry]:
    return {m: randomized_maps_entry(store, model, m, p, job.dataset_identity, job.target,
                                     job.mode, job.seed, job.autocast)
            for m, p in job.methods.items()}


def randomized_copy(model, job: RandomizationJob, device: torch.device):
    """The randomised copy a unit explains (build once per model, see randomized_maps_unit)."""
    return randomize_weights(model, job.seed).to(device)


@engine_unit
def randomized_maps_unit(model, shard: Shard, images: torch.Tensor, job: RandomizationJob,
                         store: Store, device: torch.device, randomized=None,
                         entries: dict[str, Entry] | None = None) -> int:
    """Store the maps of `model`'s randomised copy on one shard for every method of the job
    (randomized: that copy, built once by loops over shards); returns images computed."""
    ids = list(shard.ids)
    entries = entries or randomized_entries(store, model, job)
    todo = [m for m, e in entries.items() if not e.has_all(ids)]
    if not todo:
        return 0
    randomized = randomized if randomized is not None else randomized_copy(model, job, device)
    logits = torch.from_numpy(stored_predictions(store, model, ids, job))
    targets = explained_targets(logits, shard, job.target, model.name).to(device)
    logits_ok = finite_rows(logits.numpy())  # as explain_unit: no map of a score that is NaN
    images = images.to(device)
    for method in todo:
        call = dict(job.methods[method])
        if takes_image_seeds(method):  # the same per-image draws as the model's own maps
            call["image_seeds"] = image_seeds(ids, job.seed + call.get("seed", 0))
        with autocast(device, job.autocast, randomized), memory_budget(
                randomized, images, job.memory):
            result = explain_full(randomized, images, method, targets, check_logits=False,
                                  **call)
        maps = result.maps.detach().float().cpu().numpy()
        maps[~logits_ok] = np.nan
        entries[method].write(ids, {"maps": map_array(maps, job.map_dtype),
                                    "finite": finite_rows(maps)})
    return len(ids)
