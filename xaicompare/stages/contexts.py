"""What each stage gets: a small, typed, frozen context instead of the whole Study.

A stage is a function of its context: the model names and families, the seed, its own
config section (plus the compare section, whose metrics and preset every later stage uses),
the run's Results, and readers of the store (logits, maps, features) where it needs them.
A stage that needs a model pass (faithfulness curves, randomised maps, Grad-CAM at other
depths, corrupted predictions) gets callables that ask the engine (engine_access.py) and
read the result back by model name: no stage holds a model. Study builds the contexts (the `*_context(study)` functions) and orders the stages; a test
builds one by hand from synthetic arrays, with no model and no Study.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from ..config import ClusterConfig, CompareConfig, DiversityConfig, ReportConfig, TrustConfig
from .engine_access import StudyEngine
from .results import Results


@dataclass(frozen=True)
class Images:
    """The study's images as the statistics see them: ids, labels (-1: unknown) and more."""
    ids: tuple[str, ...]
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    masks: np.ndarray | None = None  # [N, H, W] object masks (e.g. shapes), else None
    attributes: Mapping[str, np.ndarray] = field(default_factory=dict)  # e.g. object_texture
    n_textures: int | None = None  # shapes' cue-conflict benchmark

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class StageContext:
    results: Results
    models: tuple[str, ...]  # model names, in the study's order (rows of every array)
    families: Mapping[str, str]
    seed: int
    methods: Mapping[str, dict]  # method -> its parameters, in the study's order
    compare: CompareConfig  # metrics, normalisation and preset: every stage reads them
    trust: TrustConfig  # n_resamples and ci of every interval


@dataclass(frozen=True)
class CompareContext(StageContext):
    images: Images
    not_applicable: Mapping[str, tuple[str, ...]]  # method -> models it cannot explain
    read_logits: Callable[[], np.ndarray]  # [M, N, K] clean logits
    read_maps: Callable[..., np.ndarray]  # (method, models=None) -> [M, N, H, W]
    read_features: Callable[[], dict]  # model -> [N, F] penultimate features


@dataclass(frozen=True)
class ClusterContext(StageContext):
    cluster: ClusterConfig


@dataclass(frozen=True)
class DiversityContext(StageContext):
    diversity: DiversityConfig
    images: Images
    read_logits: Callable[..., np.ndarray]  # (condition="clean") -> [M, N, K]
    corrupted_logits: Callable[[], None]  # computes (resumably) the corrupted conditions


@dataclass(frozen=True)
class TrustPasses:
    """The trust stage's model passes: asked of the engine (units, stored and resumable,
    local or Ray) and read back from the store by model name; the stage calls no model."""
    curve_orders: tuple[str, ...]  # pixel orders of the faithfulness curves ("random": null)
    compute_curves: Callable[[Sequence[str]], None]  # ids -> every model x method x order
    read_curves: Callable[..., Mapping[str, np.ndarray]]  # (model, method, order, ids) ->
    #   {"deletion_auc": [N], "insertion_auc": [N]}
    compute_randomized_maps: Callable[[Mapping[str, dict], Sequence[str]], None]  # (methods, ids)
    read_randomized_maps: Callable[..., np.ndarray]  # (model, method, ids) -> [N, H, W]


@dataclass(frozen=True)
class TrustContext(StageContext):
    cluster: ClusterConfig
    images: Images
    not_applicable: Mapping[str, tuple[str, ...]]  # method -> models it cannot explain
    read_logits: Callable[[], np.ndarray]
    read_maps: Callable[..., np.ndarray]  # (method, ids=None, models=None) -> [M, N, H, W]
    passes: TrustPasses


@dataclass(frozen=True)
class ReportContext(StageContext):
    """The report's sections drawn from tables (similarity, structure, trust, diversity,
    lenses, methods, findings)."""
    cluster: ClusterConfig
    report: ReportConfig


@dataclass(frozen=True)
class DepthPasses:
    """Grad-CAM at other depths for the depth atlas: engine units, stored like every map."""
    check: Callable[[str, float], None]  # (model, depth): UserError where it has no layer
    compute: Callable[[Sequence[str], float, Sequence[str]], None]  # (models, depth, ids)
    read: Callable[[str, float, Sequence[str]], np.ndarray]  # (model, depth, ids) -> [B, H, W]


@dataclass(frozen=True)
class AtlasContext(ReportContext):
    """The whole report stage: the tables' sections, and the atlases and paper figures that
    show images, stored maps and predictions."""
    images: Images
    target: str  # "predicted" or "label": the class every stored map explains
    not_applicable: Mapping[str, tuple[str, ...]]
    load_images: Callable[[Sequence[int]], torch.Tensor]  # rows -> canonical [B, 3, H, W]
    read_logits: Callable[..., np.ndarray]  # (ids=None keyword) -> [M, N, K] clean logits
    read_maps: Callable[..., np.ndarray]  # (method, ids=None) -> [M, N, H, W]
    depth: DepthPasses


