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
    read_table_csv,
    similarity_matrices,
    write_table_csv,
)
from ..diversity import mantel_test, stratified_agreement
from ..errors import UserError
from .paths import array_path, save_arrays, table_path

log = logging.getLogger("xaicompare")

CKA_KERNELS = ("linear", "rbf")
CKA_INTERVAL_IMAGES = 2048  # bootstrap intervals hold M x N x N Gram matrices: up to here
MIN_STRATUM = 5  # images a stratum needs before its mean is reported as a finding
SWEEP_FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5)  # k as a share of the map's features
SWEEP_METRICS = ("topk", "topk_sign", "rank", "signed_rank")  # Krishna et al.'s four
SWEEP_IMAGES = 256  # evenly spaced images for the curve: 20 top-k passes cost ~20 compares


def representation_tables(study) -> dict[str, pd.DataFrame]:
    """Debiased CKA (linear and RBF) between the models' penultimate features."""
    features = study.read_features()
    broken = [name for name, f in features.items()
              if not np.isfinite(f).all() or not (f != f[:1]).any()]
    if broken:  # degenerate models (named in degenerate_models.csv) have such features
        log.warning("representation similarity: models %s left out (non-finite features, or "
                    "the same features for every image)", broken)
        features = {n: f for n, f in features.items() if n not in broken}
    if len(features) < 2 or len(study.dataset) < 4:
        log.warning("representation similarity skipped: needs 2 models with a readable "
                    "classifier input and 4 images (have %d and %d)", len(features),
                    len(study.dataset))
        return {}
    out = {}
    n_images = len(next(iter(features.values())))
    resamples = study.config.trust.n_resamples if n_images <= CKA_INTERVAL_IMAGES else 0
    if not resamples:
        log.warning("representation similarity: %d images; CKA intervals are computed up to "
                    "%d images, none written", n_images, CKA_INTERVAL_IMAGES)
    for kernel in CKA_KERNELS:
        result = cka_matrix(features, kernel=kernel, debiased=True, n_resamples=resamples,
                            seed=study.config.seed, ci=study.config.trust.ci)
        params = {k: v for k, v in result.params.items() if k != "sigma"}
        provenance = {**params, "features": "classifier input (pre-logits)"}
        write_table_csv(result.estimate, table_path(study, "representation", f"cka_{kernel}"),
                        provenance)
        if resamples:
            for bound in ("low", "high"):
                write_table_csv(getattr(result, bound),
                                table_path(study, "representation", f"cka_{kernel}_{bound}"),
                                {**provenance, "interval": "percentile bootstrap over images"})
        out[kernel] = result.estimate
    return out


def read_cka(study, kernel: str = "linear") -> pd.DataFrame | None:
    path = table_path(study, "representation", f"cka_{kernel}")
    return read_table_csv(path, index_col=0) if path.exists() else None


def consensus_table(study, method: str, maps: np.ndarray, names: list[str]
                    ) -> pd.DataFrame | None:
    """Each model's leave-one-out consensus score for `method` (3 models or more); maps
    and names: the models the method applies to."""
    if len(names) < 3:
        return None
    result = consensus(maps, names, n_resamples=study.config.trust.n_resamples,
                       seed=study.config.seed, ci=study.config.trust.ci)
    write_table_csv(result.table, table_path(study, "consensus", method), result.params)
    save_arrays(array_path(study, "consensus", method), consensus=result.consensus,
                ids=np.asarray(study.dataset.ids))
    return result.table


def agreement_sweep(study, method: str, maps: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Mean top-k agreement of every model pair at each k (feature, sign, rank, signed
    rank agreement), so a reader sees whether a finding depends on the chosen k."""
    families = study.families
    take = np.unique(np.linspace(0, maps.shape[1] - 1, min(maps.shape[1], SWEEP_IMAGES))
                     .round().astype(int))
    rows = []
    for fraction in SWEEP_FRACTIONS:
        results = similarity_matrices(maps[:, take], {m: {"fraction": fraction}
                                                      for m in SWEEP_METRICS}, names=names)
        for metric, result in results.items():
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    rows.append({"fraction": fraction, "metric": metric, "model_a": a,
                                 "model_b": b, "mean": result.mean.loc[a, b],
                                 "same_family": families[a] == families[b]})
    table = pd.DataFrame(rows)
    write_table_csv(table, table_path(study, "agreement_sweep", method),
                    {"method": method, "k": "fraction of the map's pixels, ranked by |value|",
                     "normalization": "none", "n_images": len(take),
                     "images": f"evenly spaced, at most {SWEEP_IMAGES}"})
    return table


def joint_lenses(study, correct: np.ndarray, errors: pd.DataFrame, accuracy: pd.Series,
                 keep: np.ndarray) -> None:
    """Stratified agreement, consensus vs accuracy and the Mantel table of all matrices.
    correct, errors: the models at positions `keep` of the study's (finite logits)."""
    names, labels = list(errors.index), np.asarray(study.dataset.labels)
    matrices = {"error consistency (1 - kappa)": 1.0 - errors}
    cka = read_cka(study)
    if cka is not None:
        matrices["representation (1 - linear CKA)"] = 1.0 - cka
    class_names = getattr(study.dataset, "class_names", None)
    for method in study.config.methods:
        for metric in study.config.compare.metrics:
            per_image = np.load(array_path(study, "similarity", f"{method}__{metric}"))
            table = stratified_agreement(per_image["per_image"][np.ix_(keep, keep)], correct,
                                         labels, names,
                                         class_names=class_names, min_count=MIN_STRATUM,
                                         n_resamples=study.config.trust.n_resamples,
                                         seed=study.config.seed, ci=study.config.trust.ci)
            write_table_csv(table, table_path(study, "joint", method, f"{metric}_stratified"),
                            {"method": method, "metric": metric, "min_count": MIN_STRATUM})
            dissimilarity = table_path(study, "similarity", method, f"{metric}_dissimilarity")
            matrices[f"explanation {method}/{metric}"] = read_table_csv(
                dissimilarity, index_col=0).loc[names, names]
        consensus_path = table_path(study, "consensus", method)
        if consensus_path.exists():
            scores = read_table_csv(consensus_path)
            scores = scores[np.isfinite(scores["model"].map(accuracy).astype(float))]
            rows = consensus_accuracy_correlation(scores, accuracy)
            write_table_csv(pd.DataFrame([{"method": method, **rows}]),
                            table_path(study, "consensus", f"{method}_accuracy"),
                            {"test": "Spearman rank correlation over models"})
    write_table_csv(matrix_agreement(matrices, study.config.seed),
                    table_path(study, "joint", "matrix_agreement"),
                    {"test": "Mantel (Pearson, two-sided, 999 permutations or exact)",
                     "diagonal": "excluded"})


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
