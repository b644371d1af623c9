"""Deletion/insertion curves on a model with a known answer, and attribution convergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from torch import nn

from xaicompare.errors import UserError
from xaicompare.models.base import LoadedModel
from xaicompare.trust import convergence_curve, deletion_insertion_curves, pixel_ranks

H = W = 4
N_CLASSES = 3


def linear_model(seed=0):
    """Logits = A x + c on raw pixels (no normalisation): attributions are known exactly."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, N_CLASSES)).double()
    with torch.no_grad():
        net[1].weight.uniform_(0.1, 1.0)  # positive weights: every pixel helps every class
        net[1].bias.uniform_(-0.5, 0.5)
    return LoadedModel(net, name="linear", family="cnn", mean=(0, 0, 0), std=(1, 1, 1)).double()


def images(b=3, seed=1):
    return torch.rand(b, 3, H, W, generator=torch.Generator().manual_seed(seed)).double() * 0.9 + 0.05


def test_deletion_by_true_attribution_matches_hand_computation():
    model = linear_model()
    x = images()
    target = torch.tensor([0, 2, 1])
    A = model.net[1].weight.detach().numpy().reshape(N_CLASSES, 3, H * W)
    c = model.net[1].bias.detach().numpy()
    xs = x.numpy().reshape(3, 3, H * W)
    maps = np.einsum("bcp,bcp->bp", A[target.numpy()], xs)  # w . x per pixel (black baseline)
    steps = 8  # 16 pixels: 2 per step
    result = deletion_insertion_curves(model, x, torch.from_numpy(maps.reshape(3, H, W)),
                                       target=target, steps=steps, score="logit")
    logit_curve = deletion_insertion_curves(model, x, torch.from_numpy(maps.reshape(3, H, W)),
                                            target=target, steps=steps, score="probability")
    np.testing.assert_allclose(result.fractions, np.arange(steps + 1) / steps)
    for b in range(3):
        order = np.argsort(-maps[b], kind="stable")
        removed = np.concatenate([[0.0], np.cumsum(maps[b][order])])[::2]  # every 2 pixels
        total = maps[b].sum() + c[target[b]]
        np.testing.assert_allclose(result.deletion[b], total - removed, rtol=1e-10)
        np.testing.assert_allclose(result.insertion[b], c[target[b]] + removed, rtol=1e-10)
        assert np.all(np.diff(result.deletion[b]) < 0)  # strictly decreasing logit
        # probabilities: softmax over every class's logit of the same deleted image
        probs = []
        for k in range(steps + 1):
            keep = np.ones(H * W)
            keep[order[: 2 * k]] = 0
            logits = np.einsum("kcp,cp->k", A, xs[b] * keep) + c
            probs.append(softmax(logits)[target[b]])
        np.testing.assert_allclose(logit_curve.deletion[b], probs, rtol=1e-10)
        hand_auc = sum((result.deletion[b][s] + result.deletion[b][s + 1]) / 2 / steps
                       for s in range(steps))
        assert result.deletion_auc[b] == pytest.approx(hand_auc, rel=1e-12)
    table = result.table()
    assert list(table.columns) == ["image", "target", "deletion_auc", "insertion_auc",
                                   "full_score"]
    assert result.params["baseline"] == "black"


def test_true_attribution_beats_random_order_and_batching_does_not_matter():
    model = linear_model()
    x = images(b=4, seed=3)
    maps = (model.net[1].weight.detach()[0].view(3, H, W) * x).sum(1)
    best = deletion_insertion_curves(model, x, maps, target=0, steps=16, score="logit",
                                     batch_size=5)
    rand = deletion_insertion_curves(model, x, maps, target=0, steps=16, score="logit",
                                     order="random", seed=0)
    worst = deletion_insertion_curves(model, x, maps, target=0, steps=16, score="logit",
                                      order="ascending", batch_size=1000)
    assert np.all(best.deletion_auc < rand.deletion_auc)
    assert np.all(rand.deletion_auc < worst.deletion_auc)
    assert np.all(best.insertion_auc > worst.insertion_auc)
    again = deletion_insertion_curves(model, x, maps, target=0, steps=16, score="logit",
                                      batch_size=1)
    np.testing.assert_allclose(again.deletion, best.deletion, rtol=1e-12)


def test_ties_are_broken_in_raster_order():
    flat = torch.tensor([[0.5, 1.0, 0.5, 1.0, 0.0, 0.5]])
    ranks = pixel_ranks(flat.view(1, 2, 3))
    order = np.argsort(-flat.numpy()[0], kind="stable")
    expected = np.empty(6, int)
    expected[order] = np.arange(6)
    assert ranks[0].tolist() == expected.tolist() == [2, 0, 3, 1, 5, 4]


def small_cnn():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 6, 3, padding=1),
                        nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 3))
    return LoadedModel(net.double(), name="cnn", family="cnn", cam_layer=net[2]).double()


def test_integrated_gradients_converges_with_steps():
    model = small_cnn()
    x = images(b=2, seed=4)
    table = convergence_curve(model, x, "integrated_gradients", budgets=[2, 4, 8, 16],
                              reference_budget=128, target=1)
    mean = table.groupby("budget")[["one_minus_cosine", "relative_l2"]].mean()
    assert np.all(np.diff(mean["relative_l2"]) < 0)
    assert mean["relative_l2"].iloc[-1] < 0.1 * mean["relative_l2"].iloc[0]
    assert len(table) == 8 and table.attrs["budget_parameter"] == "n_steps"


def test_kernelshap_converges_to_the_exact_values():
    model = small_cnn()
    x = images(b=2, seed=5)
    segments = torch.arange(8).view(2, 4).repeat_interleave(2, 0)
    segments = segments.expand(2, H, W).contiguous()  # 8 superpixels: exact at 2^8 samples
    table = convergence_curve(model, x, "kernelshap", budgets=[20, 40, 120, 256],
                              reference_budget=256, target=0, segments=segments)
    mean = table.groupby("budget")["relative_l2"].mean()
    assert mean.loc[256] == pytest.approx(0.0, abs=1e-9)
    assert mean.loc[120] < mean.loc[20]


def test_bad_inputs():
    model = linear_model()
    x = images()
    with pytest.raises(UserError, match="maps"):
        deletion_insertion_curves(model, x, torch.zeros(3, H, W + 1))
    with pytest.raises(UserError, match="order"):
        deletion_insertion_curves(model, x, torch.zeros(3, H, W), order="up")
    with pytest.raises(UserError, match="method"):
        convergence_curve(model, x, "gradcam")
