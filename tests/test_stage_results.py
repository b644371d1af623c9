"""Results: every artefact's path is the layout runs have always written, every artefact
reads back as written (provenance kept), and a missing one names the stage to run."""

from __future__ import annotations

import importlib
import re
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xaicompare.compare import write_table_csv
from xaicompare.errors import UserError
from xaicompare.stages.results import ARTEFACTS, ConsensusMaps, PerImage, Results, Tree

# The run folder's layout as the stages wrote it before Results existed (README, "What a
# run writes"): a change here breaks every old run folder.
LAYOUT = {
    "similarity": "tables/similarity/gradcam/cosine_mean.csv",
    "degenerate_maps": "tables/similarity/gradcam/degenerate_maps.csv",
    "per_image": "arrays/similarity/gradcam__cosine.npz",
    "localisation": "tables/localisation.csv",
    "degenerate_models": "tables/degenerate_models.csv",
    "method_agreement": "tables/method_agreement/cosine.csv",
    "cka": "tables/representation/cka_linear.csv",
    "consensus": "tables/consensus/gradcam.csv",
    "consensus_maps": "arrays/consensus/gradcam.npz",
    "agreement_sweep": "tables/agreement_sweep/gradcam.csv",
    "assignments": "tables/cluster/gradcam/cosine_assignments.csv",
    "louvain_sweep": "tables/cluster/gradcam/cosine_sweep.csv",
    "mds": "tables/cluster/gradcam/cosine_mds.csv",
    "family_tests": "tables/cluster/gradcam/cosine_tests.csv",
    "tree": "arrays/cluster/gradcam__cosine.npz",
    "diversity": "tables/diversity/model_metrics.csv",
    "outcome_similarity": "tables/joint/gradcam/cosine_by_outcome.csv",
    "mantel": "tables/joint/mantel.csv",
    "disagreement": "tables/joint/disagreement_predictions.csv",
    "stratified_agreement": "tables/joint/gradcam/cosine_stratified.csv",
    "matrix_agreement": "tables/joint/matrix_agreement.csv",
    "consensus_accuracy": "tables/consensus/gradcam_accuracy.csv",
    "trust_bootstrap": "tables/trust/gradcam/cosine_bootstrap.csv",
    "trust_nulls": "tables/trust/gradcam/cosine_nulls.csv",
    "coclustering": "tables/trust/gradcam/coclustering.csv",
    "sample_size": "tables/trust/gradcam/sample_size.csv",
    "faithfulness": "tables/trust/faithfulness.csv",
    "prediction_bootstrap": "tables/trust/prediction_bootstrap.csv",
    "ensemble_gain": "tables/trust/ensemble_gain.csv",
    "randomization": "tables/trust/randomization.csv",
}
# The positional arguments of each artefact's reader (and of its writer, before the data).
ARGS = {"method": "gradcam", "metric": "cosine", "summary": "mean", "kernel": "linear",
        "bound": None, "name": "model_metrics", "what": "predictions"}
STAGE_MODULES = {"compare": ("compare", "method_agreement", "health"), "cluster": ("cluster",),
                 "diversity": ("diversity",), "trust": ("trust",)}
ARRAYS = {"per_image", "consensus_maps", "tree"}


def fields_of(name: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(ARTEFACTS[name].path) if f]


def reader_args(name: str) -> list:
    """The reader's positional arguments: the path's fields, in order (cka: kernel, bound)."""
    return [ARGS[f] for f in fields_of(name)]


def frame_for(name: str) -> pd.DataFrame:
    """A frame shaped as the artefact's writers give it: a labelled matrix, a MultiIndex
    (co-clustering) or rows with a RangeIndex."""
    models = ["cnn_a", "vit_a", "vit_b"]
    if name == "coclustering":
        index = pd.MultiIndex.from_product([["hierarchical", "louvain"], models],
                                           names=["algorithm", "model"])
        return pd.DataFrame(np.linspace(0, 1, 18).reshape(6, 3), index=index, columns=models)
    if name in ("similarity", "cka"):
        return pd.DataFrame([[1.0, 0.25, 0.5], [0.25, 1.0, 0.75], [0.5, 0.75, 1.0]],
                            index=models, columns=models)
    return pd.DataFrame({"model": models, "score": [0.1, np.nan, 0.3],
                         "same_family": [True, False, True]})


