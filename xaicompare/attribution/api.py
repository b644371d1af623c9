"""`explain`: the one entry point for every attribution method."""

from __future__ import annotations

import inspect
import warnings

import torch

from ..errors import UserError, did_you_mean
from ..models.cam_layers import warn_if_head_is_zero
from ..models.gradient_guards import install_gradient_guards
from .registry import METHODS, Explanation

# Canonical images are in [0, 1]; a little slack for resampling overshoot.
_RANGE_SLACK = 1e-3


def resolve_target(model, images: torch.Tensor, target) -> torch.Tensor:
    """Target classes as LongTensor [B]: None -> the model's predicted class."""
    batch = images.shape[0]
    if target is None:
        with torch.no_grad():
            return model(images).argmax(dim=1)
    if isinstance(target, bool):
        raise UserError("target must be None, an int class index, or one class per image; got a bool")
    if isinstance(target, int):
        target = torch.full((batch,), target, dtype=torch.long, device=images.device)
    else:
        target = torch.as_tensor(target, device=images.device)
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise UserError(f"target must hold integer class indices, got dtype {target.dtype}")
        target = target.to(torch.long).reshape(-1)
    if target.numel() != batch:
        raise UserError(f"target has {target.numel()} entries for {batch} images; "
                        "accepted: None (predicted class), an int, or one class per image")
    if (target < 0).any():
        raise UserError(f"target class indices must be >= 0, got {target.tolist()}")
    n_outputs = _n_outputs(model, images)
    if (target >= n_outputs).any():
        raise UserError(f"target {target.max().item()} is outside the model's {n_outputs} "
                        f"classes; accepted: 0 to {n_outputs - 1}")
    return target


def _n_outputs(model, images: torch.Tensor) -> int:
    """The model's number of classes: from a LoadedModel's class subset or timm head when
    it says, else from a one-image forward pass (a whole extra pass costs a busy CPU)."""
    indices = getattr(model, "class_indices", None)
    if isinstance(indices, torch.Tensor):
        return indices.numel()
    head = getattr(getattr(model, "net", None), "num_classes", None)
    if isinstance(head, int) and head > 0:
        return head
    with torch.no_grad():
        return model(images[:1]).shape[1]


def check_images(images) -> torch.Tensor:
    """Validate canonical images: float tensor [B, 3, H, W] with values in [0, 1]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise UserError(f"images must be a float tensor [B, 3, H, W] in [0, 1], got {shape}")
    if not images.is_floating_point():
        raise UserError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise UserError("images is an empty batch (B = 0)")
    low, high = images.min().item(), images.max().item()
    if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
        raise UserError(
            f"images must be in [0, 1] (the canonical frame; models normalise inside), got "
            f"values in [{low:.3g}, {high:.3g}]; pass un-normalised images"
        )
    return images


def check_params(method: str, fn, params: dict) -> None:
    """UserError naming an unknown parameter and the accepted ones."""
    signature = inspect.signature(fn)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return
    accepted = [  # everything after (model, images, target)
        name for name, p in list(signature.parameters.items())[3:]
        if p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]
    for name in params:
        if name not in accepted:
            raise UserError(
                f"method '{method}' has no parameter '{name}'{did_you_mean(name, accepted)}; "
                f"accepted: {', '.join(accepted) or '(none)'}"
            )


def resolved_params(method: str, params: dict) -> dict:
    """The method's keyword defaults updated with `params`: what a store key must name, so
    maps computed under an old default are never reused after the default changes."""
    signature = inspect.signature(METHODS.get(method))
    defaults = {name: p.default for name, p in list(signature.parameters.items())[3:]
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **params}


def explain_full(model, images, method: str = "gradcam", target=None, *,
                 check_logits: bool = True, **params) -> Explanation:
    """Like `explain`, but returns the Explanation with its extras and resolved params.

    check_logits: warn about images whose logits are not finite and set their maps to NaN
    (a map explains no number there); the engine checks logits itself and passes False.
    """
    fn = METHODS.get(method)
    check_params(method, fn, params)
    images = check_images(images)
    if fn.info.check_model is not None:  # e.g. rollout on a CNN: say why, before any pass
        fn.info.check_model(model, method)
    bad = None
    if check_logits:
        with torch.no_grad():
            logits = model(images)
        bad = ~torch.isfinite(logits.reshape(len(logits), -1)).all(dim=1).cpu()
        target = logits.argmax(dim=1) if target is None else target  # no second pass
    target = resolve_target(model, images, target)
    warn_if_head_is_zero(model)  # every gradient method would silently give zeros
    install_gradient_guards(model)  # BatchNorm's wrong one-image gradients (see the module)
    result = fn(model, images, target, **params)
    if bad is not None and bool(bad.any()):
        name = getattr(model, "name", type(model).__name__)
        warnings.warn(f"model '{name}': non-finite logits (NaN or inf) for {int(bad.sum())} "
                      f"of {len(bad)} image(s); their {method} maps are set to NaN",
                      RuntimeWarning, stacklevel=3)
        result.maps = result.maps.masked_fill(bad.to(result.maps.device)[:, None, None],
                                              float("nan"))
    return result


def explain(model, images, method: str = "gradcam", target=None, **params) -> torch.Tensor:
    """Explanation maps [B, H, W] in the canonical frame of `images`.

    method: a registered name ("gradcam", "integrated_gradients", "kernelshap", "rollout",
            "gradient_rollout")
    target: None (predicted class), an int, or a LongTensor [B].
    params: the method's own keyword parameters (e.g. n_steps=64 for integrated_gradients).
    A map never depends on the other images in its batch.
    """
    return explain_full(model, images, method, target, **params).maps
