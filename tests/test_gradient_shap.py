"""GradientSHAP against captum's GradientShap on a small timm CNN (random weights).

captum draws its random numbers inside `attribute`: the baseline of each sample with
np.random.choice, the noise with torch.normal (NoiseTunnel) and alpha with np.random.uniform
(InputBaselineXGradient). The test monkeypatches exactly those three calls to return our
draws (`gradient_shap_draws`, from the image's seed), calls captum once per image with that
image's baseline distribution (ours are per image: a blurred baseline is the image's own),
and compares the maps to 1e-5 of the largest |value|.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GradientShap
from fakes import noise_images, timm_resnet10t

import xaicompare as xc
from xaicompare.attribution.gradient_shap import baseline_distribution, gradient_shap_draws
from xaicompare.errors import UserError

TARGET = torch.tensor([0, 3, 1])


@pytest.fixture(scope="module")
def model():
    return timm_resnet10t(num_classes=5, input_size=32)


@pytest.fixture(scope="module")
def images():
    return noise_images(3, 32, torch.float32)


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    scale = ref.abs().max().clamp_min(1e-12)
    assert float((ours - ref).abs().max() / scale) < 1e-5


def captum_with_our_draws(model, images, monkeypatch, n, stdevs, baselines, seeds):
    bases = baseline_distribution(images, baselines, seed=0)
    index, alpha, noise = gradient_shap_draws(n, bases.shape[1], stdevs, (3, 32, 32),
                                              seeds.tolist())
    maps = []
    for i in range(len(images)):
        draws_noise = torch.zeros(n, 3, 32, 32) if noise is None else noise[i]
        monkeypatch.setattr(np.random, "choice", lambda k, size, i=i: index[i].numpy())
        monkeypatch.setattr(np.random, "uniform", lambda lo, hi, size, i=i: alpha[i].numpy())
        monkeypatch.setattr(torch, "normal", lambda mean, std, d=draws_noise: d.clone())
        attr = GradientShap(model).attribute(images[i:i + 1], baselines=bases[i], n_samples=n,
                                             stdevs=float(stdevs), target=int(TARGET[i]))
        maps.append(attr.sum(1))
    monkeypatch.undo()
    return torch.cat(maps), (index, alpha, noise)


@pytest.mark.parametrize("stdevs,baselines", [(0.0, ["black", "blur"]),
                                              (0.1, ["black", "noise", "noise", 0.5])])
def test_gradient_shap_equals_captum_with_the_same_draws(model, images, monkeypatch,
                                                         stdevs, baselines):
    seeds = torch.tensor([21, 22, 23])
    ours = xc.explain(model, images, "gradient_shap", TARGET, n_samples=6, stdevs=stdevs,
                      baselines=baselines, image_seeds=seeds, internal_batch_size=4)
    ref, (index, alpha, _) = captum_with_our_draws(model, images, monkeypatch, 6, stdevs,
                                                   baselines, seeds)
    _close(ours, ref)
    assert ref.abs().max() > 0
    # the draws really vary: more than one baseline and distinct alphas were used
    assert len(set(index.flatten().tolist())) > 1 and len(set(alpha.flatten().tolist())) == 18


def test_gradient_shap_draws_are_per_image_and_shared_by_models(model, images):
    seeds = torch.tensor([5, 6, 7])
    whole = xc.explain(model, images, "gradient_shap", TARGET, n_samples=4, stdevs=0.05,
                       image_seeds=seeds)
    alone = xc.explain(model, images[1:2], "gradient_shap", TARGET[1:2], n_samples=4,
                       stdevs=0.05, image_seeds=seeds[1:2])
    torch.testing.assert_close(whole[1:2], alone, rtol=1e-5, atol=1e-6)
    other = xc.explain(model, images, "gradient_shap", TARGET, n_samples=4, stdevs=0.05,
                       image_seeds=torch.tensor([5, 6, 8]))
    assert torch.equal(other[:2], whole[:2]) and not torch.allclose(other[2], whole[2])


def test_gradient_shap_single_black_baseline_no_noise_is_expected_gradients(model, images):
    """One black baseline, no noise: mean over alpha of x * grad(alpha x), by hand."""
    seeds = torch.tensor([3, 4, 5])
    ours = xc.explain(model, images, "gradient_shap", TARGET, n_samples=3, baselines="black",
                      image_seeds=seeds)
    _, alpha, _ = gradient_shap_draws(3, 1, 0.0, (3, 32, 32), seeds.tolist())
    expected = torch.zeros(3, 3, 32, 32)
    for k in range(3):
        x = (alpha[:, k].view(-1, 1, 1, 1) * images).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, TARGET[:, None]).sum(), x)
        expected += images * grad / 3
    _close(ours, expected.sum(1))


def test_gradient_shap_rejects_bad_parameters(model, images):
    for bad in ({"n_samples": 0}, {"stdevs": -1.0}, {"baselines": []},
                {"baselines": ["black", "purple"]}, {"reduction": "mean"}):
        with pytest.raises(UserError):
            xc.explain(model, images, "gradient_shap", TARGET, **bad)
