"""What the rest of the toolkit asks about a method comes from its registration (MethodInfo):
budget and minimums (config checks, trust's convergence curve), the per-image inputs it
shares, randomisation support; methods are found by importing every module of the package."""

from __future__ import annotations

import pkgutil
import sys

import pytest
import torch

import xaicompare.attribution as attribution
from xaicompare.attribution import METHODS, Explanation, register_method
from xaicompare.attribution.registry import method_info
from xaicompare.errors import UserError
from xaicompare.study_config import parse_config
from xaicompare.trust.convergence import convergence_curve


def study(methods):
    return {"name": "spec", "models": [{"source": "resnet10t", "pretrained": False}],
            "methods": methods}


def test_every_module_of_the_package_is_imported_so_its_methods_register():
    modules = {f"attribution.{m.name}" for m in pkgutil.iter_modules(attribution.__path__)}
    assert {f"attribution.{n.split('.')[-1]}" for n in sys.modules
            if n.startswith("xaicompare.attribution.")} >= modules
    assert {"gradcam", "integrated_gradients", "kernelshap", "saliency"} <= set(METHODS)


def test_minimums_are_each_methods_own():
    with pytest.raises(UserError, match=r"methods\.kernelshap\.n_samples: got 2; accepted: "
                                        r"an integer >= 3"):
        parse_config(study({"kernelshap": {"n_samples": 2}}))
    # the same parameter name in another method is that method's business: SmoothGrad
    # averages any number of samples (a table keyed by parameter name refused 1 and 2)
    config = parse_config(study({"smoothgrad": {"n_samples": 1}}))
    assert config.methods["smoothgrad"] == {"n_samples": 1}


def test_budget_and_shared_inputs_come_from_the_spec():
    assert method_info("kernelshap").budget == "n_samples"
    assert method_info("integrated_gradients").budget == "n_steps"
    assert method_info("kernelshap").shared_inputs == ("segments", "image_seeds")
    assert method_info("smoothgrad").shared_inputs == ("image_seeds",)
    assert method_info("gradcam").shared_inputs == ()
    assert not method_info("kernelshap").randomization and method_info("gradcam").randomization
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(UserError, match="accepted: .*integrated_gradients, kernelshap, lime, rise, smoothgrad"):
        convergence_curve(model, torch.rand(1, 3, 8, 8), method="saliency")


def test_a_registration_outside_the_package_declares_or_infers_its_spec():
    try:
        @register_method("spec_probe", budget="n_draws", minimums={"n_draws": 2})
        def probe(model, images, target, *, n_draws: int = 4, image_seeds=None):
            return Explanation(images.mean(1))

        info = probe.info
        assert (info.budget, dict(info.minimums), info.shared_inputs, info.version) == (
            "n_draws", {"n_draws": 2}, ("image_seeds",), 1)
        with pytest.raises(UserError, match=r"methods\.spec_probe\.n_draws: got 1"):
            parse_config(study({"spec_probe": {"n_draws": 1}}))
    finally:
        METHODS.unregister("spec_probe")
    assert "spec_probe" not in METHODS
