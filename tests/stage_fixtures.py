"""Stage contexts built by hand from synthetic arrays: no model, no store, no Study."""

from __future__ import annotations

import numpy as np

from xaicompare.config import (
    ClusterConfig,
    CompareConfig,
    DiversityConfig,
    ReportConfig,
    TrustConfig,
)
from xaicompare.stages.contexts import (
    AtlasContext,
    ClusterContext,
    CompareContext,
    DepthPasses,
    DiversityContext,
    Images,
    TrustContext,
    TrustPasses,
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


def no_pass(*args, **kwargs):
    raise AssertionError("this test asks the engine for no model pass")


NO_PASSES = TrustPasses(curve_orders=("descending", "random"), compute_curves=no_pass,
                        read_curves=no_pass, compute_randomized_maps=no_pass,
                        read_randomized_maps=no_pass)


def trust_context(tmp_path, maps: dict, logits, labels, passes=NO_PASSES, not_applicable=None,
                  trust=None) -> TrustContext:
    """maps: method -> [M, N, H, W] of every model, read by ids and model names."""
    base = common(tmp_path, methods=tuple(maps))
    if trust is not None:
        base["trust"] = trust
    image_set = images(logits.shape[1], labels)

    def read_maps(method, ids=None, models=None):
        rows = [base["models"].index(m) for m in models or base["models"]]
        columns = [image_set.ids.index(i) for i in ids or image_set.ids]
        return maps[method][np.ix_(rows, columns)]

    return TrustContext(**base, cluster=ClusterConfig(k=2), images=image_set,
                        not_applicable={m: tuple((not_applicable or {}).get(m, ())) for m in maps},
                        read_logits=lambda: logits, read_maps=read_maps, passes=passes)


NO_DEPTH = DepthPasses(check=no_pass, compute=no_pass, read=no_pass)


def atlas_context(tmp_path, maps: dict, logits, labels=None, class_names=None,
                  target="predicted", depth=NO_DEPTH, not_applicable=None, report=None,
                  **kwargs) -> AtlasContext:
    """The report stage's context: maps (method -> [M, N, H, W]) and logits [M, N, K] read
    by ids; images are grey squares whose value is the image's row / N."""
    base = common(tmp_path, methods=tuple(maps), **kwargs)
    image_set = images(logits.shape[1], labels)
    image_set = Images(ids=image_set.ids, labels=image_set.labels,
                       class_names=None if class_names is None else tuple(class_names))
    size = next(iter(maps.values())).shape[-1]

    def columns(ids):
        return [image_set.ids.index(i) for i in (image_set.ids if ids is None else ids)]

    def load_images(rows):
        import torch

        return torch.stack([torch.full((3, size, size), r / len(image_set)) for r in rows])

    return AtlasContext(
        **base, cluster=ClusterConfig(k=2), report=report or ReportConfig(formats=["png"]),
        images=image_set, target=target,
        not_applicable={m: tuple((not_applicable or {}).get(m, ())) for m in maps},
        load_images=load_images,
        read_logits=lambda condition="clean", ids=None: logits[:, columns(ids)],
        read_maps=lambda method, ids=None, models=None: maps[method][:, columns(ids)],
        depth=depth)
