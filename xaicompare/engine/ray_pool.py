"""Ray worker actors and the driver's scheduling loop (used by engine/ray_executor.py).

A pool of `ExplainWorker` actors, one unit in flight each. A unit goes preferably to a
worker that already holds its model. A worker that dies is replaced in its slot and its
unit runs again (up to `retries` times); a unit that raises is recorded, not retried.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..attribution.registry import METHODS
from ..errors import UserError
from ..store import Store
from .batching import place_model
from .heartbeat import Heartbeat
from .summary import RunSummary
from .trust_units import (
    FaithfulnessJob,
    RandomizationJob,
    faithfulness_unit,
    randomized_copy,
    randomized_maps_unit,
)
from .units import ExplainJob, Shard, UnitReport, corrupted_logits_unit, explain_unit

AFFINITY_WINDOW = 64  # pending units scanned for one whose model a free worker holds


def worker_device(device: str, gpus_per_worker: float) -> str:
    """A worker's device: Ray picks its GPU (CUDA_VISIBLE_DEVICES), so cuda:N is cuda."""
    if device == "auto":
        return "cuda" if gpus_per_worker > 0 else "cpu"
    return "cuda" if device.startswith("cuda") else device


def worker_threads(options) -> int:
    return options.threads or max(1, int(options.cpus_per_worker))


def weights_digest(model) -> str:
    from ..models.checkpoints import weights_hash

    return weights_hash(model)


class ExplainWorker:
    """A Ray actor: keeps models loaded and runs units through the shared store."""

    def __init__(self, device: str, threads: int) -> None:
        torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.models: dict[str, torch.nn.Module] = {}
        self.random_copies: dict[tuple, torch.nn.Module] = {}  # the last model's randomised copy

    def share_ram(self, workers_on_node: int) -> None:
        """executor.memory auto: this worker's share of its node's free RAM is 1 / that."""
        from .memory import share_ram

        share_ram(workers_on_node)

    def sees(self, probe: str) -> tuple[str, bool]:
        """(host, whether this worker sees the driver's probe file in the output folder)."""
        return socket.gethostname(), Path(probe).is_file()

    def _model(self, key: str, boxed: list):
        if key not in self.models:
            import ray

            run = key.split(":")[0]
            if any(not k.startswith(f"{run}:") for k in self.models):
                self.models.clear()  # a new run: its models may share names with the last
                self.random_copies.clear()

            model, digest = ray.get(boxed[0])  # boxed: a ref Ray does not resolve for us
            if weights_digest(model) != digest:
                raise RuntimeError(f"model '{model.name}': weights changed in transfer "
                                   "to a Ray worker")
            self.models[key] = place_model(model, self.device)
        return self.models[key]

    def explain(self, key: str, boxed: list, store_root: str, shard: Shard, job: ExplainJob,
                images: torch.Tensor, segments: dict[str, torch.Tensor] | None,
                methods: dict | None = None):
        """One unit; segments: the shard's superpixels of each method that shares them;
        methods: the job's method functions, for those registered on the driver only."""
        register_missing(methods)
        model = self._model(key, boxed)
        given = None if segments is None else (lambda method, params, x: segments[method])
        try:
            with Heartbeat(Path(store_root)).unit(model.name, shard.name):  # named if killed
                return explain_unit(model, shard, job, Store(store_root), self.device,
                                    lambda: images, given)
        except torch.cuda.OutOfMemoryError:
            if len(shard) == 1:
                raise
            torch.cuda.empty_cache()  # run the shard as two halves (their own chunks)
            half = len(shard) // 2
            parts = [slice(0, half), slice(half, len(shard))]
            reports = [self.explain(key, boxed, store_root, split_shard(shard, part), job,
                                    images[part],
                                    None if segments is None
                                    else {m: s[part] for m, s in segments.items()})
                       for part in parts]
            return merge_reports(reports)

    def logits(self, key: str, boxed: list, store_root: str, shard: Shard,
               dataset_identity: dict, condition: str, images: torch.Tensor,
               memory: str | int = "none") -> int:
        return corrupted_logits_unit(self._model(key, boxed), shard, images, condition,
                                     Store(store_root), dataset_identity, self.device,
                                     memory=memory)

    def faithfulness(self, key: str, boxed: list, store_root: str, shard: Shard,
                     images: torch.Tensor, method: str, order: str, job: FaithfulnessJob,
                     methods: dict | None = None) -> int:
        """One faithfulness unit (engine/trust_units.py); methods: as for `explain`."""
        register_missing(methods)
        model = self._model(key, boxed)
        with Heartbeat(Path(store_root)).unit(model.name, f"{shard.name} ({method}/{order})",
                                                  "trust"):
            return faithfulness_unit(model, shard, images, method, order, job,
                                     Store(store_root), self.device)

    def randomized(self, key: str, boxed: list, store_root: str, shard: Shard,
                   images: torch.Tensor, job: RandomizationJob, methods: dict | None = None
                   ) -> int:
        """One randomisation unit: the model's randomised copy, built once and kept while
        this worker's units are of that model."""
        register_missing(methods)
        model = self._model(key, boxed)
        which = (key, job.seed, job.mode)
        if which not in self.random_copies:
            self.random_copies = {which: randomized_copy(model, job, self.device)}
        with Heartbeat(Path(store_root)).unit(model.name, f"{shard.name} (randomized)",
                                                  "trust"):
            return randomized_maps_unit(model, shard, images, job, Store(store_root),
                                        self.device, self.random_copies[which])


