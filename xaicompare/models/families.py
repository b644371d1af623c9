"""Architecture family of a network from its structure: cnn | transformer | hybrid | mlp.

- attention (seen in one forward pass: scaled_dot_product_attention or a softmax over a
  [.., queries, keys] matrix; or, for linear attention, a module with query/key/value
  projections) makes a network a transformer, or a hybrid when it also has convolution
  stages: a feature stage without attention, or convolutions holding a large share of the
  weights (CoAtNet, MaxViT, MobileViT, EfficientFormer, CAFormer, EfficientViT);
- a token-mixing MLP (a linear layer across tokens: MLP-Mixer, ResMLP, gMLP), an RNN
  across tokens (Sequencer) or a ConvMixer makes it an mlp;
- anything else is a cnn.

Attention pooling heads (`attn_pool`, AttentionPool2d) are not blocks and do not count.
`load_model(..., family=)` overrides the detection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import UserError
from .base import FAMILIES

# A hybrid's dense convolutions hold at least this share of the weights (MaxViT-nano 0.19,
# CoAtNet 0.96); a transformer's much less (GCViT-xxtiny 0.05, NesT 0.05, PVTv2 0).
_HYBRID_CONV_SHARE = 0.1
_NOT_CONV_STAGES = ("patch_embed", "stem", "downsample", "reduction", "pos", ".sr")
_QKV_NAMES = ({"qkv"}, {"q", "kv"}, {"q", "k", "v"}, {"query", "key", "value"},
              {"to_query", "to_key"}, {"q_proj", "k_proj", "v_proj"}, {"qkvs"})
_TOKEN_MIXING_NAMES = ("mlp_tokens", "linear_tokens", "token_mixing")


def detect_family(net: nn.Module, input_size: tuple[int, int] | None = None) -> str:
    """Family of `net` from its modules and one forward pass (see the module docstring).
    Without a working forward pass (e.g. an input size the model refuses) the static
    signals alone decide."""
    attended, ran = _attention_in_forward(net, input_size or (64, 64))
    static = [name for name, module in net.named_modules() if _is_attention(name, module)]
    if static or ran:
        stages = _stage_names(net)
        attended |= {s for s in stages for a in static if a == s or a.startswith(f"{s}.")}
        conv_stage = any(s not in attended for s in stages)
        return "hybrid" if conv_stage or _conv_share(net) >= _HYBRID_CONV_SHARE else "transformer"
    if any(_mixes_tokens(name, module) for name, module in net.named_modules()):
        return "mlp"
    return "cnn"


class _AttentionOps(TorchFunctionMode):
    """Records the stage that is running whenever attention is computed."""

    def __init__(self, current_stage) -> None:
        super().__init__()
        self.current_stage, self.hits = current_stage, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.hits.append(self.current_stage())
        elif func in (torch.softmax, F.softmax, torch.Tensor.softmax) and args:
            x, dim = args[0], kwargs.get("dim", args[1] if len(args) > 1 else None)
            if (isinstance(x, torch.Tensor) and x.dim() >= 3 and dim in (-1, x.dim() - 1)
                    and x.shape[-1] >= 4 and x.shape[-2] >= 2):
                self.hits.append(self.current_stage())
        return func(*args, **kwargs)


def _attention_in_forward(net: nn.Module, input_size: tuple[int, int]
                          ) -> tuple[set[str], bool | None]:
    """(stages in which attention ran, whether any ran); (set(), None) if the forward fails."""
    stages = _stage_names(net)
    modules = dict(net.named_modules())
    active: list[str] = []
    handles = []
    for name in stages:
        handles.append(modules[name].register_forward_pre_hook(
            lambda _m, _a, name=name: active.append(name)))
        handles.append(modules[name].register_forward_hook(
            lambda _m, _a, _o: active.pop() and None))  # a hook's return replaces the output
    mode = _AttentionOps(lambda: active[-1] if active else "")
    param = next(net.parameters(), None)
    device = param.device if param is not None else "cpu"
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    training = net.training
    try:
        with torch.no_grad(), mode:
            net.eval()(torch.zeros(1, 3, *input_size, device=device, dtype=dtype))
    except Exception:  # noqa: BLE001 - the static signals decide
        return set(), None
    finally:
        net.train(training)
        for handle in handles:
            handle.remove()
    return {h for h in mode.hits if h}, bool(mode.hits)


def _stage_names(net: nn.Module) -> list[str]:
    """timm's feature stages that are called (not the stem); [] for other networks."""
    modules = dict(net.named_modules())
    info = getattr(net, "feature_info", None)
    infos = info.info if hasattr(info, "info") else (info or [])
    names = [item.get("module") for item in infos if isinstance(item, dict)]
    return [n for n in dict.fromkeys(names) if n in modules and n and "stem" not in n
            and "embed" not in n and not isinstance(modules[n], nn.ModuleList)]


def _is_attention(name: str, module: nn.Module) -> bool:
    if "pool" in name.lower() or "Pool" in type(module).__name__:
        return False  # attention pooling heads are not attention blocks
    if isinstance(module, nn.MultiheadAttention):
        return True
    children = {child for child, _ in module.named_children()}
    return any(names <= children for names in _QKV_NAMES)


def _mixes_tokens(name: str, module: nn.Module) -> bool:
    kind = type(module).__name__
    return (name.rsplit(".", 1)[-1] in _TOKEN_MIXING_NAMES or isinstance(module, nn.RNNBase)
            or kind in ("SpatialGatingUnit", "ConvMixer"))


def _conv_share(net: nn.Module) -> float:
    """Share of weights in dense convolutions (groups=1: a CNN's 1x1 and 3x3 layers) that
    are not a patch embedding, stem, downsampling or positional encoding. Depthwise
    convolutions (position encodings, Mix-FFN) are how transformers use convolution."""
    total = sum(p.numel() for p in net.parameters()) or 1
    conv = sum(m.weight.numel() for name, m in net.named_modules()
               if isinstance(m, nn.Conv2d) and m.groups == 1
               and (max(m.kernel_size) == 1 or tuple(m.kernel_size) != tuple(m.stride))
               and not any(part in name for part in _NOT_CONV_STAGES))
    return conv / total


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise UserError(f"unknown family '{family}'; accepted: {', '.join(FAMILIES)}")
    return family
