"""A whole study end to end on tiny random-weight timm models: every stage writes what the
README promises, and a second run finds everything in the store."""

import json

import numpy as np
import pandas as pd
import pytest

from xaicompare.study import Study

MODELS = [
    {"source": "resnet10t", "pretrained": False, "num_classes": 10, "class_indices": None},
    {"source": "vit_tiny_patch16_224", "pretrained": False, "num_classes": 10,
     "class_indices": None, "name": "vit", "kwargs": {"img_size": 32, "patch_size": 8}},
    {"source": "convnext_atto", "pretrained": False, "num_classes": 10, "class_indices": None},
]


def study_config(tmp_path, **overrides):
    data = {
        "name": "e2e", "output": str(tmp_path / "run"), "seed": 0,
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 40, "size": 32},
                    "n_images": 6},
        "models": MODELS,
        "methods": {"gradcam": {}, "integrated_gradients": {"n_steps": 4},
                    "kernelshap": {"n_samples": 32, "n_segments": 6}},
        "compare": {"metrics": ["cosine", "kappa"]},
        "cluster": {"k": 2, "permutations": 49},
        "diversity": {"corruptions": ["gaussian_noise"], "severities": [1, 5]},
        "report": {"atlas_images": 1, "formats": ["png"]},
    }
    data.update(overrides)
    return data


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("study")
    study = Study.from_dict(study_config(tmp_path), progress=False)
    result = study.run()
    return tmp_path, study, result


def test_run_folder_holds_what_the_readme_promises(finished):
    _, study, result = finished
    run = study.run_dir
    for name in ("config.yaml", "manifest.json", "run.json", "log.txt", "report.html"):
        assert (run / name).is_file(), name
    assert result.report == run / "report.html"
    meta = json.loads((run / "run.json").read_text())
    assert set(meta["timings"]) == {"explain", "compare", "cluster", "diversity", "trust",
                                    "report"}
    assert meta["versions"]["torch"] and [m["name"] for m in meta["models"]] == study.model_names
    assert len(json.loads((run / "manifest.json").read_text())["ids"]) == 6
    html = (run / "report.html").read_text()
    assert "Explanation atlas" in html and "Prediction diversity" in html
    assert "Trustworthy numbers" in html
    boot = pd.read_csv(run / "tables/trust/gradcam/cosine_bootstrap.csv", comment="#")
    assert (boot["low"] <= boot["estimate"] + 1e-12).all()
    assert (boot["estimate"] <= boot["high"] + 1e-12).all()
    assert "http://" not in html.replace("http://www.w3.org", "")


def test_tables_match_recomputation_from_the_store(finished):
    _, study, _ = finished
    from xaicompare.compare import similarity_matrix
    from xaicompare.stages.compare import compare_options

    maps = study.read_maps("gradcam")
    assert maps.shape == (3, 6, 32, 32)
    direct = similarity_matrix(maps, "cosine", compare_options(study.config.compare), names=study.model_names)
    table = pd.read_csv(study.run_dir / "tables/similarity/gradcam/cosine_mean.csv",
                        comment="#", index_col=0)
    np.testing.assert_allclose(table.to_numpy(), direct.mean.to_numpy(), atol=1e-6)
    assert (study.run_dir / "tables/localisation.csv").is_file()  # shapes have masks
    retention = pd.read_csv(study.run_dir / "tables/diversity/retention.csv", comment="#")
    assert set(retention["severity"]) == {1, 5}


def test_second_run_recomputes_nothing(finished):
    tmp_path, study, _ = finished
    before = study.read_maps("kernelshap")
    again = Study.from_dict(study_config(tmp_path), progress=False)
    summary = again.explain()
    assert sum(summary.computed.values()) == 0
    np.testing.assert_array_equal(again.read_maps("kernelshap"), before)


def test_report_has_depth_and_disagreement_atlases(finished):
    _, study, _ = finished
    html = (study.run_dir / "report.html").read_text()
    assert "Depth atlas" in html and "Disagreement atlas" in html
    atlas = study.run_dir / "figures" / "atlas"
    assert len(list(atlas.glob("depth_*.png"))) == 2  # report.depth_images default
    assert 1 <= len(list(atlas.glob("disagreement_*.png"))) <= 4


