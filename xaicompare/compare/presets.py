"""Convention presets: one name for every choice that decides the numbers of a study.

'toolkit' is this toolkit's own convention. 'thesis' is the published CNN-vs-transformer
study's: RBF exp(-||x - y||^2 / (2 sigma^2)) on the min-max maps with a fixed sigma in map
units, the unbiased std (ddof=1) in the dissimilarity, and networkx's
louvain_communities(G, resolution, seed=42). Every preset is batch-independent: sigma is a
fixed number, never a statistic of the images in one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError, did_you_mean

# The published study used sigma = 80 and sigma = 10 (in map units, ||x - y|| over the
# 224 x 224 min-max maps); 80 suits smooth maps such as Grad-CAM (a pair at RMS difference
# 0.3 gives 0.78), 10 would give ~0 for them. Set compare.metric_options.rbf.sigma to 10
# (or per method, {gradcam: 80, integrated_gradients: 10}) where your source used 10.
THESIS_SIGMA = 80.0


@dataclass(frozen=True)
class Conventions:
    """What a preset fixes. Explicit arguments and config keys always win over it."""

    name: str
    normalization: str  # CompareOptions.normalization
    metric_defaults: dict = field(default_factory=dict)  # {metric: {param: value}}
    ddof: int = 0  # std in the dissimilarity sqrt((1 - mean)^2 + std^2)
    louvain_backend: str = "python-louvain"
    louvain_seed: int | None = None  # None: the study's seed (API: 0)

    def metric_params(self, metric: str, given: dict | None = None) -> dict:
        """The preset's parameters of `metric`, overridden by the ones given."""
        return {**self.metric_defaults.get(metric, {}), **(given or {})}


PRESETS: dict[str, Conventions] = {
    "toolkit": Conventions("toolkit", normalization="minmax"),
    "thesis": Conventions(
        "thesis",
        normalization="minmax",
        metric_defaults={"rbf": {"distance": "euclidean", "sigma": THESIS_SIGMA}},
        ddof=1,
        louvain_backend="networkx",
        louvain_seed=42,
    ),
}


def conventions(preset: str | Conventions | None) -> Conventions | None:
    """The Conventions of a preset name (None stays None: no preset)."""
    if preset is None or isinstance(preset, Conventions):
        return preset
    if preset not in PRESETS:
        raise UserError(
            f"preset={preset!r} is not accepted{did_you_mean(str(preset), list(PRESETS))}; "
            f"accepted: {', '.join(PRESETS)}"
        )
    return PRESETS[preset]


def preset_options(conv: Conventions | None, options):
    """The compare options with the preset's normalisation where none was given."""
    if conv is None:
        return options
    if options is None:
        return {"normalization": conv.normalization}
    if isinstance(options, dict) and "normalization" not in options:
        return {**options, "normalization": conv.normalization}
    return options  # explicit CompareOptions (or normalization) win


def preset_ddof(conv: Conventions | None, ddof: int | None) -> int:
    """ddof as given, else the preset's, else 0 (the population std)."""
    if ddof is None:
        ddof = conv.ddof if conv is not None else 0
    if not isinstance(ddof, int) or isinstance(ddof, bool) or ddof < 0:
        raise UserError(f"ddof={ddof!r} is not accepted; accepted: an int >= 0 (1: unbiased std)")
    return ddof
