"""The comparison lenses inside a study: the tables equal the library functions on the
study's own stored arrays, and the zoo's cue-trained twins are the most alike representations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakes import zoo_study

from xaicompare.compare import cka_matrix, consensus
from xaicompare.diversity import stratified_agreement

ZOO = ["shapes-resnet", "shapes-resnet-cue", "shapes-pvt", "shapes-mixer"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lenses")
    study = zoo_study(tmp / "run", "lenses", ZOO, {"gradcam": {}}, seed=0, n=60, size=64,
                      n_images=20, metrics=("cosine", "rank"), diversity={"corruptions": []})
    study.run(("explain", "compare", "diversity"))
    return study


def _table(study, *parts):
    return pd.read_csv(study.run_dir / "tables" / f"{'/'.join(parts)}.csv", comment="#",
                       index_col=None)


def test_cka_table_equals_cka_of_stored_features(finished):
    study = finished
    features = study.read_features()
    assert list(features) == ZOO and all(f.shape[0] == 20 for f in features.values())
    table = _table(study, "representation", "cka_linear").set_index("Unnamed: 0")
    expected = cka_matrix(features).estimate
    np.testing.assert_allclose(table.loc[ZOO, ZOO].to_numpy(), expected.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.diag(table.to_numpy()), 1.0, atol=1e-6)
    low = _table(study, "representation", "cka_linear_low").set_index("Unnamed: 0")
    high = _table(study, "representation", "cka_linear_high").set_index("Unnamed: 0")
    assert (low.to_numpy() <= table.to_numpy() + 1e-9).all()
    assert (table.to_numpy() <= high.to_numpy() + 1e-9).all()


def test_consensus_and_stratified_tables_equal_library_calls(finished):
    study = finished
    maps = study.read_maps("gradcam")
    expected = consensus(maps, ZOO, n_resamples=study.config.trust.n_resamples, seed=0).table
    got = _table(study, "consensus", "gradcam")
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-6)
    logits = study.read_logits()
    correct = logits.argmax(-1) == np.asarray(study.dataset.labels)[None]
    per_image = np.load(study.run_dir / "arrays/similarity/gradcam__rank.npz")["per_image"]
    strata = stratified_agreement(per_image, correct, study.dataset.labels, ZOO,
                                  class_names=study.dataset.class_names, n_resamples=1000)
    got = _table(study, "joint", "gradcam", "rank_stratified")
    np.testing.assert_allclose(got["mean"], strata["mean"], rtol=1e-6, equal_nan=True)
    agreement = _table(study, "joint", "matrix_agreement")
    assert {"error consistency (1 - kappa)", "representation (1 - linear CKA)"} <= set(
        agreement["matrix_a"]) | set(agreement["matrix_b"])
    # every pair of matrices gets r, or a note why not (error consistency is undefined for
    # a pair that is right on every image)
    assert (agreement["r"].notna() | agreement["note"].notna()).all()
    assert agreement["r"].notna().sum() >= 3
    assert (study.run_dir / "tables/consensus/gradcam_accuracy.csv").is_file()


def test_report_section_shows_the_three_matrices(finished):
    study = finished
    study.run(("report",))
    html = (study.run_dir / "report.html").read_text()
    assert "Explanations, representations and errors" in html
    for name in ("matrix_trio", "consensus", "strata", "topk_sweep"):
        assert (study.run_dir / "figures" / "lenses" / f"{name}.png").is_file(), name
    assert "representation (1 - linear CKA)" in html  # a Mantel reading in words


def test_agreement_sweep_at_the_study_k_equals_the_compare_table(finished):
    study = finished
    sweep = _table(study, "agreement_sweep", "gradcam")
    rank = pd.read_csv(study.run_dir / "tables/similarity/gradcam/rank_mean.csv", comment="#",
                       index_col=0)
    at = sweep[(sweep["metric"] == "rank") & (sweep["fraction"] == 0.1)]
    for _, row in at.iterrows():
        assert row["mean"] == pytest.approx(rank.loc[row["model_a"], row["model_b"]])
    wide = sweep.pivot_table(index=["fraction", "model_a", "model_b"], columns="metric",
                             values="mean")
    assert (wide["topk_sign"] <= wide["topk"] + 1e-12).all()  # signs only remove agreement
    assert (wide["signed_rank"] <= wide["rank"] + 1e-12).all()
    assert (wide["rank"] <= wide["topk"] + 1e-12).all()


def test_atlas_shows_the_consensus_map_beside_the_models(finished, monkeypatch):
    from xaicompare import report as rp
    from xaicompare.stages.contexts import report_context
    from xaicompare.stages.report import write_atlas

    study = finished
    captured = {}

    def fake_pages(images, maps, predictions, families, *args, **kwargs):
        captured.update(maps=maps, families=families)
        return [Path(f"page{k}.png") for k in range(len(maps))]

    monkeypatch.setattr(rp, "write_atlas_pages", fake_pages)
    ids = study.dataset.ids[:2]
    write_atlas(report_context(study), ids)
    stored = np.load(study.run_dir / "arrays/consensus/gradcam.npz")
    page = captured["maps"][ids[1]]
    assert set(page) == {*ZOO, "consensus"} and captured["families"]["consensus"] == "consensus"
    np.testing.assert_array_equal(page["consensus"]["gradcam"], stored["consensus"][1])
