"""Which models a method can explain: most explain any classifier, some only one kind
(attention rollout: ViT-style attention). A study computes a method for the models it
applies to and marks it "not applicable" for the others."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .rollout import supports_rollout

# method -> test of a model; a method not listed applies to every model
APPLIES_TO: dict[str, Callable[[nn.Module], bool]] = {"rollout": supports_rollout}


def applies_to(method: str, model: nn.Module) -> bool:
    """Whether `method` can explain `model`."""
    test = APPLIES_TO.get(method)
    return True if test is None else bool(test(model))
