"""Registry of attribution methods.

Every method is one function registered under a name, with one call shape:

    fn(model, images, target, **params) -> Explanation

model:  a LoadedModel (or any nn.Module taking canonical images [B, 3, H, W] in [0, 1])
images: float tensor [B, 3, H, W] in the canonical frame, on the model's device
target: LongTensor [B] of class indices in the model's (study) class space
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UserError
from ..registry import Registry


@dataclass
class Explanation:
    """What a method returns: maps in the canonical frame plus per-image extras worth storing.

    (captum's `Attribution` is the algorithm; this is its result. `Attribution` stays an
    alias of this class for code written before the rename.)"""

    maps: torch.Tensor  # float [B, H, W]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # each [B, ...]
    params: dict = field(default_factory=dict)  # resolved parameters, recorded with outputs


Attribution = Explanation  # the name before the rename


# Per-image inputs a study derives from the image ids and shares across models: superpixels
# (one segmentation per image for every model) and seeds (the same random draws for every model)
STUDY_INPUTS = ("segments", "image_seeds")


@dataclass(frozen=True)
class MethodInfo:
    """What the rest of the toolkit asks about a method, declared where it is registered."""

    name: str
    # maps carry a sign (evidence for / against): diverging colours in figures; None: it
    # depends on the parameters (figures then look at the maps' values)
    signed: bool | None
    display_name: str
    family: str  # "cam" | "gradient" | "perturbation" | "attention"
    # raises a UserError saying why a model cannot be explained (None: every classifier can)
    check_model: Callable[[nn.Module, str], object] | None = None
    applies_note: str = "every classifier"  # which models, in words
    # goes into the maps' store keys: raise it when a change alters the maps of the same
    # parameters, so stored maps of the old code are not reused (1 adds nothing to a key)
    version: int = 1
    # the parameter that buys accuracy with compute (KernelSHAP n_samples, IG n_steps): what
    # trust's convergence curve sweeps; None: the method has none
    budget: str | None = None
    # smallest accepted integer value of parameters, checked when a study file is read
    minimums: Mapping[str, int] = field(default_factory=dict)
    # which STUDY_INPUTS the method takes: a study hands it the shard's shared superpixels
    # ("segments") and per-image seeds ("image_seeds"); read from the signature by default
    shared_inputs: tuple[str, ...] = ()
    # the model-parameter randomisation test may explain it again on a randomised copy
    randomization: bool = True
    # model evaluations it costs: fn(resolved params, n_images, image side) ->
    # (forward-only, forward+backward, exact count?); `xaicompare plan` adds them up. A
    # cost that depends on the model (Score-CAM: its layer's channels) also takes `model=`
    # (the LoadedModel) and returns None without it.
    cost: Callable[[dict, int, int], tuple[int, int, bool]] | None = None
    # what an inexact cost counts, printed under the plan (e.g. why it is an upper bound)
    cost_note: str | None = None

    def applies(self, model: nn.Module) -> bool:
        """Whether the method can explain `model`."""
        if self.check_model is None:
            return True
        try:
            self.check_model(model, self.name)
        except UserError:
            return False
        return True


METHODS: Registry = Registry("attribution method")


def register_method(name: str, *, signed: bool | None = False, display_name: str | None = None,
                    family: str = "gradient",
                    check_model: Callable[[nn.Module, str], object] | None = None,
                    applies_note: str = "every classifier", version: int = 1,
                    budget: str | None = None, minimums: Mapping[str, int] | None = None,
                    shared_inputs: tuple[str, ...] | None = None, randomization: bool = True,
                    cost: Callable[[dict, int, int], tuple[int, int, bool]] | None = None,
                    cost_note: str | None = None):
    """Decorator: register `fn(model, images, target, **params) -> Explanation` as `name`,
    with its MethodInfo as `fn.info` (see MethodInfo for what each argument declares)."""

    def decorate(fn):
        taken = inspect.signature(fn).parameters
        shared = tuple(p for p in STUDY_INPUTS if p in taken) if shared_inputs is None \
            else tuple(shared_inputs)
        fn.info = MethodInfo(name, signed, display_name or name, family, check_model,
                             applies_note, version, budget, dict(minimums or {}), shared,
                             randomization, cost, cost_note)
        return METHODS.register(name)(fn)

    return decorate


def method_info(name: str) -> MethodInfo:
    """The MethodInfo of a registered method (UserError naming the methods if unknown)."""
    return METHODS.get(name).info
