"""LIME: captum parity with the same superpixels and coalitions, the kernel and regression
by hand, and coalitions shared with KernelSHAP and across models.

captum's Lime draws its coalitions with `perturb_func`; the tests pass a generator that
yields our coalition rows ([empty, full, sampled...], the rows KernelSHAP evaluates) in our
order, so captum evaluates exactly the same perturbed images, weighs them with its own
kernel and fits its own interpretable model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from captum._utils.models.linear_model import (
    SkLearnLasso,
    SkLearnLinearRegression,
    SkLearnRidge,
)
from captum.attr import Lime
from captum.attr._core.lime import get_exp_kernel_similarity_function
from fakes import grid_segments, one_torch_thread, segment_net  # noqa: F401  (autouse)
from torch import nn

from xaicompare.attribution.api import explain, explain_full
from xaicompare.attribution.kernelshap import _stack_designs, superpixel_coalitions
from xaicompare.errors import UserError

H = W = 16


def _tiny_net(seed: int = 0, classes: int = 3) -> nn.Module:
    """Scores that move by several units across coalitions, as a trained net's logits do
    (Lasso's alpha = 0.01 would zero every coefficient of a random net's flat scores)."""
    return segment_net(seed, classes, logit_scale=100)


def _images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, H, W, generator=torch.Generator().manual_seed(4))


def _our_rows(images, segments, n_samples, seeds):
    segs, n_features, designs = superpixel_coalitions(images, n_samples, 50, 10.0, segments,
                                                      seeds)
    masks, _, n_rows = _stack_designs(designs, images.device)
    return [masks[b, :int(n_rows[b]), :int(n_features[b])] for b in range(len(images))]


def _captum_lime(model, images, target, segments, rows, interpretable_model, distance,
                 kernel_width, baseline=0.0):
    maps = []
    for i in range(len(images)):
        def perturb(inputs, rows=rows[i], **kwargs):  # a generator: captum takes our rows
            yield from (row[None].long() for row in rows)

        lime = Lime(model, interpretable_model=interpretable_model(),
                    similarity_func=get_exp_kernel_similarity_function(distance, kernel_width),
                    perturb_func=perturb)
        attr = lime.attribute(images[i:i + 1], baselines=baseline, target=int(target[i]),
                              feature_mask=segments[i:i + 1, None], n_samples=len(rows[i]),
                              perturbations_per_eval=16)
        maps.append(attr[:, 0])
    return torch.cat(maps)


@pytest.mark.parametrize("regression,captum_model,distance,width", [
    ("lasso", lambda: SkLearnLasso(alpha=0.01), "cosine", 1.0),  # captum's Lime defaults
    ("ridge", lambda: SkLearnRidge(alpha=0.01), "cosine", 0.25),
    ("linear", lambda: SkLearnLinearRegression(), "euclidean", 3.0),
])
def test_lime_equals_captum_with_the_same_features_and_coalitions(regression, captum_model,
                                                                  distance, width):
    model, images = _tiny_net(), _images()
    target = torch.tensor([0, 2])
    segments = grid_segments(3, 4, H, W).expand(2, H, W).clone()
    seeds = [7, 8]
    ours = explain(model, images, "lime", target=target, n_samples=40, segments=segments,
                   image_seeds=torch.tensor(seeds), regression=regression, alpha=0.01,
                   distance=distance, kernel_width=width, batch_size=16)
    rows = _our_rows(images, segments, 40, seeds)
    ref = _captum_lime(model, images, target, segments, rows, captum_model, distance, width)
    scale = ref.abs().max()
    assert (ref != 0).sum() >= H * W  # several superpixels with a non-zero coefficient
    assert float((ours - ref).abs().max() / scale) < 1e-5


def test_lime_kernel_and_regression_by_hand():
    """A linear score on 4 superpixels: cosine kernel and weighted least squares with an
    intercept, computed from the perturbed pictures themselves with numpy."""
    images = _images(1)
    segments = grid_segments(2, 2, H, W)[None]
    weights = torch.randn(3, H, W, generator=torch.Generator().manual_seed(0))

    class Linear(nn.Module):
        def forward(self, x):
            score = (x * weights).flatten(1).sum(1)
            return torch.stack([score, -score], 1)

    ours = explain_full(Linear(), images, "lime", target=torch.tensor([0]), n_samples=12,
                        segments=segments, regression="linear", seed=3)
    rows = _our_rows(images, segments, 12, [3])[0].numpy()
    x = images[0].double().numpy().ravel()
    z, y, w = [], [], []
    for row in rows:
        keep = row[segments[0].numpy()]  # [H, W]
        perturbed = (images[0].double().numpy() * keep).ravel()  # black elsewhere
        cosine = x @ perturbed / max(np.linalg.norm(x) * np.linalg.norm(perturbed), 1e-8)
        w.append(math.exp(-((1 - cosine) ** 2) / 2))
        y.append(float((torch.from_numpy(perturbed).view(3, H, W) * weights.double()).sum()))
        z.append(row.astype(float))
    design = np.hstack([np.ones((len(z), 1)), np.array(z)]) * np.sqrt(w)[:, None]
    solution = np.linalg.lstsq(design, np.array(y) * np.sqrt(w), rcond=None)[0]
    # a linear score is exactly linear in the superpixels: coef_j = score of superpixel j
    exact = [float((images[0] * weights * (segments[0] == j)).sum()) for j in range(4)]
    np.testing.assert_allclose(solution[1:], exact, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.extras["coef"][0].numpy(), solution[1:], rtol=1e-4,
                               atol=1e-4)
    painted = torch.from_numpy(solution[1:]).float()[segments[0]]
    torch.testing.assert_close(ours.maps[0], painted, rtol=1e-4, atol=1e-4)
    assert len(set(np.round(w, 12))) > 2  # the kernel really weighs rows differently


class Recorder(nn.Module):
    """Keeps every input it is shown (to see which coalitions a method evaluated)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.net(x)


