"""Method x method agreement per model: do a model's explanation methods agree with each
other on the same images, and does that depend on the architecture family?

The same compare engine as the model x model matrices (similarity_matrices over the stacked
maps of one model's methods), with the study's normalisation, resolution and degenerate
rule, so a number here means what it means there.

Writes  tables/method_agreement/<metric>.csv   (one row per model and method pair)
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..compare import similarity_matrices
from ..config import CompareConfig
from .compare import compare_options, metric_options, study_ddof
from .contexts import CompareContext
from .results import Results

log = logging.getLogger("xaicompare")

READS = ("method_agreement",)  # read_method_agreement, for the report (the table step
# itself reads only the store's maps and logits)
WRITES = ("method_agreement",)
FALLBACK_METRIC = "spearman"  # scale-free, needs no per-method option


def cross_method_metric(cfg: CompareConfig, methods) -> tuple[str, dict]:
    """The study's first metric whose options are the same for every method (a metric
    with a per-method option, e.g. an rbf sigma per method, cannot compare two methods);
    else Spearman with its defaults."""
    methods = list(methods)
    for metric in cfg.metrics:
        options = [metric_options(cfg, method, metric) for method in methods]
        if all(o == options[0] for o in options):
            return metric, options[0]
    return FALLBACK_METRIC, {}


def method_agreement_table(ctx: CompareContext) -> pd.DataFrame | None:
    """Mean (and median, std, images used) per-image similarity of every pair of methods,
    per model; None with fewer than 2 methods. Methods that do not apply to a model (no
    maps) are left out for that model."""
    methods = list(ctx.methods)
    if len(methods) < 2:
        return None
    metric, options = cross_method_metric(ctx.compare, methods)
    preds = ctx.read_logits().argmax(-1)  # an image filter (compare.filter) needs them
    rows = []
    for k, name in enumerate(ctx.models):
        applicable = [m for m in methods if name not in ctx.not_applicable.get(m, ())]
        if len(applicable) < 2:
            continue
        maps = np.stack([ctx.read_maps(method, models=[name])[0] for method in applicable])
        result = similarity_matrices(
            maps, {metric: options}, compare_options(ctx.compare), names=applicable,
            preds=np.repeat(preds[k][None], len(applicable), axis=0),
            labels=ctx.images.labels, ddof=study_ddof(ctx.compare))[metric]
        for i, a in enumerate(applicable):
            for b in applicable[i + 1:]:
                rows.append({"model": name, "family": ctx.families[name], "method_a": a,
                             "method_b": b, "mean": result.mean.loc[a, b],
                             "median": result.median.loc[a, b], "std": result.std.loc[a, b],
                             "n": int(result.n.loc[a, b])})
        provenance = result.provenance()
    if not rows:
        return None
    table = pd.DataFrame(rows)
    ctx.results.write_method_agreement(
        metric, table, {**provenance, "what": "per model: similarity of two methods' maps of "
                                              "the same image, summarised over images"})
    return table


def read_method_agreement(results: Results, cfg: CompareConfig, methods
                          ) -> tuple[str, pd.DataFrame] | None:
    """(metric, table) written by method_agreement_table, or None."""
    metric, _ = cross_method_metric(cfg, methods)
    table = results.method_agreement(metric, missing_ok=True)
    return None if table is None else (metric, table)