def register_missing(methods: dict | None) -> None:
    """Register here the methods that only the driver has (defined in a script, a notebook
    or a test): the driver sends each function, with its spec as `fn.info`."""
    for name, fn in (methods or {}).items():
        if name not in METHODS:
            METHODS.register(name)(fn)


def split_shard(shard: Shard, part: slice) -> Shard:
    return Shard(shard.rows[part], shard.ids[part],
                 None if shard.labels is None else shard.labels[part])


def merge_reports(reports: list[UnitReport]) -> UnitReport:
    merged = UnitReport(reports[0].model, f"{reports[0].shard.split('..')[0]}.."
                                          f"{reports[-1].shard.split('..')[-1]}")
    for report in reports:
        merged.counts += report.counts
        merged.nonfinite += report.nonfinite
        merged.progress += report.progress
        merged.restored += report.restored
        merged.passes += report.passes
        if report.pass_limit is not None:
            merged.cap(*report.pass_limit)
    return merged


@dataclass
class Unit:
    model: int  # index into the models
    shard: int  # index into the shards
    payload: object = None  # what the kind of unit needs besides model and shard
    attempts: int = 0


@dataclass
class ModelRefs:
    """Models in the object store, each put once, keyed "<run id>:<index>:<name>"."""

    keys: list[str]
    boxed: list[list]  # [ref]: a ref in a list is passed as is, not resolved by Ray


def workers_per_host(hosts: Sequence[str]) -> list[int]:
    """For each worker (given by its host): how many of the workers run on that host."""
    return [hosts.count(host) for host in hosts]


def put_models(ray, models: Sequence) -> ModelRefs:
    # Keys are new for every run: a model's Grad-CAM layer or resize is not in its weights,
    # so a worker must never reuse a model of an earlier run that had the same name.
    run = uuid.uuid4().hex[:12]
    keys, boxed = [], []
    for i, model in enumerate(models):
        keys.append(f"{run}:{i}:{model.name}")
        boxed.append([ray.put((model.cpu(), weights_digest(model)))])
    return ModelRefs(keys, boxed)


class WorkerPool:
    """Worker actors, one unit in flight each; a dead worker is replaced in its slot.

    Kept for the rest of the Ray session (see `get_pool`), so later stages and runs reuse
    the started workers and the models they hold.
    """

    def __init__(self, ray, options) -> None:
        self.ray = ray
        self.actor_class = ray.remote(ExplainWorker).options(
            num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker)
        self.args = (worker_device(options.device, options.gpus_per_worker),
                     worker_threads(options))
        self.actors: list = []
        self.holds: list[set[str]] = []  # model keys each worker has loaded
        self.active = 0  # workers the current run uses (the first `active` ones)
        self.sharers: list[int] = []  # per active worker: active workers on its node

    def ensure(self, size: int) -> None:
        self.active = size
        while len(self.actors) < size:
            self.actors.append(self.actor_class.remote(*self.args))
            self.holds.append(set())

    def check_shared_folder(self, store: Store) -> None:
        store.root.mkdir(parents=True, exist_ok=True)
        probe = store.root / f".ray-probe-{uuid.uuid4().hex}"
        probe.touch()
        try:
            seen = self.ray.get([a.sees.remote(str(probe.resolve()))
                                 for a in self.actors[:self.active]])
        finally:
            probe.unlink(missing_ok=True)
        blind = sorted({host for host, ok in seen if not ok})
        if blind:
            raise UserError(f"Ray workers on {', '.join(blind)} cannot see the output folder "
                            f"'{store.root}'; put `output:` on a filesystem every node "
                            "mounts at the same path")
        # auto memory budgets: the workers of one node split its free RAM
        self.sharers = workers_per_host([host for host, _ in seen])
        self.ray.get([a.share_ram.remote(n) for a, n in
                      zip(self.actors[:self.active], self.sharers, strict=True)])

    def replace(self, slot: int) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(self.actors[slot])
        self.actors[slot] = self.actor_class.remote(*self.args)
        self.holds[slot] = set()
        if slot < len(self.sharers):  # most likely on the dead worker's node
            self.actors[slot].share_ram.remote(self.sharers[slot])

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self.actors, self.holds = [], []


