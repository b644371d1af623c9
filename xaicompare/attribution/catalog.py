"""Every registered method described from its own registration: what `xaicompare methods`
prints and what a study's `methods: {group: ...}` expands to."""

from __future__ import annotations

import inspect

from ..errors import UserError, unknown_name_error
from .registry import METHODS, STUDY_INPUTS, method_info

FAMILIES = ("cam", "gradient", "perturbation", "attention")
GROUPS = (*FAMILIES, "all")


def method_parameters(name: str) -> dict:
    """The method's own keyword parameters and their defaults (study-derived inputs left out)."""
    signature = inspect.signature(METHODS.get(name))
    return {p: spec.default for p, spec in list(signature.parameters.items())[3:]
            if p not in STUDY_INPUTS and spec.kind is not inspect.Parameter.VAR_KEYWORD}


def methods_in_group(group: str) -> list[str]:
    """Method names of a family ("cam", "gradient", "perturbation", "attention") or "all"."""
    if group not in GROUPS:
        raise unknown_name_error("method group", group, GROUPS)
    return [m for m in METHODS.names() if group == "all" or method_info(m).family == group]


def method_rows() -> list[dict]:
    """One row per method: name, display name, family, signed, applies to, parameters."""
    rows = []
    for name in sorted(METHODS.names(), key=lambda m: (FAMILIES.index(method_info(m).family), m)):
        info = method_info(name)
        rows.append({"method": name, "display_name": info.display_name, "family": info.family,
                     "signed": info.signed,
                     "applies_to": info.applies_note,
                     "parameters": method_parameters(name)})
    return rows


def expand_groups(methods: dict) -> tuple[dict, list[str]]:
    """A study's `methods` with `group: <family> | all | [families]` replaced by those
    methods (default parameters); methods named beside the group keep their parameters.
    Returns the methods and the names that came from the group only."""
    groups = methods.get("group")
    groups = [groups] if isinstance(groups, str) else groups
    if not isinstance(groups, list) or not groups or not all(isinstance(g, str) for g in groups):
        raise UserError(f"methods.group: got {groups!r}; accepted: one of {', '.join(GROUPS)} "
                        "or a list of them")
    named = {k: v for k, v in methods.items() if k != "group"}
    from_group = [m for g in groups for m in methods_in_group(g) if m not in named]
    from_group = list(dict.fromkeys(from_group))
    return {**{m: {} for m in from_group}, **named}, from_group
