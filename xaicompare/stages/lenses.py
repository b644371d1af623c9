"""Comparison lenses beside the explanation matrices: representation similarity (CKA),
cross-model consensus, agreement stratified by correctness and class, and how well the
explanation, representation and error matrices match (Mantel tests).

Writes  tables/representation/cka_{linear,rbf}.csv        (CKA, models x models)
        tables/consensus/<method>.csv                     (leave-one-out consensus scores)
        tables/agreement_sweep/<method>.csv               (top-k agreement over k)
        arrays/consensus/<method>.npz                     (consensus map per image)
        tables/joint/matrix_agreement.csv                 (Mantel: every pair of matrices)
        tables/joint/<method>/<metric>_stratified.csv     (agreement by outcome and class)
        tables/consensus/accuracy.csv                     (consensus score vs accuracy)
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..compare import (
    cka_matrix,
    consensus,
    consensus_accuracy_correlation,
    similarity_matrices,
)
from ..diversity import mantel_test, stratified_agreement
from ..errors import UserError
from .contexts import CompareContext, DiversityContext

log = logging.getLogger("xaicompare")

# compare stage: representation_tables, consensus_table, agreement_sweep;
# diversity stage: joint_lenses (each stage module lists these in its READS / WRITES)
CKA_KERNELS = ("linear", "rbf")
CKA_INTERVAL_IMAGES = 2048  # bootstrap intervals hold M x N x N Gram matrices: up to here
MIN_STRATUM = 5  # images a stratum needs before its mean is reported as a finding
SWEEP_FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5)  # k as a share of the map's features
SWEEP_METRICS = ("topk", "topk_sign", "rank", "signed_rank")  # Krishna et al.'s four
SWEEP_IMAGES = 256  # evenly spaced images for the curve: 20 top-k passes cost ~20 compares


def representation_tables(ctx: CompareContext, features: dict[str, np.ndarray]
                          ) -> dict[str, pd.DataFrame]:
    """Debiased CKA (linear and RBF) between the models' penultimate `features` [N, F]."""
    broken = [name for name, f in features.items()
              if not np.isfinite(f).all() or not (f != f[:1]).any()]
    if broken:  # degenerate models (named in degenerate_models.csv) have such features
        log.warning("representation similarity: models %s left out (non-finite features, or "
                    "the same features for every image)", broken)
        features = {n: f for n, f in features.items() if n not in broken}
    if len(features) < 2 or len(ctx.images) < 4:
        log.warning("representation similarity skipped: needs 2 models with a readable "
                    "classifier input and 4 images (have %d and %d)", len(features),
                    len(ctx.images))
        return {}
    out = {}
    n_images = len(next(iter(features.values())))
    resamples = ctx.trust.n_resamples if n_images <= CKA_INTERVAL_IMAGES else 0
    if not resamples:
        log.warning("representation similarity: %d images; CKA intervals are computed up to "
                    "%d images, none written", n_images, CKA_INTERVAL_IMAGES)
    for kernel in CKA_KERNELS:
        result = cka_matrix(features, kernel=kernel, debiased=True, n_resamples=resamples,
                            seed=ctx.seed, ci=ctx.trust.ci)
        params = {k: v for k, v in result.params.items() if k != "sigma"}
        provenance = {**params, "features": "classifier input (pre-logits)"}
        ctx.results.write_cka(kernel, None, result.estimate, provenance)
        if resamples:
            for bound in ("low", "high"):
                ctx.results.write_cka(kernel, bound, getattr(result, bound),
                                      {**provenance, "interval": "percentile bootstrap over "
                                                                 "images"})
        out[kernel] = result.estimate
    return out


def consensus_table(ctx: CompareContext, method: str, maps: np.ndarray, names: list[str]
                    ) -> pd.DataFrame | None:
    """Each model's leave-one-out consensus score for `method` (3 models or more); maps
    and names: the models the method applies to."""
    if len(names) < 3:
        return None
    result = consensus(maps, names, n_resamples=ctx.trust.n_resamples, seed=ctx.seed,
                       ci=ctx.trust.ci)
    ctx.results.write_consensus(method, result.table, result.params)
    ctx.results.write_consensus_maps(method, result.consensus, ctx.images.ids)
    return result.table


