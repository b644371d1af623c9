"""Logits of every model on corrupted images, per (model, shard, condition) unit.

The corrupted images of a shard are computed once per condition (seeded per image id, so
they do not depend on the shard) and serve every model. Locally the units run in a loop;
on Ray the driver puts each shard's corrupted images into the object store once and the
worker actors run the forward passes (engine/ray_executor.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..devices import intra_op_threads, resolve_device
from ..progress import bar as progress_bar
from ..store import Store
from ..store.keys import logits_entry
from .runner import executor_options
from .summary import RunSummary
from .units import Shard, corrupted_logits_unit, image_seeds, make_shards

DEFAULT_SHARD = 64  # forward passes only: larger shards than explanations


@dataclass(frozen=True)
class Condition:
    corruption: str
    severity: int
    name: str  # the store's condition key, e.g. "gaussian_noise-s3-seed0"


def corrupted_images(images: torch.Tensor, shard: Shard, condition: Condition,
                     seed: int) -> torch.Tensor:
    from ..data.corruptions import corrupt

    return corrupt(images, condition.corruption, condition.severity, seed=seed,
                   image_seeds=image_seeds(list(shard.ids), seed))


def run_corrupted_logits(models: Sequence, dataset, conditions: Sequence[Condition],
                         store: Store, *, dataset_identity: dict, seed: int = 0,
                         batch_size: int | str = "auto", device: str = "auto",
                         progress: bool = True, executor="local") -> RunSummary:
    """Logits of every model on every condition, stored per shard (resumable)."""
    options = executor_options(executor)
    size = DEFAULT_SHARD if batch_size == "auto" else int(batch_size)
    shards = make_shards(dataset, size)
    if options.kind == "ray":
        return _on_ray(models, dataset, conditions, store, shards, dataset_identity, seed,
                       options.model_copy(update={"device": device}), progress)
    device_ = resolve_device(device)
    summary = RunSummary()
    bar = progress_bar(len(conditions) * len(models) * len(dataset), desc="corruptions",
                       unit="img", enabled=progress)
    entries = {c.name: [logits_entry(store, m, dataset_identity, c.name) for m in models]
               for c in conditions}  # built once: an entry indexes its chunks when first asked
    with intra_op_threads(options.threads):
        for shard in shards:
            images = None
            for condition in conditions:
                if all(e.has_all(shard.ids) for e in entries[condition.name]):
                    bar.restore(len(shard) * len(models))  # in the store
                    continue
                if images is None:
                    images = dataset.load(list(shard.rows)).to(device_)
                corrupted = corrupted_images(images, shard, condition, seed)
                for model, entry in zip(models, entries[condition.name], strict=True):
                    n = corrupted_logits_unit(model, shard, corrupted, condition.name, store,
                                              dataset_identity, device_, entry,
                                              options.memory)
                    summary.add(f"{model.name}/{condition.name}", n, len(shard) - n, 0.0)
                    bar.restore(len(shard) - n)
                    bar.update(n)
    bar.close()
    return summary


def _on_ray(models, dataset, conditions, store, shards, dataset_identity, seed, options,
            progress) -> RunSummary:
    from .ray_executor import ShardInputs, import_ray, pool_size, ray_session
    from .ray_pool import Unit, get_pool, put_models, raise_failures, run_units

    ray = import_ray()
    summary = RunSummary()
    units = []
    entries = [{c.name: logits_entry(store, model, dataset_identity, c.name) for c in conditions}
               for model in models]
    for s, shard in enumerate(shards):
        for m, model in enumerate(models):
            for condition in conditions:
                if entries[m][condition.name].has_all(shard.ids):
                    summary.add(f"{model.name}/{condition.name}", 0, len(shard), 0.0)
                else:
                    units.append(Unit(m, s, condition))
    if not units:
        return summary
    bar = progress_bar(len(units), desc="corruptions (ray)", unit="unit", enabled=progress)
    pending = {}
    for unit in units:
        pending.setdefault(unit.shard, {})[unit.payload.name] = unit.payload

    def prepare(shard: int, images: torch.Tensor) -> dict:
        with intra_op_threads(options.threads):  # the same numbers as a local run
            return {name: corrupted_images(images, shards[shard], condition, seed)
                    for name, condition in pending[shard].items()}

    with ray_session(ray, options.address):
        refs = put_models(ray, models)
        pool = get_pool(ray, options, store, pool_size(ray, options, len(units)))
        root = str(store.root.resolve())
        inputs = ShardInputs(ray, dataset, shards, units, prepare)

        def submit(actor, unit: Unit):
            condition = unit.payload.name
            return actor.logits.remote(refs.keys[unit.model], refs.boxed[unit.model], root,
                                       shards[unit.shard], dataset_identity, condition,
                                       inputs.get(unit.shard)[condition], options.memory)

        def done(unit: Unit, computed: int) -> None:
            n = len(shards[unit.shard])
            summary.add(f"{models[unit.model].name}/{unit.payload.name}", computed,
                        n - computed, 0.0)
            bar.update()

        run_units(ray, pool, units, refs.keys, submit, done, summary, options.retries,
                  lambda u: (models[u.model].name, f"{shards[u.shard].name} "
                                                   f"({u.payload.name})"), inputs.release)
    bar.close()
    raise_failures(summary, "corrupted-logits")
    return summary
