"""Automatic Grad-CAM layers for every timm family, relative depth, the load-time probe."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from xaicompare.errors import UserError
from xaicompare.models import IMAGENETTE_14, load_model, probe_cam_layer, resolve_layer
from xaicompare.models.cam_layers import ActivationToNCHW, layer_name

# (timm architecture, timm kwargs, input side, expected Grad-CAM grid side, family).
# Expected grids are input side / the network's total stride (or patch size).
STUDY_14 = {
    "convnextv2_nano": ({}, 64, 2, "cnn"),
    "densenet121": ({}, 64, 2, "cnn"),
    "efficientnet_b3": ({}, 64, 2, "cnn"),
    "efficientnet_b4": ({}, 64, 2, "cnn"),
    "mobilenetv3_large_100": ({}, 64, 2, "cnn"),
    "resnet18d": ({}, 64, 2, "cnn"),
    "resnet50d": ({}, 64, 2, "cnn"),
    "resnext50_32x4d": ({}, 64, 2, "cnn"),
    "res2net50_14w_8s": ({}, 64, 2, "cnn"),
    "deit_small_patch16_224": ({"img_size": 64}, 64, 4, "transformer"),
    "deit_tiny_patch16_224": ({"img_size": 64}, 64, 4, "transformer"),
    "pvt_v2_b2": ({}, 64, 2, "transformer"),
    "swin_tiny_patch4_window7_224": ({}, 224, 7, "transformer"),
    "vit_base_patch32_224": ({"img_size": 64}, 64, 2, "transformer"),
}
OTHER_FAMILIES = {
    "mixer_s16_224": ({"img_size": 64}, 64, 4, "mlp"),
    "maxvit_nano_rw_256": ({}, 256, 8, "hybrid"),
    "coatnet_nano_rw_224": ({}, 224, 7, "hybrid"),
    "mobilevit_xxs": ({}, 64, 2, "hybrid"),
    "efficientformer_l1": ({}, 224, 7, "hybrid"),
    "fastvit_t8": ({}, 64, 2, "cnn"),  # t8 has no attention: RepMixer is a depthwise conv
    "levit_128s": ({}, 224, 4, "transformer"),  # attention in every stage; a conv stem only
    "cait_xxs24_224": ({"img_size": 64}, 64, 4, "transformer"),
    "xcit_nano_12_p16_224": ({"img_size": 64}, 64, 4, "transformer"),
    "deit_tiny_distilled_patch16_224": ({"img_size": 64}, 64, 4, "transformer"),
    "vit_small_patch14_reg4_dinov2": ({"img_size": 56, "num_classes": 1000}, 56, 4,
                                      "transformer"),
    "eva02_tiny_patch14_224": ({"img_size": 56, "num_classes": 1000}, 56, 4, "transformer"),
    "convnext_atto": ({}, 64, 2, "cnn"),
    "regnetx_002": ({}, 64, 2, "cnn"),
    "efficientformerv2_s0": ({}, 224, 7, "hybrid"),
    "coat_lite_tiny": ({}, 224, 7, "transformer"),  # depthwise conv position encodings only
}


def gradcam(model, images, module, to_nchw):
    """Reference Grad-CAM: hook + autograd.grad; weights = mean grad over h, w."""
    captured = []
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        logits = model(images)
        target = logits.argmax(1)
        score = logits.gather(1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(score, captured[-1])
    finally:
        handle.remove()
    activation, grad = to_nchw(captured[-1]), to_nchw(grad)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activation).sum(1))


def _random_head(net):
    """timm zero-initialises some heads; a zero head gives every layer zero gradient."""
    heads = net.get_classifier()
    for p in (p for h in (heads if isinstance(heads, tuple) else (heads,)) for p in h.parameters()):
        if p.dim() > 1 and not p.any():
            nn.init.normal_(p, std=0.02)


def _random_norms(net):
    for module in net.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.5)
            nn.init.normal_(module.bias, 0.0, 0.5)


@pytest.mark.parametrize("arch", list(STUDY_14) + list(OTHER_FAMILIES))
def test_automatic_layer_gives_a_non_constant_gradcam_on_the_right_grid(arch):
    kwargs, side, grid, family = {**STUDY_14, **OTHER_FAMILIES}[arch]
    start = time.perf_counter()
    torch.manual_seed(0)
    model = load_model(arch, pretrained=False, input_size=side, probe=False, **kwargs)
    _random_head(model.net)
    if arch.startswith("levit"):  # at init its token features are constant over positions
        _random_norms(model.net)
    assert model.family == family
    assert probe_cam_layer(model) == (grid, grid)
    images = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    cam = gradcam(model, images, model.cam_layer, model.to_nchw)
    assert cam.shape == (1, grid, grid), layer_name(model, model.cam_layer)
    assert float(cam.max() - cam.min()) > 0, f"constant map at {layer_name(model, model.cam_layer)}"
    assert time.perf_counter() - start < 60


def test_study_list_is_covered():
    assert {name.split(".")[0] for name in IMAGENETTE_14} == set(STUDY_14)
    assert len(OTHER_FAMILIES) >= 12


def test_vit_default_layer_is_last_block_input_because_cls_pooling_zeroes_patch_grads():
    torch.manual_seed(0)
    model = load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, depth=3,
                       input_size=32, probe=False)
    assert layer_name(model, model.cam_layer) == "blocks.1"  # = the input of blocks.2
    assert model.cam.route == "forward_intermediates"
    images = torch.rand(1, 3, 32, 32)
    last_block_output = gradcam(model, images, model.net.blocks[-1], model.to_nchw)
    assert not last_block_output.any()  # the reason for the rule
    assert gradcam(model, images, model.cam_layer, model.to_nchw).any()


def test_relative_depth_picks_stages_and_blocks():
    resnet = load_model("resnet18", pretrained=False, input_size=64, probe=False)
    names = [resolve_layer(resnet, d).name for d in (0.25, 0.5, 0.75, 1.0)]
    assert names == ["layer1", "layer2", "layer3", "layer4"]
    vit = load_model("vit_tiny_patch16_224", pretrained=False, img_size=32, input_size=32,
                     probe=False)
    names = [resolve_layer(vit, d).name for d in (0.25, 0.5, 0.75, 1.0)]
    assert names == ["blocks.2", "blocks.5", "blocks.8", "blocks.10"]
    assert resolve_layer(vit, None).module is vit.cam_layer
    assert resolve_layer(vit, "blocks.3").module is vit.net.blocks[3]
    assert resolve_layer(vit, vit.net.blocks[4]).module is vit.net.blocks[4]
    chosen = load_model("resnet18", pretrained=False, input_size=64, layer=0.5, probe=False)
    assert chosen.cam_layer is chosen.net.layer2
    for bad in (0.0, 1.5, "layer9", nn.Conv2d(3, 3, 1)):
        with pytest.raises(UserError):
            resolve_layer(resnet, bad)


def test_probe_rejects_a_layer_without_spatial_grid_and_says_what_to_try():
    model = load_model("resnet18", pretrained=False, input_size=64, probe=False)
    with pytest.raises(UserError, match=r"'global_pool' of model 'resnet18'.*layer=0.75"):
        probe_cam_layer(model, "global_pool")
    model = load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, depth=2,
                       input_size=32, probe=False)
    with pytest.raises(UserError, match="zero gradient"):
        probe_cam_layer(model, "blocks.1")  # last block output under cls pooling


def test_tokens_to_grid_strips_prefix_and_handles_dynamic_sizes():
    tokens = torch.arange(2 * (5 + 12) * 3, dtype=torch.float32).view(2, 17, 3)
    grid = ActivationToNCHW(num_prefix_tokens=5, grid_size=(3, 4))(tokens)
    assert torch.equal(grid, tokens[:, 5:].transpose(1, 2).reshape(2, 3, 3, 4))
    # a 6x8 grid (same 3:4 aspect) from a larger input than the nominal 3x4
    dynamic = ActivationToNCHW(num_prefix_tokens=1, grid_size=(3, 4))(torch.zeros(1, 49, 2))
    assert dynamic.shape == (1, 2, 6, 8)
    nhwc = torch.rand(1, 5, 6, 7)
    assert torch.equal(ActivationToNCHW(channels_last=True)(nhwc), nhwc.permute(0, 3, 1, 2))
