"""Randomised copies of a model for the model-parameter randomisation test (Adebayo et al.,
"Sanity Checks for Saliency Maps", NeurIPS 2018; the test itself is trust/randomization.py).

Every parameter of the network is redrawn, including position embeddings, class tokens,
norm scales and biases: a tensor becomes N(mean, std^2) of its own entries (std at least
0.02 for tensors that were constant, e.g. zero-initialised tokens or unit norm scales), so
activations keep their scale while all learned structure is gone. BatchNorm running
statistics of randomised blocks are reset. The wrapper's preprocessing is kept.
Cascading randomisation redraws blocks from the output down to the input, one more per step.
Here, below the engine, so that the engine's units can explain a randomised copy.
"""

from __future__ import annotations

import copy
import zlib

import torch
from torch import nn

from ..errors import UserError

MIN_STD = 0.02  # timm's init scale for tokens and position embeddings


def parameter_blocks(model: nn.Module) -> list[tuple[str, list[str]]]:
    """Parameter groups of `model.net` from input to output: [(block name, [param names])].

    Direct parameters of the network (cls_token, pos_embed, ...) form the first block,
    "embeddings"; then each top-level child, with ModuleList/Sequential children (ViT
    blocks, ResNet stages) split into their elements. Names are relative to the wrapper.
    """
    net = model.net if hasattr(model, "net") else model
    prefix = "net." if hasattr(model, "net") else ""
    blocks: list[tuple[str, list[str]]] = []
    own = [prefix + n for n, _ in net.named_parameters(recurse=False)]
    if own:
        blocks.append(("embeddings", own))
    for name, child in net.named_children():
        parts = list(child.named_children()) if isinstance(
            child, nn.ModuleList | nn.Sequential) else []
        if len(parts) > 1:
            for sub, module in parts:
                params = [f"{prefix}{name}.{sub}.{n}" for n, _ in module.named_parameters()]
                if params:
                    blocks.append((f"{name}.{sub}", params))
        else:
            params = [f"{prefix}{name}.{n}" for n, _ in child.named_parameters()]
            if params:
                blocks.append((name, params))
    return blocks


def _redraw(param: torch.Tensor, seed: int, name: str) -> torch.Tensor:
    """Fresh N(mean, std^2) values for one tensor, from a generator keyed by (seed, name)."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode()))
                                              % (2**63))
    data = param.detach().to("cpu", torch.float64)
    mean = float(data.mean())
    std = float(data.std()) if data.numel() > 1 else 0.0
    std = std if std > 1e-3 else MIN_STD
    fresh = torch.randn(param.shape, generator=generator, dtype=torch.float64) * std + mean
    return fresh.to(param.device, param.dtype)


def randomize_weights(model: nn.Module, seed: int = 0, blocks=None) -> nn.Module:
    """A deep copy of `model` with the parameters of `blocks` redrawn (None: every block,
    i.e. every parameter of the network); the original is untouched. The same (seed,
    parameter name) always gives the same values, so cascading steps are nested."""
    all_blocks = parameter_blocks(model)
    known = [b for b, _ in all_blocks]
    chosen = known if blocks is None else list(blocks)
    unknown = [b for b in chosen if b not in known]
    if unknown:
        raise UserError(f"unknown parameter block(s) {unknown}; accepted: {', '.join(known)}")
    names = {p for b, params in all_blocks if b in chosen for p in params}
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in copied.named_parameters():
            if name in names:
                param.copy_(_redraw(param, seed, name))
        for name, module in copied.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(
                    p.startswith(name + ".") for p in names):
                module.reset_running_stats()
    if hasattr(copied, "weights_id"):
        copied.weights_id = f"{model.weights_id}-random{seed}"
    if hasattr(copied, "name"):
        copied.name = f"{model.name} (randomised)"
    return copied.eval()


def cascading_randomization(model: nn.Module, seed: int = 0):
    """Yield (block name, copy with that block and every block above it redrawn), from the
    output block down to the input (Adebayo et al.'s cascading randomisation)."""
    names = [b for b, _ in parameter_blocks(model)]
    for i in range(len(names) - 1, -1, -1):
        yield names[i], randomize_weights(model, seed, names[i:])
