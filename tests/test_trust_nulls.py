"""Null baselines, chance-corrected scores and the model-parameter randomisation test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch import nn

from xaicompare.compare import similarity_matrix
from xaicompare.errors import UserError
from xaicompare.models.base import LoadedModel
from xaicompare.trust import (
    cascading_randomization,
    centre_bias_map,
    centre_bias_similarity,
    chance_corrected,
    derangement,
    null_table,
    parameter_blocks,
    randomization_similarity,
    randomize_weights,
    sanity_scores,
    shuffled_null,
)


def random_maps(m, n, size=12, seed=0):
    return torch.rand(m, n, size, size, generator=torch.Generator().manual_seed(seed))


def test_centre_bias_map_is_a_centred_gaussian():
    prior = centre_bias_map(5, 7, sigma_frac=0.2).numpy()
    ys, xs = np.meshgrid(np.arange(5) - 2, np.arange(7) - 3, indexing="ij")
    expected = np.exp(-0.5 * ((ys / 1.0) ** 2 + (xs / 1.4) ** 2))
    np.testing.assert_allclose(prior, expected, rtol=1e-12)


def test_model_that_draws_the_centre_prior_scores_one():
    prior = centre_bias_map(12, 12)
    maps = random_maps(2, 5)
    maps[1] = prior  # model 1 always outputs the centre prior
    table = centre_bias_similarity(maps, "cosine", names=["noise", "centre"])
    assert table.loc["centre", "mean"] == pytest.approx(1.0)
    assert table.loc["noise", "mean"] < 0.95
    assert list(table.columns) == ["mean", "std", "median", "n"]
    # reference: cosine by hand
    flat = maps[0].reshape(5, -1).double()
    ref = (flat @ prior.reshape(-1)) / (flat.norm(dim=1) * prior.norm())
    assert table.loc["noise", "mean"] == pytest.approx(ref.mean().item(), rel=1e-6)


def test_derangement_has_no_fixed_point_and_is_seeded():
    rng = np.random.default_rng(0)
    for _ in range(50):
        perm = derangement(7, rng)
        assert sorted(perm) == list(range(7)) and not (perm == np.arange(7)).any()
    with pytest.raises(UserError):
        derangement(1, rng)


def test_shuffled_null_of_image_specific_maps_is_below_observed():
    # both models see the same image-specific blob: alike on the same image, not across
    n, size = 8, 16
    rng = np.random.default_rng(1)
    ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    centres = rng.uniform(2, 14, (n, 2))
    blobs = np.exp(-((ys - centres[:, :1, None]) ** 2 + (xs - centres[:, 1:, None]) ** 2) / 8)
    maps = torch.from_numpy(np.stack([blobs, blobs + 0.01 * rng.random(blobs.shape)]))
    observed = similarity_matrix(maps, "cosine", names=["a", "b"]).mean
    null = shuffled_null(maps, "cosine", n_shuffles=5, seed=0, names=["a", "b"])
    assert observed.loc["a", "b"] > 0.99
    assert null.loc["a", "b"] < observed.loc["a", "b"] - 0.3
    np.testing.assert_allclose(null.to_numpy(), null.to_numpy().T)
    # reference: one shuffle by hand, cosine of a[n] with b[perm[n]]
    perm = derangement(n, np.random.default_rng(3))
    one = shuffled_null(maps, "cosine", n_shuffles=1, seed=3, names=["a", "b"], symmetric=False)
    a, b = maps[0].reshape(n, -1), maps[1][perm].reshape(n, -1)
    ref = ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean().item()
    assert one.loc["a", "b"] == pytest.approx(ref, rel=1e-9)


def test_chance_corrected_scores_identical_and_unrelated_models():
    maps = random_maps(3, 30, seed=4)
    maps[1] = maps[0]  # model b is a copy of a; c is unrelated noise
    names = ["a", "b", "c"]
    observed = similarity_matrix(maps, "cosine", names=names).mean
    null = shuffled_null(maps, "cosine", n_shuffles=4, seed=0, names=names)
    centre = centre_bias_similarity(maps, "cosine", names=names)
    table = null_table(observed, centre, null).set_index(["model_a", "model_b"])
    assert table.loc[("a", "b"), "observed"] == pytest.approx(1.0)
    assert table.loc[("a", "b"), "chance_corrected_shuffled"] == pytest.approx(1.0)
    assert table.loc[("a", "b"), "chance_corrected_centre"] == pytest.approx(1.0)
    assert abs(table.loc[("a", "c"), "chance_corrected_shuffled"]) < 0.05
    assert table.loc[("a", "c"), "centre_null"] == pytest.approx(
        centre.loc["a", "mean"] * centre.loc["c", "mean"])
    assert len(table) == 3
    np.testing.assert_allclose(chance_corrected(np.array([0.5, 1.0]), np.array([0.5, 1.0])),
                               [0.0, np.nan])


def tiny_vit() -> LoadedModel:
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=8,
                            num_classes=3, depth=2, embed_dim=24, num_heads=2)
    return LoadedModel(net, name="vit", family="transformer", input_size=(16, 16),
                       cam_layer=net.blocks[-1].norm1)


def tiny_cnn() -> LoadedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    return LoadedModel(net, name="cnn", family="cnn", cam_layer=net[3])


def test_randomize_weights_changes_every_parameter_and_keeps_the_original():
    model = tiny_vit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    random = randomize_weights(model, seed=1)
    names = {n for n, _ in model.named_parameters()}
    assert {"net.pos_embed", "net.cls_token", "net.norm.weight"} <= names
    changed = dict(random.named_parameters())
    for name, param in model.named_parameters():
        assert not torch.equal(param, changed[name]), name
        assert (param != changed[name]).float().mean() > 0.99, name  # every entry, not a few
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # original untouched
    assert torch.equal(random.mean, model.mean) and torch.equal(random.std, model.std)
    # the copy's Grad-CAM layer is its own randomised module
    assert random.cam_layer is random.net.blocks[-1].norm1
    again = randomize_weights(model, seed=1)
    for (_, p), (_, q) in zip(random.named_parameters(), again.named_parameters(), strict=True):
        assert torch.equal(p, q)  # seeded


def test_cascading_randomization_goes_top_down_one_block_at_a_time():
    model = tiny_vit()
    blocks = [b for b, _ in parameter_blocks(model)]
    assert blocks[0] == "embeddings" and blocks[-1] == "head"
    assert "blocks.0" in blocks and "blocks.1" in blocks
    steps = list(cascading_randomization(model, seed=0))
    assert [b for b, _ in steps] == blocks[::-1]
    original = dict(model.named_parameters())
    groups = dict(parameter_blocks(model))
    for i, (_, copy) in enumerate(steps):
        randomised = set(blocks[len(blocks) - 1 - i:])
        for block, params in groups.items():
            for name in params:
                same = torch.equal(dict(copy.named_parameters())[name], original[name])
                assert same != (block in randomised), (i, block, name)


def test_randomization_similarity_gradcam_sanity_score():
    model = tiny_cnn()
    images = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    full = randomization_similarity(model, images, "gradcam", metric="cosine", seed=0)
    assert len(full) == 1 and full["randomized"].item() == "all"
    assert full["sanity_score"].item() == pytest.approx(1 - full["mean"].item())
    # the fully randomised net must give different maps: reference by hand
    from xaicompare.attribution import explain
    from xaicompare.compare import similarity
    target = model(images).argmax(1)
    ref = similarity(explain(model, images, "gradcam", target),
                     explain(randomize_weights(model, 0), images, "gradcam", target), "cosine")
    assert full["mean"].item() == pytest.approx(np.nanmean(ref.numpy()))
    cascade = randomization_similarity(model, images, "gradcam", metric="cosine", seed=0,
                                       mode="cascading")
    assert len(cascade) == len(parameter_blocks(model))
    assert cascade["mean"].iloc[-1] == pytest.approx(full["mean"].item())
    summary = sanity_scores([full])
    assert list(summary.columns) == ["model", "method", "metric", "mean", "n", "sanity_score"]


def test_bad_inputs():
    with pytest.raises(UserError, match="unknown parameter block"):
        randomize_weights(tiny_cnn(), blocks=["nope"])
    with pytest.raises(UserError, match="maps"):
        shuffled_null(torch.rand(2, 3, 4))
    with pytest.raises(UserError, match="square"):
        null_table(pd.DataFrame([[1.0, 0.5]]), pd.Series([1.0]), pd.DataFrame([[1.0]]))
