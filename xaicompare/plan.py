"""`xaicompare plan STUDY.yaml`: what a study will compute, before computing any of it.

Model evaluations (images through the model) per model and method, from each method's
resolved parameters: forward only, and forward + backward. Units (model x shard), the
storage the maps and logits take, and, after a probe of each model on the chosen device
(a few passes), the time and peak memory the explain and diversity stages should take.

Each method declares what it costs where it is registered (`register_method(cost=...)`,
`fn(params, n_images, size) -> (forward, backward, exact)`).
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .attribution import applies_to, resolved_params
from .attribution.registry import method_info

Cost = tuple[int, int, bool]  # forward-only evaluations, forward+backward ones, exact count


def method_evaluations(method: str, params: dict, n_images: int, size: int,
                       model=None) -> Cost | None:
    """(forward, backward, exact) evaluations of `method` on n_images; None: not known.
    model: the LoadedModel, for costs that depend on it (Score-CAM's channel count)."""
    fn = method_info(method).cost
    if fn is None:
        return None
    if "model" in inspect.signature(fn).parameters:
        return fn(resolved_params(method, params), n_images, size, model=model)
    return fn(resolved_params(method, params), n_images, size)


@dataclass
class ModelPlan:
    name: str
    rows: list[tuple[str, int, int, bool, int]] = field(default_factory=list)  # method, f, b
    seconds_forward: float | None = None  # per evaluation, from the probe
    seconds_backward: float | None = None
    bytes_backward: int | None = None  # per evaluation, engine/memory.py's probe
    base_rss: int | None = None

    @property
    def forward(self) -> int:
        return sum(r[1] for r in self.rows)

    @property
    def backward(self) -> int:
        return sum(r[2] for r in self.rows)


@dataclass
class StudyPlan:
    name: str
    n_images: int
    size: int
    shard: int
    methods: list[str]
    models: list[ModelPlan]
    conditions: int  # corrupted copies per image (diversity)
    storage: dict[str, int]
    device: str = "cpu"
    unknown: list[str] = field(default_factory=list)  # methods without a cost function

    @property
    def units(self) -> int:
        return len(self.models) * math.ceil(self.n_images / max(1, self.shard))

    def totals(self) -> tuple[int, int]:
        return sum(m.forward for m in self.models), sum(m.backward for m in self.models)

    def short(self) -> str:
        """One line for the start of `run`."""
        fwd, bwd = self.totals()
        return (f"plan: {len(self.models)} models x {len(self.methods)} methods x "
                f"{self.n_images} images = {self.units} units; {_count(fwd)} forward + "
                f"{_count(bwd)} forward+backward evaluations; storage ~"
                f"{_bytes(sum(self.storage.values()))}")


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _bytes(n: float) -> str:
    from .engine.memory import format_bytes

    return format_bytes(n)


def _dataset(config):
    """The study's images as `Study.dataset` chooses them, without writing the manifest."""
    from .data import open_dataset, open_manifest, select_subset

    cfg = config.dataset
    if cfg.manifest:
        return open_manifest(cfg.manifest)
    full = open_dataset(cfg.name, **cfg.options)
    if cfg.n_images is not None and cfg.n_images < len(full):
        return select_subset(full, cfg.n_images, seed=cfg.seed, stratify=cfg.stratify)
    return full


def plan_study(config, probe: bool = True, study=None) -> StudyPlan:
    """Count what `config` will compute; with `probe`, time each model on its device.
    study: the Study about to run it (its models and images are then loaded once)."""
    from .engine.runner import auto_batch_size
    from .store.keys import logits_width
    from .study import Study

    if study is None:
        study = Study(config, progress=False)
        study.__dict__["dataset"] = _dataset(config)  # cached property: no manifest written
    data = study.dataset
    n, size = len(data), int(data.size)
    device = torch.device("cpu")
    if probe:
        from .devices import resolve_device

        device = resolve_device(config.executor.device)
    shard = (auto_batch_size(device) if config.executor.batch_size == "auto"
             else int(config.executor.batch_size))
    itemsize = np.dtype("float16").itemsize  # ExplainJob.map_dtype
    storage = {"maps": 0, "logits": 0}
    diversity = config.diversity
    conditions = (len(diversity.corruptions) * len(diversity.severities)
                  if diversity.enabled else 0)
    models, unknown = [], []
    for model in study.models:
        plan = ModelPlan(model.name)
        plan.rows.append(("logits", n, 0, True, 0))
        width = logits_width(model) or 0
        storage["logits"] += n * width * 4 * (1 + conditions)
        for method, params in config.methods.items():
            if not applies_to(method, model):
                continue
            cost = method_evaluations(method, params or {}, n, size, model)
            maps = n * size * size * itemsize
            storage["maps"] += maps
            if cost is None:
                unknown.append(method)
                continue
            plan.rows.append((method, cost[0], cost[1], cost[2], maps))
        if probe:
            _probe(plan, model, data.load([0]), device)
        models.append(plan)
    return StudyPlan(config.name, n, size, shard, list(config.methods), models, conditions,
                     storage, device.type, sorted(set(unknown)))


def _probe(plan: ModelPlan, model, image: torch.Tensor, device: torch.device) -> None:
    """Seconds per forward and per forward+backward evaluation (a pass of 2 inputs, after a
    warm-up), and the bytes one evaluation with gradients keeps (engine/memory.py)."""
    from .engine.batching import place_model
    from .engine.memory import evaluation_cost, process_rss

    model = place_model(model, device)
    batch = torch.cat([image, image]).to(device)

    def forward():
        with torch.no_grad():
            model(batch)

    def backward():
        x = batch.detach().requires_grad_(True)
        out = model(x)
        torch.autograd.grad(out[:, 0].sum(), x)

    for fn, attr in ((forward, "seconds_forward"), (backward, "seconds_backward")):
        fn()  # warm-up: first-call allocations and kernel choices
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        setattr(plan, attr, (time.perf_counter() - start) / len(batch))
    plan.bytes_backward = evaluation_cost(model, batch[:1]).backward
    plan.base_rss = (torch.cuda.memory_allocated(device) if device.type == "cuda"
                     else process_rss())


def stage_estimates(plan: StudyPlan, config) -> dict[str, tuple[float, int]]:
    """(seconds, peak bytes) of the stages that run models, from the probe."""
    from .engine.memory import available_bytes

    budget = available_bytes(config.executor.memory, torch.device(plan.device))
    explain_s = diversity_s = 0.0
    peak = 0
    for m in plan.models:
        if m.seconds_forward is None:
            continue
        explain_s += m.forward * m.seconds_forward + m.backward * m.seconds_backward
        diversity_s += plan.n_images * plan.conditions * m.seconds_forward
        per_pass = 32 * 224 * 224 // (plan.size * plan.size) or 1  # IG's default on the CPU
        # no more than a shard's evaluations with gradients (IG: its images x steps)
        images = max(1, min(plan.shard, plan.n_images))
        per_image = max(math.ceil(r[2] / max(1, plan.n_images)) for r in m.rows)
        per_pass = max(min(per_pass, images * per_image), images)
        if budget is not None:
            per_pass = max(1, min(per_pass, budget // max(1, m.bytes_backward)))
        peak = max(peak, m.base_rss + per_pass * m.bytes_backward)
    return {"explain": (explain_s, peak), "diversity": (diversity_s, peak)}


# Why a count is an upper bound, printed under the table for the methods planned.
def format_plan(plan: StudyPlan, config=None) -> list[str]:
    """The plan as lines of text (the `plan` command prints them)."""
    lines = [f"study {plan.name}: {len(plan.models)} models x {len(plan.methods)} methods x "
             f"{plan.n_images} images ({plan.size} px); {plan.units} units (shards of "
             f"{plan.shard})",
             f"{'model':<28} {'method':<22} {'forward':>12} {'backward':>12} {'maps':>10}"]
    for m in plan.models:
        for method, fwd, bwd, exact, maps in m.rows:
            mark = "" if exact else " (at most)"
            lines.append(f"{m.name:<28} {method:<22} {fwd:>12,} {bwd:>12,} "
                         f"{_bytes(maps) if maps else '':>10}{mark}")
    planned = {r[0] for m in plan.models for r in m.rows}
    lines += [f"{method}: {method_info(method).cost_note}" for method in plan.methods
              if method in planned and method_info(method).cost_note]
    fwd, bwd = plan.totals()
    lines.append(f"total: {fwd:,} forward and {bwd:,} forward+backward evaluations "
                 "(images through a model)")
    lines.append(f"storage: ~{_bytes(sum(plan.storage.values()))} (maps "
                 f"{_bytes(plan.storage['maps'])}, logits {_bytes(plan.storage['logits'])})")
    if plan.unknown:
        lines.append(f"no cost known for: {', '.join(plan.unknown)} (not counted)")
    probed = [m for m in plan.models if m.seconds_forward is not None]
    if probed and config is not None:
        lines.append(f"probe on {plan.device}: {'model':<28} {'ms/forward':>11} "
                     f"{'ms/backward':>12} {'MB/evaluation':>14}")
        for m in probed:
            lines.append(f"{'':<{len(plan.device) + 10}}{m.name:<28} "
                         f"{1e3 * m.seconds_forward:>11.1f} {1e3 * m.seconds_backward:>12.1f} "
                         f"{m.bytes_backward / 1e6:>14.1f}")
        for stage, (seconds, peak) in stage_estimates(plan, config).items():
            lines.append(f"stage {stage:<10} ~{_duration(seconds)}, peak memory ~{_bytes(peak)}")
    return lines


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"
