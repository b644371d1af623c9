"""The metadata block of a toolkit checkpoint, validated before anything uses it.

A `.safetensors` file may come from anyone: its JSON metadata decides which architecture is
built, with which keyword arguments, normalisation and input size. Every key is known, every
value has a type and a range, and `model_kwargs` may not hold timm's own loading arguments
(`checkpoint_path` makes timm torch.load a file, `pretrained_cfg(_overlay)` can name a file,
URL or hub id (its data-config keys are allowed), `pretrained` downloads, `cache_dir` picks
where): the weights come from the checkpoint itself, nowhere else. save_model checks the same schema, so every checkpoint the
toolkit writes loads again.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import UserError, did_you_mean
from .base import FAMILIES

# timm.create_model arguments that load, fetch or locate weights, or change what the network
# returns: never taken from a file, nor from a study's `kwargs`.
FORBIDDEN_TIMM_KWARGS = {
    "checkpoint_path": "makes timm torch.load a file",
    "pretrained": "downloads weights (pass pretrained= to load_model instead)",
    "cache_dir": "chooses where downloaded weights are read from",
    "pretrained_strict": "changes how weights are loaded",
    "features_only": "returns feature maps instead of class logits",
    "num_classes": "is the checkpoint's own `num_classes` (or load_model's num_classes=)",
}
# pretrained_cfg(_overlay) may change the data config (input_size, mean, crop_pct, ...), but
# not say where weights come from.
WEIGHT_LOCATION_KEYS = ("url", "file", "state_dict", "hf_hub_id", "hf_hub_filename",
                        "hf_hub_revision", "source", "custom_load")
MAX_INPUT_SIDE = 8192


def forbidden_kwargs_error(kwargs: dict[str, Any], where: str) -> UserError | None:
    """A UserError naming the first timm loading argument in `kwargs`, or None."""
    for key, value in kwargs.items():
        if key in FORBIDDEN_TIMM_KWARGS:
            return UserError(f"{where}.{key}: not accepted: it {FORBIDDEN_TIMM_KWARGS[key]}; "
                             "pass architecture options only (e.g. img_size, drop_rate)")
        if key in ("pretrained_cfg", "pretrained_cfg_overlay"):
            if not isinstance(value, dict):
                return UserError(f"{where}.{key}: got {str(value)[:80]!r}; accepted: a mapping "
                                 "of data-config keys (e.g. {input_size: [3, 64, 64]}); a "
                                 "weights tag belongs in the source name (arch.tag)")
            located = [k for k in value if k in WEIGHT_LOCATION_KEYS]
            if located:
                return UserError(f"{where}.{key}.{located[0]}: not accepted: it says where "
                                 "weights are loaded from; weights come from pretrained=, "
                                 "checkpoint= or weights= only")
    return None


def _finite_triple(value: list[float], positive: bool) -> list[float]:
    if len(value) not in (1, 3) or not all(math.isfinite(v) for v in value):
        raise ValueError(f"got {value!r}; accepted: 3 finite numbers (one per RGB channel)")
    if positive and min(value) <= 0:
        raise ValueError(f"got {value!r}; accepted: 3 numbers > 0")
    if not positive and max(abs(v) for v in value) > 10:
        raise ValueError(f"got {value!r}; accepted: 3 numbers in [-10, 10] (images are in "
                         "[0, 1])")
    return value


class CheckpointMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    arch: str | None = Field(default=None, min_length=1)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: int | None = Field(default=None, ge=1)
    name: str | None = Field(default=None, min_length=1)
    family: Literal[FAMILIES] | None = None  # type: ignore[valid-type]
    mean: list[float] | None = None
    std: list[float] | None = None
    input_size: list[int] | None = None
    class_names: list[str] | None = None

    @field_validator("mean")
    @classmethod
    def _mean(cls, value):
        return None if value is None else _finite_triple(value, positive=False)

    @field_validator("std")
    @classmethod
    def _std(cls, value):
        return None if value is None else _finite_triple(value, positive=True)

    @field_validator("input_size")
    @classmethod
    def _input_size(cls, value):
        if value is not None and (len(value) != 2 or not all(
                1 <= side <= MAX_INPUT_SIDE for side in value)):
            raise ValueError(f"got {value!r}; accepted: [height, width] in 1..{MAX_INPUT_SIDE}")
        return value


def check_checkpoint_meta(meta: Any, source: str) -> dict[str, Any]:
    """`meta` (a checkpoint's parsed JSON metadata) if it fits the schema; else a one-line
    UserError naming the checkpoint, the key and what is accepted."""
    where = f"checkpoint {source}: metadata"
    if not isinstance(meta, dict):
        raise UserError(f"{where} is a {type(meta).__name__}, not a mapping of keys")
    known = list(CheckpointMeta.model_fields)
    for key in meta:
        if key not in known:
            raise UserError(f"{where}.{key}: unknown key{did_you_mean(key, known)}; accepted: "
                            f"{', '.join(known)}")
    try:
        checked = CheckpointMeta.model_validate(meta)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        message = (str(first["ctx"]["error"]) if first["type"] == "value_error"
                   else f"{first['msg']} (got {str(first.get('input'))[:80]!r})")
        raise UserError(f"{where}.{key}: {message}") from None
    problem = forbidden_kwargs_error(checked.model_kwargs, f"{where}.model_kwargs")
    if problem:
        raise problem
    if checked.arch is not None:
        import timm

        if not timm.is_model(checked.arch.split(".")[0]):
            raise UserError(f"{where}.arch: unknown timm architecture {checked.arch[:80]!r}"
                            f"{did_you_mean(checked.arch, timm.list_models())}; accepted: a "
                            "name in timm.list_models()")
    if checked.class_names is not None and checked.num_classes is not None and len(
            checked.class_names) != checked.num_classes:
        raise UserError(f"{where}.class_names: {len(checked.class_names)} names for "
                        f"num_classes {checked.num_classes}; accepted: one name per class")
    return meta
