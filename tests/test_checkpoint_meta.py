"""A checkpoint's metadata block is checked by a schema before it is used: known keys, types,
ranges, a known architecture, and no timm argument that loads files (one-line UserErrors)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from xaicompare.errors import UserError
from xaicompare.models import load_model, save_model
from xaicompare.models.checkpoints import METADATA_KEY

TINY = {"layers": [1, 1, 1, 1], "channels": [8, 8, 8, 8], "stem_width": 8, "output_stride": 8}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid toolkit checkpoint: its tensors and metadata."""
    path = tmp_path_factory.mktemp("ckpt") / "good.safetensors"
    model = load_model("resnet18", pretrained=False, num_classes=3, class_indices=None,
                       input_size=32, probe=False, **TINY)
    save_model(model, path, class_names=["a", "b", "c"])
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()[METADATA_KEY])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    return path, tensors, meta


def write(tmp_path, tensors, meta) -> str:
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return str(path)


def test_a_saved_checkpoint_passes_its_own_schema(good):
    path, _, meta = good
    model = load_model(str(path))
    assert model.class_names == ("a", "b", "c") and meta["arch"] == "resnet18"


@pytest.mark.parametrize(("change", "message"), [
    ({"mean": "abc"}, "metadata.mean: Input should be a valid list"),
    ({"mean": [0.5, 0.5]}, "metadata.mean: got [0.5, 0.5]; accepted: 3 finite numbers"),
    ({"mean": [1e9, 0, 0]}, "metadata.mean: got [1000000000.0, 0.0, 0.0]; accepted: 3 numbers "
                            "in [-10, 10]"),
    ({"std": [0.2, 0.0, 0.2]}, "metadata.std: got [0.2, 0.0, 0.2]; accepted: 3 numbers > 0"),
    ({"std": None, "mean": [float("nan")] * 3}, "metadata.mean: got [nan, nan, nan]"),
    ({"arch": "resnet_nonexistent"}, "metadata.arch: unknown timm architecture "
                                     "'resnet_nonexistent'"),
    ({"arch": ["resnet18"]}, "metadata.arch: Input should be a valid string"),
    ({"family": "rnn"}, "metadata.family: Input should be 'cnn', 'transformer'"),
    ({"input_size": [32, 0]}, "metadata.input_size: got [32, 0]; accepted: [height, width]"),
    ({"input_size": [10 ** 9, 10 ** 9]}, "metadata.input_size: got"),
    ({"num_classes": -1}, "metadata.num_classes: Input should be greater than or equal to 1"),
    ({"num_classes": "3"}, "metadata.num_classes: Input should be a valid integer"),
    ({"class_names": ["a"]}, "metadata.class_names: 1 names for num_classes 3"),
    ({"unexpected": 1}, "metadata.unexpected: unknown key; accepted: arch, model_kwargs"),
    ({"model_kwargs": {"checkpoint_path": "/etc/passwd"}},
     "metadata.model_kwargs.checkpoint_path: not accepted: it makes timm torch.load a file"),
    ({"model_kwargs": {"pretrained_cfg_overlay": {"file": "/tmp/evil.pth"}}},
     "metadata.model_kwargs.pretrained_cfg_overlay.file: not accepted: it says where weights"),
    ({"model_kwargs": {"pretrained_cfg": {"url": "http://x/evil.pth"}}},
     "metadata.model_kwargs.pretrained_cfg.url: not accepted"),
    ({"model_kwargs": {"pretrained_cfg": "a1_in1k"}},
     "metadata.model_kwargs.pretrained_cfg: got 'a1_in1k'; accepted: a mapping"),
    ({"model_kwargs": {"pretrained": True}}, "metadata.model_kwargs.pretrained: not accepted"),
    ({"model_kwargs": {"cache_dir": "/tmp"}}, "metadata.model_kwargs.cache_dir: not accepted"),
    ({"model_kwargs": "layers=1"}, "metadata.model_kwargs: Input should be a valid dictionary"),
])
def test_bad_metadata_is_one_line_naming_the_key(tmp_path, good, monkeypatch, change, message):
    _, tensors, meta = good

    def never(*args, **kwargs):
        raise AssertionError("a file was loaded by torch.load")

    monkeypatch.setattr(torch, "load", never)  # nothing reaches timm's file loading
    path = write(tmp_path, tensors, {**meta, **change})
    with pytest.raises(UserError) as info:
        load_model(path)
    text = str(info.value)
    assert message in text and "\n" not in text and path in text, text


def test_metadata_that_is_not_a_mapping(tmp_path, good):
    _, tensors, _ = good
    with pytest.raises(UserError, match="metadata is a list, not a mapping"):
        load_model(write(tmp_path, tensors, [1, 2]))


def test_timm_loading_kwargs_are_refused_from_the_python_api_and_the_study_file(tmp_path):
    with pytest.raises(UserError, match=r"model kwargs.checkpoint_path: not accepted"):
        load_model("resnet18", pretrained=False, checkpoint_path=str(tmp_path / "x.pth"))
    from xaicompare.study_config import parse_config

    data = {"name": "k", "output": str(tmp_path / "run"), "methods": {"gradcam": {}},
            "models": [{"source": "resnet18", "pretrained": False,
                        "kwargs": {"pretrained_cfg_overlay": {"file": "x.pth"}}}]}
    with pytest.raises(UserError, match=r"models\[0\].kwargs.pretrained_cfg_overlay.file: not "):
        parse_config(data)


def test_save_model_refuses_metadata_that_would_not_load(tmp_path, good):
    model = load_model(str(good[0]))
    with pytest.raises(UserError, match="metadata.note: unknown key"):
        save_model(model, tmp_path / "x.safetensors", note="free text")
    assert not (tmp_path / "x.safetensors").exists()
