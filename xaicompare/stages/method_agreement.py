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

from ..compare import similarity_matrices, write_table_csv
from .compare import compare_options, metric_options, study_ddof
from .paths import table_path

log = logging.getLogger("xaicompare")

FALLBACK_METRIC = "spearman"  # scale-free, needs no per-method option


def cross_method_metric(study) -> tuple[str, dict]:
    """The study's first metric whose options are the same for every method (a metric
    with a per-method option, e.g. an rbf sigma per method, cannot compare two methods);
    else Spearman with its defaults."""
    methods = list(study.config.methods)
    for metric in study.config.compare.metrics:
        options = [metric_options(study, method, metric) for method in methods]
        if all(o == options[0] for o in options):
            return metric, options[0]
    return FALLBACK_METRIC, {}


def method_agreement_table(study) -> pd.DataFrame | None:
    """Mean (and median, std, images used) per-image similarity of every pair of methods,
    per model; None with fewer than 2 methods. Methods that do not apply to a model (no
    maps) are left out for that model."""
    methods = list(study.config.methods)
    if len(methods) < 2:
        return None
    metric, options = cross_method_metric(study)
    preds = study.read_logits().argmax(-1)  # an image filter (compare.filter) needs them
    rows = []
    for k, name in enumerate(study.model_names):
        applicable = [m for m in methods if name not in study.not_applicable(m)]
        if len(applicable) < 2:
            continue
        maps = np.stack([study.read_maps(method, models=[name])[0] for method in applicable])
        result = similarity_matrices(
            maps, {metric: options}, compare_options(study), names=applicable,
            preds=np.repeat(preds[k][None], len(applicable), axis=0),
            labels=study.dataset.labels, ddof=study_ddof(study))[metric]
        for i, a in enumerate(applicable):
            for b in applicable[i + 1:]:
                rows.append({"model": name, "family": study.families[name], "method_a": a,
                             "method_b": b, "mean": result.mean.loc[a, b],
                             "median": result.median.loc[a, b], "std": result.std.loc[a, b],
                             "n": int(result.n.loc[a, b])})
        provenance = result.provenance()
    if not rows:
        return None
    table = pd.DataFrame(rows)
    write_table_csv(table, table_path(study, "method_agreement", metric),
                    {**provenance, "what": "per model: similarity of two methods' maps of the "
                                           "same image, summarised over images"})
    return table


def read_method_agreement(study) -> tuple[str, pd.DataFrame] | None:
    """(metric, table) written by method_agreement_table, or None."""
    folder = study.run_dir / "tables" / "method_agreement"
    paths = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not paths:
        return None
    metric, _ = cross_method_metric(study)
    path = next((p for p in paths if p.stem == metric), None)
    if path is None:
        return None
    return metric, pd.read_csv(path, comment="#")