@dataclass(frozen=True)
class RunFacts:
    """What the report's appendix and its fingerprint say about the run itself."""
    name: str
    config_yaml: str
    weights: Mapping[str, str]  # model -> weights id
    dataset: str
    dataset_options: Mapping[str, object]
    dataset_seed: int
    skipped: tuple[tuple[str, str], ...]  # (path, reason) of the images left out
    class_rules: tuple[tuple[str, str], ...]  # (model, how its outputs were matched)
    timings: Mapping[str, float]  # stage -> seconds, of the stages run before the report


def _common(study) -> dict:
    cfg = study.config
    return {"results": study.results, "models": tuple(study.model_names),
            "families": dict(study.families), "seed": cfg.seed, "methods": dict(cfg.methods),
            "compare": cfg.compare, "trust": cfg.trust}


def _images(study, masks: bool = False) -> Images:
    data = study.dataset
    labels = None if data.labels is None else np.asarray(data.labels)
    texture = data.attributes.get("object_texture")
    n_textures = int(data.describe()["n_textures"]) if texture is not None else None
    mask = data.masks(range(len(data))) if masks else None
    class_names = getattr(data, "class_names", None)
    return Images(ids=tuple(data.ids), labels=labels,
                  class_names=None if class_names is None else tuple(class_names),
                  masks=None if mask is None else mask.numpy(),
                  attributes=dict(data.attributes), n_textures=n_textures)


def _not_applicable(study) -> dict[str, tuple[str, ...]]:
    return {m: tuple(study.not_applicable(m)) for m in study.config.methods}


def study_engine(study) -> StudyEngine:
    cfg = study.config
    return StudyEngine(tuple(study.models), study.dataset, study.store, study.dataset_identity,
                       cfg.target, cfg.seed, dict(cfg.methods), cfg.executor, study.progress)


def compare_context(study) -> CompareContext:
    return CompareContext(
        **_common(study), images=_images(study, masks=True),
        not_applicable=_not_applicable(study),
        read_logits=study.read_logits, read_maps=study.read_maps,
        read_features=study.read_features)


def cluster_context(study) -> ClusterContext:
    return ClusterContext(**_common(study), cluster=study.config.cluster)


def diversity_context(study) -> DiversityContext:
    cfg = study.config.diversity
    return DiversityContext(
        **_common(study), diversity=cfg, images=_images(study), read_logits=study.read_logits,
        corrupted_logits=partial(study_engine(study).compute_corrupted_logits,
                                 list(cfg.corruptions), list(cfg.severities)))


def trust_context(study) -> TrustContext:
    engine, steps = study_engine(study), study.config.trust.faithfulness_steps

    def compute_curves(ids):
        engine.compute_curves(ids, steps)

    def read_curves(model, method, order, ids):
        return engine.read_curves(model, method, order, ids, steps)

    passes = TrustPasses(curve_orders=engine.curve_orders(steps),
                         compute_curves=compute_curves, read_curves=read_curves,
                         compute_randomized_maps=engine.compute_randomized_maps,
                         read_randomized_maps=engine.read_randomized_maps)
    return TrustContext(**_common(study), cluster=study.config.cluster, images=_images(study),
                        not_applicable=_not_applicable(study), read_logits=study.read_logits,
                        read_maps=study.read_maps, passes=passes)


def report_context(study) -> AtlasContext:
    engine = study_engine(study)
    return AtlasContext(
        **_common(study), cluster=study.config.cluster, report=study.config.report,
        images=_images(study), target=study.config.target,
        not_applicable=_not_applicable(study), load_images=study.dataset.load,
        read_logits=study.read_logits, read_maps=study.read_maps,
        depth=DepthPasses(check=engine.check_depth, compute=engine.compute_depth_maps,
                          read=engine.read_depth_maps))


def run_facts(study) -> RunFacts:
    cfg, models = study.config, study.models  # loading the models maps their classes
    return RunFacts(
        name=cfg.name, config_yaml=cfg.to_yaml(), weights={m.name: m.weights_id for m in models},
        dataset=cfg.dataset.name, dataset_options=dict(cfg.dataset.options),
        dataset_seed=cfg.dataset.seed,
        skipped=tuple((str(path), str(reason)) for path, reason in study.dataset.skipped),
        class_rules=tuple((m.model, m.rule) for m in study.class_space),
        timings=dict(study.result.timings))
