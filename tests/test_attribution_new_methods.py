"""Saliency, Input x Gradient, SmoothGrad, Occlusion and RISE against captum or a direct
implementation, on a small real timm CNN (random weights) in the canonical frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, NoiseTunnel, Occlusion, Saliency
from fakes import noise_images, timm_resnet10t

import xaicompare as xc
from xaicompare.attribution.gradients import smoothgrad_noise
from xaicompare.attribution.perturbation import rise_masks
from xaicompare.errors import UserError


@pytest.fixture(scope="module")
def model():
    return timm_resnet10t(num_classes=5, input_size=32)


@pytest.fixture(scope="module")
def images():
    return noise_images(3, 32, torch.float32)


TARGET = torch.tensor([0, 3, 1])


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal to 1e-5 of the map's largest |value| (the issue's bar)."""
    ours, ref = ours.detach(), ref.detach()
    scale = ref.abs().max().clamp_min(1e-12)
    assert float((ours - ref).abs().max() / scale) < 1e-5


def test_saliency_equals_captum(model, images):
    ref = Saliency(model).attribute(images, target=TARGET, abs=True).amax(1)
    _close(xc.explain(model, images, "saliency", TARGET), ref)
    ref_l2 = Saliency(model).attribute(images, target=TARGET, abs=True).norm(dim=1)
    _close(xc.explain(model, images, "saliency", TARGET, reduction="l2"), ref_l2)


def test_input_x_gradient_equals_captum(model, images):
    ref = InputXGradient(model).attribute(images, target=TARGET).sum(1)
    _close(xc.explain(model, images, "input_x_gradient", TARGET, internal_batch_size=2), ref)


@pytest.mark.parametrize("base,captum_method,reduce", [
    ("saliency", Saliency, lambda a: a.amax(1)),
    ("input_x_gradient", InputXGradient, lambda a: a.sum(1)),
])
def test_smoothgrad_equals_captum_noise_tunnel_with_the_same_noise(model, images, monkeypatch,
                                                                   base, captum_method, reduce):
    seeds = torch.tensor([11, 12, 13])
    ours = xc.explain(model, images, "smoothgrad", TARGET, base=base, n_samples=4,
                      noise_level=0.2, image_seeds=seeds)
    noise = smoothgrad_noise(images, 4, 0.2, seeds.tolist()).reshape(-1, 3, 32, 32)
    monkeypatch.setattr(torch, "normal", lambda mean, std: noise.clone())  # captum's draw
    kwargs = {"abs": True} if base == "saliency" else {}
    ref = NoiseTunnel(captum_method(model)).attribute(
        images, nt_type="smoothgrad", nt_samples=4, stdevs=0.2, target=TARGET, **kwargs)
    _close(ours, reduce(ref))


def test_smoothgrad_noise_is_per_image_not_per_batch(model, images):
    seeds = torch.tensor([5, 6, 7])
    whole = xc.explain(model, images, "smoothgrad", TARGET, n_samples=3, image_seeds=seeds)
    alone = xc.explain(model, images[1:2], "smoothgrad", TARGET[1:2], n_samples=3,
                       image_seeds=seeds[1:2])
    torch.testing.assert_close(whole[1:2], alone, rtol=1e-5, atol=1e-7)
    with pytest.raises(UserError, match="smoothgrad base"):
        xc.explain(model, images, "smoothgrad", TARGET, base="gradcam")


@pytest.mark.parametrize("window,stride", [(8, 4), (5, 3), (32, 1)])
def test_occlusion_equals_captum(model, images, window, stride):
    ours = xc.explain(model, images, "occlusion", TARGET, window=window, stride=stride,
                      internal_batch_size=16)
    ref = Occlusion(model).attribute(images, target=TARGET, baselines=0.0,
                                     sliding_window_shapes=(3, window, window),
                                     strides=(3, stride, stride))
    assert torch.allclose(ref[:, 0], ref[:, 2])  # captum's map is the same in every channel
    _close(ours, ref[:, 0])


def test_rise_equals_direct_sum_over_its_masks(model, images):
    seeds = torch.tensor([21, 22, 23])
    ours = xc.explain(model, images, "rise", TARGET, n_masks=64, grid=4, p=0.5,
                      image_seeds=seeds, internal_batch_size=10)
    for b in range(3):
        masks = rise_masks(int(seeds[b]), 64, 4, 0.5, 32, 32).numpy()
        total = np.zeros((32, 32))
        for mask in masks:  # one masked copy at a time, as the paper writes it
            with torch.no_grad():
                score = model(images[b:b + 1] * torch.from_numpy(mask))[0, TARGET[b]]
            total += float(score) * mask
        np.testing.assert_allclose(ours[b].numpy(), total / (64 * 0.5), rtol=1e-4, atol=1e-6)


def test_rise_masks_are_shifted_upsampled_grids():
    masks = rise_masks(0, 200, 4, 0.3, 32, 32)
    assert masks.shape == (200, 32, 32) and -1e-6 <= float(masks.min()) <= float(masks.max()) <= 1 + 1e-6
    assert abs(float(masks.mean()) - 0.3) < 0.05  # cells kept with probability p
    assert not torch.equal(masks[0], masks[1])
    torch.testing.assert_close(rise_masks(0, 200, 4, 0.3, 32, 32), masks)  # seeded
