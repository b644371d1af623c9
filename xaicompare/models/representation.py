"""A model's penultimate representation, read from the forward pass that gives its logits.

The representation is the input of the classifier (timm's `pre_logits` output: pooled,
normed, before the head), captured by a pre-hook on that module, so keeping it costs no
extra pass. timm models name their classifier (`get_classifier()`; distilled models: the
first head); other modules use their last nn.Linear. Models with neither have none.
"""

from __future__ import annotations

import torch
from torch import nn


def penultimate_module(net: nn.Module) -> nn.Module | None:
    """The classifier module whose input is the representation, or None."""
    get_classifier = getattr(net, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else None
    head = head[0] if isinstance(head, tuple) else head
    if isinstance(head, nn.Module) and not isinstance(head, nn.Identity):
        return head
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def logits_and_features(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, features [B, F]) of a LoadedModel in one forward pass; F = 0 where the
    model has no classifier input to read (a module without a head or nn.Linear)."""
    captured: list[torch.Tensor] = []
    module = penultimate_module(model.net)
    handle = None if module is None else module.register_forward_pre_hook(
        lambda mod, args: captured.append(args[0]) if args and torch.is_tensor(args[0]) else None)
    try:
        logits = model(images)
    finally:
        if handle is not None:
            handle.remove()
    if not captured or captured[0].shape[0] != images.shape[0]:
        return logits, images.new_zeros(images.shape[0], 0)
    return logits, captured[0].reshape(images.shape[0], -1)
