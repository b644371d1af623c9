"""Cluster stage: dendrograms, Louvain communities, embeddings and the family test.

Reads the dissimilarity tables written by the compare stage, so it runs on its own.
Writes  tables/cluster/<method>/<metric>_{assignments,sweep,mds,tests}.csv
        arrays/cluster/<method>__<metric>.npz   (linkage matrix and leaf order)
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from .. import progress
from ..clustering import (
    adjusted_rand_index,
    check_dissimilarity,
    cluster,
    communities,
    family_permutation_test,
    mds,
    resolution_sweep,
)
from ..compare.frames import check_square_frame
from ..config import ClusterConfig, CompareConfig
from ..errors import UserError
from .compare import study_conventions
from .contexts import ClusterContext

log = logging.getLogger("xaicompare")

READS = ("similarity",)  # the dissimilarity, and the mean similarity for Louvain
WRITES = ("assignments", "louvain_sweep", "mds", "family_tests", "tree")
SWEEP = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def defined_part(D: pd.DataFrame, what: str) -> pd.DataFrame:
    """Drop models whose dissimilarities are undefined (e.g. all maps degenerate), the
    model with most undefined entries first, so the rest can still be clustered; warn."""
    dropped = []
    while D.isna().to_numpy().any():
        worst = D.isna().sum(axis=1).idxmax()
        dropped.append(worst)
        D = D.drop(index=worst, columns=worst)
    if dropped:
        log.warning("%s: models %s left out of clustering: undefined dissimilarities "
                    "(degenerate maps, see tables/degenerate_models.csv, or a method that does "
                    "not apply to them)", what, dropped)
    return check_dissimilarity(D)


def louvain_input(ctx: ClusterContext, method: str, metric: str, D: pd.DataFrame
                  ) -> tuple[pd.DataFrame, str]:
    """The graph weights the config declares: 1 - D (the published study) or the similarity."""
    if ctx.cluster.louvain_weight == "one_minus_dissimilarity":
        return D.clip(upper=1.0), "dissimilarity"
    mean = check_square_frame(ctx.results.similarity(method, metric, "mean"),
                              f"{method}/{metric} mean similarity")
    return mean.loc[D.index, D.index].clip(lower=0.0), "similarity"


def louvain_settings(cfg: ClusterConfig, compare: CompareConfig, seed: int) -> tuple[str, int]:
    """(backend, seed) of Louvain: cluster.louvain_*, else the preset's, else the study seed."""
    conv = study_conventions(compare)
    backend = cfg.louvain_backend or conv.louvain_backend
    louvain_seed = cfg.louvain_seed
    if louvain_seed is None:
        louvain_seed = conv.louvain_seed if conv.louvain_seed is not None else seed
    return backend, louvain_seed


def run_cluster(ctx: ClusterContext) -> dict:
    cfg, families, results = ctx.cluster, ctx.families, ctx.results
    backend, louvain_seed = louvain_settings(cfg, ctx.compare, ctx.seed)
    outputs = {}
    progress.plan(len(ctx.methods) * len(ctx.compare.metrics), "matrix")
    for method in ctx.methods:
        for metric in ctx.compare.metrics:
            progress.note(f"{method}/{metric}")
            D = defined_part(results.dissimilarity(method, metric), f"{method}/{metric}")
            provenance = {"method": method, "metric": metric, "linkage": cfg.method,
                          "louvain_weight": cfg.louvain_weight, "seed": ctx.seed,
                          "louvain_backend": backend, "louvain_seed": louvain_seed,
                          "models": list(D.index)}
            if len(D) < 2:
                log.warning("%s/%s: fewer than 2 models with defined dissimilarities; "
                            "clustering skipped", method, metric)
                progress.step()
                continue
            tree = cluster(D, method=cfg.method)
            W, weight = louvain_input(ctx, method, metric, D)
            try:
                parts = communities(W, resolution=cfg.louvain_resolution,
                                    seed=louvain_seed, weight=weight, backend=backend)
            except UserError as err:  # e.g. no positive edge weight at all
                log.warning("%s/%s: Louvain not possible (%s); every model its own community",
                            method, metric, err)
                parts = {m: i for i, m in enumerate(D.index)}
            families_here = {m: families[m] for m in D.index}
            assignments = pd.DataFrame({"family": pd.Series(families_here),
                                        "community": pd.Series(parts)}).loc[tree.labels]
            if cfg.k is not None and cfg.k <= len(tree.labels):
                assignments["cluster"] = pd.Series(tree.cut(k=cfg.k))
            results.write_assignments(method, metric, assignments, provenance)
            if len(set(parts.values())) < len(parts):
                sweep = resolution_sweep(W, SWEEP, seed=louvain_seed, weight=weight)
                sweep["partition"] = sweep["partition"].map(lambda p: dict(sorted(p.items())))
                results.write_louvain_sweep(method, metric, sweep, provenance)
            if len(D) >= 3:
                results.write_mds(method, metric, mds(D, seed=ctx.seed), provenance)
            tests = family_tests(D, tree, parts, assignments, families_here, cfg, ctx.seed)
            results.write_family_tests(method, metric, tests, provenance)
            results.write_tree(method, metric, tree.linkage, tree.labels, tree.order)
            outputs[(method, metric)] = {"tree": tree, "communities": parts, "tests": tests}
            progress.step()
    return outputs


def family_tests(D, tree, parts, assignments, families, cfg, seed) -> pd.DataFrame:
    """Does architecture explain the structure? Permutation tests and ARI vs families."""
    rows = []
    if len(D) >= 3:  # with two models the cophenetic correlation is undefined
        rows.append({"test": "cophenetic_correlation",
                     "statistic": tree.cophenetic_correlation, "p_value": np.nan})
    for statistic in ("permanova", "permdisp", "mantel"):
        try:
            result = family_permutation_test(D, families, n_permutations=cfg.permutations,
                                             seed=seed, statistic=statistic)
        except UserError as err:  # e.g. every model in its own family
            log.info("family test %s not possible: %s", statistic, err)
            continue
        row = {"test": statistic, "statistic": result["statistic"],
               "p_value": result["p_value"], "exact": result["exact"],
               "n_permutations": result["n_permutations"]}
        if "dispersion" in result:  # mean distance to the family centroid, per family
            row["dispersion"] = json.dumps({k: round(v, 6)
                                            for k, v in result["dispersion"].items()})
        rows.append(row)
    rows.append({"test": "ari_communities_vs_families",
                 "statistic": adjusted_rand_index(parts, families), "p_value": np.nan})
    if "cluster" in assignments:
        rows.append({"test": "ari_clusters_vs_families",
                     "statistic": adjusted_rand_index(assignments["cluster"].to_dict(), families),
                     "p_value": np.nan})
    return pd.DataFrame(rows).set_index("test")
