"""Attention probabilities of timm transformers, read during one explain pass.

Shared by attention rollout and gradient-weighted rollout. A model qualifies when every block
in `net.blocks` (and CaiT's `net.blocks_token_only`) has an `.attn` that is standard
multi-head attention over the whole token sequence: timm's `Attention` and `AttentionRope`
(ViT, DeiT, DINOv2, register tokens, EVA-rope variants), BEiT's `Attention` (relative position
bias), EVA's `EvaAttention` (rope), `RelPosAttention` (vit_relpos), CaiT's `TalkingHeadAttn`
(self-attention over patches) and `ClassAttn` (the class token attending to all tokens).
Windowed (Swin, SAM), pooled (PVT, MViT), channel (XCiT) and gated positional (ConViT)
attention are refused with a UserError: rollout's matrices would not mean token mixing.

How the probabilities are read: timm runs `scaled_dot_product_attention`, where they never
exist as a tensor. For the explain pass only, `fused_attn` is switched off on these modules,
so each takes its own unfused path (softmax(q k^T * scale + bias or rope)) and a hook on
`attn_drop` (identity in eval) reads the probabilities; `fused_attn` is restored afterwards,
so every other forward keeps the fused kernel. CaiT's talking-heads attention mixes heads
after the softmax (`proj_w`); its per-head softmax (the input of `proj_w`) is read, because
those rows are attention distributions and the mixed rows are not (they need not be >= 0 or
sum to 1).

Token layout: T = the longest key sequence (all tokens at the end), P = `num_prefix_tokens`
(class, distillation, register tokens first). A self-attention block over all T tokens is used
as is; CaiT's self-attention blocks see only the T - P patch tokens (the class token joins
later) and sit in the patch rows and columns; a class-attention block fills the class rows.
Rows of tokens a block leaves alone are zero, so in rollout (A + I) / 2 keeps them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError

SELF, CLASS, SELF_PREMIX = "self", "class", "self_premix"


def _attention_kinds() -> dict[type, str]:
    """Attention classes whose unfused path this module knows, and how each is read."""
    from timm.layers import Attention, AttentionRope
    from timm.models import beit, cait, eva, vision_transformer_relpos

    return {
        Attention: SELF, AttentionRope: SELF, beit.Attention: SELF, eva.EvaAttention: SELF,
        vision_transformer_relpos.RelPosAttention: SELF,
        cait.TalkingHeadAttn: SELF_PREMIX, cait.ClassAttn: CLASS,
    }


def _kind(attn: nn.Module | None, kinds: dict[type, str]) -> str | None:
    return next((kind for cls, kind in kinds.items() if isinstance(attn, cls)), None)


def not_applicable(model: nn.Module, method: str, why: str) -> UserError:
    net = getattr(model, "net", model)
    name = getattr(model, "name", type(net).__name__)
    return UserError(
        f"{method} is not applicable to model '{name}' ({type(net).__name__}): {why}. It needs "
        f"transformer blocks with standard multi-head self-attention over all tokens (timm "
        f"ViT, DeiT, DINOv2, BEiT, EVA, CaiT, register tokens); use gradcam or "
        f"integrated_gradients instead"
    )


def attention_modules(model: nn.Module, method: str = "rollout") -> list[tuple[nn.Module, str]]:
    """(attention module, kind) of every block in forward order; UserError for other models."""
    net = getattr(model, "net", model)
    kinds = _attention_kinds()
    found = []
    for group in ("blocks", "blocks_token_only"):
        blocks = getattr(net, group, None)
        if group == "blocks" and not isinstance(blocks, nn.Sequential | nn.ModuleList):
            raise not_applicable(model, method, "it has no `blocks` of transformer layers")
        for i, block in enumerate(blocks or ()):
            attn = getattr(block, "attn", None)
            kind = _kind(attn, kinds)
            if kind is None:
                what = "no .attn" if attn is None else f".attn of type {type(attn).__name__}"
                raise not_applicable(model, method, f"{group}[{i}] has {what}, not a standard "
                                                    "multi-head self-attention")
            found.append((attn, kind))
    if not found or found[0][1] == CLASS:
        raise not_applicable(model, method, "it has no self-attention blocks")
    return found


def supports_rollout(model: nn.Module) -> bool:
    """Whether (gradient) attention rollout can explain `model` (see the module docstring)."""
    try:
        attention_modules(model)
    except UserError:
        return False
    return True


@contextmanager
def captured_attention(
    modules: list[tuple[nn.Module, str]], keep_graph: bool
) -> Iterator[list[list[torch.Tensor]]]:
    """Per module, the [B, heads, queries, keys] probabilities of each call in the block.

    keep_graph=False detaches them (rollout); True keeps them in the autograd graph so the
    caller can take the gradient of a score with respect to them (gradient rollout).
    """
    records: list[list[torch.Tensor]] = [[] for _ in modules]
    handles, fused = [], []

    def keep(i: int, probs: torch.Tensor) -> None:
        records[i].append(probs if keep_graph else probs.detach())

    def keep_premix(i: int, args: tuple) -> tuple:
        # proj_w sees the softmax as [B, N, N, heads]; it is given back as a permutation of
        # the recorded tensor, so the graph runs through the recorded [B, heads, N, N] one.
        probs = args[0].permute(0, 3, 1, 2)
        keep(i, probs)
        return (probs.permute(0, 2, 3, 1), *args[1:])

    for i, (attn, kind) in enumerate(modules):
        if hasattr(attn, "fused_attn"):
            fused.append((attn, attn.fused_attn))
            attn.fused_attn = False
        if kind == SELF_PREMIX:
            handles.append(attn.proj_w.register_forward_pre_hook(
                lambda _m, args, i=i: keep_premix(i, args)))
        else:
            handles.append(attn.attn_drop.register_forward_hook(
                lambda _m, _inputs, out, i=i: keep(i, out)))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()
        for attn, flag in fused:
            attn.fused_attn = flag


@dataclass(frozen=True)
class TokenLayout:
    """Where each block's attention sits among the model's T tokens (P prefix tokens first)."""

    total: int
    prefix: int

    def protected(self, keys: int) -> int:
        """How many leading key columns of a block are prefix tokens (never discarded)."""
        return max(0, keys - (self.total - self.prefix))

    def embed(self, matrix: torch.Tensor, kind: str) -> torch.Tensor:
        """A block's [B, queries, keys] matrix placed in [B, T, T] (zeros elsewhere)."""
        batch, queries, keys = matrix.shape
        if queries == keys == self.total:
            return matrix
        out = matrix.new_zeros(batch, self.total, self.total)
        if kind == CLASS:
            out[:, :queries, :] = matrix
        else:
            out[:, self.total - keys:, self.total - keys:] = matrix
        return out


