"""The hook route to a Grad-CAM map: for models without a usable `forward_intermediates`
(a user's module, older timm families) and for an explicit `layer=` module.

A layer is accepted only when one tensor of its output (tuples and lists are searched)
is a spatial map: [B, C, h, w] or [B, h, w, C] (told apart by shape against the grids
the model is known to have), or tokens [B, N, C] that form the patch grid. `h * w` must
match a grid the model has at some depth when such grids are known (timm's feature
reductions, the patch grid, `grid=`); an attention-internal [B, heads, N, d] tensor or a
positional-encoding conv then no longer passes for a feature map.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .intermediates import OutputPath, head_is_zero, output_tensors

Grid = tuple[int, int]


class ActivationToNCHW:
    """Turns a layer output into [B, C, h, w]: NCHW as is, NHWC permuted, tokens to a grid.

    Tokens [B, N, C]: up to `num_prefix_tokens` leading tokens (cls, distillation, registers)
    are dropped when the rest fits the patch grid; the grid comes from `grid_size` when the
    count matches it, else from the token count and the grid's aspect ratio (dynamic sizes).
    """

    def __init__(self, channels_last: bool = False, num_prefix_tokens: int = 0,
                 grid_size: Grid | None = None) -> None:
        self.channels_last = channels_last
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.grid_size = tuple(grid_size) if grid_size is not None else None

    def __call__(self, activation: torch.Tensor) -> torch.Tensor:
        if activation.dim() == 4:
            return activation.permute(0, 3, 1, 2) if self.channels_last else activation
        if activation.dim() == 3:
            return self._tokens_to_grid(activation)
        raise ValueError(f"cannot make a spatial grid from an activation of shape "
                         f"{tuple(activation.shape)}; expected [B,C,h,w], [B,h,w,C] or [B,N,C]")

    def _tokens_to_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens.shape
        prefixes = dict.fromkeys((self.num_prefix_tokens, 0))  # ordered, unique
        if self.grid_size is not None:
            for prefix in prefixes:  # exact match with the nominal patch grid first
                if n - prefix == self.grid_size[0] * self.grid_size[1]:
                    return _to_grid(tokens[:, prefix:], *self.grid_size)
        aspect = self.grid_size[0] / self.grid_size[1] if self.grid_size else 1.0
        for prefix in prefixes:
            h = max(1, round(math.sqrt((n - prefix) * aspect)))
            if (n - prefix) % h == 0 and n - prefix > 0 and h * h * 4 >= n - prefix:
                return _to_grid(tokens[:, prefix:], h, (n - prefix) // h)
        raise ValueError(f"{n} tokens do not form a patch grid (prefix tokens tried: "
                         f"{list(prefixes)}, grid {self.grid_size}); pass grid=(h, w)")

    def __repr__(self) -> str:
        return (f"ActivationToNCHW(channels_last={self.channels_last}, "
                f"num_prefix_tokens={self.num_prefix_tokens}, grid_size={self.grid_size})")


def _to_grid(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


@dataclass
class SpatialView:
    """Where the map is in a module's output and how to read it as NCHW."""

    path: OutputPath
    to_nchw: ActivationToNCHW
    grid: Grid


def num_prefix_tokens(net: nn.Module) -> int:
    value = getattr(net, "num_prefix_tokens", None)
    if value is None:  # older or third-party token models: one cls token if they have one
        own = [name for name, _ in net.named_parameters(recurse=False)]
        return 1 if any(name.startswith("cls_token") for name in own) else 0  # CoaT: cls_token4
    return int(value)


def patch_grid(net: nn.Module) -> Grid | None:
    for attr in ("patch_embed", "stem"):
        grid = getattr(getattr(net, attr, None), "grid_size", None)
        if grid is not None:
            return int(grid[0]), int(grid[1])
    return None


def known_grids(net: nn.Module, input_size: Grid) -> set[Grid]:
    """Grids the model has at some depth: from timm's feature reductions and patch grid."""
    grids: set[Grid] = set()
    info = getattr(net, "feature_info", None)
    infos = info.info if hasattr(info, "info") else (info or [])
    for item in infos:
        reduction = item.get("reduction") if isinstance(item, dict) else None
        if reduction:
            for rounding in (math.floor, math.ceil):
                grids.add((rounding(input_size[0] / reduction), rounding(input_size[1] / reduction)))
    patch = patch_grid(net)
    if patch is not None:
        grids.add(patch)
    return grids


def spatial_view(output, grids: set[Grid], prefix: int, grid: Grid | None = None,
                 channels_last: bool = False, input_size: Grid | None = None,
                 min_cells: int = 2) -> SpatialView | str:
    """The first tensor of `output` that reads as a spatial map on an accepted grid, or
    a sentence saying why none does. `grid` (the user's) overrides the known grids; with
    neither, tokens form a grid of the input's aspect ratio. `min_cells=1` keeps a 1x1
    stage among the depths (the load-time probe then says to use a larger input)."""
    accepted = {grid} if grid is not None else grids
    seen = []
    for path, tensor in output_tensors(output):
        seen.append(tuple(tensor.shape))
        if not getattr(tensor, "used_after_return", True):
            continue  # the rest of the network does not read it (Grad-CAM's leaf would idle)
        view = _view_of(tensor, accepted, prefix, grid or input_size, channels_last, min_cells)
        if view is not None:
            return SpatialView(path, *view)
    shapes = ", ".join(str(s) for s in seen[:4]) or "no tensor"
    expected = (f" on a grid in {sorted(accepted)}" if accepted else "")
    return f"gives {shapes}, not a spatial map [B,C,h,w] (h*w>1){expected}"


