"""Grad-CAM on real timm architectures (ResNet, ConvNeXt, ViT, Swin; random weights, small
sizes) against pytorch-grad-cam and captum, at the layer the automatic choice picks.

The layer is passed to every implementation by its module name (layer="<name>"), so the
comparison holds whichever layer a future automatic rule picks; each reference gets its own
reshape of that layer's output (tokens or NHWC to NCHW) written here, not ours.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import xaicompare as xc
from xaicompare.models.cam_layers import layer_name

TARGET = torch.tensor([1, 4])


def nchw(output: torch.Tensor) -> torch.Tensor:
    assert output.ndim == 4
    return output


def vit_tokens(output: torch.Tensor) -> torch.Tensor:
    """[B, 1 + h*w, C] with a cls token -> [B, C, h, w] (square grid)."""
    patches = output[:, 1:]
    side = int(round(patches.shape[1] ** 0.5))
    return patches.reshape(output.shape[0], side, side, -1).permute(0, 3, 1, 2)


def nhwc(output: torch.Tensor) -> torch.Tensor:
    """timm Swin stages are channels-last: [B, h, w, C] -> [B, C, h, w]."""
    assert output.ndim == 4
    return output.permute(0, 3, 1, 2)


# (timm name, create kwargs, image size, reshape for the references, captum can hook it)
MODELS = {
    "resnet": ("resnet18", {}, 96, nchw, True),
    "convnext": ("convnext_atto", {}, 96, nchw, True),
    "vit": ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2}, 32,
            vit_tokens, False),
    "swin": ("swin_tiny_patch4_window7_224",
             {"img_size": 128, "window_size": 4, "embed_dim": 32, "depths": (1, 1, 1, 1),
              "num_heads": (1, 2, 4, 8)}, 128, nhwc, False),
}


def load(kind: str):
    name, kwargs, size, _, _ = MODELS[kind]
    torch.manual_seed(0)
    model = xc.load_model(name, pretrained=False, num_classes=5, class_indices=None,
                          input_size=size, **kwargs).double().eval()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1),
                   dtype=torch.float64)
    return model, x


def pytorch_grad_cam_native(model, module, x, reshape) -> torch.Tensor:
    """pytorch-grad-cam's cam before its min-max display scaling (clamped at 0)."""
    targets = [ClassifierOutputTarget(int(t)) for t in TARGET]
    cam = GradCAM(model=model, target_layers=[module], reshape_transform=reshape)
    cam(input_tensor=x, targets=targets)
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = cam.activations_and_grads.gradients[0].numpy()
    native = np.maximum(cam.get_cam_image(x, module, targets, acts, grads), 0)
    cam.activations_and_grads.release()
    model.zero_grad(set_to_none=True)
    return torch.from_numpy(native)


@pytest.mark.parametrize("kind", list(MODELS))
def test_automatic_layer_matches_pytorch_grad_cam_and_captum(kind):
    model, x = load(kind)
    _, _, size, reshape, captum_ok = MODELS[kind]
    name = layer_name(model, model.cam_layer)  # the automatic choice, passed by name
    module = dict(model.net.named_modules())[name]
    ours = xc.explain_full(model, x, "gradcam", target=TARGET, layer=name)
    native = ours.extras["native"]
    assert native.shape[-1] >= 2
    assert (native.flatten(1).amax(1) > 0).all()  # a non-degenerate comparison
    # the automatic path gives the same maps as the named layer
    torch.testing.assert_close(xc.explain(model, x, "gradcam", target=TARGET), ours.maps)

    reference = pytorch_grad_cam_native(model, module, x, reshape)
    torch.testing.assert_close(native, reference, rtol=1e-9, atol=1e-12)
    if captum_ok:  # captum averages gradients over dims 2+: NCHW layers only
        captum = LayerGradCam(model, module).attribute(x, target=TARGET,
                                                       relu_attributions=True)[:, 0]
        torch.testing.assert_close(native, captum, rtol=1e-9, atol=1e-12)
        up = torch.nn.functional.interpolate(captum[:, None], size=(size, size),
                                             mode="bilinear", align_corners=False)[:, 0]
        torch.testing.assert_close(ours.maps, up, rtol=1e-9, atol=1e-12)
