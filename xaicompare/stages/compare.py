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

from .. import progress
from ..compare import CompareOptions, conventions, similarity_matrices
from ..compare.localisation import localisation_scores
from ..compare.matrix import SimilarityResult
from ..compare.presets import Conventions, preset_ddof
from ..config import CompareConfig
from ..errors import UserError
from .contexts import CompareContext
from .health import logit_rows, map_rows, report_degenerate
from .lenses import agreement_sweep, consensus_table, representation_tables
from .results import SUMMARIES

log = logging.getLogger("xaicompare")

READS = ()  # the store's logits, maps and features only
WRITES = ("similarity", "per_image", "degenerate_maps", "localisation", "degenerate_models",
          "cka", "consensus", "consensus_maps", "agreement_sweep")


def compare_options(cfg: CompareConfig) -> CompareOptions:
    """The compare section's options of every similarity computation."""
    return CompareOptions(normalization=cfg.normalization, resolution=cfg.resolution,
                          degenerate=cfg.degenerate, filter=cfg.filter or "all")


def study_conventions(cfg: CompareConfig) -> Conventions:
    """The convention preset of the study (compare.preset)."""
    return conventions(cfg.preset)


def study_ddof(cfg: CompareConfig) -> int:
    """ddof of the std in every dissimilarity: compare.ddof, else the preset's."""
    return preset_ddof(study_conventions(cfg), cfg.ddof)


def metric_options(cfg: CompareConfig, method: str, metric: str) -> dict:
    """The metric's options for one method: the preset's, then compare.metric_options.

    A value may be a mapping {method: value} (e.g. rbf sigma {gradcam: 80, default: 10}).
    sigma='median' is refused: it would make every number depend on the study's images.
    """
    given = cfg.metric_options.get(metric, {})
    options = study_conventions(cfg).metric_params(metric, given)
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


def check_compare_settings(cfg: CompareConfig, methods) -> None:
    """Every method x metric's options resolve (e.g. rbf has a sigma for the normalisation):
    checked before the explain stage, so a study does not fail after hours of explaining."""
    from ..compare import METRICS

    for method in methods:
        for metric in cfg.metrics:
            spec = METRICS.get(metric)
            params = spec.params(metric_options(cfg, method, metric))
            if spec.resolve is not None:
                try:
                    spec.resolve(params, torch.empty(0), cfg.normalization)
                except UserError as err:
                    raise UserError(f"compare ({method}/{metric}): {err}") from None


def run_compare(ctx: CompareContext) -> dict:
    """Similarity matrices for every method x metric; returns {(method, metric): result}."""
    logits = ctx.read_logits()
    preds = logits.argmax(-1)
    health = [row for name, model_logits in zip(ctx.models, logits, strict=True)
              for row in logit_rows(name, model_logits)]
    outputs, localisation = {}, []
    progress.plan(len(ctx.methods) + 1, "method")  # + the representation lens
    for method in ctx.methods:
        progress.note(f"{method}: maps and lenses")
        skip = list(ctx.not_applicable.get(method, ()))  # e.g. rollout for CNNs: NaN pairs
        keep = [i for i, name in enumerate(ctx.models) if name not in skip]
        names = [ctx.models[i] for i in keep]
        maps = ctx.read_maps(method)[keep]
        health += map_rows(names, method, maps)
        consensus_table(ctx, method, maps, names)
        if len(names) >= 2:
            agreement_sweep(ctx, method, maps, names)
        if ctx.images.masks is not None:
            localisation += localisation_rows(ctx, method, maps, ctx.images.masks, names)
        progress.note(f"{method}: similarity")
        outputs.update(compare_tables(ctx, method, maps, names, preds[keep]))
        progress.step()
    progress.note("representation (CKA)")
    representation_tables(ctx, ctx.read_features())
    progress.step()
    report_degenerate(ctx.results, health)  # each degenerate model named once, with counts
    if localisation:
        ctx.results.write_localisation(
            pd.DataFrame(localisation),
            {"pointing_game": "argmax of the map inside the object mask",
             "mass_in_mask": "share of positive attribution inside the mask",
             "mask_area": "chance level of both scores"})
    return outputs


def compare_tables(ctx: CompareContext, method: str, maps: np.ndarray, names: list[str],
                   preds: np.ndarray) -> dict:
    """One method's similarity tables and per-image arrays for every metric, over the
    models it applies to (`names`, rows of `maps` and `preds`), widened to all models."""
    cfg, options = ctx.compare, compare_options(ctx.compare)
    skip = list(ctx.not_applicable.get(method, ()))
    # every metric in one pass: each chunk of maps is converted and normalised once
    per_metric = similarity_matrices(
        maps, {metric: metric_options(cfg, method, metric) for metric in cfg.metrics},
        options, names=names, preds=preds, labels=ctx.images.labels,
        preset=study_conventions(cfg), ddof=study_ddof(cfg))
    out, degenerate = {}, []
    for metric, result in per_metric.items():
        result = with_all_models(result, list(ctx.models))
        provenance = {"method": method, **result.provenance(),
                      **({"not_applicable": skip} if skip else {})}
        for summary in SUMMARIES:
            ctx.results.write_similarity(method, metric, summary, getattr(result, summary),
                                         provenance)
        ctx.results.write_per_image(method, metric, result.per_image, ctx.models,
                                    ctx.images.ids)
        if len(result.degenerate):  # summarised once, per model, by report_degenerate
            log.info("%s/%s: %d degenerate maps (excluded by rule '%s')", method, metric,
                     len(result.degenerate), options.degenerate)
            degenerate.append(result.degenerate.assign(
                metric=metric, image=[ctx.images.ids[i] for i in result.degenerate["image"]]))
        out[(method, metric)] = result
    # one table per method with a row per (metric, map), written even when empty so that a
    # rerun never leaves an earlier run's rows behind
    table = pd.concat(degenerate, ignore_index=True) if degenerate else pd.DataFrame(
        columns=["model", "image", "reason", "metric"])
    ctx.results.write_degenerate_maps(
        method, table, {"method": method, "metrics": list(per_metric),
                        "rule": options.degenerate})
    return out


def localisation_rows(ctx: CompareContext, method: str, maps: np.ndarray, masks: np.ndarray,
                      names: list[str]) -> list[dict]:
    """Does each model's explanation point at the object (masks known, e.g. shapes)?"""
    return [{"model": name, "family": ctx.families[name], "method": method,
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
