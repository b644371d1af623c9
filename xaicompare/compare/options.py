"""Preprocessing choices for comparing maps: explicit, validated and recorded with results."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import UserError

NORMALIZATIONS = ("none", "abs", "minmax", "maxabs", "l1", "l2", "rank")
RESOLUTIONS = ("native", "superpixels", "pixels")
RESAMPLE_MODES = ("area", "bilinear", "nearest")
DEGENERATE_POLICIES = ("exclude", "zero", "raise")


def _check_choice(field: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{field}={value!r} is not accepted; accepted: {', '.join(choices)}")


@dataclass(frozen=True)
class CompareOptions:
    """How maps are prepared before a similarity metric sees them.

    normalization: per-image rescaling applied after the resolution change:
        none | abs (|x|) | minmax | maxabs (x / max|x|) | l1 | l2 | rank (average ranks / D).
    resolution: native (as given) | superpixels (mean per segment; pass `segments`)
        | pixels (resample to `size` with `resample` = area | bilinear | nearest).
    degenerate: what a pair gets when either map is all-zero, constant or non-finite:
        exclude (NaN, left out of aggregates and counted) | zero (value 0, counted) | raise.
    filter: name of the image filter used (see compare.filters), recorded for provenance.
    """

    normalization: str = "none"
    resolution: str = "native"
    size: tuple[int, int] | None = None
    resample: str = "area"
    degenerate: str = "exclude"
    filter: str = "all"

    def __post_init__(self) -> None:
        _check_choice("normalization", self.normalization, NORMALIZATIONS)
        _check_choice("resolution", self.resolution, RESOLUTIONS)
        _check_choice("resample", self.resample, RESAMPLE_MODES)
        _check_choice("degenerate", self.degenerate, DEGENERATE_POLICIES)
        if self.resolution == "pixels":
            size = self.size
            if isinstance(size, int):
                size = (size, size)
            if (
                size is None
                or len(size) != 2
                or not all(isinstance(s, int) and s > 0 for s in size)
            ):
                raise UserError(
                    f"resolution='pixels' needs size=(height, width) of positive ints, "
                    f"got size={self.size!r}"
                )
            object.__setattr__(self, "size", tuple(size))
        elif self.size is not None:
            raise UserError(
                f"size={self.size!r} is only used with resolution='pixels', "
                f"got resolution={self.resolution!r}"
            )

    def to_dict(self) -> dict:
        """Plain dict for provenance (CSV headers, run metadata)."""
        out = asdict(self)
        if out["resolution"] != "pixels":
            out.pop("size")
            out.pop("resample")
        else:
            out["size"] = list(out["size"])
        return out


def as_options(options: CompareOptions | dict | None) -> CompareOptions:
    """Accept None (defaults), a CompareOptions, or a dict of its fields."""
    if options is None:
        return CompareOptions()
    if isinstance(options, CompareOptions):
        return options
    if isinstance(options, dict):
        try:
            return CompareOptions(**options)
        except TypeError as err:
            raise UserError(
                f"unknown compare option in {sorted(options)}; accepted: normalization, "
                "resolution, size, resample, degenerate, filter"
            ) from err
    raise UserError(f"options must be a CompareOptions or dict, got {type(options).__name__}")