def _view_of(tensor: torch.Tensor, accepted: set[Grid], prefix: int, grid: Grid | None,
             channels_last: bool, min_cells: int = 2) -> tuple[ActivationToNCHW, Grid] | None:
    if tensor.dim() == 4:
        a, b, c = (int(s) for s in tensor.shape[1:])
        if accepted:
            layouts = [(False, (b, c)), (True, (a, b))]
            layouts.sort(key=lambda item: item[0] != channels_last)
            for is_last, shape in layouts:
                if shape in accepted and shape[0] * shape[1] >= min_cells:
                    return ActivationToNCHW(channels_last=is_last), shape
            return None
        # no grid known: the layout whose h:w is closer to the input's (NCHW on a tie)
        aspect = grid[0] / grid[1] if grid else 1.0
        is_last = channels_last or abs(a / b - aspect) < abs(b / c - aspect)
        shape = (a, b) if is_last else (b, c)
        return (ActivationToNCHW(channels_last=is_last), shape) if shape[0] * shape[1] >= min_cells else None
    if tensor.dim() == 3 and tensor.shape[1] > 1:
        for g in sorted(accepted) or [grid]:
            adapter = ActivationToNCHW(num_prefix_tokens=prefix, grid_size=g)
            try:
                shape = tuple(adapter(tensor[:1]).shape[-2:])
            except ValueError:
                continue
            if (not accepted or shape in accepted) and shape[0] * shape[1] >= min_cells:
                return adapter, shape
    return None


def capture_outputs(net: nn.Module, names: Iterable[str], input_size: Grid
                    ) -> dict[str, list]:
    """Outputs of the named modules in one forward on a random image. Each tensor of an
    output is handed on as a fresh view marked `.used_after_return` when the logits
    depend on what is done with it after the module returns (what Grad-CAM's leaf swap
    needs); with a zero head nothing depends on anything, and every tensor counts."""
    from .intermediates import replace_at

    modules = dict(net.named_modules())
    captured: dict[str, list] = {}
    views: list[torch.Tensor] = []

    def hook(name):
        def swap(_module, _inputs, output):
            for path, tensor in list(output_tensors(output)):
                if tensor.is_floating_point():
                    view = tensor.view_as(tensor)
                    views.append(view)
                    output = replace_at(output, path, view)
            captured.setdefault(name, []).append(output)
            return output
        return swap

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    param = next(net.parameters(), None)
    device = param.device if param is not None else "cpu"
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    images = torch.rand(1, 3, *input_size, generator=torch.Generator().manual_seed(0))
    try:
        with torch.enable_grad():
            logits = net(images.to(device, dtype).requires_grad_(True))
    finally:
        for handle in handles:
            handle.remove()
    score = logits.float().pow(2).sum() if isinstance(logits, torch.Tensor) else None
    if score is not None and score.requires_grad and views:
        grads = torch.autograd.grad(score, views, allow_unused=True)
        zero_head = head_is_zero(net)
        for view, grad in zip(views, grads, strict=True):
            view.used_after_return = zero_head or (grad is not None and bool(grad.any()))
    return captured


def feature_info_names(net: nn.Module) -> list[str]:
    """timm's feature modules that exist (its list sometimes names missing ones), minus
    the stem; a ModuleList is never called itself, so its last member stands for it."""
    modules = dict(net.named_modules())
    info = getattr(net, "feature_info", None)
    infos = info.info if hasattr(info, "info") else (info or [])
    names = [item.get("module") for item in infos if isinstance(item, dict)]
    names = [n for n in dict.fromkeys(names) if n in modules and n != "stem"]
    return [_called_name(n, modules) for n in names]


def _called_name(name: str, modules: dict[str, nn.Module]) -> str:
    while isinstance(modules[name], nn.ModuleList) and len(modules[name]):
        name = f"{name}.{len(modules[name]) - 1}"
    return name


def spine_names(net: nn.Module, input_size: Grid, grid: Grid | None = None) -> list[str]:
    """Modules along the network's main path whose outputs hold a spatial map, in order.

    Starting at the top, a level where a single child holds the map (a body wrapped in
    one nn.Sequential) is looked through, so depths see nested modules.
    """
    captured = capture_outputs(net, [n for n, _ in net.named_modules() if n], input_size)
    prefix = num_prefix_tokens(net)
    # tokens only with the user's grid: any [B, N, C] (a 1-D conv's too) is not a grid
    spatial = {n for n, outs in captured.items() if len(outs) == 1 and any(
        t.dim() == 4 or grid for _, t in output_tensors(outs[0]))
        and isinstance(spatial_view(outs[0], set(), prefix, grid), SpatialView)}
    order = [n for n in captured if n in spatial]  # dict order: first output first
    parent = ""
    while True:
        depth = parent.count(".") + 1 if parent else 0
        children = [n for n in order if n.startswith(f"{parent}." if parent else "")
                    and n.count(".") == depth]
        if len(children) == 1 and any(n.startswith(f"{children[0]}.") for n in order):
            parent = children[0]
            continue
        return children
