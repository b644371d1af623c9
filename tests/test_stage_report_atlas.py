"""The report's atlas, appendix and fingerprint as functions of an AtlasContext and RunFacts
built by hand: stand-ins for the engine's depth passes, hand-made logits and maps, no model,
no store and no Study."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pandas as pd
import pytest
from stage_fixtures import (
    FAMILIES,
    MODELS,
    NO_DEPTH,
    atlas_context,
    diversity_context,
)

from xaicompare.errors import UserError
from xaicompare.stages import diversity as diversity_stage
from xaicompare.stages import paper_figures
from xaicompare.stages.contexts import RunFacts
from xaicompare.stages.report import report_fingerprint
from xaicompare.stages.report_atlas import depth_maps, disagreement_ids, explained_targets
from xaicompare.stages.report_provenance import run_summary

N = 6


def facts(**changes) -> RunFacts:
    base = RunFacts(name="tiny", config_yaml="seed: 0\n",
                    weights={m: f"w-{m}" for m in MODELS}, dataset="shapes",
                    dataset_options={"size": 32, "split": "test"}, dataset_seed=7,
                    skipped=(("bad.png", "not an image"),),
                    class_rules=(("cnn_a", "by wnid"), ("vit_a", "by name")),
                    timings={"explain": 1.26, "compare": 0.04})
    return dataclasses.replace(base, **changes)


def test_run_summary_reads_the_facts_the_context_and_run_json(tmp_path):
    maps = {"gradcam": np.zeros((4, N, 4, 4)), "rollout": np.zeros((4, N, 4, 4))}
    ctx = atlas_context(tmp_path, maps, np.zeros((4, N, 3)), labels=[0] * N,
                        class_names=["circle", "square", "triangle"],
                        not_applicable={"rollout": ("cnn_a", "cnn_b")})
    (tmp_path / "run.json").write_text(json.dumps({"versions": {"torch": "9.9"}}))
    ctx.results.write_degenerate_maps(  # a row per (metric, map): two maps, two metrics
        "gradcam", pd.DataFrame({"model": ["cnn_a", "vit_b", "cnn_a"],
                                 "image": ["i1", "i1", "i1"],
                                 "metric": ["cosine", "cosine", "rbf"]}), {})
    summary = run_summary(ctx, facts())
    pd.testing.assert_frame_equal(summary.pop("models"), pd.DataFrame(
        {"model": list(MODELS), "family": [FAMILIES[m] for m in MODELS],
         "weights": [f"w-{m}" for m in MODELS]}))
    assert summary.pop("degenerate_models") == "not checked (compare stage not run)"
    assert summary == {
        "images": {"dataset": "shapes", "n_images": N, "size": 32, "split": "test"},
        "class_space": "3 classes (circle, square, triangle); accuracy and confidence are the "
                       "softmax over these classes' logits only; outputs matched by cnn_a: by "
                       "wnid; vit_a: by name",
        "methods": {"gradcam": "{}", "rollout": "{}"},
        "versions": {"torch": "9.9"},
        "seeds": {"study": 0, "dataset subset": 7},
        "timings": {"explain": "1.3 s", "compare": "0.0 s"},
        "skipped_images": ["bad.png: not an image"],
        "degenerate_maps": {"gradcam": 2},
        "not_applicable": {"rollout": "cnn_a, cnn_b"},
    }


def test_run_summary_of_an_unlabelled_run_without_run_json(tmp_path):
    ctx = atlas_context(tmp_path, {"gradcam": np.zeros((4, N, 4, 4))}, np.zeros((4, N, 3)))
    summary = run_summary(ctx, facts(skipped=()))
    assert summary["class_space"] == "unlabelled images: each model's own classes"
    assert summary["versions"] == {} and summary["skipped_images"] == "none"
    assert summary["degenerate_maps"] == "none" and summary["not_applicable"] == "none"


def test_disagreement_ids_follow_the_diversity_stage_s_tables_of_hand_made_logits(tmp_path):
    # predicted classes [model, image]: img0 all agree, img1 2-2, img2 3-1, img3 all agree,
    # img4 3-1, img5 2-2 (the modal disagreement 1 - votes / 4: 0, .5, .25, 0, .25, .5)
    preds = np.array([[0, 0, 0, 1, 2, 0],
                      [0, 0, 0, 1, 2, 0],
                      [0, 1, 0, 1, 2, 1],
                      [0, 1, 1, 1, 0, 1]])
    logits = np.eye(3, dtype=np.float32)[preds] * 5  # [M, N, 3], argmax = preds
    labels = np.zeros(N, dtype=int)
    dctx = diversity_context(tmp_path, logits, labels)
    # explanations: the first method's per-image similarity, lowest (most dissimilar) on
    # img3, then img0, then the rest equal
    similarity = np.ones((4, 4, N))
    similarity[..., 3], similarity[..., 0] = 0.1, 0.4
    dctx.results.write_per_image("gradcam", "cosine", similarity, MODELS, dctx.images.ids)
    diversity_stage.disagreement(dctx, logits.argmax(-1))

    ctx = atlas_context(tmp_path, {"gradcam": np.zeros((4, N, 4, 4))}, logits)
    # predictions first (ties in image order, agreed images left out), then explanations
    assert disagreement_ids(ctx, 10) == ["img1", "img5", "img2", "img4", "img3", "img0"]
    assert disagreement_ids(ctx, 3) == ["img1", "img5", "img2"]
    # an id the study no longer has (an old table) is never shown
    table = ctx.results.disagreement("predictions")
    table.loc[0, "id"] = "gone"
    ctx.results.write_disagreement("predictions", table, {})
    assert disagreement_ids(ctx, 2) == ["img5", "img2"]


def test_no_disagreement_tables_no_ids(tmp_path):
    ctx = atlas_context(tmp_path, {"gradcam": np.zeros((4, N, 4, 4))}, np.zeros((4, N, 3)))
    assert disagreement_ids(ctx, 4) == []


def test_explained_targets_are_the_label_where_known_under_the_label_rule(tmp_path):
    logits = np.random.default_rng(0).normal(size=(4, N, 3)).astype(np.float32)
    labels = np.array([2, -1, 0, 1, -1, 2])
    maps = {"gradcam": np.zeros((4, N, 4, 4))}
    ids = ["img4", "img0", "img1"]
    predicted = atlas_context(tmp_path, maps, logits, labels)
    np.testing.assert_array_equal(explained_targets(predicted, ids),
                                  logits[:, [4, 0, 1]].argmax(-1))
    by_label = atlas_context(tmp_path, maps, logits, labels, target="label")
    expected = logits[:, [4, 0, 1]].argmax(-1)
    expected[:, 1] = 2  # img0's label; img4 and img1 have none: their predicted class
    np.testing.assert_array_equal(explained_targets(by_label, ids), expected)


def test_depth_maps_keep_the_models_that_work_at_each_depth(tmp_path, caplog):
    logits = np.random.default_rng(1).normal(size=(4, N, 3)).astype(np.float32)
    asked = []

    def check(model, depth):
        if model == "vit_b" and depth == 0.5:
            raise UserError("no spatial grid at 50% depth")

    def compute(models, depth, ids):
        asked.append((list(models), depth, list(ids)))
        if depth == 0.5 and "cnn_b" in models:
            raise UserError("cnn_b failed")

    def read(model, depth, ids):
        return np.full((len(ids), 4, 4), MODELS.index(model) + depth, np.float16)

    ctx = atlas_context(tmp_path, {"gradcam": np.zeros((4, N, 4, 4))}, logits,
                        depth=dataclasses.replace(NO_DEPTH, check=check, compute=compute,
                                                  read=read))
    ids = ["img2", "img3"]
    targets = explained_targets(ctx, ids)
    with caplog.at_level(logging.WARNING, logger="xaicompare"):
        out = depth_maps(ctx, np.zeros((2, 3, 4, 4)), targets, [0.5, 1.0], ids)
    assert asked == [(["cnn_a", "cnn_b", "vit_a"], 0.5, ids),  # vit_b: no layer there
                     (["cnn_a"], 0.5, ids), (["cnn_b"], 0.5, ids), (["vit_a"], 0.5, ids),
                     (list(MODELS), 1.0, ids)]
    assert {m: sorted(out[m]) for m in MODELS} == {
        "cnn_a": [0.5, 1.0], "cnn_b": [1.0], "vit_a": [0.5, 1.0], "vit_b": [1.0]}
    assert out["vit_a"][0.5].dtype == np.float32 and out["vit_a"][0.5].shape == (2, 4, 4)
    np.testing.assert_array_equal(out["vit_a"][0.5], np.full((2, 4, 4), 2.5, np.float32))
    assert "targets" not in caplog.text  # the targets given are the study's
    assert "cnn_b failed" in caplog.text and "no spatial grid" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xaicompare"):
        depth_maps(ctx, np.zeros((2, 3, 4, 4)), (targets + 1) % 3, [1.0], ids)
    assert "differ from the targets given for 8 maps" in caplog.text


def test_fingerprint_changes_with_a_table_or_a_model_s_weights_only(tmp_path):
    ctx = atlas_context(tmp_path, {"gradcam": np.zeros((4, N, 4, 4))}, np.zeros((4, N, 3)))
    ctx.results.write_diversity("model_metrics", pd.DataFrame({"accuracy": [0.5]}), {})
    first = report_fingerprint(ctx, facts())
    assert report_fingerprint(ctx, facts(timings={})) == first  # not an input of the report
    assert report_fingerprint(ctx, facts(weights={**facts().weights, "vit_a": "other"})) != first
    assert report_fingerprint(ctx, facts(config_yaml="seed: 1\n")) != first
    ctx.results.write_diversity("model_metrics", pd.DataFrame({"accuracy": [0.6]}), {})
    assert report_fingerprint(ctx, facts()) != first


def test_paper_atlas_excerpt_shows_one_model_per_family_first(tmp_path):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, N, 3)).astype(np.float32)
    maps = {"gradcam": rng.random((4, N, 4, 4)), "rollout": rng.random((4, N, 4, 4))}
    ctx = atlas_context(tmp_path, maps, logits, labels=[1] * N,
                        class_names=["circle", "square", "triangle"],
                        not_applicable={"rollout": ("cnn_a", "cnn_b")})
    atlas = paper_figures.paper_inputs(ctx).atlas
    assert list(atlas["maps"]) == ["cnn_a", "vit_a", "cnn_b", "vit_b"]
    assert atlas["maps"]["cnn_b"]["rollout"] == "not applicable"
    np.testing.assert_array_equal(atlas["maps"]["vit_a"]["rollout"], maps["rollout"][2, 0])
    probs = np.exp(logits[:, 0]) / np.exp(logits[:, 0]).sum(-1, keepdims=True)
    name, confidence, correct = atlas["predictions"]["vit_b"]
    assert name == ["circle", "square", "triangle"][probs[3].argmax()]
    assert confidence == pytest.approx(probs[3].max(), rel=1e-5)
    assert correct == (probs[3].argmax() == 1) and atlas["true_label"] == "square"
    assert atlas["image"].shape == (3, 4, 4)

