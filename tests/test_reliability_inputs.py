"""Bad inputs: each one a clear message (exit code 2 and one line from the CLI, or a
UserError from Python) and nothing lost."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from xaicompare.attribution import explain
from xaicompare.cli import main
from xaicompare.engine.runner import run_explanations
from xaicompare.errors import UserError
from xaicompare.models import load_model
from xaicompare.models.base import LoadedModel
from xaicompare.store import Store
from xaicompare.store.keys import maps_entry
from xaicompare.study import Study

MODEL = {"source": "test_resnet", "pretrained": False, "num_classes": 10,
         "class_indices": None}


def cli_error(tmp_path, capsys, command="validate", **overrides) -> str:
    """Run `xaicompare COMMAND study.yaml`; assert exit code 2 and one line; return it."""
    data = {"name": "bad", "output": str(tmp_path / "run"), "models": [MODEL],
            "dataset": {"name": "shapes", "options": {"split": "test", "n": 4, "size": 32}},
            "methods": {"gradcam": {}}}
    data.update(overrides)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(data))
    assert main([command, str(study), "--quiet"] if command != "validate"
                else [command, str(study)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_unknown_model_name_suggests_the_close_one(tmp_path, capsys):
    err = cli_error(tmp_path, capsys, models=[{**MODEL, "source": "test_resnit"}])
    assert "models[0].source" in err and "did you mean 'test_resnet'" in err


def test_unknown_method_name_suggests_the_close_one(tmp_path, capsys):
    err = cli_error(tmp_path, capsys, methods={"gradcan": {}})
    assert "methods.gradcan" in err and "did you mean 'gradcam'" in err


def test_unknown_method_parameter_suggests_the_close_one(tmp_path, capsys):
    err = cli_error(tmp_path, capsys, methods={"integrated_gradients": {"n_step": 4}})
    assert "did you mean 'n_steps'" in err


@pytest.mark.parametrize("method,params,message", [
    ("kernelshap", {"n_samples": 0}, "n_samples"),
    ("kernelshap", {"n_segments": 1}, "n_segments"),
    ("integrated_gradients", {"n_steps": 0}, "n_steps"),
])
def test_impossible_parameters_are_user_errors_in_python(method, params, message):
    model = load_model("test_vit", pretrained=False, num_classes=10, class_indices=None,
                       img_size=32, patch_size=8)
    with pytest.raises(UserError, match=message):
        explain(model, torch.rand(1, 3, 32, 32), method=method, **params)


def test_impossible_parameters_are_caught_by_validate(tmp_path, capsys):
    err = cli_error(tmp_path, capsys, methods={"integrated_gradients": {"n_steps": 0}})
    assert "methods.integrated_gradients.n_steps" in err


def test_canonical_size_smaller_than_patch_is_a_user_error():
    with pytest.raises(UserError, match="patch"):
        load_model("test_vit", pretrained=False, num_classes=10, class_indices=None,
                   img_size=4, patch_size=8)


def test_target_outside_class_space_is_a_user_error():
    model = load_model("test_vit", pretrained=False, num_classes=10, class_indices=None,
                       img_size=32, patch_size=8)
    with pytest.raises(UserError, match="12"):
        explain(model, torch.rand(1, 3, 32, 32), method="gradcam", target=12)


def test_missing_dataset_root_is_one_line(tmp_path, capsys):
    err = cli_error(tmp_path, capsys, command="explain",
                    dataset={"name": "folder", "options": {"root": str(tmp_path / "nope")}})
    assert "does not exist" in err and str(tmp_path / "nope") in err


def test_dataset_without_images_is_one_line(tmp_path, capsys):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "notes.txt").write_text("not an image")
    err = cli_error(tmp_path, capsys, command="explain",
                    dataset={"name": "folder", "options": {"root": str(tmp_path / "empty")}})
    assert "no readable images" in err and "notes.txt" in err


class Labelled:
    ids = ["a", "b", "c", "d"]
    labels = np.array([0, 1, 2, 5])
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return 4

    def load(self, rows):
        return self.images[list(rows)]


def test_labels_outside_the_class_space_are_named(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    model = LoadedModel(net, name="three", family="cnn", cam_layer=net[1])
    with pytest.raises(UserError, match=r"model 'three'.*3 outputs.*d \(label 5\)"):
        run_explanations([model], Labelled(), {"gradcam": {}}, Store(tmp_path),
                         dataset_identity={"name": "x"}, target="label", progress=False)


def test_checkpoint_with_wrong_shapes_is_named(tmp_path):
    net = load_model("test_resnet", pretrained=False, num_classes=5, class_indices=None).net
    path = tmp_path / "five.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    with pytest.raises(UserError, match=r"shape mismatch.*checkpoint \(5, \d+\)"):
        load_model("test_resnet", pretrained=False, checkpoint=path, num_classes=10,
                   class_indices=None)


def test_corrupt_store_chunk_is_detected_and_recomputed(tmp_path):
    config = {"name": "corrupt", "output": str(tmp_path / "run"),
              "dataset": {"name": "shapes", "options": {"split": "test", "n": 4, "size": 32}},
              "models": [{**MODEL, "kwargs": {"pretrained_cfg_overlay":
                                              {"input_size": [3, 64, 64]}}}],
              "methods": {"gradcam": {}}, "executor": {"batch_size": 2}}
    study = Study.from_dict(config, progress=False)
    study.run(("explain",))
    before = study.read_maps("gradcam")
    entry = maps_entry(study.store, study.models[0], "gradcam", {}, study.dataset_identity,
                       "predicted")
    first = sorted((entry.directory / "chunks").glob("*.npz"))[0]
    first.write_bytes(first.read_bytes()[:100])  # truncated, as by a failing disk
    again = Study.from_dict(config, progress=False)
    summary = again.explain()
    assert summary.computed[f"{again.model_names[0]}/gradcam"] == 2  # just that chunk
    assert first.with_suffix(".corrupt").exists() and first.exists()
    np.testing.assert_array_equal(again.read_maps("gradcam"), before)