_CACHED: dict = {}  # {"key": ..., "pool": WorkerPool}: at most one pool holds resources


def get_pool(ray, options, store: Store, size: int) -> WorkerPool:
    """The session's pool for these worker settings with at least `size` workers, checked
    to see the store's folder."""
    context = ray.get_runtime_context()
    key = (context.gcs_address, context.get_job_id(), options.device, worker_threads(options),
           options.cpus_per_worker, options.gpus_per_worker)
    if _CACHED.get("key") != key:
        if "pool" in _CACHED:
            _CACHED.pop("pool").close()  # frees its CPUs/GPUs for the new workers
        _CACHED.update(key=key, pool=WorkerPool(ray, options))
    pool = _CACHED["pool"]
    pool.ensure(size)
    pool.check_shared_folder(store)
    return pool


def _take(pending: deque, holds: set[str], keys: list[str]) -> Unit:
    """The first pending unit (within a window) whose model this worker holds, else the first."""
    for i, unit in enumerate(pending):
        if i >= AFFINITY_WINDOW:
            break
        if keys[unit.model] in holds:
            del pending[i]
            return unit
    return pending.popleft()


def _lost_worker_errors(ray) -> tuple[type[BaseException], ...]:
    ex = ray.exceptions
    return (ex.RayActorError, ex.WorkerCrashedError, ex.ObjectLostError, ex.NodeDiedError,
            ex.LocalRayletDiedError)


def run_units(ray, pool: WorkerPool, units: Sequence[Unit], keys: list[str],
              submit: Callable[[object, Unit], object], done: Callable[[Unit, object], None],
              summary: RunSummary, retries: int, describe: Callable[[Unit], tuple[str, str]],
              release: Callable[[Unit], None] = lambda unit: None,
              on_lost: Callable[[Unit], None] = lambda unit: None) -> None:
    """Run units on the pool; retry those whose worker died, record those that raised."""
    pending, inflight = deque(units), {}
    idle = deque(range(pool.active))
    lost = _lost_worker_errors(ray)
    while pending or inflight:
        while idle and pending:
            slot = idle.popleft()
            unit = _take(pending, pool.holds[slot], keys)
            inflight[submit(pool.actors[slot], unit)] = (slot, unit)
            pool.holds[slot].add(keys[unit.model])
        [ref], _ = ray.wait(list(inflight), num_returns=1)
        slot, unit = inflight.pop(ref)
        idle.append(slot)
        try:
            result = ray.get(ref)
        except lost as err:
            on_lost(unit)
            pool.replace(slot)
            unit.attempts += 1
            if unit.attempts <= retries:
                summary.retried += 1
                pending.appendleft(unit)
                continue
            summary.failed.append((*describe(unit), f"its worker died {unit.attempts} times "
                                                    f"(last: {type(err).__name__})"))
        except ray.exceptions.RayTaskError as err:  # raised by the unit itself: not retried
            cause = err.cause if getattr(err, "cause", None) is not None else err
            summary.failed.append((*describe(unit), f"{type(cause).__name__}: {cause}"))
        else:
            done(unit, result)
        release(unit)


def raise_failures(summary: RunSummary, what: str) -> None:
    """After a run: one error that names every failed unit (finished units stay stored)."""
    if not summary.failed:
        return
    lines = "; ".join(f"model '{m}', images {s}: {e}" for m, s, e in summary.failed[:5])
    more = f" (and {len(summary.failed) - 5} more)" if len(summary.failed) > 5 else ""
    raise UserError(f"{len(summary.failed)} {what} unit(s) failed on Ray: {lines}{more}; "
                    "finished units are stored, fix the cause and run again")
