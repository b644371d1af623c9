"""Grad-CAM (Selvaraju et al., 2017), batched, with gradients w.r.t. one layer only.

The layer's output is captured by a forward hook and replaced by a detached leaf that
requires grad. `torch.autograd.grad(score, leaf)` then back-propagates from the logits to
that layer and stops there: nothing below the layer is differentiated, no parameter
gradient is ever computed or stored, and frozen models (requires_grad=False) work too.
The network below the layer runs without building a graph at all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .registry import Attribution, register_method

UPSAMPLE_MODES = ("bilinear", "nearest")
ToNCHW = Callable[[torch.Tensor], torch.Tensor]


def _identity(activation: torch.Tensor) -> torch.Tensor:
    return activation


def resolve_cam_layer(model: nn.Module, layer) -> tuple[nn.Module, ToNCHW]:
    """(module, to_nchw) for `layer`: None (the model's default), a name, a depth or a module.

    LoadedModels go through `xaicompare.models.layers.resolve_layer`; a plain nn.Module
    (e.g. in tests) understands None (its `cam_layer` attribute) and an nn.Module.
    """
    if hasattr(model, "net"):
        from ..models.layers import resolve_layer

        return resolve_layer(model, layer)

    default = getattr(model, "cam_layer", None)
    default_to_nchw = getattr(model, "to_nchw", None) or _identity
    if layer is None:
        if default is None:
            raise UserError(
                f"model {getattr(model, 'name', type(model).__name__)} has no default "
                "Grad-CAM layer; pass layer=<nn.Module inside the model>"
            )
        return default, default_to_nchw
    if isinstance(layer, nn.Module):
        return layer, (default_to_nchw if layer is default else _identity)
    raise UserError(
        f"layer={layer!r} is not understood here; accepted: None (the model's cam layer) "
        "or an nn.Module inside the model"
    )


def _forward_with_leaf_at(
    model: nn.Module, images: torch.Tensor, layer: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `model(images)`; returns (logits, leaf) where leaf is `layer`'s output.

    Below the layer the forward runs under no_grad; the hook swaps the output for a
    grad-requiring leaf and switches grad mode on, so only the part above is recorded.
    """
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise UserError(
                f"Grad-CAM layer {type(layer).__name__} returns {type(output).__name__}, "
                "not a tensor; pick a layer whose output is a single tensor"
            )
        if captured:
            raise UserError(
                f"Grad-CAM layer {type(layer).__name__} runs more than once per forward pass "
                "(a shared module); pick a layer that runs once"
            )
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        torch.set_grad_enabled(True)  # undone by the enclosing no_grad() on exit
        return leaf

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        handle.remove()
    if not captured:
        raise UserError(
            f"Grad-CAM layer {type(layer).__name__} did not run in the model's forward pass; "
            "pick a module inside the model"
        )
    return logits, captured[0]


def gradcam_native(
    model: nn.Module, images: torch.Tensor, target: torch.Tensor, layer: nn.Module,
    to_nchw: ToNCHW = _identity, relu: bool = True,
) -> torch.Tensor:
    """Grad-CAM on the layer's own grid: [B, h, w] = relu(sum_c mean_hw(dS/dA_c) * A_c)."""
    logits, leaf = _forward_with_leaf_at(model, images, layer)
    if not logits.requires_grad:
        raise UserError("the model's logits do not depend on the Grad-CAM layer's output")
    # Sum of per-image scores: image b's score only depends on image b's activation.
    with torch.enable_grad():  # also inside a caller's no_grad()
        score = logits.gather(1, target.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, leaf)
    activation, grad = to_nchw(leaf.detach()), to_nchw(grad)
    if activation.ndim != 4:
        raise UserError(
            f"Grad-CAM layer output became shape {tuple(activation.shape)} after to_nchw; "
            "expected [B, C, h, w] (give the model a to_nchw for token or NHWC layers)"
        )
    weights = grad.mean(dim=(2, 3))
    cam = torch.einsum("bc,bchw->bhw", weights, activation)
    return cam.clamp_min(0) if relu else cam


def upsample_maps(maps: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """[B, h, w] -> [B, H, W]; bilinear uses half-pixel centres (align_corners=False)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    align = False if mode == "bilinear" else None
    return F.interpolate(maps[:, None], size=size, mode=mode, align_corners=align)[:, 0]


@register_method("gradcam", display_name="Grad-CAM", family="cam")
def gradcam(
    model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    *,
    layer=None,
    upsample: str = "bilinear",
    relu: bool = True,
) -> Attribution:
    """Grad-CAM maps [B, H, W] in the canonical frame; extras["native"] is the layer grid.

    layer:    None (model.cam_layer), a module name, a relative depth, or an nn.Module
    upsample: "bilinear" | "nearest", from the layer grid to the canonical H, W
    relu:     clamp negative evidence to zero (the original definition)
    """
    if upsample not in UPSAMPLE_MODES:
        raise UserError(f"upsample='{upsample}' is not known; accepted: {', '.join(UPSAMPLE_MODES)}")
    module, to_nchw = resolve_cam_layer(model, layer)
    native = gradcam_native(model, images, target, module, to_nchw, relu=relu)
    maps = upsample_maps(native, tuple(images.shape[-2:]), upsample)
    layer_name = next((name for name, m in model.named_modules() if m is module), None)
    params = {"layer": layer_name, "upsample": upsample, "relu": relu}
    return Attribution(maps=maps.detach(), extras={"native": native.detach()}, params=params)
