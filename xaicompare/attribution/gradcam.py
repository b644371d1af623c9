"""Grad-CAM (Selvaraju et al., 2017), batched, with gradients w.r.t. one layer only.

The layer's output is captured by a forward hook and replaced by a detached leaf that
requires grad. `torch.autograd.grad(score, leaf)` then back-propagates from the logits to
that layer and stops there: nothing below the layer is differentiated, no parameter
gradient is ever computed or stored, and frozen models (requires_grad=False) work too.
The network below the layer runs without building a graph at all.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .registry import Explanation, register_method

UPSAMPLE_MODES = ("bilinear", "nearest")
ToNCHW = Callable[[torch.Tensor], torch.Tensor]


def _identity(activation: torch.Tensor) -> torch.Tensor:
    return activation


def resolve_cam_layer(model: nn.Module, layer):
    """The CamLayer for `layer`: None (the model's default), a name, a depth or a module.

    LoadedModels go through `xaicompare.models.cam_layers.resolve_layer`; a plain nn.Module
    (e.g. in tests) understands None (its `cam_layer` attribute) and an nn.Module.
    """
    from ..models.cam_layers import ROUTE_GIVEN, CamLayer, resolve_layer

    if hasattr(model, "net"):
        return resolve_layer(model, layer)

    default = getattr(model, "cam_layer", None)
    default_to_nchw = getattr(model, "to_nchw", None) or _identity
    if layer is None:
        if default is None:
            raise UserError(
                f"model {getattr(model, 'name', type(model).__name__)} has no default "
                "Grad-CAM layer; pass layer=<nn.Module inside the model>"
            )
        layer = default
    if isinstance(layer, nn.Module):
        name = next((n for n, m in model.named_modules() if m is layer), "<unnamed>")
        return CamLayer(layer, name, default_to_nchw if layer is default else _identity,
                        ROUTE_GIVEN)
    raise UserError(
        f"layer={layer!r} is not understood here; accepted: None (the model's cam layer) "
        "or an nn.Module inside the model"
    )


def _forward_with_leaf_at(
    model: nn.Module, images: torch.Tensor, layer: nn.Module, path: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `model(images)`; returns (logits, leaf) where leaf is `layer`'s output (the
    tensor at `path` inside a tuple/list output).

    Below the layer the forward runs under no_grad; the hook swaps the output for a
    grad-requiring leaf and switches grad mode on, so only the part above is recorded.
    """
    from ..models.intermediates import replace_at, tensor_at

    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        try:
            tensor = tensor_at(output, path)
        except (IndexError, TypeError, KeyError):
            tensor = None
        if not isinstance(tensor, torch.Tensor):
            raise UserError(
                f"Grad-CAM layer {type(layer).__name__} returns {type(output).__name__} "
                f"without a tensor at position {list(path)}; pick a layer whose output "
                "holds a spatial map"
            )
        if captured:
            raise UserError(
                f"Grad-CAM layer {type(layer).__name__} runs more than once per forward pass "
                "(a shared module); pick a layer that runs once"
            )
        leaf = tensor.detach().requires_grad_(True)
        captured.append(leaf)
        torch.set_grad_enabled(True)  # undone by the enclosing no_grad() on exit
        return replace_at(output, path, leaf)

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


def layer_activations_and_gradients(
    model: nn.Module, images: torch.Tensor, target: torch.Tensor, layer: nn.Module,
    to_nchw: ToNCHW = _identity, path: tuple[int, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, dS/dA), both [B, C, h, w]: the layer's activation and the gradient of each
    image's target logit S with respect to it (one forward, one backward to the layer)."""
    logits, leaf = _forward_with_leaf_at(model, images, layer, path)
    if not logits.requires_grad:
        raise UserError("the model's logits do not depend on the Grad-CAM layer's output")
    # Sum of per-image scores: image b's score only depends on image b's activation.
    with torch.enable_grad():  # also inside a caller's no_grad()
        score = logits.gather(1, target.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, leaf)
    activation, grad = to_nchw(leaf.detach()), to_nchw(grad)
    _check_nchw(activation)
    if not grad.any():
        _warn_zero_gradient(model, layer)
    return activation, grad


class _LayerReached(Exception):
    """Raised by the capture hook: nothing above the layer needs to run."""


def layer_activations(model: nn.Module, images: torch.Tensor, layer: nn.Module,
                      to_nchw: ToNCHW = _identity, path: tuple[int, ...] = ()) -> torch.Tensor:
    """The layer's activation [B, C, h, w], for gradient-free CAMs: the forward pass stops
    at the layer (the rest of the network is not run)."""
    from ..models.intermediates import tensor_at

    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        tensor = tensor_at(output, path) if path else output
        if not isinstance(tensor, torch.Tensor):
            raise UserError(f"CAM layer {type(layer).__name__} returns "
                            f"{type(output).__name__} without a tensor at position "
                            f"{list(path)}; pick a layer whose output holds a spatial map")
        captured.append(tensor.detach())
        raise _LayerReached

    handle = layer.register_forward_hook(hook)
    try:
        with torch.inference_mode():  # no autograd bookkeeping at all
            model(images)
    except _LayerReached:
        pass
    finally:
        handle.remove()
    if not captured:
        raise UserError(f"CAM layer {type(layer).__name__} did not run in the model's forward "
                        "pass; pick a module inside the model")
    activation = to_nchw(captured[0])
    _check_nchw(activation)
    return activation


def _check_nchw(activation: torch.Tensor) -> None:
    if activation.ndim != 4:
        raise UserError(
            f"Grad-CAM layer output became shape {tuple(activation.shape)} after to_nchw; "
            "expected [B, C, h, w] (give the model a to_nchw for token or NHWC layers)"
        )


def weighted_sum(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """sum_c w_bc * A_bchw -> [B, h, w]: the map of every channel-weighting CAM."""
    return torch.einsum("bc,bchw->bhw", weights, activation)


def gradcam_combine(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: each channel weighted by the spatial mean of its gradient."""
    return weighted_sum(grad.mean(dim=(2, 3)), activation)


def gradcam_native(
    model: nn.Module, images: torch.Tensor, target: torch.Tensor, layer: nn.Module,
    to_nchw: ToNCHW = _identity, relu: bool = True, path: tuple[int, ...] = (),
) -> torch.Tensor:
    """Grad-CAM on the layer's own grid: [B, h, w] = relu(sum_c mean_hw(dS/dA_c) * A_c)."""
    activation, grad = layer_activations_and_gradients(model, images, target, layer, to_nchw,
                                                       path)
    cam = gradcam_combine(activation, grad)
    return cam.clamp_min(0) if relu else cam


def _warn_zero_gradient(model: nn.Module, layer: nn.Module) -> None:
    from ..models.cam_layers import warn_if_head_is_zero

    if warn_if_head_is_zero(model):
        return
    net = getattr(model, "net", model)
    name = next((n for n, m in net.named_modules() if m is layer), type(layer).__name__)
    warnings.warn(
        f"Grad-CAM layer '{name}' of model '{getattr(model, 'name', type(model).__name__)}' "
        "receives zero gradient from the target logits of every image, so its maps are all "
        "zero; pick another layer (e.g. layer=0.75, or the input of the last block of a "
        "model that pools a cls token)", UserWarning, stacklevel=4)


def upsample_maps(maps: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """[B, h, w] -> [B, H, W]; bilinear uses half-pixel centres (align_corners=False)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    align = False if mode == "bilinear" else None
    return F.interpolate(maps[:, None], size=size, mode=mode, align_corners=align)[:, 0]


# (activation, gradient or None) [B, C, h, w] -> map [B, h, w] before the ReLU
Combine = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def check_upsample(upsample: str) -> None:
    if upsample not in UPSAMPLE_MODES:
        raise UserError(f"upsample='{upsample}' is not known; accepted: {', '.join(UPSAMPLE_MODES)}")


def cam_attribution(native: torch.Tensor, images: torch.Tensor, cam, upsample: str,
                    relu: bool, **params) -> Explanation:
    """The Explanation of a native map [B, h, w] (before the ReLU) at layer `cam`."""
    native = native.clamp_min(0) if relu else native
    maps = upsample_maps(native, tuple(images.shape[-2:]), upsample)
    params = {**cam.identity(), "grid": list(native.shape[-2:]), "upsample": upsample,
              "relu": relu, **params}
    return Explanation(maps=maps.detach(), extras={"native": native.detach()}, params=params)


def register_cam(name: str, display_name: str, combine: Combine, *,
                 uses_gradients: bool = True):
    """Register a CAM variant given by its `combine(activation, gradient)` over the shared
    machinery: layer resolution, one forward (+ backward to the layer), ReLU, upsampling,
    store identity. Returns the registered method."""

    def method(model: nn.Module, images: torch.Tensor, target: torch.Tensor, *,
               layer=None, upsample: str = "bilinear", relu: bool = True) -> Explanation:
        check_upsample(upsample)
        cam = resolve_cam_layer(model, layer)
        if uses_gradients:
            activation, grad = layer_activations_and_gradients(
                model, images, target, cam.module, cam.to_nchw, cam.path)
        else:
            activation, grad = layer_activations(model, images, cam.module, cam.to_nchw,
                                                 cam.path), None
        return cam_attribution(combine(activation, grad), images, cam, upsample, relu)

    method.__name__ = method.__qualname__ = name
    method.__module__ = combine.__module__  # pickled by reference: <module>.<name>
    method.__doc__ = (f"{display_name} maps [B, H, W] in the canonical frame; "
                      f"extras[\"native\"] is the layer grid.\n\n{CAM_PARAMETERS}\n\n"
                      f"{combine.__doc__ or ''}")
    method.store_identity = _store_identity
    cost = (lambda p, n, s: (0, n, True)) if uses_gradients else (lambda p, n, s: (n, 0, True))
    return register_method(name, display_name=display_name, family="cam",
                           signed=False, cost=cost)(method)


CAM_PARAMETERS = """layer:    None (model.cam_layer), a module name, a relative depth, or an nn.Module
upsample: "bilinear" | "nearest", from the layer grid to the canonical H, W
relu:     clamp negative evidence to zero (the original definition)"""


def _store_identity(model: nn.Module, params: dict) -> dict:
    """The resolved layer (route, name, output path, grid) behind `params["layer"]`, for
    the store key: a new default layer or route never serves maps of the old one."""
    return resolve_cam_layer(model, params.get("layer")).identity()


gradcam = register_cam("gradcam", "Grad-CAM", gradcam_combine)