def test_depth_atlas_maps_are_gradcam_at_that_depth(finished):
    """At 100% depth the depth atlas's Grad-CAM is the stored Grad-CAM of the CNN (whose
    default layer is its last stage); at 50% it is a different, finer map."""
    from xaicompare.stages.contexts import report_context
    from xaicompare.stages.report import depth_maps

    _, study, _ = finished
    stored = study.read_maps("gradcam")[0, :2]
    targets = study.read_logits()[:, :2].argmax(-1)
    maps = depth_maps(report_context(study), study.dataset.load([0, 1]), targets,
                      [0.5, 1.0])["resnet10t"]
    np.testing.assert_allclose(maps[1.0], stored, rtol=1e-2, atol=1e-3 * np.abs(stored).max())
    assert not np.allclose(maps[0.5], maps[1.0])


def test_report_is_redrawn_only_when_its_inputs_change(finished):
    tmp_path, study, _ = finished
    report = study.run_dir / "report.html"
    before = report.stat().st_mtime_ns
    again = Study.from_dict(study_config(tmp_path), progress=False)
    assert again.report() == report and report.stat().st_mtime_ns == before
    table = study.run_dir / "tables/diversity/model_metrics.csv"
    table.write_text(table.read_text() + "\n")  # any change to what the report shows
    again.report()
    assert report.stat().st_mtime_ns > before


def test_reading_some_ids_equals_slicing_all(finished):
    _, study, _ = finished
    ids = [study.dataset.ids[4], study.dataset.ids[1]]
    np.testing.assert_array_equal(study.read_maps("gradcam", ids),
                                  study.read_maps("gradcam")[:, [4, 1]])
    np.testing.assert_array_equal(study.read_logits(ids=ids), study.read_logits()[:, [4, 1]])


def test_report_writes_the_paper_figures(finished):
    _, study, _ = finished
    paper = study.run_dir / "figures" / "paper"
    written = {p.name for p in paper.iterdir()}
    for figure in ("similarity_dendrogram", "atlas_excerpt", "error_consistency",
                   "accuracy_vs_diversity"):
        for width in ("column", "page"):
            for fmt in ("pdf", "svg", "png"):
                assert f"{figure}_{width}.{fmt}" in written, (figure, width, fmt)


def test_method_agreement_is_the_compare_engine_on_one_models_methods(finished):
    """tables/method_agreement: per model, every pair of methods compared by the same engine
    and options as the model x model matrices (here: cosine, the study's first metric)."""
    from xaicompare.compare import similarity_matrix
    from xaicompare.stages.compare import compare_options

    _, study, _ = finished
    table = pd.read_csv(study.run_dir / "tables/method_agreement/cosine.csv", comment="#")
    methods = list(study.config.methods)
    assert len(table) == len(study.model_names) * 3  # 3 method pairs per model
    vit = np.stack([study.read_maps(m, models=["vit"])[0] for m in methods])
    direct = similarity_matrix(vit, "cosine", compare_options(study.config.compare), names=methods)
    rows = table[table["model"] == "vit"]
    for _, row in rows.iterrows():
        assert row["mean"] == pytest.approx(direct.mean.loc[row["method_a"], row["method_b"]],
                                            abs=1e-6)
    np.testing.assert_array_equal(study.read_maps("gradcam", models=["vit", "resnet10t"]),
                                  study.read_maps("gradcam")[[1, 0]])


def test_report_opens_with_findings_and_ends_with_provenance(finished):
    from xaicompare.stages.report_findings import end_of_run_lines

    _, study, result = finished
    html = (study.run_dir / "report.html").read_text()
    assert html.index('id="findings"') < html.index('id="toc"') < html.index('id="summary"')
    assert "Method × method agreement per model" in html
    assert "Does architecture family explain the structure, method by method?" in html
    assert "smallest attainable" in html
    lines = end_of_run_lines(result)
    assert lines[0] == "Key findings:" and 2 <= len(lines) <= 6
    assert lines[-1] == f"Report: {(study.run_dir / 'report.html').resolve()}"
