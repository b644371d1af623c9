"""Grad-CAM routes: timm's forward_intermediates, the hook route for user modules, and
the families, warnings and store keys that go with them (issue #18)."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
from torch import nn

from xaicompare.attribution import explain, explain_full
from xaicompare.errors import UserError
from xaicompare.models import load_model, resolve_layer
from xaicompare.models.families import detect_family
from xaicompare.models.intermediates import tensor_at


def timm_map(model, cam, images):
    """(our NCHW map through the CamLayer, timm's forward_intermediates maps) on `images`."""
    x = model.preprocess(images)
    captured = []
    handle = cam.module.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        model.net(x)
        handle.remove()
        theirs = model.net.forward_intermediates(x, indices=None, norm=False,
                                                 intermediates_only=True)
    return cam.to_nchw(tensor_at(captured[0], cam.path)), theirs


# (timm name, kwargs, input side): the six layouts of the issue, random weights, tiny sizes.
LAYOUTS = {
    "hiera_tiny_224": ({"img_size": 64}, 64),  # unrolled tokens
    "mvitv2_tiny": ({"img_size": 64}, 64),  # tuple (tokens, feat size) outputs
    "samvit_base_patch16_224": ({"img_size": 64, "depth": 2}, 64),  # NHWC blocks
    "volo_d1_224": ({"img_size": 64}, 64),  # NHWC outlookers and transformers
    "swin_tiny_patch4_window7_224": ({"img_size": 56, "window_size": 7, "depths": (1, 1, 1, 1)},
                                     56),
    "vit_small_patch14_reg4_dinov2": ({"img_size": 56, "depth": 3}, 56),  # 4 registers + cls
}


@pytest.mark.parametrize("arch", list(LAYOUTS))
def test_every_depth_equals_forward_intermediates(arch):
    kwargs, side = LAYOUTS[arch]
    torch.manual_seed(0)
    model = load_model(arch, pretrained=False, input_size=side, class_indices=None,
                       probe=False, **kwargs)
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(2))
    n_maps = len(model.net.forward_intermediates(model.preprocess(images[:1]), indices=None,
                                                 norm=False, intermediates_only=True))
    for k in range(n_maps):
        cam = resolve_layer(model, (k + 1) / n_maps)
        ours, theirs = timm_map(model, cam, images)
        assert cam.route == "forward_intermediates"
        if cam.grid == tuple(theirs[k].shape[-2:]) and torch.equal(ours, theirs[k]):
            continue
        # only a last block under cls pooling stands down, for the input of that block
        assert k == n_maps - 1 and torch.equal(ours, theirs[k - 1]), (arch, k, cam.name)


def test_hiera_below_full_depth_reads_timm_unrolled_tokens():
    torch.manual_seed(0)
    model = load_model("hiera_tiny_224", pretrained=False, img_size=64, input_size=64,
                       class_indices=None, probe=False)
    grids = [resolve_layer(model, d).grid for d in (0.25, 0.5, 0.75, 1.0)]
    assert grids == [(16, 16), (8, 8), (4, 4), (2, 2)]


# The models issue #18 found wrong or failing: each loads and gives a right-grid map.
ISSUE_MODELS = {
    "mvitv2_tiny": ({"img_size": 64}, 64, (2, 2)),
    "gemma4_vit_167m": ({"img_size": 64, "depth": 2}, 64, (4, 4)),
    "samvit_base_patch16_224": ({"img_size": 64, "depth": 2}, 64, (4, 4)),
    "volo_d1_224": ({"img_size": 64}, 64, (4, 4)),
    "coat_tiny": ({"img_size": 64}, 64, (2, 2)),
    "pit_ti_224": ({"img_size": 64}, 64, (4, 4)),
    "tnt_s_patch16_224": ({"img_size": 64, "depth": 2}, 64, (4, 4)),
    "hrnet_w18_small": ({}, 64, (2, 2)),
    "efficientvim_m1": ({}, 128, (2, 2)),  # stride 64: 1x1 at 64 px
    "crossvit_tiny_240": ({"depth": ((1, 1, 0),) * 3}, 240, (14, 14)),  # the 224-px branch
    "twins_svt_small": ({"depths": (1, 1, 1, 1)}, 64, (2, 2)),
    "twins_pcpvt_small": ({"depths": (1, 1, 1, 1)}, 64, (2, 2)),
}


@pytest.mark.parametrize("arch", list(ISSUE_MODELS))
def test_issue_models_load_and_give_a_right_grid_map(arch):
    kwargs, side, grid = ISSUE_MODELS[arch]
    torch.manual_seed(0)
    with warnings.catch_warnings():  # zero heads (Hiera, VOLO ...) are warned about
        warnings.simplefilter("ignore")
        model = load_model(arch, pretrained=False, input_size=side, class_indices=None, **kwargs)
    _random_head(model.net)
    images = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    result = explain_full(model, images, "gradcam", relu=False)
    native = result.extras["native"]
    assert tuple(native.shape[-2:]) == grid == model.cam.grid
    # efficientvim: timm's maps are each stage's pre-downsample output, which nothing
    # after the stage reads; the hook route takes the map the next stage does read
    assert result.params["route"] == ("hook" if arch == "efficientvim_m1"
                                      else "forward_intermediates")
    assert float(native.max() - native.min()) > 0
    ours, theirs = timm_map(model, model.cam, images)
    assert any(t.shape == ours.shape for t in theirs)  # a grid timm itself has


