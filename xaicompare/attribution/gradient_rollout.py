"""Gradient-weighted attention rollout (Chefer, Gur & Wolf, 2021).

The rule of "Generic Attention-model Explainability for Interpreting Bi-Modal and
Encoder-Decoder Transformers" (ICCV 2021, Eq. 5-6), the gradient-weighted attention of their
"Transformer Interpretability Beyond Attention Visualization" (CVPR 2021) without the LRP
relevance, as in their reference code (hila-chefer/Transformer-MM-Explainability, ViT demo):

    R = I;  for each block b:  A_bar = mean_heads(clamp(dy/dA_b * A_b, min=0));  R += A_bar @ R

where A_b are the block's attention probabilities [heads, N, N] and y the target logit. The map
is R's class row over the patch tokens (the rows the head reads, as in rollout; see
`attention.readout`). Unlike rollout it is class-specific and needs one backward pass.
Models, probability capture and token layout (DeiT-distilled, registers, BEiT, EVA, CaiT's
self- then class-attention blocks) are shared with rollout (`attention.py`).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import (
    attention_modules,
    captured_attention,
    checked_probs,
    readout,
)
from .registry import Explanation, register_method
from .rollout import check_start_layer, token_maps


@register_method("gradient_rollout", display_name="Gradient rollout", family="attention",
                 check_model=attention_modules, cost=lambda p, n, s: (0, n, True),
                 applies_note="models with standard multi-head self-attention (ViT, DeiT, BEiT, EVA, CaiT)")
def gradient_rollout(
    model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    *,
    start_layer: int = 0,
) -> Explanation:
    """Gradient-weighted rollout maps [B, H, W] (>= 0); extras["native"]: patch grid [B, h, w].

    start_layer: first attention block included (0 = all, as in Chefer et al.'s code)
    """
    modules = attention_modules(model, "gradient_rollout")
    check_start_layer(start_layer, len(modules))
    # A leaf input keeps the graph even when the user froze every parameter.
    inputs = images.detach().requires_grad_(True)
    with torch.enable_grad(), captured_attention(modules, keep_graph=True) as records:
        scores = model(inputs).gather(1, target.view(-1, 1)).sum()
    probs, layout = checked_probs(model, "gradient_rollout", modules, records, images.shape[0])
    grads = torch.autograd.grad(scores, probs)

    dtype = torch.promote_types(probs[0].dtype, torch.float32)  # fp16 products drift
    relevance = torch.eye(layout.total, dtype=dtype, device=images.device)
    relevance = relevance.expand(images.shape[0], -1, -1)
    blocks = list(zip(modules, probs, grads, strict=True))[start_layer:]
    for (_, kind), p, grad in blocks:
        weighted = (grad.to(dtype) * p.detach().to(dtype)).clamp(min=0).mean(dim=1)
        relevance = relevance + layout.embed(weighted, kind) @ relevance
    maps, native = token_maps(model, images, readout(model, relevance, layout))
    return Explanation(maps=maps.detach(), extras={"native": native.detach()},
                       params={"start_layer": start_layer})
