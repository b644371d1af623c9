"""What each stage gets: a small, typed, frozen context instead of the whole Study.

A stage is a function of its context: the model names and families, the seed, its own
config section (plus the compare section, whose metrics and preset every later stage uses),
the run's Results, and readers of the store (logits, maps, features) where it needs them.
Study builds the contexts (the `*_context(study)` functions) and orders the stages; a test
builds one by hand from synthetic arrays, with no model and no Study.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..config import ClusterConfig, CompareConfig, DiversityConfig, ReportConfig, TrustConfig
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
class TrustContext(StageContext):
    cluster: ClusterConfig
    images: Images
    read_logits: Callable[[], np.ndarray]
    read_maps: Callable[..., np.ndarray]


@dataclass(frozen=True)
class ReportContext(StageContext):
    """The report's sections drawn from tables (similarity, structure, trust, diversity,
    lenses, methods, findings); the atlases and the run summary still read the Study
    (images, maps, models)."""
    cluster: ClusterConfig
    report: ReportConfig


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


def compare_context(study) -> CompareContext:
    return CompareContext(
        **_common(study), images=_images(study, masks=True),
        not_applicable={m: tuple(study.not_applicable(m)) for m in study.config.methods},
        read_logits=study.read_logits, read_maps=study.read_maps,
        read_features=study.read_features)


def cluster_context(study) -> ClusterContext:
    return ClusterContext(**_common(study), cluster=study.config.cluster)


def diversity_context(study, corrupted_logits: Callable[[], None]) -> DiversityContext:
    return DiversityContext(**_common(study), diversity=study.config.diversity,
                            images=_images(study), read_logits=study.read_logits,
                            corrupted_logits=corrupted_logits)


def report_context(study) -> ReportContext:
    return ReportContext(**_common(study), cluster=study.config.cluster,
                         report=study.config.report)


def trust_context(study) -> TrustContext:
    return TrustContext(**_common(study), cluster=study.config.cluster, images=_images(study),
                        read_logits=study.read_logits, read_maps=study.read_maps)
