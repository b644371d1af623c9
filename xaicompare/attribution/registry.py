"""Registry of attribution methods.

Every method is one function registered under a name, with one call shape:

    fn(model, images, target, **params) -> Attribution

model:  a LoadedModel (or any nn.Module taking canonical images [B, 3, H, W] in [0, 1])
images: float tensor [B, 3, H, W] in the canonical frame, on the model's device
target: LongTensor [B] of class indices in the model's (study) class space
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..registry import Registry


@dataclass
class Attribution:
    """Maps in the canonical frame plus per-image extras worth storing."""

    maps: torch.Tensor  # float [B, H, W]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # each [B, ...]
    params: dict = field(default_factory=dict)  # resolved parameters, recorded with outputs


METHODS: Registry = Registry("attribution method")
register_method = METHODS.register
