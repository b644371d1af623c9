"""Ray executor: the explain plan's units (model x image shard) on a pool of worker actors.

    executor: {kind: ray, address: auto, workers: 4, gpus_per_worker: 1}

- Same units as the local executor (engine/units.py), same shards, same store: a study can
  start locally and finish on Ray or the other way round; finished units are skipped.
- Each model is put into Ray's object store once (with a hash of its weights, checked when
  a worker unpickles it); a worker keeps every model it has run loaded. The driver loads a
  shard's images once, puts them in the object store once and computes shared inputs
  (KernelSHAP superpixels, corrupted images) once per shard; every unit of the shard gets
  the same object. KernelSHAP's coalitions are drawn from per-image seeds, so every worker
  draws the same ones without shipping them.
- Workers write through the store: chunks are atomic files, so the output folder must be
  on a filesystem every worker sees (checked when the workers start).
- A worker that dies (process killed, node lost) is replaced and its unit runs again, up to
  `retries` times. A unit that raises (a UserError about the data, a bug) is not retried:
  the other units finish and are stored, then one error lists every failed unit.
- Results equal the local executor's bit for bit when both run on the same kind of device
  with the same intra-op thread count (`threads`; Ray workers default to cpus_per_worker)
  and the same shards (on CUDA give `batch_size`: "auto" probes free memory locally).
- Ray started here (no address) stays up until the process exits, and the worker pool is
  kept for the session, so later stages (corrupted logits) reuse the started workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch

from ..attribution.registry import METHODS, method_info
from ..errors import UserError
from ..progress import bar as progress_bar
from ..store import Store
from .batching import auto_batch_size
from .heartbeat import report_killed
from .ray_pool import (
    Unit,
    get_pool,
    put_models,
    raise_failures,
    run_units,
    worker_device,
)
from .summary import RunSummary
from .units import ExplainJob, ModelEntries, Shard, explain_unit, make_shards, shard_segments

INSTALL_HINT = "pip install 'xaicompare[ray]'"


def import_ray():
    """The ray module, or one UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"executor 'ray' needs the optional package ray, which is not "
                        f"installed; install it with {INSTALL_HINT} (or use executor: local, "
                        "--executor local)") from None
    return ray


@contextlib.contextmanager
def ray_session(ray, address: str | None) -> Iterator[None]:
    """Use the running Ray session, or start one (address None: on this machine)."""
    if ray.is_initialized():
        yield
        return
    try:
        # Left running (Ray shuts it down at exit), so later stages reuse it and its workers.
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    except ConnectionError as err:
        raise UserError(f"executor.address: cannot reach a Ray cluster at '{address}' ({err}); "
                        "accepted: auto (a cluster started with `ray start`), "
                        "ray://host:port, or no address to start Ray on this machine") from None
    yield


class ShardInputs:
    """Per shard: its images (and superpixels) in the object store, put once, dropped when
    the shard's last unit is done."""

    def __init__(self, ray, dataset, shards: Sequence[Shard], units: Sequence[Unit],
                 prepare: Callable[[int, torch.Tensor], dict] = lambda s, x: {}) -> None:
        self.ray, self.dataset, self.shards, self.prepare = ray, dataset, shards, prepare
        self.left = {}
        for unit in units:
            self.left[unit.shard] = self.left.get(unit.shard, 0) + 1
        self.refs: dict[int, dict] = {}

    def get(self, shard: int) -> dict:
        if shard not in self.refs:
            images = self.dataset.load(list(self.shards[shard].rows))
            extra = self.prepare(shard, images)
            self.refs[shard] = {"images": self.ray.put(images),
                                **{k: self.ray.put(v) for k, v in extra.items()}}
        return self.refs[shard]

    def release(self, unit: Unit) -> None:
        self.left[unit.shard] -= 1
        if self.left[unit.shard] == 0:
            self.refs.pop(unit.shard, None)


def pool_size(ray, options, n_units: int) -> int:
    """Workers to start: `workers`, or as many as the cluster fits, at most one per unit."""
    resources = ray.cluster_resources()
    fits = int(resources.get("CPU", 0) // options.cpus_per_worker)
    if options.gpus_per_worker > 0:
        fits = min(fits, int(resources.get("GPU", 0) // options.gpus_per_worker))
    if fits < 1:
        raise UserError(f"the Ray cluster ({resources.get('CPU', 0):g} CPUs, "
                        f"{resources.get('GPU', 0):g} GPUs) cannot hold one worker with "
                        f"cpus_per_worker {options.cpus_per_worker:g} and gpus_per_worker "
                        f"{options.gpus_per_worker:g}; lower them or add nodes")
    wanted = fits if options.workers is None else options.workers
    return max(1, min(wanted, fits, n_units))


def ray_shard_size(batch_size, options) -> int:
    """Shards as the local executor would cut them on the workers' kind of device."""
    if batch_size != "auto":
        return int(batch_size)
    device = worker_device(options.device, options.gpus_per_worker)
    return auto_batch_size(torch.device(device.split(":")[0]))


def run_explanations_on_ray(models: Sequence, dataset, job: ExplainJob, store: Store, options,
                            *, batch_size, device: str, progress: bool) -> RunSummary:
    """run_explanations with executor kind ray (see the module docstring)."""
    ray = import_ray()
    options = options.model_copy(update={"device": device})
    shards = make_shards(dataset, ray_shard_size(batch_size, options))
    summary = RunSummary()
    per_image = 1 + len(job.methods)
    bar = progress_bar(len(dataset) * per_image * len(models), desc="explain (ray)",
                       unit="map", enabled=progress)
    units, entries = [], [ModelEntries.of(store, model, job) for model in models]
    for s, shard in enumerate(shards):
        for m, model in enumerate(models):
            if entries[m].done(shard.ids):  # only reads: no images, no model call
                report = explain_unit(model, shard, job, store, torch.device("cpu"),
                                      lambda: None, entries=entries[m])
                summary.merge(report)
                bar.restore(report.progress)  # all in the store
            else:
                units.append(Unit(m, s))
    if units:
        report_killed(store.root)  # a local run killed before this one
        with ray_session(ray, options.address):
            refs = put_models(ray, models)
            pool = get_pool(ray, options, store, pool_size(ray, options, len(units)))
            root = str(store.root.resolve())
            segmented = {m: p for m, p in job.methods.items()
                         if "segments" in method_info(m).shared_inputs}

            def prepare(shard: int, images: torch.Tensor) -> dict:
                if not segmented:
                    return {}
                return {"segments": {m: shard_segments(store, shards[shard], p,
                                                       job.dataset_identity, images)
                                     for m, p in segmented.items()}}

            inputs = ShardInputs(ray, dataset, shards, units, prepare)
            # package methods travel by reference; one defined in a script, a notebook or a
            # test travels by value and is registered on the worker (ray_pool.register_missing)
            functions = ray.put({m: METHODS.get(m) for m in job.methods})

            def submit(actor, unit: Unit):
                shared = inputs.get(unit.shard)
                return actor.explain.remote(refs.keys[unit.model], refs.boxed[unit.model], root,
                                            shards[unit.shard], job, shared["images"],
                                            shared.get("segments"), functions)

            def done(unit: Unit, report) -> None:
                summary.merge(report)
                bar.restore(report.restored)
                bar.update(report.progress - report.restored)

            run_units(ray, pool, units, refs.keys, submit, done, summary, options.retries,
                      lambda u: (models[u.model].name, shards[u.shard].name), inputs.release,
                      lambda u: report_killed(store.root, "a Ray worker"))
    bar.close()
    summary.finish()
    raise_failures(summary, "explain")
    return summary
