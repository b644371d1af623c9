"""Work-arounds for autograd kernels that give wrong input gradients, installed on a model
before any method takes a gradient through it.

BatchNorm in eval mode (torch 2.14, CPU) returns a wrong input gradient when the batch holds
one image and the gradient arriving from the layer above is not contiguous, as after XCiT's
patch embedding `bn(x).flatten(2).transpose(1, 2)`: on the zoo's shapes-xcit a one-image
saliency map differed from the same image's map in a batch of two by 86% of its max, and a
finite difference agreed with the batched one. A shard or a pass of one image happens at the
end of any dataset and under a tight memory budget, so every BatchNorm gets its incoming
gradient made contiguous (identity in the forward pass; tests/test_gradient_guards.py).
"""

from __future__ import annotations

import torch
from torch import nn

GUARDED = "_xaicompare_gradient_guards"


def _contiguous(gradient: torch.Tensor) -> torch.Tensor:
    return gradient.contiguous()


def _contiguous_gradient(module: nn.Module, inputs, output):
    # a hook on the output tensor, not an identity Function: a later in-place op (ReLU with
    # inplace=True) keeps working, and the hook still feeds BatchNorm's own backward
    if isinstance(output, torch.Tensor) and output.requires_grad:
        output.register_hook(_contiguous)


def install_gradient_guards(model: nn.Module) -> nn.Module:
    """Idempotent: hooks each BatchNorm of `model` once."""
    if getattr(model, GUARDED, False):
        return model
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.register_forward_hook(_contiguous_gradient)
    object.__setattr__(model, GUARDED, True)
    return model
