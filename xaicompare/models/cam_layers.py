"""Grad-CAM target layers for any model: timm's `forward_intermediates` first, hooks otherwise.

Route "forward_intermediates" (see `intermediates.py`): the maps timm itself returns at each
depth (prefix tokens stripped, channels-last permuted, Hiera unrolled), read through an
index map from the module output they are cut from. Depth fractions map to timm's indices;
an index whose map feeds nothing the head reads (the last block of a cls-pooled ViT) gives
way to the last block's input, or else to the nearest usable index (shallower first).

Route "hook" (see `hook_route.py`): for models without a usable `forward_intermediates`
and for an explicit module that is not one of timm's sources; the map is found inside the
module's output and accepted only on a grid the model has. Route "given": a LoadedModel
built by hand with `cam_layer=` / `to_nchw=`.

Every map carries its CamLayer's `identity()` (route, layer, output path, grid) into the
store key, so changing any of them can never serve a stale map.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import UserError
from .hook_route import (
    ActivationToNCHW,
    SpatialView,
    capture_outputs,
    feature_info_names,
    known_grids,
    num_prefix_tokens,
    spatial_view,
    spine_names,
)
from .intermediates import (
    OutputPath,
    depth_index,
    has_forward_intermediates,
    head_is_zero,
    read_intermediates,
    tensor_at,
)

if TYPE_CHECKING:
    from .base import LoadedModel

ToNCHW = Callable[[torch.Tensor], torch.Tensor]
ROUTE_INTERMEDIATES, ROUTE_HOOK, ROUTE_GIVEN = "forward_intermediates", "hook", "given"
__all__ = ["ActivationToNCHW", "CamLayer", "cam_candidates", "head_is_zero", "layer_name",
           "probe_cam_layer", "resolve_layer", "set_cam", "warn_if_head_is_zero"]


@dataclass(eq=False)
class CamLayer:
    """A Grad-CAM layer: the module to hook, where its map is and how to read it."""

    module: nn.Module
    name: str
    to_nchw: ToNCHW
    route: str
    path: OutputPath = ()  # position of the map inside a tuple/list output
    grid: tuple[int, int] | None = None  # native (h, w) at the model's input size

    def identity(self) -> dict:
        """What a stored map depends on besides the weights (part of its store key)."""
        return {"route": self.route, "layer": self.name, "path": list(self.path),
                "grid": list(self.grid) if self.grid else None}


def set_cam(model: LoadedModel, cam: CamLayer) -> None:
    """Make `cam` the model's default Grad-CAM layer."""
    model.cam, model.cam_layer, model.to_nchw = cam, cam.module, cam.to_nchw


def _cache(model: LoadedModel) -> dict:
    if "_cam_cache" not in model.__dict__:
        model.__dict__["_cam_cache"] = {}
    return model.__dict__["_cam_cache"]


def _input_size(model: LoadedModel) -> tuple[int, int]:
    return tuple(model.input_size) if model.input_size else (64, 64)


def _user_grid(model: LoadedModel) -> tuple[int, int] | None:
    grid = (getattr(model, "metadata", None) or {}).get("grid")
    return (int(grid[0]), int(grid[1])) if grid else None


def cam_candidates(model: LoadedModel) -> list[CamLayer]:
    """One layer per depth step, shallow -> deep (relative depth picks among them)."""
    cache = _cache(model)
    if "candidates" not in cache:
        cache["candidates"] = _intermediate_candidates(model) or _hook_candidates(model)
    return cache["candidates"]


def _intermediate_candidates(model: LoadedModel) -> list[CamLayer]:
    net = model.net
    if not has_forward_intermediates(net) or _user_grid(model):
        return []
    report = read_intermediates(net, _input_size(model))
    _cache(model)["intermediates"] = report
    modules = dict(net.named_modules())
    usable = [layer.index for layer in report.layers if layer.usable]
    if not usable:
        return []
    out = []
    for layer in report.layers:  # unusable indices give way to the nearest usable one
        chosen = report.layers[min(usable, key=lambda i: (abs(i - layer.index), i > layer.index))]
        out.append(CamLayer(modules[chosen.name], chosen.name, chosen.to_nchw,
                            ROUTE_INTERMEDIATES, chosen.path, chosen.grid))
    return out


