"""Attention rollout (Abnar & Zuidema, 2020) for timm Vision Transformers.

Follows jacobgil/vit-explain (`vit_rollout.py`): fuse heads (mean/max/min), zero the lowest
`discard_ratio` fraction of each layer's fused attention, add the identity for the residual
path, renormalise rows, multiply the layers together, and read the CLS row over the patch
tokens. Three deliberate differences from that code, each a bug there:
- rows are renormalised (`a / a.sum(-1, keepdim=True)`); vit-explain divides by a
  [B, N] sum that broadcasts over columns;
- discard is per image; vit-explain zeroes image 0's indices only;
- attention *to* the prefix tokens (the CLS column, and register/distillation tokens) is
  never discarded; vit-explain only protects the single entry CLS->CLS.

timm computes attention with fused `scaled_dot_product_attention`, so the probabilities
never exist as a tensor that a hook could see; they are recomputed here from the hooked
`qkv` projection, exactly as the unfused path of `timm.layers.Attention` does.
Rollout is class-agnostic: `target` is ignored.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from .gradcam import upsample_maps
from .registry import Attribution, register_method

HEAD_FUSIONS = ("mean", "max", "min")


def vit_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The `timm.layers.Attention` of every block, in order; UserError for other models."""
    from timm.layers import Attention

    net = getattr(model, "net", model)
    blocks = getattr(net, "blocks", None)
    attns = [getattr(block, "attn", None) for block in blocks] if blocks is not None else []
    if not attns or not all(isinstance(attn, Attention) for attn in attns):
        name = getattr(model, "name", type(net).__name__)
        raise UserError(
            f"rollout needs a ViT-family model (timm VisionTransformer-style blocks whose .attn "
            f"is a standard multi-head Attention with qkv); model '{name}' "
            f"({type(net).__name__}) is not one. Use gradcam or integrated_gradients instead."
        )
    return attns


def supports_rollout(model: nn.Module) -> bool:
    """Whether attention rollout can explain `model` (ViT-style blocks, standard attention)."""
    try:
        vit_attention_modules(model)
    except UserError:
        return False
    return True


def attention_probs(attn: nn.Module, qkv: torch.Tensor) -> torch.Tensor:
    """Softmax attention [B, heads, N, N] from the output of `attn.qkv` [B, N, 3 * dim]."""
    batch, tokens, _ = qkv.shape
    heads = attn.num_heads
    qkv = qkv.reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def fuse_heads(probs: torch.Tensor, head_fusion: str) -> torch.Tensor:
    """[B, heads, N, N] -> [B, N, N]."""
    if head_fusion == "mean":
        return probs.mean(dim=1)
    if head_fusion == "max":
        return probs.amax(dim=1)
    return probs.amin(dim=1)


def rollout_layer_matrix(
    fused: torch.Tensor, discard_ratio: float, num_prefix_tokens: int
) -> torch.Tensor:
    """One layer's factor: discard the weakest links, add the residual, renormalise rows."""
    batch, tokens, _ = fused.shape
    n_discard = int(tokens * tokens * discard_ratio)
    if n_discard > 0:
        lowest = fused.reshape(batch, -1).topk(n_discard, dim=-1, largest=False).indices
        drop = torch.zeros(batch, tokens * tokens, dtype=torch.bool, device=fused.device)
        drop.scatter_(1, lowest, True)
        drop = drop.view(batch, tokens, tokens)
        drop[:, :, :num_prefix_tokens] = False  # attention to CLS/prefix tokens is kept
        fused = fused.masked_fill(drop, 0.0)
    eye = torch.eye(tokens, dtype=fused.dtype, device=fused.device)
    a = (fused + eye) / 2
    return a / a.sum(dim=-1, keepdim=True)


def patch_grid(net: nn.Module, n_patches: int) -> tuple[int, int]:
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    if grid is not None and grid[0] * grid[1] == n_patches:
        return int(grid[0]), int(grid[1])
    side = math.isqrt(n_patches)
    if side * side != n_patches:
        raise UserError(f"cannot arrange {n_patches} patch tokens on a grid for rollout")
    return side, side


@register_method("rollout", display_name="Attention rollout", family="attention")
def rollout(
    model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.9,
    start_layer: int = 0,
) -> Attribution:
    """Attention-rollout maps [B, H, W]; extras["native"] is the patch grid [B, h, w].

    head_fusion:   "mean" | "max" | "min" over heads
    discard_ratio: fraction of each layer's fused attention entries set to zero (lowest
                   first); attention to the prefix tokens is never discarded
    start_layer:   first block included in the product (0 = all)
    """
    if head_fusion not in HEAD_FUSIONS:
        raise UserError(
            f"head_fusion='{head_fusion}' is not known; accepted: {', '.join(HEAD_FUSIONS)}"
        )
    if not 0.0 <= discard_ratio < 1.0:
        raise UserError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    attns = vit_attention_modules(model)
    if not 0 <= start_layer < len(attns):
        raise UserError(
            f"start_layer={start_layer} is out of range; the model has {len(attns)} blocks"
        )
    net = getattr(model, "net", model)
    num_prefix = int(getattr(net, "num_prefix_tokens", 1))
    joint: list[torch.Tensor] = []  # running product, updated block by block

    def make_hook(attn: nn.Module):
        def hook(_module, _inputs, qkv):
            fused = fuse_heads(attention_probs(attn, qkv), head_fusion)
            fused = fused.to(torch.promote_types(fused.dtype, torch.float32))  # fp16 products drift
            factor = rollout_layer_matrix(fused, discard_ratio, num_prefix)
            joint.append(factor if not joint else factor @ joint.pop())

        return hook

    handles = [attn.qkv.register_forward_hook(make_hook(attn)) for attn in attns[start_layer:]]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()

    (product,) = joint
    if getattr(net, "cls_token", None) is not None:
        scores = product[:, 0, num_prefix:]
    else:  # no CLS token (average/attention pooling): mean over the patch rows
        scores = product[:, num_prefix:, num_prefix:].mean(dim=1)
    grid = patch_grid(net, scores.shape[-1])
    native = scores.reshape(-1, *grid)
    maps = upsample_maps(native, tuple(images.shape[-2:]), "bilinear")
    params = {"head_fusion": head_fusion, "discard_ratio": discard_ratio, "start_layer": start_layer}
    return Attribution(maps=maps, extras={"native": native}, params=params)
