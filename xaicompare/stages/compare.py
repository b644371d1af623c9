"""Compare stage: every model pair's explanation similarity, per method and metric.

Writes  tables/similarity/<method>/<metric>_<summary>.csv   (labelled, with provenance)
        arrays/similarity/<method>__<metric>.npz            (per-image values [M, M, N])
        tables/localisation.csv   (where the dataset has object masks, e.g. shapes)
        and the consensus and representation tables of stages/lenses.py
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from ..compare import CompareOptions, conventions, similarity_matrices, write_table_csv
from ..compare.localisation import localisation_scores
from ..compare.matrix import SimilarityResult
from ..compare.presets import Conventions, preset_ddof
from ..errors import UserError
from .health import logit_rows, map_rows, report_degenerate
from .lenses import agreement_sweep, consensus_table, representation_tables
from .paths import array_path, save_arrays, table_path

log = logging.getLogger("xaicompare")

SUMMARIES = ("mean", "std", "median", "dissimilarity", "n", "n_degenerate")


def compare_options(study) -> CompareOptions:
    cfg = study.config.compare
    return CompareOptions(normalization=cfg.normalization, resolution=cfg.resolution,
                          degenerate=cfg.degenerate, filter=cfg.filter or "all")


def study_conventions(study) -> Conventions:
    """The convention preset of the study (compare.preset)."""
    return conventions(study.config.compare.preset)


def study_ddof(study) -> int:
    """ddof of the std in every dissimilarity: compare.ddof, else the preset's."""
    return preset_ddof(study_conventions(study), study.config.compare.ddof)


def metric_options(study, method: str, metric: str) -> dict:
    """The metric's options for one method: the preset's, then compare.metric_options.

    A value may be a mapping {method: value} (e.g. rbf sigma {gradcam: 80, default: 10}).
    sigma='median' is refused: it would make every number depend on the study's images.
    """
    given = study.config.compare.metric_options.get(metric, {})
    options = study_conventions(study).metric_params(metric, given)
    for key, value in options.items():
        if isinstance(value, dict):
            if method not in value and "default" not in value:
                raise UserError(f"compare.metric_options.{metric}.{key}: no value for method "
                                f"'{method}'; give one or a 'default'")
            options[key] = value.get(method, value.get("default"))
    if metric == "rbf" and options.get("sigma") == "median":
        raise UserError("compare.metric_options.rbf.sigma: 'median' makes every similarity "
                        "depend on which images are in the study; accepted: a number > 0 in "
                        "map units (or leave it out: the preset's fixed sigma)")
    return options


def check_compare_settings(study) -> None:
    """Every method x metric's options resolve (e.g. rbf has a sigma for the normalisation):
    checked before the explain stage, so a study does not fail after hours of explaining."""
    from ..compare import METRICS

    cfg = study.config.compare
    for method in study.config.methods:
        for metric in cfg.metrics:
            spec = METRICS.get(metric)
            params = spec.params(metric_options(study, method, metric))
            if spec.resolve is not None:
                try:
                    spec.resolve(params, torch.empty(0), cfg.normalization)
                except UserError as err:
                    raise UserError(f"compare ({method}/{metric}): {err}") from None


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
        consensus_table(study, method, maps, names)
        if len(names) >= 2:
            agreement_sweep(study, method, maps, names)
        if masks is not None:
            localisation += localisation_rows(study, method, maps, masks.numpy(), names)
        # every metric in one pass: each chunk of maps is converted and normalised once
        per_metric = similarity_matrices(
            maps, {metric: metric_options(study, method, metric) for metric in cfg.metrics},
            options, names=names, preds=preds[keep], labels=labels,
            preset=study_conventions(study), ddof=study_ddof(study))
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
            if len(result.degenerate):  # summarised once, per model, by report_degenerate
                log.info("%s/%s: %d degenerate maps (excluded by rule '%s')", method, metric,
                         len(result.degenerate), options.degenerate)
                degenerate = result.degenerate.assign(
                    image=[study.dataset.ids[i] for i in result.degenerate["image"]])
                write_table_csv(degenerate,
                                table_path(study, "similarity", method, "degenerate_maps"),
                                provenance)
            results[(method, metric)] = result
    representation_tables(study)
    from .method_agreement import method_agreement_table  # it imports this module

    method_agreement_table(study)  # the report's method x method view
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
