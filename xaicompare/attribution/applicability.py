"""Which models a method can explain: most explain any classifier, some only one kind
(attention rollout: ViT-style attention), as the method declares where it registers. A
study computes a method for the models it applies to and marks it "not applicable" for
the others."""

from __future__ import annotations

from torch import nn

from .registry import method_info


def applies_to(method: str, model: nn.Module) -> bool:
    """Whether `method` can explain `model`."""
    return method_info(method).applies(model)
