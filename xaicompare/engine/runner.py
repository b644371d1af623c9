"""Runs the plan models x methods x image shards, writing through the store.

Idempotent: a (model, method, shard) whose maps are stored is skipped, so an interrupted
run resumes where it stopped, and adding a model to a finished study computes only it.
One forward pass per shard serves both the stored logits and the explained targets.
A unit of work is one model on one shard (engine/units.py); the local executor runs the
units in a loop, the Ray executor (engine/ray_executor.py) on worker actors. Both use the
same shards and write the same chunks, so a study started with one finishes with the other.

Numerical safety: logits or maps with NaN/inf are stored as they are (so the numbers are
never silently changed), flagged per image in the chunk (`finite`), logged as a warning
naming model, method and image id, and listed in `RunSummary.nonfinite`. Downstream, the
compare stage treats a non-finite map as degenerate and excludes it by its declared rule
(`compare.degenerate`), with counts in degenerate_maps.csv.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from ..devices import check_device_syntax, intra_op_threads, resolve_device
from ..errors import UserError
from ..progress import bar as progress_bar
from ..store import Store
from .batching import PROBE_IMAGES, auto_batch_size, place_model, probe_batch_size
from .heartbeat import Heartbeat, report_killed
from .memory import limit_for
from .scope import unit_scope
from .summary import RunSummary
from .units import ExplainJob, ModelEntries, explain_unit, make_shards

log = logging.getLogger("xaicompare")
AUTOCAST_MODES = ("none", "bf16", "fp16")


def executor_options(executor):
    """An ExecutorConfig from "local", "ray" or an ExecutorConfig (returned as is)."""
    from ..config import ExecutorConfig

    if isinstance(executor, str):
        return ExecutorConfig(kind=executor)  # validated: UserError-worthy names fail here
    return executor


def with_oom_backoff(fn: Callable[[int], None], batch_size: int) -> None:
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
    executor="local",
    autocast: str = "none",
) -> RunSummary:
    """Compute (or find in the store) logits and maps for every model x method x image.

    executor: "local" (this process), "ray", or an ExecutorConfig (kind, address, workers,
    threads, ...). Both executors run the same shards and store identical results when
    they run on the same kind of device with the same number of threads (`threads`).
    autocast: none | bf16 | fp16 runs the model under torch.autocast; such results get
    their own store keys (read them with maps_entry(..., autocast=...)), never mixed with
    float32 ones.
    """
    options = executor_options(executor)
    if autocast not in AUTOCAST_MODES:
        raise UserError(f"autocast: got {autocast!r}; accepted: {', '.join(AUTOCAST_MODES)}")
    job = ExplainJob(dict(methods), dataset_identity, target, seed, map_dtype, autocast,
                     options.memory)
    if options.kind == "ray":  # the workers' devices are theirs: only the name is checked
        from .ray_executor import run_explanations_on_ray

        return run_explanations_on_ray(models, dataset, job, store, options,
                                       batch_size=batch_size,
                                       device=check_device_syntax(device, "executor.device"),
                                       progress=progress)
    device_ = resolve_device(device)
    summary = RunSummary()
    bar = progress_bar(len(models) * len(dataset) * (1 + len(methods)), desc="explain",
                       unit="map", enabled=progress)
    report_killed(store.root)  # a unit of an earlier run the system killed: say so once
    heartbeat = Heartbeat(store.root)
    with intra_op_threads(options.threads):
        for model in models:
            bar.note(model.name)
            model = place_model(model, device_)
            with unit_scope():  # its memory and batch-size probes are engine passes
                size = _shard_size(batch_size, model, dataset, job, store, device_)
            entries = ModelEntries.of(store, model, job)

            def run_all(size: int, model=model, entries=entries, start=bar.n) -> None:
                bar.rewind(start)  # an out-of-memory retry redoes this model's shards
                for shard in make_shards(dataset, size):
                    with heartbeat.unit(model.name, shard.name):
                        report = explain_unit(model, shard, job, store, device_,
                                              lambda rows=shard.rows: dataset.load(list(rows)),
                                              entries=entries)
                    summary.merge(report)
                    bar.restore(report.restored)  # stored work: done, not in the ETA
                    bar.update(report.progress - report.restored)

            with_oom_backoff(run_all, size)
    bar.close()
    return summary.finish()


def _shard_size(batch_size: int | str, model, dataset, job: ExplainJob, store: Store,
                device: torch.device) -> int:
    """`batch_size`, or for "auto" on CUDA one sized to the free memory by a probe (skipped
    when the model has nothing left to compute)."""
    if ModelEntries.of(store, model, job).done(dataset.ids):
        return auto_batch_size(device) if batch_size == "auto" else int(batch_size)
    size = _unbudgeted_shard_size(batch_size, model, dataset, job, device)
    side = getattr(dataset, "size", None)  # the canonical frame's side (an ImageSet's)
    if job.memory == "none" or len(dataset) == 0 or not isinstance(side, int):
        return size
    # Grad-CAM and the logits pass run a whole shard at once: no more images than fit.
    # The cost depends on the image's shape only: probe a blank one, load nothing.
    blank = torch.zeros(1, 3, side, side, device=device)
    limit = limit_for(model, blank, job.memory)
    if limit is not None and limit.backward < size:
        log.info("model '%s': batch size %d within executor.memory %s (was %d)", model.name,
                 limit.backward, job.memory, size)
        size = limit.backward
    return size


def _unbudgeted_shard_size(batch_size: int | str, model, dataset, job: ExplainJob,
                           device: torch.device) -> int:
    if batch_size != "auto":
        return int(batch_size)
    default = auto_batch_size(device)
    if device.type != "cuda":
        return default
    probe = dataset.load(list(range(min(PROBE_IMAGES, len(dataset)))))
    size = probe_batch_size(model, probe, job, device, default)
    log.info("model '%s': batch size %d from free GPU memory", model.name, size)
    return size
