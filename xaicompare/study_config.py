"""Loading a study file: the schema (config.py) checks each value alone, then the names in it
are checked against the registries (methods, metrics, corruptions, models) and the values
against this machine (config_checks.py), before any compute.

Above the registries it reads, so config.py itself imports none of them.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from .config import ModelConfig, StudyConfig, parse_schema, read_study_file
from .config_checks import applies_to_any_model, check_study
from .errors import UserError, did_you_mean

log = logging.getLogger("xaicompare")


def parse_config(data: Any, *, check_names: bool = True) -> StudyConfig:
    """Validate a dict (parsed YAML) into a StudyConfig; raises UserError.

    check_names: also check the names against the registries (methods, metrics, corruptions,
    models) and the values against this machine (`check_study`); False: the schema alone.
    """
    if not isinstance(data, dict):
        raise UserError(f"a study config must be a mapping of keys, got {type(data).__name__}")
    grouped: list[str] = []
    if isinstance(data.get("methods"), dict) and "group" in data["methods"]:
        from .attribution.catalog import expand_groups

        group = data["methods"]["group"]
        methods, grouped = expand_groups(data["methods"])
        data = {**data, "methods": methods}
    config = parse_schema(data)
    if check_names:
        for method in grouped:  # a group's attention methods on a CNN-only study: left out
            if not applies_to_any_model(config, method):
                del config.methods[method]
                log.warning("methods: %s (from the group) applies to none of the study's "
                            "models and is left out", method)
        if not config.methods:
            raise UserError(f"methods: the group {group!r} has no "
                            "method that applies to the study's models "
                            f"({', '.join(m.source for m in config.models)}); name another "
                            "group or methods")
        check_names_registered(config)
        check_study(config)  # the device, output folder, dataset and compare options here
    return config


def load_config(path: str | Path, *, check_names: bool = True) -> StudyConfig:
    """Read and validate a study YAML file; every problem is a UserError naming the file."""
    data = read_study_file(path)
    try:
        return parse_config(data, check_names=check_names)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


def check_names_registered(config: StudyConfig) -> None:
    """Method, method parameter and metric names are checked against the registries."""
    from .attribution import METHODS
    from .compare import METRICS

    for method, params in config.methods.items():
        if method not in METHODS:
            choices = METHODS.names()
            raise UserError(
                f"methods.{method}: unknown method{did_you_mean(method, choices)}; "
                f"accepted: {', '.join(choices)}"
            )
        signature = inspect.signature(METHODS.get(method))
        accepted = [
            p.name for p in list(signature.parameters.values())[3:]
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        takes_any = any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
        )
        # the smallest values a method declares (budgets, superpixels), checked here so a
        # study does not fail hours in, when it reaches the method; the methods check too
        minimums = METHODS.get(method).info.minimums
        for key, value in (params or {}).items():
            low = minimums.get(key)
            if low is not None and not (isinstance(value, int) and value >= low):
                raise UserError(f"methods.{method}.{key}: got {value!r}; accepted: an integer "
                                f">= {low}")
            if key not in accepted and not takes_any:
                raise UserError(
                    f"methods.{method}.{key}: unknown parameter{did_you_mean(key, accepted)}; "
                    f"accepted: {', '.join(accepted)}"
                )
    from .diversity import CORRUPTIONS

    _check_listed(config.compare.metrics, METRICS, "compare.metrics", "metric")
    _check_listed(config.diversity.corruptions, CORRUPTIONS, "diversity.corruptions",
                  "corruption")
    for i, severity in enumerate(config.diversity.severities):
        if severity not in range(1, 6):
            raise UserError(f"diversity.severities[{i}]: got {severity}; accepted: 1 to 5")
    for i, model in enumerate(config.models):
        _check_model_source(model, f"models[{i}]")


def _check_listed(names: list[str], registry, path: str, kind: str) -> None:
    """Every name in a config list must be registered; the error names its position."""
    for i, name in enumerate(names):
        if name not in registry:
            choices = registry.names()
            raise UserError(f"{path}[{i}]: unknown {kind} '{name}'{did_you_mean(name, choices)}; "
                            f"accepted: {', '.join(choices)}")


def _check_model_source(model: ModelConfig, where: str) -> None:
    from .models.loading import looks_like_path

    if model.checkpoint is not None:
        if not Path(model.checkpoint).is_file():
            raise UserError(f"{where}.checkpoint: file '{model.checkpoint}' does not exist; "
                            "accepted: the path of a weights file")
        if looks_like_path(model.source) and not Path(model.source).is_file():
            raise UserError(f"{where}.source: checkpoint file '{model.source}' does not exist")
        return  # the architecture is read from the checkpoint or `source`; checked at load
    if looks_like_path(model.source):
        if not Path(model.source).is_file():
            raise UserError(f"{where}.source: checkpoint file '{model.source}' does not exist; "
                            "accepted: a checkpoint path, a timm name or 'zoo:<name>'")
        return  # its metadata names the architecture; checked at load
    if model.source.startswith("zoo:"):
        from .models.zoo import zoo_names

        name = model.source[4:]
        if name != "all" and name not in zoo_names():
            raise UserError(
                f"{where}.source: unknown zoo model '{name}'{did_you_mean(name, zoo_names())}; "
                f"accepted: all, {', '.join(zoo_names())}"
            )
        return
    import timm

    architecture = model.source.split(".")[0]
    if not timm.is_model(architecture):
        choices = timm.list_models()
        raise UserError(
            f"{where}.source: unknown timm model '{model.source}'"
            f"{did_you_mean(architecture, choices)}; accepted: any name in timm.list_models() "
            "(with an optional .tag), or 'zoo:<name>' for the offline zoo"
        )
