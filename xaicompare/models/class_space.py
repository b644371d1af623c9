"""The class space of a study: which model output answers each dataset class.

A model's outputs are named when its checkpoint says so (zoo models, fine-tuned checkpoints:
`model.class_names`) or when its head has the size of an ImageNet label set (1000 outputs:
ImageNet-1k; 12k / 22k heads too, from timm's ImageNetInfo). A dataset's classes are named
(folder names, shapes names) and, for ImageNet-derived sets, carry wnids. Classes are
matched by wnid, then by name; an unnamed head is used as it is only when the dataset's
class order is its own definition (shapes, Imagenette, a folder with a `class_names:`
option), never when the order is just the sorted folder names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..errors import UserError

log = logging.getLogger("xaicompare")


@dataclass(frozen=True)
class ClassMapping:
    """How one model's outputs answer the dataset's classes."""

    model: str
    indices: tuple[int, ...] | None  # output per dataset class; None: the outputs as they are
    rule: str  # "wnid" | "name" | "dataset order" | "class_indices" | "model's own classes"
    n_outputs: int | None  # width of the model's own head

    def describe(self) -> dict:
        return {"model": self.model, "rule": self.rule, "n_outputs": self.n_outputs,
                "indices": None if self.indices is None else list(self.indices)}


def normalise(name: str) -> str:
    """Case, underscores, hyphens and repeated spaces do not matter when matching names."""
    return re.sub(r"[\s_-]+", " ", str(name)).strip().lower()


def imagenet_subset(n_outputs: int | None) -> str | None:
    """timm's name of the ImageNet label set with `n_outputs` classes (1k, 12k, 22k, ...)."""
    from timm.data import infer_imagenet_subset

    return infer_imagenet_subset({"num_classes": n_outputs}) if n_outputs else None


@lru_cache(maxsize=4)
def _imagenet_lemmas(subset: str = "imagenet-1k"
                     ) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, list[int]]]:
    """(wnids, short names, lemma -> output indices) of an ImageNet label set, from timm."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo(subset)
    wnids = tuple(info.label_names())
    names, lemmas = [], {}
    for index, wnid in enumerate(wnids):
        parts = [p.strip() for p in info.label_name_to_description(wnid).split(",") if p.strip()]
        names.append(parts[0])
        for part in {normalise(p) for p in parts}:
            lemmas.setdefault(part, []).append(index)
    return wnids, tuple(names), lemmas


def model_classes(model) -> tuple[list[str] | None, list[str] | None]:
    """(names, wnids) of a model's own outputs; (None, None) for an unnamed head."""
    names = getattr(model, "class_names", None)
    if names:
        return list(names), None
    subset = imagenet_subset(_own_outputs(model))
    if subset is not None:  # e.g. 1000 outputs: ImageNet-1k
        wnids, short, _ = _imagenet_lemmas(subset)
        if len(wnids) == _own_outputs(model):
            return list(short), list(wnids)
    return None, None


def _own_outputs(model) -> int | None:
    value = (getattr(model, "metadata", None) or {}).get("num_classes")
    return int(value) if isinstance(value, int) else None


