"""Degenerate models: named once, with counts, and left out only where they break a number.

A model is degenerate on an image when its logits hold NaN or inf, or are the same for
every class (it predicts nothing), or when its map of a method is non-finite, all-zero or
constant. The compare stage leaves such maps out per pair (counts in
tables/similarity/<method>/<metric>_n_degenerate.csv); the diversity stage leaves images with
non-finite logits out per model and per pair. This module names those models once: one
warning per model in the run log, tables/degenerate_models.csv and a line in the report.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from ..compare.preprocess import DEGENERATE_REASONS, degenerate_codes
from .results import Results

log = logging.getLogger("xaicompare")

READS = ("degenerate_models",)  # summary_line, for the report
WRITES = ("degenerate_models",)
COLUMNS = ["model", "output", "reason", "n_images", "n_total"]


def logit_rows(name: str, logits: np.ndarray) -> list[dict]:
    """Rows for a model's logits [N, K]: non-finite images and constant (no prediction)."""
    nonfinite = ~np.isfinite(logits.reshape(len(logits), -1)).all(axis=1)
    with np.errstate(invalid="ignore"):
        constant = ~nonfinite & (logits.max(axis=-1) == logits.min(axis=-1))
    return [{"model": name, "output": "logits", "reason": reason, "n_images": int(mask.sum()),
             "n_total": len(logits)}
            for reason, mask in (("non-finite", nonfinite), ("constant", constant)) if mask.any()]


def map_rows(names, method: str, maps: np.ndarray) -> list[dict]:
    """Rows for maps [M, N, H, W] of one method: counts per model and degenerate reason."""
    flat = torch.from_numpy(np.ascontiguousarray(maps)).reshape(maps.shape[0], maps.shape[1], -1)
    codes = degenerate_codes(flat.float()).numpy()
    rows = []
    for name, model_codes in zip(names, codes, strict=True):
        for code in sorted(set(model_codes.tolist()) - {0}):
            rows.append({"model": name, "output": method, "reason": DEGENERATE_REASONS[code],
                         "n_images": int((model_codes == code).sum()),
                         "n_total": len(model_codes)})
    return rows


MOSTLY = 0.5  # a model degenerate on at least this share of images for an output is named


def report_degenerate(results: Results, rows: list[dict]) -> pd.DataFrame:
    """Write tables/degenerate_models.csv; warn once per model whose logits are degenerate or
    whose maps of a method are on most images, and once in all for maps degenerate on a few
    images (e.g. a constant KernelSHAP map where an image has one superpixel)."""
    table = pd.DataFrame(rows, columns=COLUMNS)
    results.write_degenerate_models(
        table, {"rule": "left out per pair (similarity) and per model / pair (diversity) "
                         "where they would corrupt a number; every other pair is computed"})
    named = (table["output"] == "logits") | (table["n_images"] >= MOSTLY * table["n_total"])
    for name, part in table[named].groupby("model", sort=False):
        log.warning("model '%s' is degenerate: %s; left out of the pairs and metrics those "
                    "images would break (tables/degenerate_models.csv)", name, describe(part))
    few = table[~named]
    if len(few):
        per_output = ", ".join(f"{output} {int(part['n_images'].sum())} "
                               f"({len(part)} model{'s' * (len(part) > 1)})"
                               for output, part in few.groupby("output", sort=False))
        log.warning("%d maps are all-zero, constant or non-finite on a few images (%s); each "
                    "is left out of its pairs, every other pair is computed "
                    "(tables/degenerate_models.csv)", int(few["n_images"].sum()), per_output)
    return table


def describe(part: pd.DataFrame) -> str:
    return ", ".join(f"{r.output} {r.reason} on {r.n_images}/{r.n_total} images"
                     for r in part.itertuples())


def summary_line(results: Results) -> str:
    """The report's line: every degenerate model with its counts, or "none"."""
    table = results.degenerate_models(missing_ok=True)
    if table is None:
        return "not checked (compare stage not run)"
    if table.empty:
        return "none"
    return "; ".join(f"{name}: {describe(part)}"
                     for name, part in table.groupby("model", sort=False))