def _random_head(net):
    heads = net.get_classifier()
    for p in (p for h in (heads if isinstance(heads, tuple) else (heads,)) for p in h.parameters()):
        if p.dim() > 1 and not p.any():
            nn.init.normal_(p, std=0.02)


def test_zero_head_is_warned_at_load_and_explain():
    with pytest.warns(UserWarning, match="every gradient explanation of this model will be zero"):
        model = load_model("mixer_s16_224", pretrained=False, img_size=32, input_size=32,
                           class_indices=None, probe=False)
    with pytest.warns(UserWarning, match="the head is untrained"):
        maps = explain(model, torch.rand(1, 3, 32, 32), "gradcam", target=0)
    assert not maps.any()


def test_explicit_layer_with_zero_gradient_warns():
    model = load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, depth=2,
                       input_size=32, class_indices=None, probe=False)
    with pytest.warns(UserWarning, match="'blocks.1.norm2'.*zero gradient"):
        maps = explain(model, torch.rand(1, 3, 32, 32), "gradcam", layer="blocks.1.norm2")
    assert not maps.any()


class TokenNet(nn.Module):
    """A user's token model: linear patch embedding, blocks on [B, N, C], mean pool."""

    def __init__(self, patch=8, dim=16, classes=5):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(3 * patch * patch, dim)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim),
                                                    nn.GELU()) for _ in range(3)])
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        patches = nn.functional.unfold(x, self.patch, stride=self.patch).transpose(1, 2)
        return self.head(self.blocks(self.embed(patches)).mean(1))


def test_user_token_module_loads_with_layer_and_grid():
    torch.manual_seed(0)
    net = TokenNet()
    with pytest.raises(UserError, match="no layer with a spatial output"):
        load_model(net, input_size=(32, 48), class_indices=None)
    model = load_model(net, input_size=(32, 48), class_indices=None, layer="blocks.1")
    assert model.cam.route == "hook" and model.cam.grid == (4, 6)  # inferred from 24 tokens
    fixed = load_model(net, input_size=(32, 48), class_indices=None, layer="blocks.1", grid=(4, 6))
    images = torch.rand(2, 3, 32, 48)
    native = explain_full(fixed, images, "gradcam", target=1).extras["native"]
    assert native.shape == (2, 4, 6) and native.any()
    with pytest.raises(UserError, match="grid"):
        load_model(net, input_size=(32, 48), class_indices=None, layer="blocks.1", grid=(5, 5))
    assert fixed.family == "cnn"  # no attention, no token-mixing MLP


def test_depths_see_into_a_user_cnn_wrapped_in_one_sequential():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1),
                         nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
    net = nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    model = load_model(net, input_size=32, class_indices=None)
    names = [resolve_layer(model, d).name for d in (0.25, 0.5, 0.75, 1.0)]
    assert len(set(names)) == 4 and all(n.startswith("0.") for n in names)
    assert [resolve_layer(model, d).grid for d in (0.25, 1.0)] == [(32, 32), (8, 8)]


def test_family_from_structure_and_override():
    torch.manual_seed(0)
    qwen = timm.create_model("qwen3_vit_88m", pretrained=False, img_size=32, depth=1)
    assert detect_family(qwen, (32, 32)) == "transformer"
    coatnet = timm.create_model("coatnet_nano_rw_224", pretrained=False)
    assert detect_family(coatnet, (64, 64)) == "hybrid"  # MBConv stages, then attention
    assert detect_family(timm.create_model("iformer_s"), (64, 64)) == "hybrid"
    model = load_model("resnet18", pretrained=False, input_size=32, family="hybrid", probe=False)
    assert model.family == "hybrid"


def test_store_key_changes_with_the_resolved_layer(tmp_path):
    from xaicompare.store import Store
    from xaicompare.store.keys import maps_entry

    store = Store(tmp_path)
    model = load_model("resnet18", pretrained=False, input_size=64, probe=False)
    default = maps_entry(store, model, "gradcam", {}, {"d": 1}, "predicted")
    same = maps_entry(store, model, "gradcam", {"layer": 1.0}, {"d": 1}, "predicted")
    shallower = load_model("resnet18", pretrained=False, input_size=64, layer=0.5, probe=False)
    other = maps_entry(store, shallower, "gradcam", {}, {"d": 1}, "predicted")
    assert default.identity["resolved"] == {"route": "forward_intermediates", "layer": "layer4",
                                            "path": [], "grid": [2, 2]}
    assert default.directory != other.directory  # same config, another default layer: never stale
    assert same.identity["resolved"] == default.identity["resolved"]
