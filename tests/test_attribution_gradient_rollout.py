"""Gradient-weighted attention rollout (Chefer et al., 2021) against a direct implementation.

The reference runs the tiny ViT block by block by hand, with each attention written out as
softmax(q k^T * scale) and kept as a tensor, takes the gradient of the target logit with
respect to those tensors, and applies R = I; R += mean_heads(clamp(dy/dA * A, min=0)) @ R in
a loop per image. The hand forward is checked against the model's own logits first.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attention_reference import attention_blocks, hand_attention_forward, images, tiny_model

from xaicompare.attribution import explain, explain_full

PREFIX_AND_ROWS = {"vit": (1, [0]), "vit_reg": (3, [0]), "deit_distilled": (2, [0, 1])}


def hand_forward(model, x):
    """Logits and the attention probabilities [B, heads, N, N] of every block."""
    net = model.net
    h = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(model.preprocess(x)))))
    probs = []
    for block in net.blocks:
        attn, y = block.attn, block.norm1(h)
        batch, tokens, dim = y.shape
        q, k, v = attn.qkv(y).reshape(batch, tokens, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1) * attn.scale).softmax(dim=-1)
        probs.append(a)
        mixed = (a @ v).transpose(1, 2).reshape(batch, tokens, dim)
        h = h + block.ls1(attn.proj(mixed))
        h = h + block.ls2(block.mlp(block.norm2(h)))
    return net.forward_head(net.norm(h)), probs


def reference_gradient_rollout(model, x, target, rows, prefix, start_layer=0):
    logits, probs = hand_forward(model, x)
    torch.testing.assert_close(logits, model(x), rtol=1e-9, atol=1e-9)
    score = logits[torch.arange(len(x)), target].sum()
    grads = torch.autograd.grad(score, probs)
    out = []
    for b in range(len(x)):
        n = probs[0].shape[-1]
        relevance = np.eye(n)
        for a, g in list(zip(probs, grads, strict=True))[start_layer:]:
            cam = np.clip(g[b].detach().numpy() * a[b].detach().numpy(), 0, None).mean(axis=0)
            relevance = relevance + cam @ relevance
        out.append(relevance[rows, prefix:].mean(axis=0))
    return np.stack(out)


@pytest.mark.parametrize("family", sorted(PREFIX_AND_ROWS))
def test_matches_direct_implementation(family):
    model, x = tiny_model(family), images()
    prefix, rows = PREFIX_AND_ROWS[family]
    target = torch.tensor([1, 3])
    expected = reference_gradient_rollout(model, x, target, rows, prefix)
    result = explain_full(model, x, "gradient_rollout", target=target)
    native = result.extras["native"]
    assert native.shape == (2, 4, 4) and result.maps.shape == (2, 40, 40)
    np.testing.assert_allclose(native.reshape(2, -1).numpy(), expected, rtol=1e-9, atol=1e-12)
    assert native.std() > 0 and (native >= 0).all()


def test_start_layer_and_class_dependence():
    model, x = tiny_model("vit"), images()
    for start_layer in (1, 2):
        expected = reference_gradient_rollout(model, x, torch.tensor([0, 0]), [0], 1, start_layer)
        native = explain_full(model, x, "gradient_rollout", target=0,
                              start_layer=start_layer).extras["native"]
        np.testing.assert_allclose(native.reshape(2, -1).numpy(), expected, rtol=1e-9, atol=1e-12)
    # unlike rollout, the map depends on the class explained
    assert not torch.allclose(explain(model, x, "gradient_rollout", target=0),
                              explain(model, x, "gradient_rollout", target=4))
    torch.testing.assert_close(explain(model, x, "rollout", target=0),
                               explain(model, x, "rollout", target=4))


# family -> (prefix tokens, rows the head reads); BEiT and EVA-02 average the patch tokens
OTHER_FAMILIES = {"beit": (1, "patches"), "eva": (1, "patches"), "cait": (1, [0])}


@pytest.mark.parametrize("family", sorted(OTHER_FAMILIES))
def test_other_families_match_written_out_attention(family):
    """Every attention module's forward replaced by its written-out softmax(q k^T + bias);
    CaiT's self-attention blocks fill the patch rows, its class-attention blocks row 0."""
    model, x = tiny_model(family), images()
    prefix, rows = OTHER_FAMILIES[family]
    target = torch.tensor([2, 0])
    logits, probs = hand_attention_forward(model, x)
    torch.testing.assert_close(logits, model(x), rtol=1e-9, atol=1e-9)
    grads = torch.autograd.grad(logits[torch.arange(2), target].sum(), probs)
    kinds = [kind for _, kind in attention_blocks(model)]
    total = max(p.shape[-1] for p in probs)
    expected = []
    for b in range(2):
        relevance = np.eye(total)
        for a, g, kind in zip(probs, grads, kinds, strict=True):
            cam = np.clip(g[b].numpy() * a[b].detach().numpy(), 0, None).mean(axis=0)
            full = np.zeros((total, total))
            if kind == "full":
                full = cam
            elif kind == "patches":
                full[prefix:, prefix:] = cam
            else:
                full[: cam.shape[0], :] = cam
            relevance = relevance + full @ relevance
        read = list(range(prefix, total)) if rows == "patches" else rows
        expected.append(relevance[read, prefix:].mean(axis=0))
    native = explain_full(model, x, "gradient_rollout", target=target).extras["native"]
    assert native.shape == (2, 4, 4) and (native >= 0).all() and native.std() > 0
    np.testing.assert_allclose(native.reshape(2, -1).numpy(), np.stack(expected), rtol=1e-9,
                               atol=1e-12)


def test_frozen_parameters_still_give_gradients():
    model, x = tiny_model("vit"), images(batch=1)
    expected = explain(model, x, "gradient_rollout", target=1)
    model.requires_grad_(False)
    torch.testing.assert_close(explain(model, x, "gradient_rollout", target=1), expected)