def checked_probs(
    model: nn.Module, method: str, modules: list[tuple[nn.Module, str]],
    records: list[list[torch.Tensor]], batch: int,
) -> tuple[list[torch.Tensor], TokenLayout]:
    """One [B, heads, q, k] tensor per block and the token layout; UserError if the blocks'
    attention is not one call each over (a part of) one token sequence of this batch."""
    net = getattr(model, "net", model)
    probs = []
    for (_, kind), calls in zip(modules, records, strict=True):
        if len(calls) != 1:
            raise not_applicable(model, method, f"an attention module ran {len(calls)} times "
                                                "in one forward pass (expected once)")
        p = calls[0]
        if p.ndim != 4 or p.shape[0] != batch or (kind != CLASS and p.shape[-1] != p.shape[-2]):
            raise not_applicable(model, method, f"its attention has shape {tuple(p.shape)} for "
                                                f"{batch} images, not [B, heads, N, N] over tokens")
        probs.append(p)
    total = max(p.shape[-1] for p in probs)
    prefix = int(getattr(net, "num_prefix_tokens", 1 if getattr(net, "cls_token", None) is not None
                         else 0))
    for (_, kind), p in zip(modules, probs, strict=True):
        keys = p.shape[-1]
        fits = keys == total if kind == CLASS else keys in (total, total - prefix)
        if not fits or (kind == CLASS and p.shape[-2] > prefix):
            raise not_applicable(model, method, f"a block attends over {keys} tokens where the "
                                                f"model has {total} ({prefix} prefix)")
    return probs, TokenLayout(total=total, prefix=prefix)


def readout(model: nn.Module, product: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """[B, T, T] -> [B, patches]: the rows of the tokens the classifier head reads.

    A head on the class token (global_pool 'token') reads row 0, and DeiT-distilled's head
    averages the class and distillation tokens (rows 0 and 1); any other pooling ('avg',
    'map', none) reads the mean of the patch rows.
    """
    net = getattr(model, "net", model)
    p = layout.prefix
    if getattr(net, "cls_token", None) is not None and getattr(net, "global_pool", "token") == "token":
        rows = 2 if getattr(net, "dist_token", None) is not None else 1
        return product[:, :rows, p:].mean(dim=1)
    return product[:, p:, p:].mean(dim=1)
