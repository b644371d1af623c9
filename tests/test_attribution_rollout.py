"""Attention rollout against a direct, loop-based implementation on tiny random transformers.

The reference computes every block's attention explicitly, softmax(q k^T * scale + bias), from
the module's weights and its input recorded during the normal fused forward
(tests/attention_reference.py), so it is independent of how rollout reads the probabilities.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from attention_reference import images, reference_probs, reference_rollout, tiny_model
from torch import nn

from xaicompare.attribution import explain, explain_full
from xaicompare.attribution.rollout import rollout_layer_matrix
from xaicompare.errors import UserError
from xaicompare.models.base import LoadedModel

# family -> (prefix tokens, rows the head reads, patch grid)
LAYOUTS = {
    "vit": (1, [0], (4, 4)),
    "vit_reg": (3, [0], (4, 4)),  # class token + 2 registers
    "deit_distilled": (2, [0, 1], (4, 4)),  # the head averages class and distillation tokens
    "beit": (1, "patches", (4, 4)),  # beit_base pools by averaging the patch tokens
    "eva": (1, "patches", (4, 4)),  # eva02 pools by averaging too (rope attention)
    "cait": (1, [0], (4, 4)),  # self-attention over patches, then class attention
}


@pytest.mark.parametrize(("head_fusion", "discard_ratio", "start_layer"),
                         [("mean", 0.9, 0), ("max", 0.5, 1), ("min", 0.0, 0), ("mean", 0.0, 2)])
def test_matches_direct_implementation(head_fusion, discard_ratio, start_layer):
    model, x = tiny_model("vit"), images()
    expected = reference_rollout(reference_probs(model, x), 1, [0], head_fusion, discard_ratio,
                                 start_layer)
    result = explain_full(model, x, "rollout", head_fusion=head_fusion,
                          discard_ratio=discard_ratio, start_layer=start_layer)
    native = result.extras["native"]
    assert native.shape == (2, 4, 4)
    np.testing.assert_allclose(native.reshape(2, -1).numpy(), expected, rtol=1e-9, atol=1e-12)
    assert result.maps.shape == (2, 40, 40)
    upsampled = nn.functional.interpolate(native[:, None], size=(40, 40), mode="bilinear",
                                          align_corners=False)[:, 0]
    torch.testing.assert_close(result.maps, upsampled)


@pytest.mark.parametrize("family", sorted(LAYOUTS))
def test_every_attention_family_matches_direct_implementation(family):
    model, x = tiny_model(family), images()
    prefix, rows, grid = LAYOUTS[family]
    assert model.net.num_prefix_tokens == prefix
    blocks = reference_probs(model, x)
    result = explain_full(model, x, "rollout", discard_ratio=0.5)
    native = result.extras["native"]
    assert native.shape == (2, *grid)
    expected = reference_rollout(blocks, prefix, rows, discard_ratio=0.5)
    np.testing.assert_allclose(native.reshape(2, -1).numpy(), expected, rtol=1e-9, atol=1e-12)
    assert native.std() > 0  # a map with structure, not a constant


@pytest.mark.parametrize("family", sorted(LAYOUTS))
@pytest.mark.parametrize("method", ["rollout", "gradient_rollout"])
def test_fused_attention_is_restored_and_logits_unchanged(family, method):
    model, x = tiny_model(family), images(batch=1)
    flags = {name: m.fused_attn for name, m in model.named_modules() if hasattr(m, "fused_attn")}
    with torch.no_grad():
        before = model(x)
    explain(model, x, method)
    assert flags == {n: m.fused_attn for n, m in model.named_modules() if hasattr(m, "fused_attn")}
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_discard_never_drops_the_cls_column():
    # The CLS column holds the smallest entries, so a naive discard would remove all of it.
    n = 5
    fused = 0.5 + 1e-3 * torch.arange(n * n, dtype=torch.float64).view(1, n, n)
    fused[0].diagonal().fill_(0.9)  # keep the identity's entries out of the lowest set
    fused[0, :, 0] = 0.01
    factor = rollout_layer_matrix(fused, discard_ratio=0.4, num_prefix_tokens=1)
    assert (factor[0, :, 0] > 0).all()
    # 0.4 * 25 = 10 lowest entries: the 5 CLS-column ones (kept) and the next 5 (dropped).
    dropped = {tuple(ix) for ix in (factor[0] == 0).nonzero().tolist()}
    assert dropped == {(0, 1), (0, 2), (0, 3), (0, 4), (1, 2)}
    # rows are stochastic after renormalisation
    torch.testing.assert_close(factor.sum(-1), torch.ones(1, n, dtype=torch.float64))


def test_discard_is_per_image():
    model, x = tiny_model("vit"), images(batch=3)
    together = explain(model, x, "rollout", discard_ratio=0.9)
    for i in range(3):
        torch.testing.assert_close(explain(model, x[i : i + 1], "rollout", discard_ratio=0.9)[0],
                                   together[i])


def test_non_transformer_model_is_a_user_error():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 2))
    model = LoadedModel(net, name="my_cnn", family="cnn")
    with pytest.raises(UserError, match=r"rollout is not applicable to model 'my_cnn'.*no `blocks`"):
        explain(model, torch.rand(1, 3, 16, 16), "rollout")


def test_bad_parameters_are_user_errors():
    model, x = tiny_model("vit"), images(batch=1)
    with pytest.raises(UserError, match="head_fusion"):
        explain(model, x, "rollout", head_fusion="median")
    with pytest.raises(UserError, match="discard_ratio"):
        explain(model, x, "rollout", discard_ratio=1.0)
    with pytest.raises(UserError, match="start_layer"):
        explain(model, x, "rollout", start_layer=3)


def test_supports_rollout_says_which_models_rollout_can_explain():
    from xaicompare.attribution import supports_rollout

    for family in LAYOUTS:
        assert supports_rollout(tiny_model(family)), family
    pvt = timm.create_model("pvt_v2_b0", pretrained=False, num_classes=3, depths=(1, 1),
                            embed_dims=(8, 16), num_heads=(1, 1), sr_ratios=(2, 1),
                            mlp_ratios=(2, 2))  # spatial-reduction attention
    xcit = timm.create_model("xcit_nano_12_p16_224", pretrained=False, depth=1,
                             num_classes=3)  # attention over channels
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, depths=(1, 1),
                             num_heads=(1, 2), embed_dim=8, num_classes=3)  # windows
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    why = {"pvt": "no `blocks`", "xcit": r"blocks\[0\] has .attn of type XCA",
           "swin": "no `blocks`", "cnn": "no `blocks`"}
    for key, net in {"pvt": pvt, "xcit": xcit, "swin": swin, "cnn": cnn}.items():
        assert not supports_rollout(net)
        for method in ("rollout", "gradient_rollout"):
            with pytest.raises(UserError, match=f"{method} is not applicable .*{why[key]}"):
                explain(LoadedModel(net, name="x", family="transformer"),
                        torch.rand(1, 3, 32, 32), method=method, target=0)
