"""Store keys: every parameter that changes an output is in its key.

An entry's identity names the model (weights, architecture, input size, resize,
normalisation, class space), the dataset, the condition and, for maps, the method with its
resolved parameters (defaults included, so maps computed under an old default are never
reused after the default changes), its version when above 1 and the study seed of its
per-image draws. Reading results needs these keys and nothing of the engine that wrote them.
"""

from __future__ import annotations

import torch

from ..attribution.api import resolved_params
from ..attribution.registry import METHODS, method_info
from .arrays import Entry, Store

SEGMENT_PARAMS = ("n_segments", "compactness")


def takes_image_seeds(method: str) -> bool:
    """Does the method draw random numbers per image (coalitions, noise, masks)?"""
    return "image_seeds" in method_info(method).shared_inputs


def model_identity(model) -> dict:
    """Everything about a model that changes its logits: name, weights, architecture and timm
    kwargs, input size, resize, normalisation and the outputs kept (the class space)."""
    meta = getattr(model, "metadata", None) or {}
    indices = getattr(model, "class_indices", None)
    size = getattr(model, "input_size", None)

    def values(name: str):
        tensor = getattr(model, name, None)
        return tensor.flatten().tolist() if isinstance(tensor, torch.Tensor) else None

    return {"model": model.name, "weights": getattr(model, "weights_id", "unknown"),
            "arch": meta.get("arch"), "kwargs": meta.get("model_kwargs") or {},
            "n_outputs": meta.get("num_classes"),
            "classes": None if indices is None else [int(i) for i in indices.tolist()],
            "input_size": None if size is None else list(size),
            "resize": getattr(model, "resize_mode", None),
            "mean": values("mean"), "std": values("std")}


def logits_width(model) -> int | None:
    """Class scores per image the model gives now (None when it cannot say)."""
    indices = getattr(model, "class_indices", None)
    if isinstance(indices, torch.Tensor):
        return int(indices.numel())
    width = (getattr(model, "metadata", None) or {}).get("num_classes")
    return int(width) if isinstance(width, int) else None


def _precision(autocast: str) -> dict:
    """Store-key part for reduced precision: float32 results keep their keys unchanged."""
    return {} if autocast == "none" else {"autocast": autocast}


def logits_entry(store: Store, model, dataset_identity: dict, condition: str = "clean",
                 autocast: str = "none") -> Entry:
    identity = {**model_identity(model), "dataset": dataset_identity, "condition": condition,
                **_precision(autocast)}
    width = logits_width(model)
    return store.entry("logits", f"{model.name}__{condition}", identity,
                       expect=None if width is None else {"logits": (width,)})


def features_entry(store: Store, model, dataset_identity: dict, autocast: str = "none") -> Entry:
    """The penultimate representation of the clean images (see models/representation.py)."""
    identity = {**model_identity(model), "dataset": dataset_identity, "condition": "clean",
                "representation": "classifier input", **_precision(autocast)}
    return store.entry("features", f"{model.name}__clean", identity)


def maps_entry(store: Store, model, method: str, params: dict, dataset_identity: dict,
               target: str, autocast: str = "none", seed: int = 0) -> Entry:
    identity = {**model_identity(model), "method": method,
                "params": resolved_params(method, params),  # defaults included
                "dataset": dataset_identity, "target": target, **_precision(autocast)}
    if takes_image_seeds(method):  # its draws come from the image ids and the study seed
        identity["study_seed"] = seed
    version = method_info(method).version
    if version != 1:  # version 1 adds nothing, so stores written before versions keep their keys
        identity["method_version"] = version
    resolved = getattr(METHODS.get(method), "store_identity", None)
    if resolved is not None:  # e.g. Grad-CAM's resolved layer, route and grid
        identity["resolved"] = resolved(model, params)
    return store.entry("maps", f"{model.name}__{method}", identity)


def segments_entry(store: Store, params: dict, dataset_identity: dict) -> Entry:
    identity = {"params": {k: params[k] for k in SEGMENT_PARAMS if k in params},
                "dataset": dataset_identity}
    return store.entry("segments", "slic", identity)


def faithfulness_entry(store: Store, model, maps: Entry, steps: int, baseline: str, order: str,
                       seed: int) -> Entry:
    """Deletion / insertion curves of `model` on the maps of entry `maps` (its key names the
    method, its resolved parameters, the dataset, target and precision); the curves score
    the class the stored clean logits predict, in float32."""
    identity = {**model_identity(model), "maps": maps.directory.name, "steps": steps,
                "baseline": baseline, "order": order, "version": 1,
                "score": "probability of the predicted class"}
    if order == "random":  # from (seed, image id): the same in any shard; the descending
        identity["seed"] = seed  # order draws nothing (the maps' key holds their own seed)
        identity["random order"] = "per image id, salted"
    method = maps.identity.get("method", "maps")
    return store.entry("faithfulness", f"{model.name}__{method}__{order}", identity)


def randomized_maps_entry(store: Store, model, method: str, params: dict, dataset_identity: dict,
                          target: str, mode: str, seed: int, autocast: str = "none") -> Entry:
    """Maps of `model`'s randomised copy (models/randomization.py, `mode` and `seed`) for the
    same method, parameters, images and targets as maps_entry(...) of the model itself."""
    original = maps_entry(store, model, method, params, dataset_identity, target, autocast, seed)
    identity = {**original.identity, "randomization": {"mode": mode, "seed": seed, "version": 1}}
    return store.entry("randomized_maps", f"{model.name}__{method}__{mode}", identity)
