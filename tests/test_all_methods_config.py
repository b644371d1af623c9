"""configs/all-methods.yaml: every registered method (through `methods: {group: all}`) runs
through explain and compare on the offline zoo, shrunk here to a few images and models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from xaicompare.attribution import METHODS
from xaicompare.attribution.catalog import method_info
from xaicompare.study import Study

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "all-methods.yaml"
MODELS = ("shapes-resnet", "shapes-pvt", "shapes-mixer")


def test_all_methods_config_runs_every_method_through_explain_and_compare(tmp_path):
    data = yaml.safe_load(CONFIG.read_text())
    assert data["methods"]["group"] == "all" and data["models"] == [{"source": "zoo:all"}]
    data.update(output=str(tmp_path / "run"),
                models=[{"source": f"zoo:{m}"} for m in MODELS])
    data["dataset"].update(n_images=2, options={**data["dataset"]["options"], "n": 20,
                                                "size": 32})
    study = Study.from_dict(data, progress=False)
    methods = set(study.config.methods)
    # every method but those no model of the study supports (rollout: ViT-style only)
    applicable = {m for m in METHODS.names()
                  if any(method_info(m).applies(model) for model in study.models)}
    assert methods == applicable and {"gradient_shap", "lime", "saliency"} <= methods
    study.run(stages=("explain", "compare"))
    for method in methods:
        skip = set(study.not_applicable(method))
        maps = study.read_maps(method)
        assert maps.shape[1:] == (2, 32, 32) and len(maps) == len(MODELS) - len(skip)
        assert np.isfinite(maps).all(), method
        table = study.run_dir / f"tables/similarity/{method}/cosine_mean.csv"
        assert table.is_file() or len(maps) < 2, method