def test_every_artefact_keeps_the_old_layout(tmp_path):
    assert set(LAYOUT) == set(ARTEFACTS)
    results = Results(tmp_path)
    for name, relative in LAYOUT.items():
        assert results.path(name, **{f: ARGS[f] if f != "bound" else ""
                                     for f in fields_of(name)}) == tmp_path / relative, name


@pytest.mark.parametrize("name", sorted(set(ARTEFACTS) - ARRAYS))
def test_every_table_reads_back_as_written_with_its_provenance(tmp_path, name):
    results = Results(tmp_path)
    frame, provenance = frame_for(name), {"method": "gradcam", "n_images": 5, "seed": [1, 2]}
    path = getattr(results, f"write_{name}")(*reader_args(name), frame, provenance)
    assert path == tmp_path / LAYOUT[name]
    assert path.with_name(path.name + ".json").is_file()  # the provenance sidecar
    read = getattr(results, name)(*reader_args(name))
    pd.testing.assert_frame_equal(read, frame, check_index_type=False)
    assert read.attrs["provenance"] == provenance
    assert results.reads == {name} and results.writes == {name}


def test_arrays_read_back_as_written(tmp_path):
    rng = np.random.default_rng(0)
    results = Results(tmp_path)
    values = rng.random((3, 3, 5))
    results.write_per_image("gradcam", "cosine", values, ["a", "b", "c"], list("vwxyz"))
    got = results.per_image("gradcam", "cosine")
    assert isinstance(got, PerImage) and got.names == ["a", "b", "c"]
    assert got.ids == list("vwxyz")
    np.testing.assert_array_equal(got.values, values.astype(np.float32))
    linkage = rng.random((2, 4))
    results.write_tree("gradcam", "cosine", linkage, ["a", "b", "c"], ["c", "a", "b"])
    tree = results.tree("gradcam", "cosine")
    assert isinstance(tree, Tree) and tree.labels == ["a", "b", "c"]
    assert tree.order == ["c", "a", "b"]
    np.testing.assert_array_equal(tree.linkage, linkage)
    maps = rng.random((5, 4, 4)).astype(np.float32)
    results.write_consensus_maps("gradcam", maps, list("vwxyz"))
    stored = results.consensus_maps("gradcam")
    assert isinstance(stored, ConsensusMaps) and stored.ids == list("vwxyz")
    np.testing.assert_array_equal(stored.maps, maps)
    # the keys old run folders hold: np.load reads them as before
    with np.load(tmp_path / LAYOUT["per_image"]) as old:
        assert set(old.files) == {"per_image", "names", "ids"}
    with np.load(tmp_path / LAYOUT["tree"]) as old:
        assert set(old.files) == {"linkage", "labels", "order"}


def test_a_table_of_an_old_run_folder_is_read_with_its_header_provenance(tmp_path):
    path = tmp_path / LAYOUT["similarity"].replace("cosine_mean", "cosine_dissimilarity")
    path.parent.mkdir(parents=True)
    path.write_text('# xaicompare method="gradcam"\n# xaicompare n_images=5\n'
                    ",a,b\na,0.0,0.5\nb,0.5,0.0\n")
    D = Results(tmp_path).dissimilarity("gradcam", "cosine")
    assert D.loc["a", "b"] == 0.5 and list(D.index) == ["a", "b"]
    assert D.attrs["provenance"] == {"method": "gradcam", "n_images": 5}


@pytest.mark.parametrize("name", sorted(ARTEFACTS))
def test_a_missing_artefact_names_the_stage_that_writes_it(tmp_path, name):
    results = Results(tmp_path)
    reader = getattr(results, name)
    stage = ARTEFACTS[name].stage
    with pytest.raises(UserError, match=rf"run `xaicompare {stage} STUDY.yaml` first") as err:
        reader(*reader_args(name))
    assert LAYOUT[name] in str(err.value)
    assert reader(*reader_args(name), missing_ok=True) is None


