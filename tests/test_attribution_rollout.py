"""Attention rollout against a direct, loop-based implementation on a tiny random ViT.

The reference reads the attention probabilities timm itself computes (unfused attention
path, hooked at `attn_drop`), so it is independent of rollout's recomputation from `qkv`.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from xaicompare.attribution import explain, explain_full
from xaicompare.attribution.rollout import rollout_layer_matrix
from xaicompare.errors import UserError
from xaicompare.models.base import LoadedModel


def tiny_vit(**kwargs) -> LoadedModel:
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                            num_classes=5, depth=3, **kwargs).double()
    return LoadedModel(net, name="tiny_vit", family="transformer", input_size=(32, 32)).double()


def images(batch=2, size=40):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(2)).double()


def timm_attention_probs(model: LoadedModel, x: torch.Tensor) -> list[np.ndarray]:
    """[B, heads, N, N] per block, as timm's own unfused attention computes them."""
    probs = []
    hooks = []
    for block in model.net.blocks:
        block.attn.fused_attn = False
        hooks.append(block.attn.attn_drop.register_forward_hook(
            lambda m, i, o: probs.append(o.detach().numpy().copy())))
    with torch.no_grad():
        model(x)
    for hook, block in zip(hooks, model.net.blocks, strict=True):
        hook.remove()
        block.attn.fused_attn = True
    return probs


def reference_rollout(probs, head_fusion, discard_ratio, start_layer=0, prefix=1):
    """Straightforward loops: per image, per layer, vit-explain's recipe (bugs fixed)."""
    batch, _, n, _ = probs[0].shape
    out = []
    for b in range(batch):
        result = np.eye(n)
        for layer in probs[start_layer:]:
            fused = getattr(np, head_fusion)(layer[b], axis=0).copy()
            k = int(n * n * discard_ratio)
            lowest = np.argsort(fused.ravel(), kind="stable")[:k]
            for flat in lowest:
                row, col = divmod(int(flat), n)
                if col >= prefix:  # attention to CLS is never discarded
                    fused[row, col] = 0.0
            a = (fused + np.eye(n)) / 2
            a = a / a.sum(axis=-1, keepdims=True)
            result = a @ result
        out.append(result[0, prefix:])
    return np.stack(out)


@pytest.mark.parametrize(("head_fusion", "discard_ratio", "start_layer"),
                         [("mean", 0.9, 0), ("max", 0.5, 1), ("min", 0.0, 0), ("mean", 0.0, 2)])
def test_matches_direct_implementation(head_fusion, discard_ratio, start_layer):
    model, x = tiny_vit(), images()
    probs = timm_attention_probs(model, x)
    expected = reference_rollout(probs, head_fusion, discard_ratio, start_layer)
    result = explain_full(model, x, "rollout", head_fusion=head_fusion,
                          discard_ratio=discard_ratio, start_layer=start_layer)
    native = result.extras["native"]
    assert native.shape == (2, 4, 4)
    np.testing.assert_allclose(native.reshape(2, -1).numpy(), expected, rtol=1e-9, atol=1e-12)
    assert result.maps.shape == (2, 40, 40)
    upsampled = nn.functional.interpolate(native[:, None], size=(40, 40), mode="bilinear",
                                          align_corners=False)[:, 0]
    torch.testing.assert_close(result.maps, upsampled)


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
    model, x = tiny_vit(), images(batch=3)
    together = explain(model, x, "rollout", discard_ratio=0.9)
    for i in range(3):
        torch.testing.assert_close(explain(model, x[i : i + 1], "rollout", discard_ratio=0.9)[0],
                                   together[i])


def test_register_tokens_are_stripped():
    model, x = tiny_vit(reg_tokens=2), images()
    assert model.net.num_prefix_tokens == 3
    probs = timm_attention_probs(model, x)
    expected = reference_rollout(probs, "mean", 0.8, prefix=3)
    native = explain_full(model, x, "rollout", discard_ratio=0.8).extras["native"]
    np.testing.assert_allclose(native.reshape(2, -1).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_non_vit_model_is_a_user_error():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 2))
    model = LoadedModel(net, name="my_cnn", family="cnn")
    with pytest.raises(UserError, match=r"ViT-family.*my_cnn"):
        explain(model, torch.rand(1, 3, 16, 16), "rollout")


def test_bad_parameters_are_user_errors():
    model, x = tiny_vit(), images(batch=1)
    with pytest.raises(UserError, match="head_fusion"):
        explain(model, x, "rollout", head_fusion="median")
    with pytest.raises(UserError, match="discard_ratio"):
        explain(model, x, "rollout", discard_ratio=1.0)
    with pytest.raises(UserError, match="start_layer"):
        explain(model, x, "rollout", start_layer=3)


def test_supports_rollout_says_which_models_rollout_can_explain():
    from xaicompare.attribution import supports_rollout

    assert supports_rollout(tiny_vit())
    pvt = timm.create_model("pvt_v2_b0", pretrained=False, num_classes=3, depths=(1, 1),
                            embed_dims=(8, 16), num_heads=(1, 1), sr_ratios=(2, 1),
                            mlp_ratios=(2, 2))
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    for net in (pvt, cnn):
        assert not supports_rollout(net)
        with pytest.raises(UserError, match="rollout needs a ViT-family model"):
            explain(LoadedModel(net, name="x", family="transformer"), torch.rand(1, 3, 32, 32),
                    method="rollout")
