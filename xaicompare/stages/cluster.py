"""Cluster stage: dendrograms, Louvain communities, embeddings and the family test.

Reads the dissimilarity tables written by the compare stage, so it runs on its own.
Writes  tables/cluster/<method>/<metric>_{assignments,sweep,mds,tests}.csv
        arrays/cluster/<method>__<metric>.npz   (linkage matrix and leaf order)
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..cluster import (
    adjusted_rand_index,
    cluster,
    communities,
    family_permutation_test,
    mds,
    resolution_sweep,
)
from ..compare import read_matrix_csv, write_table_csv
from ..errors import UserError
from .paths import array_path, table_path

log = logging.getLogger("xaicompare")

SWEEP = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def louvain_input(study, method: str, metric: str, D: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The graph weights the config declares: 1 - D (the published study) or the similarity."""
    if study.config.cluster.louvain_weight == "one_minus_dissimilarity":
        return D.clip(upper=1.0), "dissimilarity"
    mean = read_matrix_csv(table_path(study, "similarity", method, f"{metric}_mean"))
    return mean.clip(lower=0.0), "similarity"


def run_cluster(study) -> dict:
    cfg = study.config.cluster
    families = study.families
    outputs = {}
    for method in study.config.methods:
        for metric in study.config.compare.metrics:
            D = read_matrix_csv(table_path(study, "similarity", method, f"{metric}_dissimilarity"))
            provenance = {"method": method, "metric": metric, "linkage": cfg.method,
                          "louvain_weight": cfg.louvain_weight, "seed": study.config.seed}
            if D.isna().to_numpy().any():
                log.warning("%s/%s: dissimilarity has undefined entries (too few valid "
                            "images); clustering skipped", method, metric)
                continue
            tree = cluster(D, method=cfg.method)
            W, weight = louvain_input(study, method, metric, D)
            parts = communities(W, resolution=cfg.louvain_resolution, seed=study.config.seed,
                                weight=weight)
            assignments = pd.DataFrame({"family": pd.Series(families), "community":
                                        pd.Series(parts)}).loc[tree.labels]
            if cfg.k is not None and cfg.k <= len(tree.labels):
                assignments["cluster"] = pd.Series(tree.cut(k=cfg.k))
            write_table_csv(assignments, table_path(study, "cluster", method,
                                                    f"{metric}_assignments"), provenance)
            sweep = resolution_sweep(W, SWEEP, seed=study.config.seed, weight=weight)
            sweep["partition"] = sweep["partition"].map(lambda p: dict(sorted(p.items())))
            write_table_csv(sweep, table_path(study, "cluster", method, f"{metric}_sweep"),
                            provenance)
            if len(D) >= 3:
                write_table_csv(mds(D, seed=study.config.seed),
                                table_path(study, "cluster", method, f"{metric}_mds"), provenance)
            tests = family_tests(D, tree, parts, assignments, families, cfg, study.config.seed)
            write_table_csv(tests, table_path(study, "cluster", method, f"{metric}_tests"),
                            provenance)
            np.savez(array_path(study, "cluster", f"{method}__{metric}"), linkage=tree.linkage,
                     labels=np.asarray(tree.labels), order=np.asarray(tree.order))
            outputs[(method, metric)] = {"tree": tree, "communities": parts, "tests": tests}
    return outputs


def family_tests(D, tree, parts, assignments, families, cfg, seed) -> pd.DataFrame:
    """Does architecture explain the structure? Permutation tests and ARI vs families."""
    rows = [{"test": "cophenetic_correlation", "statistic": tree.cophenetic_correlation,
             "p_value": np.nan}]
    for statistic in ("permanova", "mantel"):
        try:
            result = family_permutation_test(D, families, n_permutations=cfg.permutations,
                                             seed=seed, statistic=statistic)
        except UserError as err:  # e.g. every model in its own family
            log.warning("family test %s not possible: %s", statistic, err)
            continue
        rows.append({"test": statistic, "statistic": result["statistic"],
                     "p_value": result["p_value"]})
    rows.append({"test": "ari_communities_vs_families",
                 "statistic": adjusted_rand_index(parts, families), "p_value": np.nan})
    if "cluster" in assignments:
        rows.append({"test": "ari_clusters_vs_families",
                     "statistic": adjusted_rand_index(assignments["cluster"].to_dict(), families),
                     "p_value": np.nan})
    return pd.DataFrame(rows).set_index("test")