def test_names_that_no_stage_writes_are_refused(tmp_path):
    results = Results(tmp_path)
    with pytest.raises(UserError, match="similarity summary 'average'.*accepted: mean"):
        results.similarity("gradcam", "cosine", "average")
    with pytest.raises(UserError, match="diversity table 'accuracy'.*model_metrics"):
        results.write_diversity("accuracy", pd.DataFrame({"a": [1]}), {})


def test_write_table_csv_and_results_agree(tmp_path):
    """Results writes exactly what compare.write_table_csv writes (one format)."""
    frame = frame_for("mantel")
    write_table_csv(frame, tmp_path / "direct.csv", {"k": 1})
    path = Results(tmp_path).write_mantel(frame, {"k": 1})
    assert path.read_bytes() == (tmp_path / "direct.csv").read_bytes()


def test_each_stage_declares_what_it_reads_and_writes():
    """READS / WRITES name artefacts; every artefact is written by the stage it names and
    has one reader and one writer named after it."""
    written = {}
    for stage, modules in STAGE_MODULES.items():
        for module_name in modules:
            module = importlib.import_module(f"xaicompare.stages.{module_name}")
            assert set(module.READS) <= set(ARTEFACTS), module_name
            for name in module.WRITES:
                assert ARTEFACTS[name].stage == stage, (module_name, name)
                written[name] = stage
    assert set(written) == set(ARTEFACTS)
    for name in ARTEFACTS:
        assert callable(getattr(Results, name)) and callable(getattr(Results, f"write_{name}"))


def calls_in(*modules: str) -> tuple[set[str], set[str]]:
    """(artefacts read, artefacts written) by `results.<name>(` calls in stage modules."""
    folder = Path(importlib.import_module("xaicompare.stages").__file__).parent
    reads, writes = set(), set()
    for module in modules:
        text = (folder / f"{module}.py").read_text()
        for write, name in re.findall(r"results\.(write_)?([a-z_]+)\(", text):
            if name in ("figure_path", "path", "remove"):
                continue
            name = "similarity" if name == "dissimilarity" else name
            assert name in ARTEFACTS, (module, name)
            (writes if write else reads).add(name)
        writes |= set(re.findall(r"results\.remove\(\"([a-z_]+)\"", text))  # not written now
    return reads, writes


def declared(module: str, what: str) -> set[str]:
    return set(getattr(importlib.import_module(f"xaicompare.stages.{module}"), what))


def test_the_declarations_cover_every_read_and_write_in_the_source():
    for module in ("compare", "cluster", "diversity", "trust", "health", "method_agreement"):
        reads, writes = calls_in(module)
        assert reads <= declared(module, "READS"), module
        assert writes <= declared(module, "WRITES"), module
    reads, writes = calls_in("lenses")  # called by the compare and the diversity stage
    assert reads <= declared("diversity", "READS")
    assert writes <= declared("compare", "WRITES") | declared("diversity", "WRITES")
    folder = Path(importlib.import_module("xaicompare.stages").__file__).parent
    report_modules = [p.stem for p in folder.glob("report*.py")] + ["paper_figures"]
    reads, writes = calls_in(*report_modules)
    assert reads <= declared("report", "READS") <= set(ARTEFACTS) and not writes


def test_a_removed_table_is_gone_with_its_provenance(tmp_path):
    """A stage that does not write an artefact this time removes the earlier run's copy."""
    results = Results(tmp_path)
    frame = pd.DataFrame({"model": ["a"], "deletion_auc": [0.2]})
    path = results.write_faithfulness(frame, {"steps": 3})
    assert path.is_file() and Path(f"{path}.json").is_file()
    results.remove("faithfulness")
    assert not path.exists() and not Path(f"{path}.json").exists()
    assert results.faithfulness(missing_ok=True) is None
    results.remove("faithfulness")  # nothing there: no error
