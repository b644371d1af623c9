"""Grad-CAM against pytorch-grad-cam and captum on a small CNN and a tiny ViT.

Comparison points:
- native grid (before upsampling, before any display normalisation) against captum's
  `LayerGradCam(relu_attributions=True)` and against pytorch-grad-cam's un-normalised cam,
  `GradCAM.get_cam_image(...)` clamped at 0 (the step before its `scale_cam_image`);
- canonical frame against captum's `LayerAttribution.interpolate(..., "bilinear")`;
- pytorch-grad-cam's final output (min-max at the native grid, then cv2 bilinear resize)
  against ours with that same min-max applied to our native grid before our upsampler.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from captum.attr import LayerAttribution, LayerGradCam
from fakes import cam_cnn
from fakes import noise_images as images  # [batch, 3, size, size] noise, float64
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from xaicompare.attribution import explain, explain_full
from xaicompare.errors import UserError
from xaicompare.models.base import LoadedModel


def tiny_cnn(dtype=torch.float64) -> LoadedModel:
    return cam_cnn(dtype, cam_index=5)


TARGET = torch.tensor([0, 3, 4])


def test_cnn_native_and_upsampled_match_captum():
    model, x = tiny_cnn(), images()
    ours = explain_full(model, x, "gradcam", target=TARGET)
    captum_native = LayerGradCam(model, model.cam_layer).attribute(
        x, target=TARGET, relu_attributions=True
    )
    assert ours.extras["native"].shape == (3, 6, 6)
    torch.testing.assert_close(ours.extras["native"], captum_native[:, 0], rtol=1e-10, atol=1e-12)
    captum_maps = LayerAttribution.interpolate(captum_native, (24, 24), "bilinear")[:, 0]
    torch.testing.assert_close(ours.maps, captum_maps, rtol=1e-10, atol=1e-12)
    assert ours.maps.abs().max() > 0  # a non-degenerate comparison


def _pytorch_grad_cam(model, layer, x, target, reshape_transform=None):
    """(un-normalised native cam, final normalised output) from pytorch-grad-cam."""
    targets = [ClassifierOutputTarget(int(t)) for t in target]
    cam = GradCAM(model=model, target_layers=[layer], reshape_transform=reshape_transform)
    final = cam(input_tensor=x, targets=targets)
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = cam.activations_and_grads.gradients[0].numpy()
    native = np.maximum(cam.get_cam_image(x, layer, targets, acts, grads), 0)
    cam.activations_and_grads.release()
    model.zero_grad(set_to_none=True)
    return torch.from_numpy(native), torch.from_numpy(final)


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    shifted = maps - maps.flatten(1).min(dim=1).values.view(-1, 1, 1)
    return shifted / (1e-7 + shifted.flatten(1).max(dim=1).values.view(-1, 1, 1))


def _display_like_pytorch_grad_cam(native: torch.Tensor, size: int) -> torch.Tensor:
    """Its `scale_cam_image` twice: min-max + bilinear resize per layer, then min-max again."""
    up = torch.nn.functional.interpolate(
        _minmax(native)[:, None], size=(size, size), mode="bilinear", align_corners=False
    )[:, 0]
    return _minmax(up)


def test_cnn_matches_pytorch_grad_cam():
    model, x = tiny_cnn(), images()
    ours = explain_full(model, x, "gradcam", target=TARGET)
    native, final = _pytorch_grad_cam(model, model.cam_layer, x, TARGET)
    torch.testing.assert_close(ours.extras["native"], native, rtol=1e-10, atol=1e-12)
    # Their output is float32 and resized by cv2 (half-pixel centres, like ours).
    ours_display = _display_like_pytorch_grad_cam(ours.extras["native"], 24).float()
    torch.testing.assert_close(ours_display, final, rtol=1e-5, atol=1e-5)


class PatchGrid(nn.Module):
    """Tokens [B, P, C] -> [B, C, h, w]; a module so captum can hook a spatial grid."""

    def __init__(self, h: int, w: int) -> None:
        super().__init__()
        self.h, self.w = h, w

    def forward(self, patches):
        return patches.transpose(1, 2).reshape(patches.shape[0], -1, self.h, self.w)


class ProbedNorm(nn.Module):
    """Wraps `blocks[-1].norm1`; routes its patch tokens through a `PatchGrid` module.

    The computation is unchanged; `grid` outputs exactly the patch tokens of `norm`.
    """

    def __init__(self, norm: nn.Module, h: int, w: int) -> None:
        super().__init__()
        self.norm, self.grid = norm, PatchGrid(h, w)

    def forward(self, x):
        tokens = self.norm(x)
        grid = self.grid(tokens[:, 1:])
        return torch.cat([tokens[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)


def tiny_vit():
    torch.manual_seed(0)
    net = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=5,
        depth=2,
    ).double()
    net.blocks[-1].norm1 = ProbedNorm(net.blocks[-1].norm1, 4, 4)
    probe = net.blocks[-1].norm1

    def to_nchw(tokens):  # an independent copy of the usual ViT reshape transform
        return tokens[:, 1:].reshape(tokens.shape[0], 4, 4, -1).permute(0, 3, 1, 2)

    model = LoadedModel(net, name="tiny_vit", family="transformer", input_size=(32, 32),
                        cam_layer=probe.norm, to_nchw=to_nchw).double()
    return model, probe


def test_vit_token_layer_matches_captum_and_pytorch_grad_cam():
    model, probe = tiny_vit()
    x = images(size=32)
    ours = explain_full(model, x, "gradcam", target=TARGET)
    assert ours.extras["native"].shape == (3, 4, 4)

    captum_native = LayerGradCam(model, probe.grid).attribute(x, target=TARGET,
                                                              relu_attributions=True)
    torch.testing.assert_close(ours.extras["native"], captum_native[:, 0], rtol=1e-9, atol=1e-12)
    captum_maps = LayerAttribution.interpolate(captum_native, (32, 32), "bilinear")[:, 0]
    torch.testing.assert_close(ours.maps, captum_maps, rtol=1e-9, atol=1e-12)

    def reshape_transform(tokens):
        return tokens[:, 1:, :].reshape(tokens.size(0), 4, 4, tokens.size(2)).permute(0, 3, 1, 2)

    native, final = _pytorch_grad_cam(model, probe.norm, x, TARGET, reshape_transform)
    torch.testing.assert_close(ours.extras["native"], native, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(_display_like_pytorch_grad_cam(ours.extras["native"], 32).float(), final,
                               rtol=1e-5, atol=1e-5)
    assert ours.maps.abs().max() > 0


def test_batch_independence():
    model, x = tiny_cnn(), images(batch=4)
    target = torch.tensor([1, 2, 3, 4])
    together = explain(model, x, "gradcam", target=target)
    for i in range(4):
        alone = explain(model, x[i : i + 1], "gradcam", target=target[i : i + 1])
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-10, atol=1e-12)
    # Scaling the *other* images changes nothing for image 0 (no batch-wide normalisation).
    x2 = x.clone()
    x2[1:] *= 0.3
    torch.testing.assert_close(explain(model, x2, "gradcam", target=target)[0], together[0])


def test_no_parameter_gradients_and_frozen_model():
    model, x = tiny_cnn(), images()
    maps = explain(model, x, "gradcam", target=TARGET)
    assert all(p.grad is None for p in model.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    frozen = explain(model, x, "gradcam", target=TARGET)
    torch.testing.assert_close(frozen, maps)
    assert torch.is_grad_enabled()  # the grad-mode switch inside the hook was undone
    with torch.no_grad():  # works inside a caller's no_grad, and leaves it in place
        inside = explain(model, x, "gradcam", target=TARGET)
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(inside, maps)


def test_relu_false_and_nearest_upsampling():
    model, x = tiny_cnn(), images()
    signed = explain_full(model, x, "gradcam", target=TARGET, relu=False, upsample="nearest")
    captum_native = LayerGradCam(model, model.cam_layer).attribute(
        x, target=TARGET, relu_attributions=False
    )
    torch.testing.assert_close(signed.extras["native"], captum_native[:, 0])
    assert (signed.extras["native"] < 0).any()  # the ReLU really is off
    # nearest from 6x6 to 24x24: each native cell becomes a 4x4 block
    torch.testing.assert_close(signed.maps, signed.extras["native"].repeat_interleave(4, 1)
                               .repeat_interleave(4, 2))


def test_bad_parameters_are_user_errors():
    model, x = tiny_cnn(), images()
    with pytest.raises(UserError, match="upsample"):
        explain(model, x, "gradcam", upsample="bicubicc")
    outside = nn.Conv2d(3, 3, 1).double()
    with pytest.raises(UserError, match="not part of model"):
        explain(model, x, "gradcam", layer=outside)


def _timm_model(arch, side, **kwargs):
    """A timm model loaded as users load it (float64 for a tight comparison)."""
    from xaicompare.models import load_model

    torch.manual_seed(0)
    model = load_model(arch, pretrained=False, input_size=side, class_indices=None,
                       num_classes=5, probe=False, **kwargs).double()
    return model


@pytest.mark.parametrize("arch, kwargs, side, layer, reshape", [
    ("resnet18", {}, 64, "layer3", None),
    ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 3}, 32, "blocks.1",
     lambda t: t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)),
    ("swin_tiny_patch4_window7_224", {"img_size": 56, "depths": (1, 1, 1, 1)}, 56, "layers.1",
     lambda t: t.permute(0, 3, 1, 2)),  # Swin's stages are NHWC
])
def test_timm_models_match_pytorch_grad_cam_on_the_same_layer(arch, kwargs, side, layer,
                                                              reshape):
    model = _timm_model(arch, side, **kwargs)
    x = images(size=side)
    ours = explain_full(model, x, "gradcam", target=TARGET, layer=layer)
    assert ours.params["route"] == "forward_intermediates" and ours.params["layer"] == layer
    module = dict(model.net.named_modules())[layer]
    native, _ = _pytorch_grad_cam(model, module, x, TARGET, reshape)
    assert native.abs().max() > 0
    torch.testing.assert_close(ours.extras["native"], native, rtol=1e-9, atol=1e-12)
