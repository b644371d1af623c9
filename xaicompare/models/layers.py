"""Grad-CAM target layers: find one automatically for any timm family, turn it into NCHW.

Candidate layers come from timm's `feature_info` (stage or block outputs, shallow to deep);
networks without it fall back to the feature maps seen in one forward pass. The default
layer is the deepest candidate, with one correction for token models that pool a prefix
(cls) token: after the last block only the cls token feeds the head, so the last block's
patch tokens get zero gradient. There the default is the *input* of the last block
(`blocks[-1].norm1`), as pytorch-grad-cam recommends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import UserError

if TYPE_CHECKING:
    from .base import LoadedModel

ToNCHW = Callable[[torch.Tensor], torch.Tensor]

# Token models whose `blocks` hold patch tokens only (the cls token joins later, in
# class-attention blocks), so the last block's output does receive gradient.
_PATCH_ONLY_BLOCKS = ("Cait", "Xcit")


class ActivationToNCHW:
    """Turns a layer output into [B, C, h, w]: NCHW as is, NHWC permuted, tokens to a grid.

    Tokens [B, N, C]: up to `num_prefix_tokens` leading tokens (cls, distillation, registers)
    are dropped when the rest fits the patch grid; the grid comes from `grid_size` when the
    count matches it, else from the token count and the grid's aspect ratio (dynamic sizes).
    """

    def __init__(
        self,
        channels_last: bool = False,
        num_prefix_tokens: int = 0,
        grid_size: tuple[int, int] | None = None,
    ) -> None:
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
            if (n - prefix) % h == 0 and n - prefix > 0:
                return _to_grid(tokens[:, prefix:], h, (n - prefix) // h)
        raise ValueError(f"{n} tokens do not form a patch grid (prefix tokens tried: "
                         f"{list(prefixes)}, grid {self.grid_size})")

    def __repr__(self) -> str:
        return (f"ActivationToNCHW(channels_last={self.channels_last}, "
                f"num_prefix_tokens={self.num_prefix_tokens}, grid_size={self.grid_size})")


def _to_grid(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


def _grid_size(net: nn.Module) -> tuple[int, int] | None:
    for attr in ("patch_embed", "stem"):
        embed = getattr(net, attr, None)
        grid = getattr(embed, "grid_size", None)
        if grid is not None:
            return int(grid[0]), int(grid[1])
    return None


def _adapter_for(net: nn.Module) -> ActivationToNCHW:
    return ActivationToNCHW(
        channels_last=getattr(net, "output_fmt", "NCHW") == "NHWC",
        num_prefix_tokens=_num_prefix_tokens(net),
        grid_size=_grid_size(net),
    )


def candidate_layers(net: nn.Module, input_size: tuple[int, int] | None = None
                     ) -> list[tuple[str, nn.Module]]:
    """Named layers Grad-CAM can use, ordered shallow -> deep; the last is the default."""
    modules = dict(net.named_modules())
    feature_info = getattr(net, "feature_info", None)
    names: list[str] = []
    if feature_info:
        infos = feature_info.info if hasattr(feature_info, "info") else feature_info
        names = [info["module"] for info in infos if info.get("module") in modules]
        names = [n for n in dict.fromkeys(names) if n != "stem"]  # the stem is not a stage
    if not names:
        names = _spatial_outputs_in_order(net, input_size or (64, 64))
    if not names:
        raise UserError(f"found no layer with a spatial output in {type(net).__name__}; "
                        "pass layer=<module name>")
    # A ModuleList is never called itself: hook its last member instead.
    names = [_called_name(n, modules) for n in names]
    last = modules[names[-1]]
    if (_num_prefix_tokens(net) and type(net).__name__ not in _PATCH_ONLY_BLOCKS
            and hasattr(last, "norm1")):
        names[-1] = f"{names[-1]}.norm1"  # cls pooling: see the module docstring
    return [(n, modules[n]) for n in names]


def _called_name(name: str, modules: dict[str, nn.Module]) -> str:
    while isinstance(modules[name], nn.ModuleList) and len(modules[name]):
        name = f"{name}.{len(modules[name]) - 1}"
    return name


def _num_prefix_tokens(net: nn.Module) -> int:
    value = getattr(net, "num_prefix_tokens", None)
    if value is None:  # older or third-party token models: one cls token if they have one
        own = [name for name, _ in net.named_parameters(recurse=False)]
        return 1 if any(name.startswith("cls_token") for name in own) else 0  # CoaT: cls_token4
    return int(value)


def _spatial_outputs_in_order(net: nn.Module, input_size: tuple[int, int]) -> list[str]:
    """Names of leaf-or-container modules with a [B,C,h,w] output (h*w>1), execution order."""
    seen: list[str] = []
    hooks = []
    for name, module in net.named_modules():
        if not name:
            continue

        def record(mod, inp, out, name=name):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1:
                seen.append(name)
        hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            param = next(net.parameters(), None)
            device = param.device if param is not None else "cpu"
            net(torch.zeros(1, 3, *input_size, device=device))
    finally:
        for h in hooks:
            h.remove()
    # A container finishes after its children: keep the deepest-finishing ones only.
    return [n for n in seen if "." not in n] or seen


def find_cam_layer(net: nn.Module, input_size: tuple[int, int] | None = None
                   ) -> tuple[nn.Module, ToNCHW]:
    """The default Grad-CAM layer of `net` and the function that makes its output NCHW."""
    _, module = candidate_layers(net, input_size)[-1]
    return module, _adapter_for(net)


def resolve_layer(model: LoadedModel, layer: None | str | float | nn.Module = None
                  ) -> tuple[nn.Module, ToNCHW]:
    """Grad-CAM layer for `model`.

    None: the model's default (`model.cam_layer`). str: a module name in `model.net`.
    float in (0, 1]: relative depth over the candidate stages/blocks (1.0 = the default;
    0.25/0.5/0.75 are the published depth experiment). nn.Module: a module of `model.net`.
    """
    net = model.net
    if layer is None:
        if model.cam_layer is None:
            raise UserError(f"model '{model.name}' has no default Grad-CAM layer; pass layer=")
        return model.cam_layer, model.to_nchw
    if isinstance(layer, bool):
        raise UserError(f"layer={layer!r} is not a layer; pass None, a module name, "
                        "a relative depth in (0, 1] or an nn.Module")
    if isinstance(layer, (int, float)):
        depth = float(layer)
        if not 0.0 < depth <= 1.0:
            raise UserError(f"relative layer depth must be in (0, 1], got {layer!r}")
        candidates = candidate_layers(net, model.input_size)
        index = max(0, math.ceil(depth * len(candidates) - 1e-9) - 1)
        return candidates[index][1], _adapter_for(net)
    modules = dict(net.named_modules())
    if isinstance(layer, str):
        if layer not in modules:
            close = [n for n in modules if n.endswith(layer) or layer in n][:5]
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise UserError(f"model '{model.name}' has no module named '{layer}'{hint}; "
                            "pass a name from model.net.named_modules() or a depth like 0.75")
        return modules[layer], _adapter_for(net)
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in modules.values()):
            raise UserError(f"the given layer {type(layer).__name__} is not part of model "
                            f"'{model.name}'")
        return layer, _adapter_for(net)
    raise UserError(f"layer={layer!r} is not accepted; pass None, a module name, "
                    "a relative depth in (0, 1] or an nn.Module")


def layer_name(model: LoadedModel, module: nn.Module) -> str:
    return next((n for n, m in model.net.named_modules() if m is module), "<unnamed>")


def probe_cam_layer(model: LoadedModel, layer: None | str | float | nn.Module = None,
                    size: int | None = None) -> tuple[int, int]:
    """Check on one random image that the layer gives a spatial grid with non-zero gradient.

    Returns the grid (h, w); raises UserError naming the model, the layer and what to try.
    """
    module, to_nchw = resolve_layer(model, layer)
    name = layer_name(model, module)
    side = size or (model.input_size[0] if model.input_size else 64)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o))
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1, 3, side, side, generator=generator).to(model.device)
    try:
        with torch.enable_grad():
            logits = model(images)
            if not captured or not isinstance(captured[-1], torch.Tensor):
                problem = "did not produce a tensor output during the forward pass"
            else:
                activation = captured[-1]
                grad = torch.autograd.grad(logits[0].max(), activation, allow_unused=True)[0]
                problem = _grid_problem(activation, grad, to_nchw, _head_is_zero(model.net))
    finally:
        handle.remove()
    if problem is not None:
        raise UserError(f"Grad-CAM layer '{name}' of model '{model.name}' {problem}; "
                        "try layer=0.75 (relative depth) or layer='<module name>' "
                        "from model.net.named_modules()")
    grid = to_nchw(activation)
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


def _head_is_zero(net: nn.Module) -> bool:
    """True for a freshly initialised zero head (timm does that for some models): then
    every layer gets zero gradient and the gradient check says nothing about the layer."""
    get_classifier = getattr(net, "get_classifier", None)
    heads = get_classifier() if callable(get_classifier) else None
    heads = heads if isinstance(heads, tuple) else (heads,)  # distilled models: two heads
    weights = [p for h in heads if isinstance(h, nn.Module) for p in h.parameters() if p.dim() > 1]
    return bool(weights) and all(not bool(w.any()) for w in weights)
