"""Independent references for (gradient) attention rollout: tiny random timm transformers,
attention probabilities computed explicitly as softmax(q k^T * scale + bias) from each
attention module's input (recorded during the model's normal, fused forward), and the rollout
recipe written as plain loops."""

from __future__ import annotations

import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.layers import apply_rot_embed_cat

from xaicompare.models.base import LoadedModel

SIZE = 32  # input pixels; patch 8 -> a 4 x 4 grid
SMALL = {"img_size": SIZE, "patch_size": 8, "num_classes": 5}
FAMILIES = {  # name -> (timm model, extra kwargs)
    "vit": ("vit_tiny_patch16_224", {"depth": 3}),
    "vit_reg": ("vit_tiny_patch16_224", {"depth": 2, "reg_tokens": 2}),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", {"depth": 2}),
    "beit": ("beit_base_patch16_224", {"depth": 2, "embed_dim": 32, "num_heads": 4}),
    "eva": ("eva02_tiny_patch14_224", {"depth": 2, "embed_dim": 32, "num_heads": 4}),
    "cait": ("cait_xxs24_224", {"depth": 2, "depth_token_only": 2, "embed_dim": 32,
                                "num_heads": 4}),
}


def tiny_model(family: str) -> LoadedModel:
    """Random weights, perturbed so attention is far from uniform and no head is zero."""
    arch, kwargs = FAMILIES[family]
    torch.manual_seed(0)
    net = timm.create_model(arch, pretrained=False, **SMALL, **kwargs).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return LoadedModel(net, name=family, family="transformer", input_size=(SIZE, SIZE)).double()


def images(batch=2, size=40):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(2)).double()


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:  # [B, N, C] -> [B, heads, N, C/heads]
    return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)


def explicit_probs(attn, x: torch.Tensor, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, heads, q, k] attention, [B, heads, k, d] values) of one module, written out."""
    from timm.models import beit, cait, eva

    h = attn.num_heads
    if isinstance(attn, cait.ClassAttn):  # the class token queries every token
        q, k, v = _heads(attn.q(x[:, :1]), h), _heads(attn.k(x), h), _heads(attn.v(x), h)
        return (q * attn.scale @ k.transpose(-2, -1)).softmax(-1), v
    if isinstance(attn, cait.TalkingHeadAttn):  # per-head softmax, read before proj_w
        q, k, v = _heads(attn.qkv(x), 3 * h).chunk(3, dim=1)
        logits = attn.proj_l((q * attn.scale @ k.transpose(-2, -1)).permute(0, 2, 3, 1))
        return logits.permute(0, 3, 1, 2).softmax(-1), v
    bias = 0.0
    if isinstance(attn, beit.Attention | eva.EvaAttention) and attn.q_bias is not None:
        qkv = F.linear(x, attn.qkv.weight, torch.cat([attn.q_bias, attn.k_bias, attn.v_bias]))
    elif getattr(attn, "qkv", None) is not None:
        qkv = attn.qkv(x)
    else:
        qkv = torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], dim=-1)
    q, k, v = _heads(qkv, 3 * h).chunk(3, dim=1)
    if hasattr(attn, "q_norm"):
        q, k = attn.q_norm(q), attn.k_norm(k)
    if isinstance(attn, beit.Attention) and attn.relative_position_bias_table is not None:
        n = x.shape[1]
        table = attn.relative_position_bias_table[attn.relative_position_index.view(-1)]
        bias = table.view(n, n, h).permute(2, 0, 1)[None]
    if kwargs.get("rope") is not None:  # EVA: rotary embedding of the patch tokens only
        p, half = attn.num_prefix_tokens, getattr(attn, "rotate_half", False)
        q = torch.cat([q[:, :, :p], apply_rot_embed_cat(q[:, :, p:], kwargs["rope"], half=half)], dim=2)
        k = torch.cat([k[:, :, :p], apply_rot_embed_cat(k[:, :, p:], kwargs["rope"], half=half)], dim=2)
    return (q * attn.scale @ k.transpose(-2, -1) + bias).softmax(-1), v


def explicit_output(attn, probs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The module's output from its written-out attention (CaiT mixes heads first)."""
    if hasattr(attn, "proj_w"):
        probs = attn.proj_w(probs.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    mixed = (probs @ v).transpose(1, 2).flatten(2)
    return attn.proj(attn.norm(mixed) if hasattr(attn, "norm") else mixed)


def hand_attention_forward(model: LoadedModel, x: torch.Tensor):
    """(logits, per-block probabilities in the graph): every attention module's forward
    replaced by the written-out one for this call."""
    probs = []

    def forward(attn):
        def run(inp, *args, **kwargs):
            p, v = explicit_probs(attn, inp, kwargs)
            probs.append(p)
            return explicit_output(attn, p, v)

        return run

    blocks = attention_blocks(model)
    for attn, _ in blocks:
        attn.forward = forward(attn)
    try:
        logits = model(x)
    finally:
        for attn, _ in blocks:
            del attn.forward
    return logits, probs


def attention_blocks(model: LoadedModel) -> list:
    """(attention module, kind) per block: kind "full", "patches" (CaiT SA) or "class"."""
    net = model.net
    blocks = [(b.attn, "patches" if hasattr(b.attn, "proj_w") else "full") for b in net.blocks]
    return blocks + [(b.attn, "class") for b in getattr(net, "blocks_token_only", [])]


def reference_probs(model: LoadedModel, x: torch.Tensor) -> list[tuple[np.ndarray, str]]:
    """Explicit probabilities per block, from inputs recorded in the normal (fused) forward."""
    inputs, hooks = [], []
    blocks = attention_blocks(model)
    for attn, _ in blocks:
        hooks.append(attn.register_forward_pre_hook(
            lambda m, args, kwargs: inputs.append((m, args[0], kwargs)), with_kwargs=True))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        return [(explicit_probs(m, a, kw)[0].numpy(), kind)
                for (m, a, kw), (_, kind) in zip(inputs, blocks, strict=True)]


def reference_rollout(blocks, prefix, rows, head_fusion="mean", discard_ratio=0.0,
                      start_layer=0):
    """vit-explain's recipe (bugs fixed) in loops, per image and per block; `rows` are the
    token rows read out ("patches" = the mean of the patch rows)."""
    total = max(p.shape[-1] for p, _ in blocks)
    batch = blocks[0][0].shape[0]
    out = []
    for b in range(batch):
        result = np.eye(total)
        for probs, kind in blocks[start_layer:]:
            fused = getattr(np, head_fusion)(probs[b], axis=0).copy()
            n_q, n_k = fused.shape
            protected = 0 if kind == "patches" else prefix
            for flat in np.argsort(fused.ravel(), kind="stable")[: int(n_q * n_k * discard_ratio)]:
                row, col = divmod(int(flat), n_k)
                if col >= protected:  # attention to prefix tokens is never discarded
                    fused[row, col] = 0.0
            full = np.zeros((total, total))
            if kind == "full":
                full = fused
            elif kind == "patches":
                full[prefix:, prefix:] = fused
            else:
                full[:n_q, :] = fused
            a = (full + np.eye(total)) / 2
            result = (a / a.sum(axis=-1, keepdims=True)) @ result
        read = range(prefix, total) if rows == "patches" else rows
        out.append(result[list(read), prefix:].mean(axis=0))
    return np.stack(out)
