"""Mantel test, similarity by outcome, disagreement mining, retention and explanation change."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import entropy, kstest, pearsonr, spearmanr
from torch import nn

from xaicompare.diversity import (
    corrupt,
    evaluate_corruptions,
    explanation_change,
    explanation_change_per_image,
    explanation_disagreement,
    mantel_test,
    prediction_disagreement,
    retention_table,
    similarity_by_outcome,
    top_disagreements,
)
from xaicompare.errors import UserError
from xaicompare.models.base import LoadedModel


def random_symmetric(m: int, rng: np.random.Generator, names=None) -> pd.DataFrame:
    x = rng.random((m, m))
    x = (x + x.T) / 2
    np.fill_diagonal(x, 0.0)
    names = names or [f"m{i}" for i in range(m)]
    return pd.DataFrame(x, index=names, columns=names)


# ---------------------------------------------------------------- Mantel test


def test_mantel_identical_matrices():
    a = random_symmetric(8, np.random.default_rng(0))
    out = mantel_test(a, a, n_permutations=999, seed=1)
    assert out["r"] == pytest.approx(1.0)
    assert out["p_value"] == pytest.approx(1 / 1000)  # no random relabelling reaches r = 1
    assert out["n"] == 28 and not out["exact"]


def test_mantel_statistic_matches_scipy_on_upper_triangle():
    rng = np.random.default_rng(1)
    a, b = random_symmetric(7, rng), random_symmetric(7, rng)
    iu = np.triu_indices(7, k=1)
    pearson = mantel_test(a, b, n_permutations=99)
    assert pearson["r"] == pytest.approx(pearsonr(a.to_numpy()[iu], b.to_numpy()[iu])[0])
    spear = mantel_test(a, np.exp(3 * b), n_permutations=99, method="spearman")
    assert spear["r"] == pytest.approx(spearmanr(a.to_numpy()[iu], b.to_numpy()[iu])[0])


def test_mantel_exact_p_matches_enumeration_loop():
    rng = np.random.default_rng(2)
    names = list("abcde")
    a = random_symmetric(5, rng, names)
    b = a + 0.3 * random_symmetric(5, rng, names)
    iu = np.triu_indices(5, k=1)
    r_obs = pearsonr(a.to_numpy()[iu], b.to_numpy()[iu])[0]
    hits = 0
    for perm in itertools.permutations(range(5)):
        bp = b.to_numpy()[np.ix_(perm, perm)]
        hits += pearsonr(a.to_numpy()[iu], bp[iu])[0] >= r_obs - 1e-12
    out = mantel_test(a, b, n_permutations=999)
    assert out["exact"] and out["n_permutations"] == 120
    assert out["p_value"] == pytest.approx(hits / 120)


def test_mantel_independent_matrices_give_uniform_p():
    rng = np.random.default_rng(3)
    ps = [
        mantel_test(random_symmetric(7, rng), random_symmetric(7, rng), 199, seed=s)["p_value"]
        for s in range(300)
    ]
    assert 0.02 <= np.mean(np.array(ps) < 0.05) <= 0.09
    assert kstest(ps, "uniform").pvalue > 0.001


def test_mantel_aligns_labels_and_handles_direction_and_asymmetry():
    rng = np.random.default_rng(4)
    a = random_symmetric(8, rng)
    b = a + 0.05 * random_symmetric(8, rng)
    shuffled = b.loc[b.index[::-1], b.columns[::-1]]
    assert mantel_test(a, shuffled)["r"] == pytest.approx(mantel_test(a, b)["r"])
    assert mantel_test(a, -b, alternative="less")["p_value"] < 0.01
    assert mantel_test(a, -b, alternative="greater")["p_value"] > 0.9
    asym = pd.DataFrame(rng.random((8, 8)), index=a.index, columns=a.columns)
    assert mantel_test(asym, asym)["n"] == 8 * 7


def test_mantel_rejects_bad_input():
    rng = np.random.default_rng(5)
    a = random_symmetric(4, rng)
    other = random_symmetric(4, rng, names=list("wxyz"))
    with pytest.raises(UserError, match="same models"):
        mantel_test(a, other)
    bad = a.copy()
    bad.iloc[0, 1] = np.nan
    with pytest.raises(UserError, match="NaN"):
        mantel_test(a, bad)
    with pytest.raises(UserError, match="method"):
        mantel_test(a, a, method="kendall")


# ---------------------------------------------------------------- similarity by outcome


def test_similarity_by_outcome_hand_case():
    sim = np.ones((2, 2, 4))
    sim[0, 1] = sim[1, 0] = [0.9, 0.5, 0.1, 0.3]
    correct = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], bool)
    table = similarity_by_outcome(sim, correct, names=["a", "b"]).set_index("outcome")
    assert table.loc["both_correct", "mean"] == pytest.approx(0.9)
    assert table.loc["one_wrong", "mean"] == pytest.approx(0.3)
    assert table.loc["one_wrong", "std"] == pytest.approx(0.2)
    assert table.loc["both_wrong", "n"] == 1 and table.loc["both_wrong", "mean"] == 0.3
    assert set(table["model_a"]) == {"a"} and set(table["model_b"]) == {"b"}


def test_similarity_by_outcome_pooled_matches_loop():
    rng = np.random.default_rng(6)
    sim = rng.random((3, 3, 20))
    correct = rng.random((3, 20)) < 0.5
    pooled = similarity_by_outcome(sim, correct, by_pair=False).set_index("outcome")
    groups = {"both_correct": [], "one_wrong": [], "both_wrong": []}
    for i, j in itertools.combinations(range(3), 2):
        for n in range(20):
            key = ["both_wrong", "one_wrong", "both_correct"][
                int(correct[i, n]) + int(correct[j, n])
            ]
            groups[key].append(sim[i, j, n])
    for key, values in groups.items():
        assert pooled.loc[key, "n"] == len(values)
        assert pooled.loc[key, "mean"] == pytest.approx(np.mean(values))


# ---------------------------------------------------------------- disagreement mining


def test_prediction_disagreement_modal_and_entropy():
    preds = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 4], [0, 2, 4]])
    np.testing.assert_allclose(prediction_disagreement(preds), [0.0, 0.5, 0.5])
    ref = [entropy(np.bincount(preds[:, n]) / 4) for n in range(3)]
    np.testing.assert_allclose(prediction_disagreement(preds, "entropy"), ref)
    with pytest.raises(UserError, match="integer"):
        prediction_disagreement(preds.astype(float))


def test_explanation_disagreement_and_top():
    sim = np.ones((3, 3, 3))
    sim[0, 1, :] = [1.0, 0.5, 0.0]
    sim[0, 2, :] = [1.0, 0.5, np.nan]
    sim[1, 2, :] = [1.0, 0.2, 0.0]
    scores = explanation_disagreement(sim)
    np.testing.assert_allclose(scores, [0.0, (0.5 + 0.5 + 0.8) / 3, 1.0])
    top = top_disagreements(np.array([0.1, np.nan, 0.9, 0.5]), ids=["w", "x", "y", "z"], n=5)
    assert top["id"].tolist() == ["y", "z", "w"] and top["rank"].tolist() == [1, 2, 3]


# ---------------------------------------------------------------- robustness


def test_retention_table_hand_case_and_zero_clean():
    corrupted = pd.DataFrame(
        {
            "model": ["a", "a", "b"],
            "corruption": ["contrast"] * 3,
            "severity": [1, 2, 1],
            "accuracy": [0.6, 0.4, 0.2],
        }  # fmt: skip
    )
    table = retention_table({"a": 0.8, "b": 0.5}, corrupted)
    np.testing.assert_allclose(table["retention"], [0.75, 0.5, 0.4])
    with pytest.warns(RuntimeWarning, match="undefined"):
        zero = retention_table({"a": 0.8, "b": 0.0}, corrupted)
    assert math.isnan(zero["retention"].iloc[2])
    with pytest.raises(UserError, match="no clean accuracy"):
        retention_table({"a": 0.8}, corrupted)


def test_explanation_change_cosine():
    clean = torch.rand(2, 3, 5, 5)
    corrupted = clean + 0.3 * torch.rand(2, 3, 5, 5)
    corrupted[1, 2] = 0.0  # no direction: undefined
    cos = explanation_change_per_image(clean, corrupted)
    ref = torch.nn.functional.cosine_similarity(clean.flatten(2), corrupted.flatten(2), dim=2)
    np.testing.assert_allclose(cos[0], ref[0].numpy(), rtol=1e-5)
    assert math.isnan(cos[1, 2])
    table = explanation_change(clean, corrupted, names=["a", "b"]).set_index("model")
    assert table.loc["b", "n"] == 2 and table.loc["b", "n_undefined"] == 1
    assert table.loc["a", "mean_cosine"] == pytest.approx(ref[0].mean().item(), rel=1e-5)
    same = explanation_change(clean, clean)
    np.testing.assert_allclose(same["mean_cosine"], 1.0)


def tiny_model(seed: int, name: str) -> LoadedModel:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 3),
    )  # fmt: skip
    return LoadedModel(net, name=name, family="cnn", input_size=(16, 16))


def test_evaluate_corruptions_matches_manual_run_and_is_batch_independent():
    models = [tiny_model(0, "a"), tiny_model(1, "b")]
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 16, 16, generator=g)
    with torch.no_grad():
        labels = models[0](images).argmax(1)  # model a is right on the clean images
    kwargs = dict(corruptions=["gaussian_noise", "contrast"], severities=(1, 5), seed=3)
    table = evaluate_corruptions(models, images, labels, batch_size=4, **kwargs)
    assert len(table) == 2 * 2 * 3  # corruptions x severities x (a, b, ensemble)
    again = evaluate_corruptions(models, images, labels, batch_size=6, **kwargs)
    pd.testing.assert_frame_equal(table, again)
    noisy = corrupt(images, "gaussian_noise", 5, seed=3, image_seeds=torch.arange(6))
    with torch.no_grad():
        probs = [m(noisy).softmax(1) for m in models]
    row = table.set_index(["model", "corruption", "severity"])
    acc_b = (probs[1].argmax(1) == labels).float().mean().item()
    acc_ens = ((probs[0] + probs[1]).argmax(1) == labels).float().mean().item()
    assert row.loc[("b", "gaussian_noise", 5), "accuracy"] == pytest.approx(acc_b)
    assert row.loc[("ensemble", "gaussian_noise", 5), "accuracy"] == pytest.approx(acc_ens)
    assert row.loc[("a", "contrast", 1), "clean_accuracy"] == 1.0
    a_rows = table[table["model"] == "a"]
    np.testing.assert_allclose(a_rows["retention"], a_rows["accuracy"])
