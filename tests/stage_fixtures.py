"""Stage contexts built by hand from synthetic arrays: no model, no store, no Study."""

from __future__ import annotations

import numpy as np

from xaicompare.config import ClusterConfig, CompareConfig, DiversityConfig, TrustConfig
from xaicompare.stages.contexts import (
    ClusterContext,
    CompareContext,
    DiversityContext,
    Images,
    TrustContext,
)
from xaicompare.stages.results import Results

MODELS = ("cnn_a", "cnn_b", "vit_a", "vit_b")
FAMILIES = {"cnn_a": "cnn", "cnn_b": "cnn", "vit_a": "transformer", "vit_b": "transformer"}


def common(tmp_path, methods=("gradcam",), metrics=("cosine",), models=MODELS, seed=0,
           **compare) -> dict:
    return {"results": Results(tmp_path), "models": tuple(models),
            "families": {m: FAMILIES[m] for m in models}, "seed": seed,
            "methods": {m: {} for m in methods},
            "compare": CompareConfig(metrics=list(metrics), **compare),
            "trust": TrustConfig(n_resamples=20, stability_resamples=10, n_shuffles=2,
                                 sample_size_subsets=3)}


def images(n: int, labels=None) -> Images:
    return Images(ids=tuple(f"img{i}" for i in range(n)),
                  labels=None if labels is None else np.asarray(labels))


def compare_context(tmp_path, maps: dict, logits: np.ndarray, features=None, labels=None,
                    not_applicable=None, **kwargs) -> CompareContext:
    """maps: method -> [M, N, H, W] of every model (a model a method skips: any values)."""
    base = common(tmp_path, methods=tuple(maps), **kwargs)
    models = base["models"]

    def read_maps(method, ids=None, models=None):
        chosen = maps[method]
        if models is not None:
            chosen = chosen[[base["models"].index(m) for m in models]]
        return chosen

    return CompareContext(
        **base, images=images(logits.shape[1], labels),
        not_applicable={m: tuple((not_applicable or {}).get(m, ())) for m in maps},
        read_logits=lambda: logits, read_maps=read_maps,
        read_features=lambda: features if features is not None else {
            name: np.zeros((logits.shape[1], 0), np.float32) for name in models})


def cluster_context(tmp_path, **cluster) -> ClusterContext:
    return ClusterContext(**common(tmp_path), cluster=ClusterConfig(**cluster))


def diversity_context(tmp_path, logits, labels, methods=("gradcam",), **kwargs
                      ) -> DiversityContext:
    def read_logits(condition="clean"):
        assert condition == "clean", "no corruption was configured"
        return logits

    def no_corruptions():
        raise AssertionError("no corruption was configured")

    return DiversityContext(**common(tmp_path, methods=methods), diversity=DiversityConfig(
        **kwargs), images=images(logits.shape[1], labels), read_logits=read_logits,
        corrupted_logits=no_corruptions)


def trust_context(tmp_path, maps: dict, logits, labels) -> TrustContext:
    return TrustContext(**common(tmp_path, methods=tuple(maps)), cluster=ClusterConfig(k=2),
                        images=images(logits.shape[1], labels), read_logits=lambda: logits,
                        read_maps=lambda method, ids=None, models=None: maps[method])
