"""The offline zoo: small timm architectures of every family trained on the shapes benchmark.

Weights ship in `xaicompare/models/weights/` (safetensors with toolkit metadata) with
`zoo.json` recording each model's architecture, timm kwargs, family, input size,
normalisation, test accuracy, seed, weights id and the command that made it
(`xaicompare zoo train`, see training/zoo_train.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from timm.models import register_model
from timm.models.mlp_mixer import MlpMixer

from ..errors import UserError, unknown_name_error
from .base import LoadedModel
from .loading import load_model

WEIGHTS_DIR = Path(__file__).parent / "weights"


@register_model
def xc_mlp_mixer(pretrained: bool = False, **kwargs: Any) -> MlpMixer:
    """timm's MlpMixer with every argument free (timm's named mixers fix patch_size)."""
    if pretrained:
        raise UserError("xc_mlp_mixer has no pretrained weights")
    # timm.create_model adds its own bookkeeping arguments, which MlpMixer does not take.
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return MlpMixer(**kwargs)


ZOO_INDEX = "zoo.json"

# name -> how to build and train it. Teachers come before their students.
ZOO_SPECS: dict[str, dict[str, Any]] = {
    "shapes-resnet": {
        "arch": "resnet18", "family": "cnn", "input_size": 32, "epochs": 24, "lr": 3e-3,
        "kwargs": {"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128], "stem_width": 16,
                   "output_stride": 8},
    },
    "shapes-convnext": {
        "arch": "convnext_atto", "family": "cnn", "input_size": 32, "epochs": 160, "lr": 3e-3,
        # No layer scale: its 1e-6 start keeps a small ConvNeXt near chance on small data.
        "kwargs": {"depths": [1, 1, 2, 1], "dims": [16, 32, 64, 128], "patch_size": 2,
                   "ls_init_value": None},
        "layer": 0.75,  # the last stage is 1x1 at 32 px: no spatial grid for Grad-CAM
    },
    "shapes-pvt": {
        # PVT-v2's overlapping conv patch embedding and depthwise conv in the MLP make it the
        # transformer that learns shapes fastest from small data (a plain ViT was at 20% after
        # 10 epochs where this was at 72%).
        "arch": "pvt_v2_b0", "family": "transformer", "input_size": 32, "epochs": 50,
        "lr": 1e-3, "teacher": "shapes-resnet",
        "kwargs": {"depths": [1, 1, 2], "embed_dims": [32, 64, 128], "num_heads": [1, 2, 4],
                   "sr_ratios": [2, 1, 1], "mlp_ratios": [4, 4, 4]},
        "layer": 0.5,  # the last stage is 2x2 at 32 px
    },
    "shapes-xcit": {
        # XCiT: a ViT whose patch embedding is a small conv stack and whose blocks mix tokens
        # locally (LPI) besides cross-covariance attention; a class token joins in the last
        # block (class attention), as in CaiT. Learns shapes about as fast as PVT-v2.
        "arch": "xcit_nano_12_p8_224", "family": "transformer", "input_size": 32, "epochs": 50,
        "lr": 1e-3, "teacher": "shapes-resnet",
        "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 96, "depth": 4,
                   "num_heads": 4, "cls_attn_layers": 1, "eta": 1.0},
    },
    "shapes-mixer": {
        "arch": "xc_mlp_mixer", "family": "mlp", "input_size": 32, "epochs": 80, "lr": 2e-3,
        "teacher": "shapes-resnet",
        "kwargs": {"img_size": 32, "patch_size": 4, "embed_dim": 96, "num_blocks": 4,
                   "mlp_ratio": [0.5, 2.0]},
    },
    # Trained on the cue-conflict split with the texture shortcut always there (object
    # texture = label mod 8 in every training image; 0.9 left no texture reliance at all):
    # the same recipes, for texture-reliance studies.
    "shapes-resnet-cue": {"base": "shapes-resnet", "cue_conflict": True, "cue_strength": 1.0},
    "shapes-pvt-cue": {"base": "shapes-pvt", "cue_conflict": True, "cue_strength": 1.0,
                       "teacher": "shapes-resnet-cue"},
}


def zoo_names(weights_dir: str | Path | None = None) -> list[str]:
    return list(zoo_entries(weights_dir))


def zoo_entries(weights_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """name -> the zoo index's record (arch, family, accuracy, seed, command, ...)."""
    return _read_index(weights_dir)["models"]


def load_zoo(names: Sequence[str] | None = None, *, weights_dir: str | Path | None = None,
             device: str | torch.device = "cpu") -> list[LoadedModel]:
    """The shipped (or `weights_dir`'s) zoo models, in zoo order; names picks a subset."""
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    index = _read_index(folder)
    available = index["models"]
    chosen = list(available) if names is None else list(names)
    models = []
    for name in chosen:
        if name not in available:
            raise unknown_name_error("zoo model", name, available)
        entry = available[name]
        model = load_model(folder / entry["file"], class_indices=None, device=device,
                           layer=entry.get("layer"))
        if entry.get("weights_id") and model.weights_id != entry["weights_id"]:
            raise UserError(f"zoo weights '{folder / entry['file']}' has weights id "
                            f"{model.weights_id}, but {ZOO_INDEX} records "
                            f"{entry['weights_id']}: the file changed")
        models.append(model)
    return models


def _read_index(folder: str | Path | None) -> dict[str, Any]:
    path = Path(folder if folder is not None else WEIGHTS_DIR) / ZOO_INDEX
    if not path.is_file():
        raise UserError(f"no zoo index at '{path}'; train one with "
                        "`xaicompare zoo train --out DIR`")
    return json.loads(path.read_text())


def zoo_spec(name: str) -> dict[str, Any]:
    """The full recipe of a zoo model (a variant inherits its `base` recipe)."""
    if name not in ZOO_SPECS:
        raise unknown_name_error("zoo model", name, ZOO_SPECS)
    spec = dict(ZOO_SPECS[name])
    base = spec.pop("base", None)
    return {"cue_conflict": False, "cue_strength": None, **(zoo_spec(base) if base else {}),
            **spec}


def build_zoo_model(name: str, seed: int = 0) -> LoadedModel:
    """An untrained zoo model (random init from `seed`), wrapped for 64 px canonical images."""
    spec = zoo_spec(name)
    torch.manual_seed(seed)
    return load_model(spec["arch"], pretrained=False, num_classes=10, class_indices=None,
                      family=spec["family"], input_size=spec["input_size"], name=name,
                      probe=False, **spec["kwargs"])
