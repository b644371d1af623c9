"""Attention rollout (Abnar & Zuidema, 2020) for timm transformers with standard attention.

Follows jacobgil/vit-explain (`vit_rollout.py`): fuse heads (mean/max/min), zero the lowest
`discard_ratio` fraction of each layer's fused attention, add the identity for the residual
path, renormalise rows, multiply the layers together, and read the class row over the patch
tokens. Three deliberate differences from that code, each a bug there:
- rows are renormalised (`a / a.sum(-1, keepdim=True)`); vit-explain divides by a
  [B, N] sum that broadcasts over columns;
- discard is per image; vit-explain zeroes image 0's indices only;
- attention *to* the prefix tokens (the CLS column, and register/distillation tokens) is
  never discarded; vit-explain only protects the single entry CLS->CLS.

Which models, and how the probabilities are read with fused attention left on for every other
forward: see `attention.py`. The row read out is the one the classifier head reads
(`attention.readout`): the class token (DeiT-distilled: class and distillation tokens
averaged), else the mean of the patch rows (average / attention pooling). CaiT: its
self-attention blocks (patches only) and then its class-attention blocks are rolled out
together, so the class row collects the patches through the class-attention layers that
actually feed the head; discard applies to each block's own matrix (a class-attention block's
one row per class token).
Rollout is class-agnostic: `target` is ignored.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from .attention import (
    attention_modules,
    captured_attention,
    checked_probs,
    readout,
)
from .gradcam import upsample_maps
from .registry import Explanation, register_method

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(probs: torch.Tensor, head_fusion: str) -> torch.Tensor:
    """[B, heads, N, N] -> [B, N, N]."""
    if head_fusion == "mean":
        return probs.mean(dim=1)
    if head_fusion == "max":
        return probs.amax(dim=1)
    return probs.amin(dim=1)


def discard_weakest(fused: torch.Tensor, discard_ratio: float, protected: int) -> torch.Tensor:
    """Zero the lowest `discard_ratio` fraction of each image's [q, k] entries, except in
    the first `protected` key columns (attention to CLS/prefix tokens is kept)."""
    batch, queries, keys = fused.shape
    n_discard = int(queries * keys * discard_ratio)
    if n_discard == 0:
        return fused
    lowest = fused.reshape(batch, -1).topk(n_discard, dim=-1, largest=False).indices
    drop = torch.zeros(batch, queries * keys, dtype=torch.bool, device=fused.device)
    drop.scatter_(1, lowest, True)
    drop = drop.view(batch, queries, keys)
    drop[:, :, :protected] = False
    return fused.masked_fill(drop, 0.0)


def residual_normalised(fused: torch.Tensor) -> torch.Tensor:
    """(A + I) / 2 with rows renormalised: the residual path's share of each token."""
    eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
    a = (fused + eye) / 2
    return a / a.sum(dim=-1, keepdim=True)


def rollout_layer_matrix(
    fused: torch.Tensor, discard_ratio: float, num_prefix_tokens: int
) -> torch.Tensor:
    """One layer's factor: discard the weakest links, add the residual, renormalise rows."""
    return residual_normalised(discard_weakest(fused, discard_ratio, num_prefix_tokens))


def patch_grid(net: nn.Module, n_patches: int) -> tuple[int, int]:
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    if grid is not None and grid[0] * grid[1] == n_patches:
        return int(grid[0]), int(grid[1])
    side = math.isqrt(n_patches)
    if side * side != n_patches:
        raise UserError(f"cannot arrange {n_patches} patch tokens on a grid for rollout")
    return side, side


def check_start_layer(start_layer: int, n_blocks: int) -> None:
    if isinstance(start_layer, bool) or not isinstance(start_layer, int) or not (
            0 <= start_layer < n_blocks):
        raise UserError(
            f"start_layer={start_layer!r} is out of range; the model has {n_blocks} attention "
            f"blocks (accepted: 0 to {n_blocks - 1})"
        )


def token_maps(model: nn.Module, images: torch.Tensor, scores: torch.Tensor) -> tuple:
    """Patch scores [B, patches] -> (maps [B, H, W], native grid [B, h, w])."""
    grid = patch_grid(getattr(model, "net", model), scores.shape[-1])
    native = scores.reshape(-1, *grid)
    return upsample_maps(native, tuple(images.shape[-2:]), "bilinear"), native


@register_method("rollout", display_name="Attention rollout", family="attention",
                 check_model=attention_modules, cost=lambda p, n, s: (n, 0, True),
                 applies_note="models with standard multi-head self-attention (ViT, DeiT, BEiT, EVA, CaiT)")
def rollout(
    model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.9,
    start_layer: int = 0,
) -> Explanation:
    """Attention-rollout maps [B, H, W]; extras["native"] is the patch grid [B, h, w].

    head_fusion:   "mean" | "max" | "min" over heads
    discard_ratio: fraction of each layer's fused attention entries set to zero (lowest
                   first); attention to the prefix tokens is never discarded
    start_layer:   first attention block included in the product (0 = all; CaiT counts its
                   self-attention blocks, then its class-attention blocks)
    """
    if head_fusion not in HEAD_FUSIONS:
        raise UserError(
            f"head_fusion='{head_fusion}' is not known; accepted: {', '.join(HEAD_FUSIONS)}"
        )
    if not 0.0 <= discard_ratio < 1.0:
        raise UserError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    modules = attention_modules(model, "rollout")
    check_start_layer(start_layer, len(modules))
    with torch.no_grad(), captured_attention(modules, keep_graph=False) as records:
        model(images)
    probs, layout = checked_probs(model, "rollout", modules, records, images.shape[0])

    product = None
    for (_, kind), p in list(zip(modules, probs, strict=True))[start_layer:]:
        fused = fuse_heads(p, head_fusion)
        fused = fused.to(torch.promote_types(fused.dtype, torch.float32))  # fp16 products drift
        fused = discard_weakest(fused, discard_ratio, layout.protected(fused.shape[-1]))
        factor = residual_normalised(layout.embed(fused, kind))
        product = factor if product is None else factor @ product
    maps, native = token_maps(model, images, readout(model, product, layout))
    params = {"head_fusion": head_fusion, "discard_ratio": discard_ratio, "start_layer": start_layer}
    return Explanation(maps=maps, extras={"native": native}, params=params)
