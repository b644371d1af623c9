"""Checks of a parsed study config against this machine and the registries, before compute.

The schema (config.py) checks each value alone; these check what a value means here: the
device exists, the output folder can be made, the dataset takes those options, the compare
options and metric options are accepted, zoo entries carry no option that loading ignores,
`cluster.k` fits the models, and every method applies to at least one model. Each problem is
one UserError naming the key path and what is accepted, so `xaicompare validate` stops a
study that `run` would fail on minutes or hours in.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

from .config import ModelConfig, StudyConfig
from .errors import UserError, did_you_mean

log = logging.getLogger("xaicompare")

# ModelConfig fields that `zoo:` entries do not use: the zoo loads its recorded models as they
# were trained (layer, weights, head, family and name included).
ZOO_IGNORED_FIELDS = ("name", "pretrained", "checkpoint", "weights", "num_classes", "family",
                      "layer", "kwargs")


def check_study(config: StudyConfig) -> None:
    """Every machine- and registry-dependent check; raises the first problem as a UserError."""
    check_executor(config)
    check_output(config)
    check_dataset(config)
    check_compare(config)
    check_models(config)
    for method, params in config.methods.items():
        check_method_values(method, params or {})


def check_executor(config: StudyConfig, where: str = "executor.device") -> None:
    """A local run needs its device here; Ray workers bring their own (name checked only)."""
    from .devices import check_device, check_device_syntax

    if config.executor.kind == "local":
        check_device(config.executor.device, where)
    else:
        check_device_syntax(config.executor.device, where)


def check_output(config: StudyConfig) -> None:
    """The run folder is a folder, or can be made: not a file, not under a file, writable."""
    text = str(config.output_dir)
    if "\0" in text:
        raise UserError(f"output: {text!r} contains a NUL character; accepted: a folder path")
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output: '{folder}' is an existing file, not a folder; accepted: a "
                        "folder path (existing or new)")
    ancestor = folder.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise UserError(f"output: '{folder}' cannot be made: '{ancestor}' is a file; accepted: "
                        "a folder path whose parents are folders")
    target = folder if folder.is_dir() else ancestor
    if not os.access(target, os.W_OK | os.X_OK):
        raise UserError(f"output: '{folder}' cannot be written: no write permission on "
                        f"'{target}'; choose another `output:` folder")


def check_dataset(config: StudyConfig) -> None:
    """The dataset's options against its opener's signature (names, required ones)."""
    from .data.sources import DATASETS

    cfg = config.dataset
    opener = DATASETS.get(cfg.name)
    parameters = inspect.signature(opener).parameters
    accepted = list(parameters)
    for key in cfg.options:
        if key not in parameters:
            raise UserError(f"dataset.options.{key}: unknown option for dataset '{cfg.name}'"
                            f"{did_you_mean(key, accepted)}; accepted: {', '.join(accepted)}")
    required = [name for name, p in parameters.items() if p.default is inspect.Parameter.empty]
    for name in required:
        if name not in cfg.options:  # the dataset is opened even under a manifest
            raise UserError(f"dataset.options.{name}: required for dataset '{cfg.name}' "
                            f"(e.g. options: {{{name}: path/to/images}})")
    check_dataset_values(cfg.name, cfg.options)
    if cfg.manifest is not None and not Path(cfg.manifest).is_file():
        raise UserError(f"dataset.manifest: '{cfg.manifest}' does not exist; accepted: the "
                        "manifest.json of an earlier run")
    if cfg.name == "folder":
        root = cfg.options["root"]
        if isinstance(root, str):  # a folder (a list of image files is checked when read)
            if not Path(root).is_dir():
                problem = "is a file" if Path(str(root)).exists() else "does not exist"
                raise UserError(f"dataset.options.root: folder '{root}' {problem}; accepted: "
                                "a folder with one sub-folder of images per class")
    if cfg.name == "shapes" and cfg.n_images is not None:
        available = cfg.options.get("n", parameters["n"].default)
        if isinstance(available, int) and cfg.n_images > available:
            log.warning("dataset.n_images %d is more than the %d images of dataset 'shapes' "
                        "(options.n); the study uses all %d", cfg.n_images, available,
                        available)


def check_dataset_values(name: str, options: dict[str, Any]) -> None:
    """Option values the openers would refuse at run time: policy, split, size variant."""
    from .data import imagenette, shapes
    from .data.images import POLICIES

    choices = {"policy": POLICIES}
    if name == "imagenette":
        choices.update(split=imagenette.SPLITS, size_variant=tuple(imagenette.ARCHIVES))
    if name == "shapes":
        choices["split"] = shapes.SPLITS
    for key, accepted in choices.items():
        if key in options and options[key] not in accepted:
            raise UserError(f"dataset.options.{key}: got {options[key]!r} for dataset '{name}'"
                            f"; accepted: {', '.join(str(a) for a in accepted)}")
    for key in ("size", "n", "n_classes"):
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise UserError(f"dataset.options.{key}: got {value!r}; accepted: an integer >= 1")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _parameter_rules() -> dict[str, tuple]:
    """(accepts(value), what is accepted) for the methods' parameters, by parameter name (the
    methods check them again when they run); until methods describe themselves (#19)."""
    from .attribution.baselines import BASELINES
    from .attribution.gradcam import UPSAMPLE_MODES
    from .attribution.integrated_gradients import QUADRATURES, REDUCTIONS
    from .attribution.rollout import HEAD_FUSIONS

    def choice(choices):
        return (lambda v: v in choices), f"one of {', '.join(choices)}"

    return {
        "upsample": choice(UPSAMPLE_MODES),
        "quadrature": choice(QUADRATURES),
        "reduction": choice(REDUCTIONS),
        "head_fusion": choice(HEAD_FUSIONS),
        "baseline": (lambda v: v in BASELINES or _is_number(v),
                     f"one of {', '.join(BASELINES)}, or a number"),
        "relu": (lambda v: isinstance(v, bool), "true or false"),
        "layer": (lambda v: v is None or (isinstance(v, str) and v != "")
                  or (_is_number(v) and 0 < v <= 1),
                  "a module name or a relative depth in (0, 1]"),
        "seed": (lambda v: _is_int(v, 0), "an integer >= 0"),
        "start_layer": (lambda v: _is_int(v, 0), "an integer >= 0"),
        "internal_batch_size": (lambda v: v is None or _is_int(v, 1), "null or an integer >= 1"),
        "batch_size": (lambda v: v is None or _is_int(v, 1), "null or an integer >= 1"),
        "discard_ratio": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
        "compactness": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    }


def _method_reductions(method: str) -> tuple[str, ...] | None:
    import sys

    from .attribution import METHODS

    if method not in METHODS:
        return None
    return getattr(sys.modules[METHODS.get(method).__module__], "REDUCTIONS", None)


def check_method_values(method: str, params: dict[str, Any]) -> None:
    """Each method parameter's value, before the explain stage reaches it."""
    from .attribution.registry import STUDY_INPUTS  # derived per image from the image ids

    rules = _parameter_rules()
    for key, value in params.items():
        if key in STUDY_INPUTS:
            raise UserError(f"methods.{method}.{key}: not set in a study file; the study "
                            "derives it per image from the image ids")
        rule = rules.get(key)
        if key == "reduction":  # each method module declares the reductions it accepts
            choices = _method_reductions(method)
            rule = ((lambda v, c=choices: v in c), f"one of {', '.join(choices)}") if choices else rule
        if rule is not None and not rule[0](value):
            raise UserError(f"methods.{method}.{key}: got {value!r}; accepted: {rule[1]}")


def check_compare(config: StudyConfig) -> None:
    """Normalisation, resolution, degenerate rule, filter and metric options, before explain."""
    from .compare import FILTERS, METRICS, CompareOptions
    from .compare.options import NORMALIZATIONS, RESOLUTIONS

    cfg = config.compare
    if cfg.filter is not None and cfg.filter not in FILTERS:
        choices = FILTERS.names()
        raise UserError(f"compare.filter: unknown filter '{cfg.filter}'"
                        f"{did_you_mean(cfg.filter, choices)}; accepted: {', '.join(choices)}")
    for key, choices in (("normalization", NORMALIZATIONS), ("resolution", RESOLUTIONS)):
        value = getattr(cfg, key)
        if value not in choices:
            raise UserError(f"compare.{key}: got {value!r}{did_you_mean(value, choices)}; "
                            f"accepted: {', '.join(choices)}")
    if cfg.resolution == "pixels":  # needs size=(h, w), which the study schema has no key for
        raise UserError("compare.resolution: 'pixels' needs a target size, which a study "
                        "file cannot give; accepted: native, superpixels")
    try:
        CompareOptions(normalization=cfg.normalization, resolution=cfg.resolution,
                       degenerate=cfg.degenerate, filter=cfg.filter or "all")
    except UserError as err:
        raise UserError(f"compare.{err}") from None
    for metric, options in cfg.metric_options.items():
        if metric not in cfg.metrics:
            raise UserError(f"compare.metric_options.{metric}: not one of compare.metrics "
                            f"({', '.join(cfg.metrics)}); options for a metric that is not "
                            "computed would be ignored")
        try:
            METRICS.get(metric).params(options)
        except UserError as err:
            raise UserError(f"compare.metric_options.{metric}: {err}") from None


def check_models(config: StudyConfig) -> None:
    """Zoo entries carry no ignored option; cluster.k fits; each method applies somewhere."""
    from .models.checkpoint_meta import forbidden_kwargs_error
    from .models.zoo import zoo_names

    count = 0
    for i, model in enumerate(config.models):
        refused = forbidden_kwargs_error(model.kwargs, f"models[{i}].kwargs")
        if refused:
            raise refused
        if model.source.startswith("zoo:"):
            fields = type(model).model_fields  # a field differing from its default
            ignored = [f for f in ZOO_IGNORED_FIELDS if getattr(model, f)
                       != fields[f].get_default(call_default_factory=True)]
            if ignored:
                raise UserError(f"models[{i}].{ignored[0]}: not used for zoo models "
                                f"('{model.source}' loads the recorded model as trained); "
                                "remove it, or load the architecture by its timm name")
            count += len(zoo_names()) if model.source == "zoo:all" else 1
        else:
            count += 1
    k = config.cluster.k
    if k is not None and k > count:
        raise UserError(f"cluster.k: {k} clusters asked for, but the study has {count} "
                        f"model(s); accepted: 1 to {count}")
    check_methods_apply(config)


def applies_to_any_model(config: StudyConfig, method: str) -> bool:
    """Whether a method limited to some architectures (rollout: multi-head self-attention)
    applies to at least one model; a model whose architecture is only known at load time
    counts as applicable."""
    from .attribution import METHODS

    info = METHODS.get(method).info if method in METHODS else None
    if info is None or info.check_model is None:
        return True
    nets = [_skeleton(model, name) for model in config.models for name in _zoo_members(model)]
    return any(net is None or info.applies(net) for net in nets)


def check_methods_apply(config: StudyConfig) -> None:
    """Every method named in the study applies to at least one of its models."""
    from .attribution.registry import method_info

    for method in config.methods:
        if not applies_to_any_model(config, method):
            names = ", ".join(model.source for model in config.models)
            raise UserError(f"methods.{method}: applies to none of the study's models "
                            f"({names}); {method} needs {method_info(method).applies_note}; "
                            "remove it or add such a model")


def _zoo_members(model: ModelConfig) -> list[str | None]:
    """The zoo names an entry stands for (zoo:all: every one); [None] for other sources."""
    from .models.zoo import zoo_names

    if model.source == "zoo:all":
        return zoo_names()
    return [model.source[4:]] if model.source.startswith("zoo:") else [None]


def _skeleton(model: ModelConfig, zoo_name: str | None) -> Any:
    """The model's network without weights (on the meta device), or None when its
    architecture is only known once its files are read (checkpoints)."""
    import timm
    import torch

    if model.checkpoint is not None:
        return None
    if zoo_name is not None:
        from .models.zoo import zoo_entries

        entry = zoo_entries().get(zoo_name)
        if entry is None:
            return None
        arch, kwargs = entry["arch"], entry.get("kwargs") or {}
    else:
        arch, kwargs = model.source.split(".")[0], dict(model.kwargs)
    if model.num_classes is not None:
        kwargs["num_classes"] = model.num_classes
    try:
        with torch.device("meta"):
            return timm.create_model(arch, pretrained=False, **kwargs)
    except Exception:  # noqa: BLE001 - unknown here; loading names the problem
        return None
