"""The run folder's results: one reader and one writer per artefact the stages exchange.

    results = Results(run_dir)            # or study.results
    D = results.dissimilarity("gradcam", "cosine")
    results.write_assignments("gradcam", "cosine", frame, provenance)

Every table is a CSV with its provenance in a `.csv.json` sidecar (compare/tables.py), read
back as the frame that was written (its index restored) with `df.attrs["provenance"]`;
arrays are `.npz` files written atomically. The layout is README's "What a run writes" and
stays readable in old run folders. A missing artefact is a UserError naming the stage that
writes it; `missing_ok=True` returns None instead (the report draws what exists).
Each stage module declares the artefacts it READS and WRITES (names of ARTEFACTS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..compare import read_table_csv, write_table_csv
from ..compare.tables import sidecar_path
from ..errors import UserError
from ..files import atomic_write


@dataclass(frozen=True)
class Artefact:
    stage: str  # the stage that writes it (named in the missing-artefact message)
    path: str  # inside the run folder, with {fields}
    index: int | list[int] = 0  # the columns that hold the written frame's index


ARTEFACTS: dict[str, Artefact] = {
    # compare stage (and its lenses)
    "similarity": Artefact("compare", "tables/similarity/{method}/{metric}_{summary}.csv"),
    "degenerate_maps": Artefact("compare", "tables/similarity/{method}/degenerate_maps.csv"),
    "per_image": Artefact("compare", "arrays/similarity/{method}__{metric}.npz"),
    "localisation": Artefact("compare", "tables/localisation.csv"),
    "degenerate_models": Artefact("compare", "tables/degenerate_models.csv"),
    "method_agreement": Artefact("compare", "tables/method_agreement/{metric}.csv"),
    "cka": Artefact("compare", "tables/representation/cka_{kernel}{bound}.csv"),
    "consensus": Artefact("compare", "tables/consensus/{method}.csv"),
    "consensus_maps": Artefact("compare", "arrays/consensus/{method}.npz"),
    "agreement_sweep": Artefact("compare", "tables/agreement_sweep/{method}.csv"),
    # cluster stage
    "assignments": Artefact("cluster", "tables/cluster/{method}/{metric}_assignments.csv"),
    "louvain_sweep": Artefact("cluster", "tables/cluster/{method}/{metric}_sweep.csv"),
    "mds": Artefact("cluster", "tables/cluster/{method}/{metric}_mds.csv"),
    "family_tests": Artefact("cluster", "tables/cluster/{method}/{metric}_tests.csv"),
    "tree": Artefact("cluster", "arrays/cluster/{method}__{metric}.npz"),
    # diversity stage (and its joint lenses)
    "diversity": Artefact("diversity", "tables/diversity/{name}.csv"),
    "outcome_similarity": Artefact("diversity", "tables/joint/{method}/{metric}_by_outcome.csv"),
    "mantel": Artefact("diversity", "tables/joint/mantel.csv"),
    "disagreement": Artefact("diversity", "tables/joint/disagreement_{what}.csv"),
    "stratified_agreement": Artefact("diversity",
                                     "tables/joint/{method}/{metric}_stratified.csv"),
    "matrix_agreement": Artefact("diversity", "tables/joint/matrix_agreement.csv"),
    "consensus_accuracy": Artefact("diversity", "tables/consensus/{method}_accuracy.csv"),
    # trust stage
    "trust_bootstrap": Artefact("trust", "tables/trust/{method}/{metric}_bootstrap.csv"),
    "trust_nulls": Artefact("trust", "tables/trust/{method}/{metric}_nulls.csv"),
    "coclustering": Artefact("trust", "tables/trust/{method}/coclustering.csv", [0, 1]),
    "sample_size": Artefact("trust", "tables/trust/{method}/sample_size.csv"),
    "faithfulness": Artefact("trust", "tables/trust/faithfulness.csv"),
    "prediction_bootstrap": Artefact("trust", "tables/trust/prediction_bootstrap.csv"),
    "ensemble_gain": Artefact("trust", "tables/trust/ensemble_gain.csv"),
    "randomization": Artefact("trust", "tables/trust/randomization.csv"),
}

SUMMARIES = ("mean", "std", "median", "dissimilarity", "n", "n_degenerate")
DIVERSITY_TABLES = ("model_metrics", "reliability", "error_consistency", "zero_one_diversity",
                    "ce_diversity", "zero_one_components", "ensembles", "retention",
                    "cue_conflict")
CKA_BOUNDS = (None, "low", "high")


@dataclass(frozen=True)
class PerImage:
    """Per-image similarity of every model pair, [M, M, N], with its row names and ids."""
    values: np.ndarray
    names: list[str]
    ids: list[str]


@dataclass(frozen=True)
class Tree:
    """A hierarchical clustering: scipy linkage matrix, leaf labels and dendrogram order."""
    linkage: np.ndarray
    labels: list[str]
    order: list[str]


@dataclass(frozen=True)
class ConsensusMaps:
    maps: np.ndarray  # [N, H, W]
    ids: list[str]


def _one_of(value: str, accepted: tuple, what: str) -> str:
    if value not in accepted:
        raise UserError(f"{what} {value!r} is not a result a run writes; accepted: "
                        f"{', '.join(str(a) for a in accepted)}")
    return value


class Results:
    """The tables/, arrays/ and figures/ of one run folder."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.reads: set[str] = set()  # artefact names read / written (a stage's declaration
        self.writes: set[str] = set()  # is checked against these in the tests)

    # -- the machinery ------------------------------------------------------------------
    def path(self, artefact: str, /, **fields) -> Path:
        return self.run_dir / ARTEFACTS[artefact].path.format(**fields)

    def _require(self, name: str, missing_ok: bool, fields: dict) -> Path | None:
        self.reads.add(name)
        path = self.path(name, **fields)
        if path.is_file():
            return path
        if missing_ok:
            return None
        stage = ARTEFACTS[name].stage
        raise UserError(f"{path.relative_to(self.run_dir)} is missing in {self.run_dir}: "
                        f"the {stage} stage writes it; run `xaicompare {stage} STUDY.yaml` "
                        "first")

    def _table(self, name: str, missing_ok: bool = False, /, **fields) -> pd.DataFrame | None:
        path = self._require(name, missing_ok, fields)
        if path is None:
            return None
        return read_table_csv(path, index_col=ARTEFACTS[name].index)

    def _write_table(self, name: str, frame: pd.DataFrame, provenance: dict, /, **fields) -> Path:
        self.writes.add(name)
        return write_table_csv(frame, self.path(name, **fields), provenance)

    def _arrays(self, name: str, missing_ok: bool = False, /, **fields) -> dict | None:
        path = self._require(name, missing_ok, fields)
        if path is None:
            return None
        with np.load(path) as stored:
            return {key: stored[key] for key in stored.files}

    def _write_arrays(self, name: str, arrays: dict, /, **fields) -> Path:
        """np.savez written atomically: a killed run never leaves a truncated file."""
        self.writes.add(name)
        path = self.path(name, **fields)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: np.savez(handle, **arrays))
        return path

    def remove(self, artefact: str, /, **fields) -> None:
        """Delete an artefact (and its provenance sidecar) a stage decided not to write this
        time, so an earlier run's file is never shown as this run's result."""
        self.writes.add(artefact)
        path = self.path(artefact, **fields)
        for stale in (path, sidecar_path(path)):
            stale.unlink(missing_ok=True)

    def figure_path(self, *parts: str) -> Path:
        """Path without suffix: figures are saved in every configured format."""
        path = self.run_dir / "figures" / Path(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # -- compare ------------------------------------------------------------------------
    def similarity(self, method, metric, summary, *, missing_ok=False):
        """A model x model summary of the per-image similarities (SUMMARIES)."""
        return self._table("similarity", missing_ok, method=method, metric=metric,
                           summary=_one_of(summary, SUMMARIES, "similarity summary"))

    def write_similarity(self, method, metric, summary, frame, provenance):
        return self._write_table("similarity", frame, provenance, method=method, metric=metric,
                                 summary=_one_of(summary, SUMMARIES, "similarity summary"))

    def dissimilarity(self, method, metric, *, missing_ok=False):
        return self.similarity(method, metric, "dissimilarity", missing_ok=missing_ok)

    def degenerate_maps(self, method, *, missing_ok=False):
        return self._table("degenerate_maps", missing_ok, method=method)

    def write_degenerate_maps(self, method, frame, provenance):
        return self._write_table("degenerate_maps", frame, provenance, method=method)

    def per_image(self, method, metric, *, missing_ok=False) -> PerImage | None:
        stored = self._arrays("per_image", missing_ok, method=method, metric=metric)
        return None if stored is None else PerImage(
            stored["per_image"], [str(x) for x in stored["names"]],
            [str(x) for x in stored["ids"]])

    def write_per_image(self, method, metric, values, names, ids):
        return self._write_arrays("per_image", {
            "per_image": np.asarray(values, np.float32), "names": np.asarray(list(names)),
            "ids": np.asarray(list(ids))}, method=method, metric=metric)

    def localisation(self, *, missing_ok=False):
        return self._table("localisation", missing_ok)

    def write_localisation(self, frame, provenance):
        return self._write_table("localisation", frame, provenance)

    def degenerate_models(self, *, missing_ok=False):
        return self._table("degenerate_models", missing_ok)

    def write_degenerate_models(self, frame, provenance):
        return self._write_table("degenerate_models", frame, provenance)

    def method_agreement(self, metric, *, missing_ok=False):
        return self._table("method_agreement", missing_ok, metric=metric)

    def write_method_agreement(self, metric, frame, provenance):
        return self._write_table("method_agreement", frame, provenance, metric=metric)

    def cka(self, kernel, bound=None, *, missing_ok=False):
        """Debiased CKA, models x models; bound 'low' / 'high': its bootstrap interval."""
        return self._table("cka", missing_ok, kernel=kernel, bound=self._bound(bound))

    def write_cka(self, kernel, bound, frame, provenance):
        return self._write_table("cka", frame, provenance, kernel=kernel,
                                 bound=self._bound(bound))

    @staticmethod
    def _bound(bound) -> str:
        return "" if _one_of(bound, CKA_BOUNDS, "CKA bound") is None else f"_{bound}"

    def consensus(self, method, *, missing_ok=False):
        return self._table("consensus", missing_ok, method=method)

    def write_consensus(self, method, frame, provenance):
        return self._write_table("consensus", frame, provenance, method=method)

    def consensus_maps(self, method, *, missing_ok=False) -> ConsensusMaps | None:
        stored = self._arrays("consensus_maps", missing_ok, method=method)
        return None if stored is None else ConsensusMaps(
            stored["consensus"], [str(x) for x in stored["ids"]])

    def write_consensus_maps(self, method, maps, ids):
        return self._write_arrays("consensus_maps", {"consensus": maps,
                                                     "ids": np.asarray(list(ids))},
                                  method=method)

    def agreement_sweep(self, method, *, missing_ok=False):
        return self._table("agreement_sweep", missing_ok, method=method)

    def write_agreement_sweep(self, method, frame, provenance):
        return self._write_table("agreement_sweep", frame, provenance, method=method)

    # -- cluster ------------------------------------------------------------------------
    def assignments(self, method, metric, *, missing_ok=False):
        return self._table("assignments", missing_ok, method=method, metric=metric)

    def write_assignments(self, method, metric, frame, provenance):
        return self._write_table("assignments", frame, provenance, method=method, metric=metric)

    def louvain_sweep(self, method, metric, *, missing_ok=False):
        return self._table("louvain_sweep", missing_ok, method=method, metric=metric)

    def write_louvain_sweep(self, method, metric, frame, provenance):
        return self._write_table("louvain_sweep", frame, provenance, method=method,
                                 metric=metric)

    def mds(self, method, metric, *, missing_ok=False):
        return self._table("mds", missing_ok, method=method, metric=metric)

    def write_mds(self, method, metric, frame, provenance):
        return self._write_table("mds", frame, provenance, method=method, metric=metric)

    def family_tests(self, method, metric, *, missing_ok=False):
        return self._table("family_tests", missing_ok, method=method, metric=metric)

    def write_family_tests(self, method, metric, frame, provenance):
        return self._write_table("family_tests", frame, provenance, method=method,
                                 metric=metric)

    def tree(self, method, metric, *, missing_ok=False) -> Tree | None:
        stored = self._arrays("tree", missing_ok, method=method, metric=metric)
        return None if stored is None else Tree(
            stored["linkage"], [str(x) for x in stored["labels"]],
            [str(x) for x in stored["order"]])

    def write_tree(self, method, metric, linkage, labels, order):
        return self._write_arrays("tree", {"linkage": linkage, "labels": np.asarray(labels),
                                           "order": np.asarray(order)},
                                  method=method, metric=metric)

    # -- diversity ----------------------------------------------------------------------
    def diversity(self, name, *, missing_ok=False):
        """One of the diversity stage's tables (DIVERSITY_TABLES)."""
        return self._table("diversity", missing_ok,
                           name=_one_of(name, DIVERSITY_TABLES, "diversity table"))

    def write_diversity(self, name, frame, provenance):
        return self._write_table("diversity", frame, provenance,
                                 name=_one_of(name, DIVERSITY_TABLES, "diversity table"))

    def outcome_similarity(self, method, metric, *, missing_ok=False):
        return self._table("outcome_similarity", missing_ok, method=method, metric=metric)

    def write_outcome_similarity(self, method, metric, frame, provenance):
        return self._write_table("outcome_similarity", frame, provenance, method=method,
                                 metric=metric)

    def mantel(self, *, missing_ok=False):
        return self._table("mantel", missing_ok)

    def write_mantel(self, frame, provenance):
        return self._write_table("mantel", frame, provenance)

    def disagreement(self, what, *, missing_ok=False):
        """Top images by disagreement: what = 'predictions' or 'explanations_<method>'."""
        return self._table("disagreement", missing_ok, what=what)

    def write_disagreement(self, what, frame, provenance):
        return self._write_table("disagreement", frame, provenance, what=what)

    def stratified_agreement(self, method, metric, *, missing_ok=False):
        return self._table("stratified_agreement", missing_ok, method=method, metric=metric)

    def write_stratified_agreement(self, method, metric, frame, provenance):
        return self._write_table("stratified_agreement", frame, provenance, method=method,
                                 metric=metric)

    def matrix_agreement(self, *, missing_ok=False):
        return self._table("matrix_agreement", missing_ok)

    def write_matrix_agreement(self, frame, provenance):
        return self._write_table("matrix_agreement", frame, provenance)

    def consensus_accuracy(self, method, *, missing_ok=False):
        return self._table("consensus_accuracy", missing_ok, method=method)

    def write_consensus_accuracy(self, method, frame, provenance):
        return self._write_table("consensus_accuracy", frame, provenance, method=method)

    # -- trust --------------------------------------------------------------------------
    def trust_bootstrap(self, method, metric, *, missing_ok=False):
        return self._table("trust_bootstrap", missing_ok, method=method, metric=metric)

    def write_trust_bootstrap(self, method, metric, frame, provenance):
        return self._write_table("trust_bootstrap", frame, provenance, method=method,
                                 metric=metric)

    def trust_nulls(self, method, metric, *, missing_ok=False):
        return self._table("trust_nulls", missing_ok, method=method, metric=metric)

    def write_trust_nulls(self, method, metric, frame, provenance):
        return self._write_table("trust_nulls", frame, provenance, method=method,
                                 metric=metric)

    def coclustering(self, method, *, missing_ok=False):
        return self._table("coclustering", missing_ok, method=method)

    def write_coclustering(self, method, frame, provenance):
        return self._write_table("coclustering", frame, provenance, method=method)

    def sample_size(self, method, *, missing_ok=False):
        return self._table("sample_size", missing_ok, method=method)

    def write_sample_size(self, method, frame, provenance):
        return self._write_table("sample_size", frame, provenance, method=method)

    def faithfulness(self, *, missing_ok=False):
        return self._table("faithfulness", missing_ok)

    def write_faithfulness(self, frame, provenance):
        return self._write_table("faithfulness", frame, provenance)

    def prediction_bootstrap(self, *, missing_ok=False):
        return self._table("prediction_bootstrap", missing_ok)

    def write_prediction_bootstrap(self, frame, provenance):
        return self._write_table("prediction_bootstrap", frame, provenance)

    def ensemble_gain(self, *, missing_ok=False):
        return self._table("ensemble_gain", missing_ok)

    def write_ensemble_gain(self, frame, provenance):
        return self._write_table("ensemble_gain", frame, provenance)

    def randomization(self, *, missing_ok=False):
        return self._table("randomization", missing_ok)

    def write_randomization(self, frame, provenance):
        return self._write_table("randomization", frame, provenance)
