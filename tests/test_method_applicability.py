"""A method that applies to some architectures only (attention rollout) is computed for the
models it applies to and marked "not applicable" for the others: a mixed CNN + ViT study
includes it, and its pairs with the CNN are NaN with no images, never a number."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from xaicompare.attribution import applies_to
from xaicompare.compare import CompareOptions, similarity_matrices
from xaicompare.errors import UserError
from xaicompare.study import Study

VIT = {"source": "vit_tiny_patch16_224", "pretrained": False, "num_classes": 10,
       "kwargs": {"img_size": 32, "patch_size": 8}}
CNN = {"source": "resnet10t", "pretrained": False, "num_classes": 10, "name": "cnn",
       "layer": "layer3"}


def config(tmp_path, models, methods=None):
    return {"name": "mixed", "output": str(tmp_path / "run"), "seed": 0,
            "dataset": {"name": "shapes", "options": {"split": "test", "n": 6, "size": 32}},
            "models": models, "methods": methods or {"gradcam": {}, "rollout": {}},
            "compare": {"metrics": ["cosine"]}, "trust": {"enabled": False},
            "report": {"enabled": False}}


def test_mixed_cnn_and_vit_study_computes_rollout_for_the_vits_only(tmp_path):
    models = [CNN, {**VIT, "name": "vit-a"},
              {**VIT, "name": "vit-b", "kwargs": {**VIT["kwargs"], "depth": 3}}]
    study = Study.from_dict(config(tmp_path, models), progress=False)
    study.run(("explain", "compare", "cluster"))
    assert [applies_to("rollout", m) for m in study.models] == [False, True, True]
    assert study.not_applicable("rollout") == ["cnn"] and study.not_applicable("gradcam") == []
    stored = {p.name.split("__")[0] for p in (study.run_dir / "store/maps").iterdir()
              if "__rollout" in p.name}
    assert stored == {"vit-a", "vit-b"}
    maps = study.read_maps("rollout")
    assert np.isnan(maps[0]).all() and np.isfinite(maps[1:]).all()
    folder = study.run_dir / "tables/similarity/rollout"
    mean = pd.read_csv(folder / "cosine_mean.csv", comment="#", index_col=0)
    n = pd.read_csv(folder / "cosine_n.csv", comment="#", index_col=0)
    reference = similarity_matrices(maps[1:], ["cosine"], CompareOptions(normalization="minmax"),
                                    names=["vit-a", "vit-b"])["cosine"]
    assert mean.loc["vit-a", "vit-b"] == pytest.approx(reference.mean.loc["vit-a", "vit-b"])
    assert n.loc["vit-a", "vit-b"] == 6 and n.loc["cnn", "vit-a"] == 0
    assert np.isnan(mean.loc["cnn", "vit-a"])
    gradcam = pd.read_csv(study.run_dir / "tables/similarity/gradcam/cosine_n.csv", comment="#",
                          index_col=0)
    assert gradcam.loc["cnn", "vit-a"] == 6  # the other method covers every model
    meta = json.loads((study.run_dir / "run.json").read_text())
    assert meta["not_applicable"] == {"rollout": ["cnn"]}


def test_a_method_that_applies_to_no_model_stops_before_explaining(tmp_path):
    with pytest.raises(UserError, match="methods.rollout: applies to none of the"):
        # refused when the study file is read (config_checks), before any model runs
        Study.from_dict(config(tmp_path, [CNN], {"rollout": {}}), progress=False).run(
            ("explain",))
    assert not (tmp_path / "run" / "store" / "maps").exists()
