"""The CAM variants (Grad-CAM++, HiResCAM, XGradCAM, LayerCAM, EigenCAM, Score-CAM)
against pytorch-grad-cam on the same model and layer: a tiny CNN (float64, with dead
channels), a timm ResNet on the forward_intermediates route and a ViT whose token layer
pytorch-grad-cam reads through a reshape_transform.

Comparison point: the native map on the layer grid, i.e. pytorch-grad-cam's
`get_cam_image(...)` clamped at 0 (the step before its min-max `scale_cam_image`), to
1e-5 of the map's largest |value|; for the CNN also its final min-max + resize output.
EigenCAM: pytorch-grad-cam keeps the SVD's arbitrary sign; ours is oriented so the
largest |value| is positive, so the reference is its projection with that orientation
(its own `get_2d_projection_with_sign_correction`).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import timm
import torch
from fakes import cam_cnn
from fakes import noise_images as images  # [batch, 3, size, size] noise, float64
from pytorch_grad_cam import (
    EigenCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction
from torch import nn

from xaicompare.attribution import METHODS, explain, explain_full
from xaicompare.attribution.cam_variants import eigencam_combine
from xaicompare.attribution.catalog import methods_in_group
from xaicompare.errors import UserError
from xaicompare.models import load_model, resolve_layer
from xaicompare.models.base import LoadedModel

REFERENCES = {"gradcampp": GradCAMPlusPlus, "hirescam": HiResCAM, "xgradcam": XGradCAM,
              "layercam": LayerCAM, "eigencam": EigenCAM, "scorecam": ScoreCAM}
VARIANTS = list(REFERENCES)
TARGET = torch.tensor([0, 3, 4])


def tiny_cnn() -> LoadedModel:
    """Float64 CNN whose cam layer (a ReLU) has 4 dead channels (all zero everywhere)."""
    return cam_cnn(torch.float64, cam_index=6, dead_channels=4)


def orient(projection: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's sign correction: flip a map whose |min| exceeds its max."""
    flip = np.abs(projection.min(axis=(1, 2))) > np.abs(projection.max(axis=(1, 2)))
    return np.where(flip[:, None, None], -projection, projection)


def reference(method, model, layer, x, target, reshape_transform=None):
    """(native map clamped at 0, final min-max + resized output) from pytorch-grad-cam."""
    targets = [ClassifierOutputTarget(int(t)) for t in target]
    cam = REFERENCES[method](model=model, target_layers=[layer],
                             reshape_transform=reshape_transform)
    final = cam(input_tensor=x, targets=targets)
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = [g.numpy() for g in cam.activations_and_grads.gradients] or [None]
    raw = cam.get_cam_image(x, layer, targets, acts, grads[0], False)
    if method == "eigencam":
        raw = orient(raw)
    cam.activations_and_grads.release()
    model.zero_grad(set_to_none=True)
    return torch.from_numpy(np.maximum(raw, 0)), torch.from_numpy(final)


def assert_close_to(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-5) -> None:
    """Equal to `tol` of the reference map's largest |value| (the issue's bar)."""
    ours, ref = ours.detach().double(), ref.double()
    scale = ref.abs().max()
    assert scale > 0  # a non-degenerate comparison
    assert float((ours - ref).abs().max() / scale) < tol


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    shifted = maps - maps.flatten(1).min(dim=1).values.view(-1, 1, 1)
    return shifted / (1e-7 + shifted.flatten(1).max(dim=1).values.view(-1, 1, 1))


def display_like_pytorch_grad_cam(native: torch.Tensor, size: int) -> torch.Tensor:
    """Its `scale_cam_image` twice: min-max + bilinear resize, then min-max again."""
    up = torch.nn.functional.interpolate(_minmax(native)[:, None], size=(size, size),
                                         mode="bilinear", align_corners=False)[:, 0]
    return _minmax(up)


def test_the_cam_group_holds_every_variant():
    assert set(methods_in_group("cam")) >= {"gradcam", *VARIANTS}
    for method in ("gradcam", *VARIANTS):  # workers get methods pickled by reference
        fn = METHODS.get(method)
        assert pickle.loads(pickle.dumps(fn)) is fn and fn.info.signed is False


@pytest.mark.parametrize("method", VARIANTS)
def test_tiny_cnn_equals_pytorch_grad_cam(method):
    model, x = tiny_cnn(), images()
    ours = explain_full(model, x, method, target=TARGET, internal_batch_size=7) \
        if method == "scorecam" else explain_full(model, x, method, target=TARGET)
    native, final = reference(method, model, model.cam_layer, x, TARGET)
    assert ours.extras["native"].shape == (3, 6, 6)
    assert_close_to(ours.extras["native"], native)
    assert ours.params["layer"] == "6" and ours.params["grid"] == [6, 6]
    if method != "eigencam":  # its final output carries the SVD's arbitrary sign
        assert_close_to(display_like_pytorch_grad_cam(ours.extras["native"], 24), final)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return load_model("resnet10t", pretrained=False, input_size=64, class_indices=None,
                      num_classes=5, probe=False)


