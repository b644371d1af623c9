"""The compare stage as a function of its context: synthetic maps and logits in, tables and
per-image arrays out, checked against hand-computed cosine similarities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from stage_fixtures import MODELS, compare_context

from xaicompare.stages import compare as compare_stage
from xaicompare.stages import method_agreement

N, SIDE = 6, 8


def hand_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image cosine of two map stacks [N, H, W]."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    shared = rng.random((N, SIDE, SIDE))
    gradcam = np.stack([shared + 0.5 * rng.random((N, SIDE, SIDE)) for _ in MODELS])
    gradcam[3, 2] = 0.25  # vit_b's map of image 2 is constant: degenerate, left out
    rollout = np.stack([shared + 0.5 * rng.random((N, SIDE, SIDE)) for _ in MODELS])
    logits = rng.normal(size=(len(MODELS), N, 3))
    features = {m: rng.normal(size=(N, 5)).astype(np.float32) for m in MODELS}
    return {"gradcam": gradcam.astype(np.float32), "rollout": rollout.astype(np.float32),
            "logits": logits.astype(np.float32), "features": features,
            "labels": rng.integers(0, 3, N)}


def run(tmp_path, data):
    ctx = compare_context(tmp_path, {"gradcam": data["gradcam"], "rollout": data["rollout"]},
                          data["logits"], features=data["features"], labels=data["labels"],
                          not_applicable={"rollout": ("cnn_a", "cnn_b")},
                          normalization="none")
    return ctx, compare_stage.run_compare(ctx)


def test_compare_tables_equal_hand_computed_cosines(tmp_path, data):
    ctx, _ = run(tmp_path, data)
    results, maps = ctx.results, data["gradcam"]
    reads, writes = set(results.reads), set(results.writes)
    assert reads <= set(compare_stage.READS) and writes <= set(compare_stage.WRITES)
    expected = np.full((4, 4, N), np.nan)
    for i in range(4):
        for j in range(4):
            expected[i, j] = hand_cosine(maps[i], maps[j])
    expected[3, :, 2] = expected[:, 3, 2] = np.nan  # the degenerate map's pairs
    stored = results.per_image("gradcam", "cosine")
    assert stored.names == list(MODELS) and stored.ids == [f"img{i}" for i in range(N)]
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(stored.values[off], expected[off], rtol=1e-5, equal_nan=True)
    mean = results.similarity("gradcam", "cosine", "mean")
    std = results.similarity("gradcam", "cosine", "std")
    hand_mean = np.nanmean(expected, axis=-1)
    hand_std = np.nanstd(expected, axis=-1)  # the toolkit preset: ddof 0
    np.testing.assert_allclose(mean.to_numpy()[off], hand_mean[off], rtol=1e-5)
    np.testing.assert_allclose(std.to_numpy()[off], hand_std[off], rtol=1e-4, atol=1e-7)
    D = results.dissimilarity("gradcam", "cosine")
    np.testing.assert_allclose(D.to_numpy()[off],
                               np.sqrt((1 - hand_mean) ** 2 + hand_std ** 2)[off], rtol=1e-4)
    n = results.similarity("gradcam", "cosine", "n")
    assert n.loc["vit_b", "cnn_a"] == N - 1 and n.loc["cnn_a", "cnn_b"] == N
    assert D.attrs["provenance"]["method"] == "gradcam"
    degenerate = results.degenerate_models()
    row = degenerate[(degenerate["model"] == "vit_b") & (degenerate["output"] == "gradcam")]
    assert row[["reason", "n_images", "n_total"]].values.tolist() == [["constant", 1, N]]
    assert results.degenerate_maps("gradcam")["image"].tolist() == ["img2"]  # one map


def test_a_method_that_skips_models_leaves_their_pairs_empty(tmp_path, data):
    ctx, _ = run(tmp_path, data)
    mean = ctx.results.similarity("rollout", "cosine", "mean")
    n = ctx.results.similarity("rollout", "cosine", "n")
    assert mean.loc[["cnn_a", "cnn_b"]].isna().all().all()
    assert (n.loc["cnn_a"] == 0).all() and n.loc["vit_a", "vit_b"] == N
    assert mean.attrs["provenance"]["not_applicable"] == ["cnn_a", "cnn_b"]
    expected = hand_cosine(data["rollout"][2], data["rollout"][3]).mean()
    assert mean.loc["vit_a", "vit_b"] == pytest.approx(expected, rel=1e-5)
    # consensus needs 3 models: written for gradcam (4), not for rollout (2)
    assert ctx.results.consensus("gradcam")["model"].tolist() == list(MODELS)
    assert ctx.results.consensus("rollout", missing_ok=True) is None
    cka = ctx.results.cka("linear")
    assert list(cka.index) == list(MODELS)
    np.testing.assert_allclose(cka.to_numpy(), cka.to_numpy().T, atol=1e-12)


def test_method_agreement_equals_hand_computed_cosine_of_one_models_methods(tmp_path, data):
    ctx = compare_context(tmp_path, {"gradcam": data["gradcam"], "rollout": data["rollout"]},
                          data["logits"], labels=data["labels"],
                          not_applicable={"rollout": ("cnn_a",)}, normalization="none")
    table = method_agreement.method_agreement_table(ctx)
    assert ctx.results.writes == set(method_agreement.WRITES)
    assert table["model"].tolist() == ["cnn_b", "vit_a", "vit_b"]  # cnn_a has one method
    for k, name in enumerate(MODELS[1:], start=1):
        values = hand_cosine(data["gradcam"][k], data["rollout"][k])
        if name == "vit_b":
            values = np.delete(values, 2)  # its constant gradcam map
        row = table[table["model"] == name].iloc[0]
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-5)
        assert row["n"] == len(values)
    metric, read = method_agreement.read_method_agreement(ctx.results, ctx.compare, ctx.methods)
    assert metric == "cosine"
    pd.testing.assert_frame_equal(read, table, check_index_type=False)