def map_classes(model, class_names: Sequence[str], class_wnids: Sequence[str] | None,
                order_defined: bool) -> ClassMapping:
    """The outputs of `model` for the dataset classes `class_names` (in label order).

    order_defined: the dataset's class order is its own definition (not sorted folder names),
    so an unnamed head with exactly as many outputs is taken in that order.
    Raises UserError with the dataset's and the model's names side by side when some class
    cannot be matched.
    """
    n_outputs = _own_outputs(model)
    names, wnids = model_classes(model)
    if not class_names:  # an unlabelled dataset: the model's own classes
        return ClassMapping(model.name, None, "model's own classes", n_outputs)
    found: list[int | None]
    if class_wnids and wnids:
        position = {w: i for i, w in enumerate(wnids)}
        found, rule = [position.get(w) for w in class_wnids], "wnid"
    elif names:
        found, rule = _match_names(class_names, names, wnids), "name"
    elif order_defined and n_outputs == len(class_names):
        return ClassMapping(model.name, None, "dataset order", n_outputs)
    else:
        raise UserError(
            f"model '{model.name}' has {n_outputs or 'an unknown number of'} unnamed outputs, "
            f"so the dataset's {len(class_names)} classes ({_short(class_names)}) cannot be "
            "matched to them by name (class order is never guessed from folder order); give "
            "the dataset option `class_names:` in the model's output order, or the model's "
            "`class_indices:` (one output index per dataset class)")
    if None in found:
        raise UserError(_side_by_side(model.name, class_names, found, names or [], n_outputs))
    indices = tuple(int(i) for i in found)  # type: ignore[arg-type]
    if indices == tuple(range(n_outputs or -1)):
        return ClassMapping(model.name, None, rule, n_outputs)  # the head as it is
    return ClassMapping(model.name, indices, rule, n_outputs)


def _match_names(class_names: Sequence[str], names: Sequence[str],
                 wnids: Sequence[str] | None) -> list[int | None]:
    """Output index per dataset class name: exact (normalised) name, wnid, or an unambiguous
    ImageNet lemma ("springer" is not enough for "English springer"; "crane" is ambiguous)."""
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_name.setdefault(normalise(name), []).append(i)
    by_wnid = {w: i for i, w in enumerate(wnids or [])}
    subset = imagenet_subset(len(names)) if wnids else None
    lemmas = _imagenet_lemmas(subset)[2] if subset else {}
    found: list[int | None] = []
    for cls in class_names:
        key = normalise(cls)
        hits = by_name.get(key) or lemmas.get(key) or []
        if cls in by_wnid:
            hits = [by_wnid[cls]]
        found.append(hits[0] if len(hits) == 1 else None)
    return found


def _short(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _side_by_side(model: str, class_names: Sequence[str], found: Sequence[int | None],
                  names: Sequence[str], n_outputs: int | None) -> str:
    missing = [c for c, f in zip(class_names, found, strict=True) if f is None]
    width = max(len("dataset class"), *(len(str(c)) for c in class_names))
    rows = [f"  {'dataset class':<{width}}  model '{model}' class"]
    rows += [f"  {str(c):<{width}}  {names[f] if f is not None else '?  (no match)'}"
             for c, f in zip(class_names, found, strict=True)]
    return (f"cannot match {len(missing)} of the dataset's {len(class_names)} classes to the "
            f"{n_outputs or len(names)} classes of model '{model}' by name "
            f"(unmatched: {_short(missing)}); the model's classes are: {_short(names, 20)}. "
            "Rename the class folders, or give the dataset option `class_names:` (folder names "
            "in the model's terms) or the model's `class_indices:`\n" + "\n".join(rows))


def explicit_mapping(model, class_names: Sequence[str]) -> ClassMapping:
    """The mapping of a model loaded with an explicit class_indices (list, subset or None)."""
    indices = model.class_indices
    width = _own_outputs(model) if indices is None else int(indices.numel())
    if class_names and width is not None and width < len(class_names):
        raise UserError(
            f"model '{model.name}' gives {width} class scores (class_indices), but the dataset "
            f"has {len(class_names)} classes ({_short(class_names)}), so some labels lie "
            "outside its class space; give one output index per dataset class, or leave "
            "class_indices out to match classes by name")
    if class_names and width is not None and width > len(class_names):
        log.warning("model '%s' gives %d class scores (class_indices), %d more than the "
                    "dataset's %d classes: accuracy and confidence are over all %d", model.name,
                    width, width - len(class_names), len(class_names), width)
    return ClassMapping(model.name, None if indices is None else tuple(indices.tolist()),
                        "class_indices", _own_outputs(model))
