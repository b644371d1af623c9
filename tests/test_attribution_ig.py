"""Integrated Gradients against captum's IntegratedGradients (same baseline, steps, rule).

Tolerances on float64 are ~1e-6 relative, not 1e-12: captum builds its Riemann alphas with a
float32 `torch.linspace`, so its path points carry float32 rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

from xaicompare.attribution import explain, explain_full
from xaicompare.attribution.baselines import make_baseline
from xaicompare.attribution.integrated_gradients import quadrature_rule
from xaicompare.errors import UserError
from xaicompare.models.base import LoadedModel

N_STEPS = 8


def tiny_cnn(dtype=torch.float64) -> LoadedModel:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Tanh(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 1.5)
    # input_size differs from the image size: the resize inside the model is on the path
    return LoadedModel(net.to(dtype), name="tiny", family="cnn", input_size=(12, 12)).to(dtype)


def images(batch=3, size=16, dtype=torch.float64):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(dtype)


TARGET = torch.tensor([0, 2, 3])


def captum_ig(model, x, baseline, quadrature, n_steps=N_STEPS):
    attr, delta = IntegratedGradients(model).attribute(
        x, baselines=baseline, target=TARGET, n_steps=n_steps, method=quadrature,
        return_convergence_delta=True,
    )
    return attr, delta


@pytest.mark.parametrize("quadrature", ["riemann_middle", "riemann_left", "riemann_right",
                                        "gausslegendre"])
def test_matches_captum_float64(quadrature):
    model, x = tiny_cnn(), images()
    ours = explain_full(model, x, "integrated_gradients", target=TARGET, n_steps=N_STEPS,
                        quadrature=quadrature, internal_batch_size=5)
    attr, delta = captum_ig(model, x, torch.zeros_like(x), quadrature)
    torch.testing.assert_close(ours.maps, attr.sum(dim=1), rtol=1e-6, atol=1e-9)
    # delta is a difference of O(1) numbers: compare it on that scale
    torch.testing.assert_close(ours.extras["delta"], delta, rtol=0, atol=1e-7)
    torch.testing.assert_close(ours.extras["completeness_gap"], delta.abs(), rtol=0, atol=1e-7)
    assert ours.maps.abs().max() > 1e-4


def test_trapezoid_is_captum_rescaled_to_unit_weights():
    """captum's trapezoid weights sum to (n-1)/n; ours are the true rule (sum 1)."""
    model, x = tiny_cnn(), images()
    ours = explain(model, x, "integrated_gradients", target=TARGET, n_steps=N_STEPS,
                   quadrature="riemann_trapezoid")
    attr, _ = captum_ig(model, x, torch.zeros_like(x), "riemann_trapezoid")
    torch.testing.assert_close(ours, attr.sum(dim=1) * N_STEPS / (N_STEPS - 1),
                               rtol=1e-6, atol=1e-9)


def test_quadrature_nodes_match_captum():
    for name in ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
                 "gausslegendre"):
        step_sizes, alphas = approximation_parameters(name)
        ours_alphas, ours_weights = quadrature_rule(name, 7)
        torch.testing.assert_close(ours_alphas, torch.tensor(alphas(7), dtype=torch.float64),
                                   rtol=1e-6, atol=1e-7)
        assert ours_weights.sum().item() == pytest.approx(1.0, abs=1e-12)
        if name != "riemann_trapezoid":
            torch.testing.assert_close(ours_weights,
                                       torch.tensor(step_sizes(7), dtype=torch.float64))


@pytest.mark.parametrize("baseline", ["blur", "noise", "mean", "white", 0.5])
def test_baselines_match_captum_given_the_same_baseline(baseline):
    model, x = tiny_cnn(), images()
    ours = explain(model, x, "integrated_gradients", target=TARGET, n_steps=N_STEPS,
                   baseline=baseline, quadrature="gausslegendre", seed=3)
    attr, _ = captum_ig(model, x, make_baseline(x, baseline, seed=3), "gausslegendre")
    torch.testing.assert_close(ours, attr.sum(dim=1), rtol=1e-6, atol=1e-9)


def test_reductions_and_float32():
    model, x = tiny_cnn(torch.float32), images(dtype=torch.float32)
    attr, _ = captum_ig(model, x, torch.zeros_like(x), "riemann_middle")
    for reduction, expected in [("sum", attr.sum(1)), ("abs", attr.abs().sum(1)),
                                ("l2", attr.pow(2).sum(1).sqrt())]:
        ours = explain(model, x, "integrated_gradients", target=TARGET, n_steps=N_STEPS,
                       quadrature="riemann_middle", reduction=reduction)
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)


