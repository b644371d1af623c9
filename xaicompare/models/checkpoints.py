"""Reading and writing weights safely: safetensors, or torch files loaded with weights_only.

A toolkit checkpoint is one `.safetensors` file whose header metadata holds a JSON record
(architecture, timm kwargs, class count and names, normalisation, input size, family), so
`load_model("model.safetensors")` needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..files import atomic_write
from .checkpoint_meta import check_checkpoint_meta

METADATA_KEY = "xaicompare"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Tensors of a checkpoint file and its toolkit metadata (None when it has none).

    Torch files are opened with `torch.load(weights_only=True)`: tensors and plain
    containers only, never arbitrary pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist (no fallback weights are used)")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                header = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            meta = json.loads(header[METADATA_KEY]) if METADATA_KEY in header else None
        except Exception as err:  # safetensors raises its own error types for bad files
            raise UserError(f"checkpoint '{path}' is not a readable .safetensors file "
                            f"({type(err).__name__}: {str(err)[:200]})") from None
        if meta is not None:  # from anyone: every key and value checked before use
            meta = check_checkpoint_meta(meta, f"'{path}'")
        return tensors, meta
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as err:
        raise UserError(
            f"refusing to load checkpoint '{path}': it holds objects other than tensors, and "
            "unpickling them could run arbitrary code. Save a state dict "
            "(torch.save(model.state_dict(), ...)) or use .safetensors. "
            f"Loader said: {str(err).splitlines()[0][:200]}"
        ) from None
    return _unwrap_state_dict(obj, path), None


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:  # {"state_dict": {...}, "epoch": 3, ...}
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"checkpoint '{path}' is not a state dict (name -> tensor); "
                        f"found {type(obj).__name__}")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_dict_strict(net: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` into `net`; any missing/unexpected key or shape mismatch is a UserError."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({'; '.join(shapes[:3])})")
        if missing:
            parts.append(f"{len(missing)} missing keys ({', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:5])})")
        raise UserError(
            f"checkpoint {source} does not match the {type(net).__name__} architecture: "
            + "; ".join(parts)
            + ". Check the architecture name and num_classes= (the head size)."
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:  # say so here, not later as a layer with zero gradient or NaN maps
        count = sum(int((~state[k].isfinite()).sum()) for k in bad)
        raise UserError(f"checkpoint {source}: the weights contain NaN or inf ({count} values "
                        f"in {len(bad)} tensors, e.g. '{bad[0]}'); the file is damaged or its "
                        "training diverged: use another checkpoint")
    net.load_state_dict(state, strict=True)


def weights_hash(net: nn.Module, length: int = 12) -> str:
    """Short sha256 over the state dict (names, dtypes, shapes and bytes), in key order."""
    digest = hashlib.sha256()
    for key, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:length]


def save_checkpoint(net: nn.Module, path: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Write `net`'s weights and toolkit metadata (arch, num_classes, mean, std, ...)."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"toolkit checkpoints are .safetensors files, got '{path}'")
    check_checkpoint_meta(dict(metadata), f"'{path}'")  # what is written loads again
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    data = save(state, metadata={METADATA_KEY: json.dumps(dict(metadata))})
    atomic_write(path, lambda handle: handle.write(data))  # never half a file, even if killed
    return path
