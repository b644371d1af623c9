"""Runs the trust stage's units (engine/trust_units.py), locally or on Ray, resumably.

    run_faithfulness(models, subset, FaithfulnessJob(...), store)      # (model, method, shard, order)
    run_randomized_maps(models, subset, RandomizationJob(...), store)  # (model, shard)

A unit whose results are stored is skipped without loading images or calling a model, so a
finished run costs only store reads. Locally the units run in a loop (each shard's images
loaded once); on Ray the driver puts each shard's images into the object store once and
the worker actors compute (as engine/corrupted_logits.py does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from ..attribution import applies_to
from ..attribution.registry import METHODS
from ..devices import intra_op_threads, resolve_device
from ..errors import UserError
from ..progress import bar as progress_bar
from ..store import Store
from .batching import place_model
from .heartbeat import Heartbeat, report_killed
from .runner import executor_options
from .summary import RunSummary
from .trust_units import (
    FaithfulnessJob,
    RandomizationJob,
    curves_entry,
    faithfulness_unit,
    randomized_copy,
    randomized_entries,
    randomized_maps_unit,
)
from .units import make_shards

DEFAULT_SHARD = 16  # images per unit when the executor's batch size is "auto"


def shard_size(batch_size: int | str) -> int:
    return DEFAULT_SHARD if batch_size == "auto" else int(batch_size)


def run_faithfulness(models: Sequence, dataset, job: FaithfulnessJob, store: Store, *,
                     batch_size: int | str = "auto", device: str = "auto",
                     progress: bool = True, executor="local") -> RunSummary:
    """Deletion / insertion curves of every model x method (that applies) x order on
    `dataset` (the faithfulness subset), stored per shard."""
    options = executor_options(executor)
    shards = make_shards(dataset, shard_size(batch_size))
    entries = {(m, method, order): curves_entry(store, model, method, order, job)
               for m, model in enumerate(models) for method in job.methods
               if applies_to(method, model) for order in job.orders}
    summary = RunSummary()
    todo = []
    for s, shard in enumerate(shards):
        for (m, method, order), entry in entries.items():
            if entry.has_all(shard.ids):  # reads the store only
                summary.add(f"{models[m].name}/{method}/{order}", 0, len(shard), 0.0)
            else:
                todo.append((m, s, (method, order)))

    def local(m, model, shard, images, payload, device_) -> int:
        method, order = payload
        return faithfulness_unit(model, shard, images, method, order, job, store, device_,
                                 entries[(m, method, order)])

    def remote(actor, model_ref, shard, images, payload, functions):
        method, order = payload
        return actor.faithfulness.remote(*model_ref, str(store.root.resolve()), shard,
                                         images, method, order, job, functions)

    _run(models, dataset, shards, todo, summary, options, device, progress, store,
         "faithfulness", local, remote, lambda payload: "/".join(payload), job.methods)
    return summary


def run_randomized_maps(models: Sequence, dataset, job: RandomizationJob, store: Store, *,
                        batch_size: int | str = "auto", device: str = "auto",
                        progress: bool = True, executor="local") -> RunSummary:
    """Maps of every model's randomised copy for the job's methods that apply to it, on
    `dataset` (the randomisation subset), stored per shard."""
    options = executor_options(executor)
    shards = make_shards(dataset, shard_size(batch_size))
    entries = []
    for model in models:
        applicable = {m: p for m, p in job.methods.items() if applies_to(m, model)}
        entries.append(randomized_entries(store, model, _with_methods(job, applicable)))
    summary = RunSummary()
    todo = []
    for s, shard in enumerate(shards):
        for m, model in enumerate(models):
            if all(e.has_all(shard.ids) for e in entries[m].values()):
                summary.add(f"{model.name}/randomized", 0, len(shard), 0.0)
            else:
                todo.append((m, s, tuple(entries[m])))
    copies: dict[int, torch.nn.Module] = {}  # local: the current model's randomised copy

    def local(m, model, shard, images, methods, device_) -> int:
        unit_job = _with_methods(job, {k: job.methods[k] for k in methods})
        if m not in copies:
            copies.clear()  # one copy at a time: the units run model after model
            copies[m] = randomized_copy(model, unit_job, device_)
        return randomized_maps_unit(model, shard, images, unit_job, store, device_, copies[m],
                                    entries[m])

    def remote(actor, model_ref, shard, images, methods, functions):
        unit_job = _with_methods(job, {k: job.methods[k] for k in methods})
        return actor.randomized.remote(*model_ref, str(store.root.resolve()), shard, images,
                                       unit_job, functions)

    _run(models, dataset, shards, todo, summary, options, device, progress, store,
         "randomized maps", local, remote, lambda payload: "randomized", job.methods)
    return summary


def _with_methods(job: RandomizationJob, methods: dict) -> RandomizationJob:
    return replace(job, methods=methods)


def _run(models, dataset, shards, todo, summary: RunSummary, options, device, progress, store,
         what: str, local: Callable, remote: Callable, describe: Callable, methods) -> None:
    """Run the units `todo` [(model index, shard index, payload)] locally or on Ray."""
    if not todo:
        return
    if options.kind == "ray":
        _on_ray(models, dataset, shards, todo, summary, options.model_copy(
            update={"device": device}), progress, store, what, remote, describe, methods)
        return
    device_ = resolve_device(device)
    bar = progress_bar(len(todo), desc=what, unit="unit", enabled=progress)
    report_killed(store.root)  # a unit of an earlier run the system killed: say so once
    heartbeat = Heartbeat(store.root)
    images: dict[int, torch.Tensor] = {}  # each shard loaded once (the subsets are small)
    with intra_op_threads(options.threads):
        for m, s, payload in sorted(todo, key=lambda u: (u[0], u[1])):  # model after model
            shard, model = shards[s], place_model(models[m], device_)
            if s not in images:
                images[s] = dataset.load(list(shard.rows))
            with heartbeat.unit(model.name, f"{shard.name} ({describe(payload)})", "trust"):
                try:
                    n = local(m, model, shard, images[s], payload, device_)
                except torch.cuda.OutOfMemoryError as err:  # finished units are stored
                    raise UserError(
                        f"{what}: out of GPU memory for model '{model.name}' on images "
                        f"{shard.name}; set executor.memory (e.g. 8GB) or a smaller "
                        "batch_size, then run again: finished units are kept") from err
            summary.add(f"{model.name}/{describe(payload)}", n, len(shard) - n, 0.0)
            bar.update()
    bar.close()


def _on_ray(models, dataset, shards, todo, summary: RunSummary, options, progress, store,
            what: str, remote: Callable, describe: Callable, methods) -> None:
    from .ray_executor import ShardInputs, import_ray, pool_size, ray_session
    from .ray_pool import Unit, get_pool, put_models, raise_failures, run_units

    ray = import_ray()
    units = [Unit(m, s, payload) for m, s, payload in todo]
    bar = progress_bar(len(units), desc=f"{what} (ray)", unit="unit", enabled=progress)
    with ray_session(ray, options.address):
        refs = put_models(ray, models)
        pool = get_pool(ray, options, store, pool_size(ray, options, len(units)))
        inputs = ShardInputs(ray, dataset, shards, units)
        # package methods travel by reference, those defined in a script or test by value
        functions = ray.put({m: METHODS.get(m) for m in methods})

        def submit(actor, unit: Unit):
            return remote(actor, (refs.keys[unit.model], refs.boxed[unit.model]),
                          shards[unit.shard], inputs.get(unit.shard)["images"], unit.payload,
                          functions)

        def done(unit: Unit, computed: int) -> None:
            n = len(shards[unit.shard])
            summary.add(f"{models[unit.model].name}/{describe(unit.payload)}", computed,
                        n - computed, 0.0)
            bar.update()

        run_units(ray, pool, units, refs.keys, submit, done, summary, options.retries,
                  lambda u: (models[u.model].name, f"{shards[u.shard].name} "
                                                   f"({describe(u.payload)})"), inputs.release,
                  lambda u: report_killed(store.root, "a Ray worker"))
    bar.close()
    raise_failures(summary, what)