def test_chunking_and_batch_independence():
    model, x = tiny_cnn(), images()
    runs = [explain(model, x, "integrated_gradients", target=TARGET, n_steps=N_STEPS,
                    internal_batch_size=size) for size in (1, 7, None, 100)]
    for run in runs[1:]:
        torch.testing.assert_close(run, runs[0], rtol=1e-10, atol=1e-12)
    for i in range(3):
        alone = explain(model, x[i : i + 1], "integrated_gradients", target=TARGET[i : i + 1],
                        n_steps=N_STEPS)
        torch.testing.assert_close(alone[0], runs[0][i], rtol=1e-10, atol=1e-12)


def test_completeness_gap_is_measured_against_the_model():
    model, x = tiny_cnn(), images()
    result = explain_full(model, x, "integrated_gradients", target=TARGET, n_steps=64,
                          quadrature="gausslegendre", baseline="blur", reduction="sum")
    base = make_baseline(x, "blur")
    with torch.no_grad():
        rows = torch.arange(3)
        f_diff = model(x)[rows, TARGET] - model(base)[rows, TARGET]
    expected_gap = (result.maps.flatten(1).sum(1) - f_diff).abs()
    torch.testing.assert_close(result.extras["completeness_gap"], expected_gap)
    # with 64 Gauss-Legendre nodes the integral is nearly exact on this smooth-ish net
    assert (expected_gap < 0.05 * f_diff.abs().clamp_min(1e-3)).all()


def test_no_parameter_gradients():
    model, x = tiny_cnn(), images()
    explain(model, x, "integrated_gradients", target=TARGET, n_steps=4)
    assert all(p.grad is None for p in model.parameters())


def test_bad_parameters_are_user_errors():
    model, x = tiny_cnn(), images()
    with pytest.raises(UserError, match="gausslegendre"):
        explain(model, x, "integrated_gradients", quadrature="gauss")
    with pytest.raises(UserError, match="reduction"):
        explain(model, x, "integrated_gradients", reduction="max")
    with pytest.raises(UserError, match="n_steps"):
        explain(model, x, "integrated_gradients", n_steps=0)
    with pytest.raises(UserError, match="baseline"):
        explain(model, x, "integrated_gradients", baseline="grey")


SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


def photo(size: int) -> torch.Tensor:
    """One real ImageNet photo from ../shared (seeded noise where the checkout has none)."""
    paths = sorted(SAMPLES.glob("*.JPEG"))[:1] if SAMPLES.is_dir() else []
    if not paths:
        return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    from PIL import Image

    picture = Image.open(paths[0]).convert("RGB").resize((size, size))
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)[None].float() / 255


def test_gausslegendre_completeness_on_resnet18_and_equality_with_captum():
    import timm

    torch.manual_seed(0)
    net = timm.create_model("resnet18", pretrained=False, num_classes=10, zero_init_last=False)
    model = LoadedModel(net, name="resnet18", family="cnn", input_size=(64, 64))
    x = photo(64)
    target = model(x).argmax(dim=1)
    with torch.no_grad():
        f_diff = (model(x) - model(torch.zeros_like(x)))[0, target]
    ours = explain_full(model, x, "integrated_gradients", target=target, n_steps=128,
                        quadrature="gausslegendre", baseline="black")
    # ReLU networks are only piecewise smooth along the path: 128 nodes for 1e-2 (32 give 4e-2)
    assert (ours.extras["completeness_gap"] / f_diff.abs()).item() < 1e-2
    attr, delta = IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=128, method="gausslegendre",
        internal_batch_size=32, return_convergence_delta=True)
    torch.testing.assert_close(ours.maps, attr.sum(dim=1), rtol=1e-4, atol=1e-4 * attr.abs().max())
    torch.testing.assert_close(ours.extras["delta"], delta, rtol=0, atol=1e-4 * f_diff.abs().item())


def test_default_rule_never_evaluates_mobilevits_exploding_baseline_gradient():
    """Fast subset of benchmarks/ig_quadrature.py: MobileViT normalises with mean 0 / std 1,
    so the black baseline is an all-zero input, where its gradient explodes; a rule that
    evaluates the path's ends (trapezoid) is off by orders of magnitude, the default is not."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("mobilevit_xxs", pretrained=False, num_classes=10)
    model = LoadedModel(net, name="mobilevit_xxs", family="hybrid", mean=(0, 0, 0),
                        std=(1, 1, 1), input_size=(64, 64))
    x = photo(64)
    target = model(x).argmax(dim=1)
    with torch.no_grad():
        f_diff = (model(x) - model(torch.zeros_like(x)))[0, target].abs()
    errors = {rule: (explain_full(model, x, "integrated_gradients", target=target, n_steps=16,
                                  **({} if rule == "default" else {"quadrature": rule}))
                     .extras["completeness_gap"] / f_diff).item()
              for rule in ("default", "riemann_trapezoid")}
    alphas, _ = quadrature_rule("gausslegendre", 16)
    assert 0 < alphas.min() and alphas.max() < 1
    assert errors["riemann_trapezoid"] > 1e4 and errors["default"] < 10, errors
