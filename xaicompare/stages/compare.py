"""Compare stage: every model pair's explanation similarity, per method and metric.

Writes  tables/similarity/<method>/<metric>_<summary>.csv   (labelled, with provenance)
        arrays/similarity/<method>__<metric>.npz            (per-image values [M, M, N])
        tables/localisation.csv   (where the dataset has object masks, e.g. shapes)
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..compare import CompareOptions, similarity_matrices, write_table_csv
from ..compare.localisation import localisation_scores
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
        maps = study.read_maps(method)
        health += map_rows(study.model_names, method, maps)
        if masks is not None:
            localisation += localisation_rows(study, method, maps, masks.numpy())
        # every metric in one pass: each chunk of maps is converted and normalised once
        per_metric = similarity_matrices(
            maps, {metric: cfg.metric_options.get(metric, {}) for metric in cfg.metrics},
            options, names=study.model_names, preds=preds, labels=labels)
        for metric, result in per_metric.items():
            provenance = {"method": method, **result.provenance()}
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



def localisation_rows(study, method: str, maps: np.ndarray, masks: np.ndarray) -> list[dict]:
    """Does each model's explanation point at the object (masks known, e.g. shapes)?"""
    return [{"model": name, "family": study.families[name], "method": method,
             **localisation_scores(model_maps, masks)}
            for name, model_maps in zip(study.model_names, maps, strict=True)]
