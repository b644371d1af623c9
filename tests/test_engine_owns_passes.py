"""The engine owns every forward and backward pass: the trust stage (faithfulness curves,
the randomisation test) and the report (the depth atlas) call no model themselves, only
engine units do; and drawing the report again after deleting it calls no model at all and
adds nothing to the store."""

from __future__ import annotations

import shutil

import pytest
import torch

from xaicompare.engine.scope import inside_unit
from xaicompare.stages import paper_figures
from xaicompare.study import Study


def config(folder):
    return {
        "name": "passes", "output": str(folder), "seed": 0,
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 20, "size": 32},
                    "n_images": 3},
        "models": [{"source": "zoo:shapes-resnet"}, {"source": "zoo:shapes-pvt"}],
        "methods": {"gradcam": {}},
        "compare": {"metrics": ["spearman"]},
        "cluster": {"permutations": 9},
        "diversity": {"corruptions": []},
        "trust": {"n_resamples": 20, "stability_resamples": 10, "n_shuffles": 1,
                  "sample_size_subsets": 2, "faithfulness_images": 2, "faithfulness_steps": 2,
                  "randomization": True, "randomization_images": 2},
        "report": {"atlas_images": 1, "formats": ["png"], "depths": [0.5, 1.0],
                   "depth_images": 2, "disagreement_images": 0},
        "executor": {"threads": 1, "batch_size": 2},
    }


@pytest.fixture
def count_calls(monkeypatch):
    """Counts every nn.Module call, inside engine units and outside them."""
    calls = {"inside": 0, "outside": 0}
    real = torch.nn.Module.__call__

    def counting(self, *args, **kwargs):
        calls["inside" if inside_unit() else "outside"] += 1
        return real(self, *args, **kwargs)

    def start():
        calls.update(inside=0, outside=0)
        monkeypatch.setattr(torch.nn.Module, "__call__", counting)
        return calls

    yield start
    monkeypatch.undo()


def store_files(study) -> set:
    return {p.relative_to(study.store.root) for p in study.store.root.rglob("*") if p.is_file()}


def test_trust_and_report_call_no_model_and_a_redrawn_report_computes_nothing(
        tmp_path, count_calls, monkeypatch):
    study = Study.from_dict(config(tmp_path / "run"), progress=False)
    study.run(("explain", "compare", "cluster", "diversity"))

    calls = count_calls()
    study.models[0](study.dataset.load([0]))  # the counter sees a pass outside a unit
    assert calls["outside"] > 0
    calls = count_calls()
    study.run(("trust", "report"))
    assert calls["outside"] == 0
    assert calls["inside"] > 0  # the curves, randomised maps and depth maps: engine units
    run = study.run_dir
    assert (run / "tables/trust/faithfulness.csv").is_file()
    assert (run / "tables/trust/randomization.csv").is_file()
    assert len(list((run / "figures/atlas").glob("depth_*.png"))) == 2

    before = store_files(study)
    (run / "report.html").unlink()
    shutil.rmtree(run / "figures")
    # the paper figures draw tables only (no model call in the run above): not again here,
    # they are the slowest part of the report
    monkeypatch.setattr(paper_figures, "write_paper_figures", lambda ctx: None)
    again = Study.from_dict(config(tmp_path / "run"), progress=False)
    assert again.models  # loading probes each model's layers on a blank input: not a stage's pass
    calls = count_calls()
    again.run(("trust", "report"))
    assert calls == {"inside": 0, "outside": 0}
    assert (run / "report.html").is_file()
    assert len(list((run / "figures/atlas").glob("depth_*.png"))) == 2
    assert store_files(again) == before