def agreement_sweep(ctx: CompareContext, method: str, maps: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Mean top-k agreement of every model pair at each k (feature, sign, rank, signed
    rank agreement), so a reader sees whether a finding depends on the chosen k."""
    families = ctx.families
    take = np.unique(np.linspace(0, maps.shape[1] - 1, min(maps.shape[1], SWEEP_IMAGES))
                     .round().astype(int))
    rows = []
    for fraction in SWEEP_FRACTIONS:
        per_metric = similarity_matrices(maps[:, take], {m: {"fraction": fraction}
                                                         for m in SWEEP_METRICS}, names=names)
        for metric, result in per_metric.items():
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    rows.append({"fraction": fraction, "metric": metric, "model_a": a,
                                 "model_b": b, "mean": result.mean.loc[a, b],
                                 "same_family": families[a] == families[b]})
    table = pd.DataFrame(rows)
    ctx.results.write_agreement_sweep(
        method, table, {"method": method, "k": "fraction of the map's pixels, ranked by |value|",
                        "normalization": "none", "n_images": len(take),
                        "images": f"evenly spaced, at most {SWEEP_IMAGES}"})
    return table


def joint_lenses(ctx: DiversityContext, correct: np.ndarray, errors: pd.DataFrame, accuracy: pd.Series,
                 keep: np.ndarray) -> None:
    """Stratified agreement, consensus vs accuracy and the Mantel table of all matrices.
    correct, errors: the models at positions `keep` of the study's (finite logits)."""
    names, labels, results = list(errors.index), ctx.images.labels, ctx.results
    matrices = {"error consistency (1 - kappa)": 1.0 - errors}
    cka = results.cka("linear", missing_ok=True)
    if cka is not None:
        matrices["representation (1 - linear CKA)"] = 1.0 - cka
    class_names = None if ctx.images.class_names is None else list(ctx.images.class_names)
    for method in ctx.methods:
        for metric in ctx.compare.metrics:
            per_image = results.per_image(method, metric).values
            table = stratified_agreement(per_image[np.ix_(keep, keep)], correct,
                                         labels, names,
                                         class_names=class_names, min_count=MIN_STRATUM,
                                         n_resamples=ctx.trust.n_resamples,
                                         seed=ctx.seed, ci=ctx.trust.ci)
            results.write_stratified_agreement(
                method, metric, table,
                {"method": method, "metric": metric, "min_count": MIN_STRATUM})
            matrices[f"explanation {method}/{metric}"] = results.dissimilarity(
                method, metric).loc[names, names]
        scores = results.consensus(method, missing_ok=True)
        if scores is not None:
            scores = scores[np.isfinite(scores["model"].map(accuracy).astype(float))]
            rows = consensus_accuracy_correlation(scores, accuracy)
            results.write_consensus_accuracy(method, pd.DataFrame([{"method": method, **rows}]),
                                             {"test": "Spearman rank correlation over models"})
    results.write_matrix_agreement(matrix_agreement(matrices, ctx.seed),
                                   {"test": "Mantel (Pearson, two-sided, 999 permutations or "
                                            "exact)", "diagonal": "excluded"})


def matrix_agreement(matrices: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    """Mantel test of every pair of dissimilarity matrices on their shared, defined models."""
    rows = []
    keys = list(matrices)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            shared = [m for m in matrices[a].index if m in matrices[b].index]
            A, B = matrices[a].loc[shared, shared], matrices[b].loc[shared, shared]
            ok = [m for m in shared if not (A.loc[m].isna().any() or B.loc[m].isna().any())]
            row = {"matrix_a": a, "matrix_b": b, "n_models": len(ok)}
            try:
                row |= mantel_test(A.loc[ok, ok], B.loc[ok, ok], seed=seed,
                                   alternative="two-sided")
            except UserError as err:  # too few models, a constant matrix: say so in the row
                row |= {"r": np.nan, "p_value": np.nan, "note": str(err)}
            rows.append(row)
    return pd.DataFrame(rows)