def test_lime_coalitions_are_kernelshaps_and_shared_by_models():
    images, target = _images(2), torch.tensor([1, 0])
    segments = grid_segments(3, 3, H, W).expand(2, H, W).clone()
    seeds = torch.tensor([101, 202])

    def inputs_seen(method, net):
        recorder = Recorder(net)
        explain(recorder, images, method, target=target, n_samples=30, segments=segments,
                image_seeds=seeds, batch_size=7)
        return torch.cat(recorder.seen)

    lime_a = inputs_seen("lime", _tiny_net(0))
    lime_b = inputs_seen("lime", _tiny_net(1, classes=3))
    shap = inputs_seen("kernelshap", _tiny_net(2))
    # 2 images x 30 coalition images (plus explain's own look at the clean images)
    assert len(lime_a) >= 60 and torch.equal(lime_a, lime_b) and torch.equal(lime_a, shap)
    maps_a = explain(_tiny_net(0), images, "lime", target=target, n_samples=30,
                     segments=segments, image_seeds=seeds)
    alone = explain(_tiny_net(0), images[1:], "lime", target=target[1:], n_samples=30,
                    segments=segments[1:], image_seeds=seeds[1:])
    torch.testing.assert_close(maps_a[1:], alone, rtol=1e-5, atol=1e-6)


def test_lime_rejects_bad_parameters():
    images = _images(1)
    segments = grid_segments(2, 2, H, W)[None]
    for bad in ({"regression": "svm"}, {"distance": "manhattan"}, {"kernel_width": 0},
                {"alpha": -1.0}, {"n_samples": 2}):
        with pytest.raises(UserError):
            explain(_tiny_net(), images, "lime", target=torch.tensor([0]), segments=segments,
                    **bad)
    with pytest.raises(UserError, match="too few"):
        explain(_tiny_net(), images, "lime", target=torch.tensor([0]), n_samples=5,
                segments=grid_segments(3, 3, H, W)[None])
