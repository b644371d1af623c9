"""Method groups in a study file, and `xaicompare methods`, read from the registrations."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from xaicompare.attribution import METHODS
from xaicompare.attribution.catalog import methods_in_group
from xaicompare.errors import UserError
from xaicompare.study_config import parse_config


def _config(tmp_path, methods, models=("zoo:shapes-resnet", "zoo:shapes-pvt")):
    return {"name": "g", "output": str(tmp_path / "run"), "models": [{"source": m}
                                                                     for m in models],
            "methods": methods}


def test_a_group_expands_to_its_family_and_named_methods_keep_their_parameters(tmp_path):
    config = parse_config(_config(tmp_path, {"group": "gradient",
                                             "smoothgrad": {"n_samples": 5}}))
    assert set(config.methods) == {"saliency", "input_x_gradient", "integrated_gradients",
                                   "smoothgrad", "gradient_shap"}
    assert config.methods["smoothgrad"] == {"n_samples": 5}
    config = parse_config(_config(tmp_path, {"group": ["cam", "perturbation"]}))
    assert set(config.methods) == {*methods_in_group("cam"), *methods_in_group("perturbation")}
    assert {"gradcam", "scorecam", "eigencam", "kernelshap", "rise"} <= set(config.methods)


def test_group_all_leaves_out_attention_methods_no_model_supports(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="xaicompare"):
        config = parse_config(_config(tmp_path, {"group": "all"}))
    assert set(config.methods) == set(METHODS.names()) - {"rollout", "gradient_rollout"}
    assert any("rollout" in r.getMessage() and "left out" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(UserError, match="rollout: applies to none"):  # named: still an error
        parse_config(_config(tmp_path, {"rollout": {}}))
    with pytest.raises(UserError, match="method group"):
        parse_config(_config(tmp_path, {"group": "gradients"}))
    assert methods_in_group("attention") == ["gradient_rollout", "rollout"]


def test_cli_lists_every_method_with_family_and_parameters():
    out = subprocess.run([sys.executable, "-m", "xaicompare.cli", "methods"],
                         capture_output=True, text=True, check=True).stdout
    for name in METHODS.names():
        assert name in out
    assert "window=None" in out and "unsigned" in out and "multi-head self-attention" in out


def test_a_group_with_no_method_for_the_models_is_an_error(tmp_path):
    with pytest.raises(UserError, match="group 'attention' has no method that applies"):
        parse_config(_config(tmp_path, {"group": "attention"}))