def _hook_candidates(model: LoadedModel) -> list[CamLayer]:
    net, size, grid = model.net, _input_size(model), _user_grid(model)
    try:
        names = feature_info_names(net) or spine_names(net, size, grid)
        outputs = capture_outputs(net, names, size) if names else {}
    except (AssertionError, RuntimeError, ValueError, IndexError) as err:
        raise _forward_error(model, err) from None
    modules = dict(net.named_modules())
    grids = known_grids(net, size)
    candidates = []
    for name in names:
        if len(outputs.get(name, [])) != 1:
            continue
        view = _view(model, outputs[name][0], grids, grid, min_cells=1)
        if isinstance(view, SpatialView):
            candidates.append(CamLayer(modules[name], name, view.to_nchw, ROUTE_HOOK,
                                       view.path, view.grid))
    if not candidates:
        raise UserError(f"found no layer with a spatial output in model '{model.name}'; pass "
                        "layer='<module name>' (and grid=(h, w) if it outputs tokens)")
    return candidates


def _forward_error(model: LoadedModel, err: BaseException) -> UserError:
    return UserError(f"model '{model.name}' fails on a {_input_size(model)} input: "
                     f"{(str(err).splitlines() or [type(err).__name__])[0][:200]}; check "
                     "input_size / img_size against the model's patch size")


def _view(model: LoadedModel, output, grids, grid, min_cells: int = 2) -> SpatialView | str:
    net = model.net
    return spatial_view(output, grids, num_prefix_tokens(net), grid,
                        channels_last=getattr(net, "output_fmt", "NCHW") == "NHWC",
                        input_size=_input_size(model), min_cells=min_cells)


def resolve_layer(model: LoadedModel, layer: None | str | float | nn.Module = None) -> CamLayer:
    """Grad-CAM layer for `model`.

    None: the model's default. float in (0, 1]: relative depth over timm's intermediates
    (or the hook route's stages; 1.0 = the default depth, 0.25/0.5/0.75 the published
    depth experiment). str: a module name in `model.net`. nn.Module: a module of it.
    """
    if layer is None:
        return _default(model)
    if isinstance(layer, bool):
        raise UserError(f"layer={layer!r} is not a layer; pass None, a module name, "
                        "a relative depth in (0, 1] or an nn.Module")
    if isinstance(layer, (int, float)):
        depth = float(layer)
        if not 0.0 < depth <= 1.0:
            raise UserError(f"relative layer depth must be in (0, 1], got {layer!r}")
        candidates = cam_candidates(model)
        return candidates[depth_index(depth, len(candidates))]
    modules = dict(model.net.named_modules())
    if isinstance(layer, str):
        if layer not in modules:
            close = [n for n in modules if n.endswith(layer) or layer in n][:5]
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise UserError(f"model '{model.name}' has no module named '{layer}'{hint}; "
                            "pass a name from model.net.named_modules() or a depth like 0.75")
        return _named(model, layer)
    if isinstance(layer, nn.Module):
        name = next((n for n, m in modules.items() if m is layer), None)
        if name is None:
            raise UserError(f"the given layer {type(layer).__name__} is not part of model "
                            f"'{model.name}'")
        return _named(model, name)
    raise UserError(f"layer={layer!r} is not accepted; pass None, a module name, "
                    "a relative depth in (0, 1] or an nn.Module")


def _default(model: LoadedModel) -> CamLayer:
    cam = getattr(model, "cam", None)
    if cam is not None and cam.module is model.cam_layer:
        return cam
    if model.cam_layer is None:
        raise UserError(f"model '{model.name}' has no default Grad-CAM layer; pass layer=")
    name = layer_name(model, model.cam_layer)
    return CamLayer(model.cam_layer, name, model.to_nchw, ROUTE_GIVEN)


