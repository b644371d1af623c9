"""Display names of models and methods in figures: `Grad-CAM`, not `gradcam`.

Methods default to the name their registration declares (`MethodInfo.display_name`, once
`xaicompare.attribution` is imported, as computing maps does); models to their id. A study's config (`display_names:`, or `display_name:` on a model) or the caller
overrides either for the plotting inside a `with display_names(...)` block:

    with xc.plotting.display_names(models={"resnet18.a1_in1k": "ResNet-18"},
                                   methods={"kernelshap": "SHAP"}):
        ax = plot_dissimilarity_heatmap(D)

Labels are looked up by exact id; titles have every whole word that is a model or method id
of the active block replaced (a title the caller wrote is otherwise left alone).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import sys
from collections.abc import Iterable, Iterator, Mapping

from ..errors import UserError

_ACTIVE: contextvars.ContextVar[tuple[dict[str, str], dict[str, str]]] = contextvars.ContextVar(
    "xaicompare_display_names", default=({}, {})
)


def _checked(names: Mapping[str, str] | None, what: str) -> dict[str, str]:
    if names is None:
        return {}
    if not isinstance(names, Mapping):
        raise UserError(f"{what} display names must be a dict id -> name, got "
                        f"{type(names).__name__}")
    out = {}
    for key, value in names.items():
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{what} display name for '{key}' must be a non-empty string, "
                            f"got {value!r}")
        out[str(key)] = value
    shown = list(out.values())
    twice = sorted({v for v in shown if shown.count(v) > 1})
    if twice:
        raise UserError(f"{what} display names must differ, or two {what}s would look alike "
                        f"in a figure; {twice} is given to more than one")
    return out


@contextlib.contextmanager
def display_names(models: Mapping[str, str] | None = None,
                  methods: Mapping[str, str] | None = None) -> Iterator[None]:
    """Use these display names in every figure drawn inside the block (nested blocks add to
    the outer one's names)."""
    outer_models, outer_methods = _ACTIVE.get()
    token = _ACTIVE.set(({**outer_models, **_checked(models, "model")},
                         {**outer_methods, **_checked(methods, "method")}))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def method_label(method: object) -> str:
    """The display name of a method: the active block's, else its registration's, else as
    given (a column like 'Grad-CAM 25%' is already a display name)."""
    name = str(method)
    given = _ACTIVE.get()[1].get(name)
    if given is not None:
        return given
    methods = _registry()
    return methods.get(name).info.display_name if name in methods else name


def _registry():
    """The method registry once the attribution package is loaded (it imports torch; a
    figure of maps has loaded it), else an empty one: ids then stay as they are."""
    if "xaicompare.attribution" not in sys.modules:
        return {}
    from ..attribution.registry import METHODS

    return METHODS


def model_label(model: object) -> str:
    """The display name of a model in the active block, else its id."""
    return _ACTIVE.get()[0].get(str(model), str(model))


def label(name: object) -> str:
    """A tick or legend label that may name a model or a method."""
    text = str(name)
    shown = model_label(text)
    return shown if shown != text else method_label(text)


def labels(names: Iterable[object]) -> list[str]:
    return [label(n) for n in names]


def title_text(title: str | None) -> str | None:
    """`title` with each whole word that is an active model or method id, or a registered
    method id, replaced by its display name ("gradcam / cosine" -> "Grad-CAM / cosine")."""
    if not title:
        return title
    registry = _registry()
    models, methods = _ACTIVE.get()
    registered = registry.names() if registry else []
    ids = {**{m: method_label(m) for m in registered}, **methods, **models}
    ids = {k: v for k, v in ids.items() if k != v}
    if not ids:
        return title
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(k) for k in
                                                      sorted(ids, key=len, reverse=True))
                         + r")(?![\w.-])")
    return pattern.sub(lambda match: ids[match.group(1)], title)
