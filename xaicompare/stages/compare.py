"""Compare stage: every model pair's explanation similarity, per method and metric.

Writes  tables/similarity/<method>/<metric>_<summary>.csv   (labelled, with provenance)
        arrays/similarity/<method>__<metric>.npz            (per-image values [M, M, N])
        tables/localisation.csv   (where the dataset has object masks, e.g. shapes)
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd

from ..compare import CompareOptions, similarity_matrices, write_table_csv
from ..compare.localisation import localisation_scores
from ..compare.matrix import SimilarityResult
from .health import logit_rows, map_rows, report_degenerate
from .paths import array_path, save_arrays, table_path

log = logging.getLogger("xaicompare")

SUMMARIES = ("mean", "std", "median", "dissimilarity", "n", "n_degenerate")


def compare_options(study) -> CompareOptions:
    cfg = study.config.compare
    return CompareOptions(normalization=cfg.normalization, resolution=cfg.resolution,
                          degenerate=cfg.degenerate, filter=cfg.filter or "all")


def run_compare(study) -> dict:
    """Similarity matrices for every method x metric; returns {(method, metric): result}."""
    cfg = study.config.compare
    options = compare_options(study)
    logits = study.read_logits()
    preds = logits.argmax(-1)
    health = [row for name, model_logits in zip(study.model_names, logits, strict=True)
              for row in logit_rows(name, model_logits)]
    labels = study.dataset.labels
    masks = study.dataset.masks(range(len(study.dataset)))
    results, localisation = {}, []
    for method in study.config.methods:
        skip = study.not_applicable(method)  # e.g. rollout for CNNs: no maps, NaN pairs
        keep = [i for i, name in enumerate(study.model_names) if name not in skip]
        names = [study.model_names[i] for i in keep]
        maps = study.read_maps(method)[keep]
        health += map_rows(names, method, maps)
        if masks is not None:
            localisation += localisation_rows(study, method, maps, masks.numpy(), names)
        # every metric in one pass: each chunk of maps is converted and normalised once
        per_metric = similarity_matrices(
            maps, {metric: cfg.metric_options.get(metric, {}) for metric in cfg.metrics},
            options, names=names, preds=preds[keep], labels=labels)
        for metric, result in per_metric.items():
            result = with_all_models(result, study.model_names)
            provenance = {"method": method, **result.provenance(),
                          **({"not_applicable": skip} if skip else {})}
            for summary in SUMMARIES:
                write_table_csv(getattr(result, summary),
                                table_path(study, "similarity", method, f"{metric}_{summary}"),
                                provenance)
            save_arrays(array_path(study, "similarity", f"{method}__{metric}"),
                     per_image=result.per_image.astype(np.float32),
                     names=np.asarray(study.model_names), ids=np.asarray(study.dataset.ids))
            if len(result.degenerate):
                log.warning("%s/%s: %d degenerate maps (excluded by rule '%s')", method, metric,
                            len(result.degenerate), options.degenerate)
                degenerate = result.degenerate.assign(
                    image=[study.dataset.ids[i] for i in result.degenerate["image"]])
                write_table_csv(degenerate,
                                table_path(study, "similarity", method, "degenerate_maps"),
                                provenance)
            results[(method, metric)] = result
    report_degenerate(study, health)  # each degenerate model named once, with counts
    if localisation:
        write_table_csv(pd.DataFrame(localisation), table_path(study, "localisation"),
                        {"pointing_game": "argmax of the map inside the object mask",
                         "mass_in_mask": "share of positive attribution inside the mask",
                         "mask_area": "chance level of both scores"})
    return results



def localisation_rows(study, method: str, maps: np.ndarray, masks: np.ndarray,
                      names: list[str]) -> list[dict]:
    """Does each model's explanation point at the object (masks known, e.g. shapes)?"""
    return [{"model": name, "family": study.families[name], "method": method,
             **localisation_scores(model_maps, masks)}
            for name, model_maps in zip(names, maps, strict=True)]


def with_all_models(result: SimilarityResult, names: list[str]) -> SimilarityResult:
    """A result over some models widened to all: pairs with a model the method does not
    apply to are NaN (summaries) with 0 images (counts)."""
    if result.rows == names:
        return result
    position = [names.index(n) for n in result.rows]
    per_image = np.full((len(names), len(names), result.per_image.shape[-1]), np.nan)
    per_image[np.ix_(position, position)] = result.per_image

    def widen(frame: pd.DataFrame, fill) -> pd.DataFrame:
        return frame.reindex(index=names, columns=names, fill_value=fill)

    return replace(result, rows=list(names), cols=list(names), per_image=per_image,
                   **{key: widen(getattr(result, key), np.nan)
                      for key in ("mean", "std", "median", "dissimilarity")},
                   **{key: widen(getattr(result, key), 0)
                      for key in ("n", "n_degenerate", "n_filtered", "n_undefined")})