@pytest.mark.parametrize("method", VARIANTS)
def test_timm_resnet_equals_pytorch_grad_cam(resnet, method):
    """float32 on the forward_intermediates route; 'layer3' gives a 4 x 4 grid (Score-CAM:
    one image, its 256 channels are 256 forward passes)."""
    batch = 1 if method == "scorecam" else 2
    x = images(batch=batch, size=64, dtype=torch.float32)
    target = TARGET[:batch]
    ours = explain_full(resnet, x, method, target=target, layer="layer3")
    assert ours.params["route"] == "forward_intermediates"
    layer = resolve_layer(resnet, "layer3")  # the source module and timm's index map
    native, _ = reference(method, resnet, layer.module, x, target, layer.to_nchw)
    assert_close_to(ours.extras["native"], native)


@pytest.mark.parametrize("method", VARIANTS)
def test_vit_token_layer_equals_pytorch_grad_cam_with_a_reshape_transform(method):
    torch.manual_seed(0)
    model = load_model("vit_tiny_patch16_224", pretrained=False, input_size=32,
                       class_indices=None, num_classes=5, probe=False, img_size=32,
                       patch_size=8, depth=3, embed_dim=48, num_heads=3).double()
    x = images(size=32)
    ours = explain_full(model, x, method, target=TARGET, layer="blocks.1")
    assert ours.params["route"] == "forward_intermediates" and ours.extras["native"].shape == (
        3, 4, 4)

    def reshape_transform(tokens):  # the usual ViT transform of pytorch-grad-cam's docs
        return tokens[:, 1:, :].reshape(tokens.size(0), 4, 4, tokens.size(2)).permute(0, 3, 1, 2)

    native, _ = reference(method, model, model.net.blocks[1], x, TARGET, reshape_transform)
    assert_close_to(ours.extras["native"], native)


def test_eigencam_orientation_is_pytorch_grad_cams_sign_correction():
    activation = torch.randn(4, 6, 5, 3, generator=torch.Generator().manual_seed(0)).double()
    ours = eigencam_combine(activation)
    theirs = get_2d_projection_with_sign_correction(activation.numpy())
    torch.testing.assert_close(ours.float(), torch.from_numpy(theirs), rtol=1e-5, atol=1e-6)
    # negating the activations negates the component, which is turned back: same map
    torch.testing.assert_close(eigencam_combine(-activation), ours)
    # exact tie |min| == |max| (two positions): the first position is kept >= 0
    tie = eigencam_combine(torch.tensor([[[[1.0, 3.0]], [[2.0, -1.0]]]], dtype=torch.float64))
    assert tie[0, 0, 0] > 0 and torch.allclose(tie.sum(), torch.zeros((), dtype=tie.dtype))


def test_scorecam_is_batch_and_pass_size_independent():
    model, x = tiny_cnn(), images(batch=4)
    target = torch.tensor([1, 2, 3, 4])
    whole = explain(model, x, "scorecam", target=target)
    for size in (1, 5, 64):
        torch.testing.assert_close(explain(model, x, "scorecam", target=target,
                                           internal_batch_size=size), whole)
    torch.testing.assert_close(explain(model, x[2:3], "scorecam", target=target[2:3]),
                               whole[2:3])


def test_eigencam_is_gradient_free_and_target_free():
    model, x = tiny_cnn(), images()
    for p in model.parameters():
        p.requires_grad_(False)
    a = explain(model, x, "eigencam", target=TARGET)
    b = explain(model, x, "eigencam", target=torch.tensor([1, 1, 1]))
    torch.testing.assert_close(a, b)
    assert all(p.grad is None for p in model.parameters())


def test_bad_parameters_are_user_errors():
    model, x = tiny_cnn(), images()
    with pytest.raises(UserError, match="upsample"):
        explain(model, x, "layercam", upsample="bicubic")
    with pytest.raises(UserError, match="internal_batch_size"):
        explain(model, x, "scorecam", internal_batch_size=0)
    with pytest.raises(UserError, match="no parameter 'internal_batch_size'"):
        explain(model, x, "eigencam", internal_batch_size=4)
    with pytest.raises(UserError, match="not part of model"):
        explain(model, x, "hirescam", layer=nn.Conv2d(3, 3, 1).double())


def test_timm_default_layer_runs_for_every_variant():
    """The model's default CAM layer (a 2 x 2 grid here) through explain (Score-CAM's
    512 channels there are left to the tests above)."""
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    model = load_model(net, family="cnn", input_size=64, class_indices=None, probe=False)
    x = images(batch=2, size=64, dtype=torch.float32)
    for method in VARIANTS[:-1]:
        maps = explain(model, x, method, target=torch.tensor([0, 2]))
        assert maps.shape == (2, 64, 64) and torch.isfinite(maps).all() and (maps >= 0).all()