def _named(model: LoadedModel, name: str) -> CamLayer:
    """An explicit module: timm's own reading when it is an intermediate's source, else
    the hook route's (never the automatic search first: a user's `layer=` wins)."""
    cache = _cache(model).setdefault("named", {})
    if name in cache:
        return cache[name]
    net = model.net
    grids = known_grids(net, _input_size(model))
    if has_forward_intermediates(net) and not _user_grid(model):
        try:
            candidates = cam_candidates(model)
        except UserError:
            candidates = []
        match = [c for c in candidates if c.name == name and c.route == ROUTE_INTERMEDIATES]
        if match:
            cache[name] = match[-1]
            return match[-1]
        grids |= {c.grid for c in candidates if c.grid}
    module = dict(net.named_modules())[name]
    try:
        outputs = capture_outputs(net, [name], _input_size(model)).get(name, [])
    except (AssertionError, RuntimeError, ValueError, IndexError) as err:
        raise _forward_error(model, err) from None
    if len(outputs) != 1:
        runs = "does not run" if not outputs else f"runs {len(outputs)} times"
        raise UserError(f"Grad-CAM layer '{name}' of model '{model.name}' {runs} in one "
                        "forward pass; pick a module that runs once, e.g. layer=0.75")
    view = _view(model, outputs[0], grids, _user_grid(model))
    if isinstance(view, str):
        raise UserError(f"Grad-CAM layer '{name}' of model '{model.name}' {view}; "
                        "try layer=0.75 (relative depth), grid=(h, w) for token outputs, or "
                        "another name from model.net.named_modules()")
    cache[name] = CamLayer(module, name, view.to_nchw, ROUTE_HOOK, view.path, view.grid)
    return cache[name]


def layer_name(model: LoadedModel, module: nn.Module) -> str:
    return next((n for n, m in model.net.named_modules() if m is module), "<unnamed>")


def probe_cam_layer(model: LoadedModel, layer: None | str | float | nn.Module = None,
                    size: int | None = None) -> tuple[int, int]:
    """Check on one random image that the layer gives a spatial grid with non-zero gradient.

    Returns the grid (h, w); raises UserError naming the model, the layer and what to try.
    """
    cam = resolve_layer(model, layer)
    side = size or (model.input_size[0] if model.input_size else 64)
    captured: list = []
    handle = cam.module.register_forward_hook(lambda m, i, o: captured.append(o))
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1, 3, side, side, generator=generator).to(model.device)
    try:
        with torch.enable_grad():
            logits = model(images)
            activation = tensor_at(captured[-1], cam.path) if captured else None
            if not isinstance(activation, torch.Tensor):
                problem = "did not produce a tensor output during the forward pass"
            else:
                grad = torch.autograd.grad(logits[0].max(), activation, allow_unused=True)[0]
                problem = _grid_problem(activation, grad, cam.to_nchw, head_is_zero(model.net))
    finally:
        handle.remove()
    if problem is not None:
        raise UserError(f"Grad-CAM layer '{cam.name}' of model '{model.name}' {problem}; "
                        "try layer=0.75 (relative depth) or layer='<module name>' "
                        "from model.net.named_modules()")
    grid = cam.to_nchw(activation)
    return int(grid.shape[-2]), int(grid.shape[-1])


def _grid_problem(activation: torch.Tensor, grad: torch.Tensor | None, to_nchw: ToNCHW,
                  zero_head: bool = False) -> str | None:
    try:
        grid = to_nchw(activation)
    except ValueError as err:
        return f"gives an activation that is not a spatial grid ({err})"
    if grid.dim() != 4 or grid.shape[-1] * grid.shape[-2] <= 1:
        return f"gives shape {tuple(grid.shape)}, not a spatial grid [B,C,h,w] with h*w>1"
    if (grad is None or not bool(to_nchw(grad).abs().sum() > 0)) and not zero_head:
        return "receives zero gradient from the top logit"
    return None


ZERO_HEAD = ("every gradient explanation of this model will be zero: the head is untrained "
             "(its classifier weights are all zero); load trained weights (checkpoint=, "
             "pretrained=True) or fine-tune it first")


def warn_if_head_is_zero(model: LoadedModel) -> bool:
    """A visible warning for a zero classifier head; True when it was given."""
    net = getattr(model, "net", None)
    if isinstance(net, nn.Module) and head_is_zero(net):
        warnings.warn(f"model '{getattr(model, 'name', type(net).__name__)}': {ZERO_HEAD}",
                      UserWarning, stacklevel=3)
        return True
    return False
