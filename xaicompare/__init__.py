"""xaicompare: do these models look at the same evidence, and do they make the same mistakes?

    import xaicompare as xc
    model = xc.load_model("resnet50d.ra2_in1k")
    maps = xc.explain(model, images, method="gradcam")
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

# Public names -> the module that defines them. Imported on first use, so `import
# xaicompare` (and the CLI's --help) stays fast and does not import torch.
_PUBLIC = {
    "load_model": "xaicompare.models",
    "load_zoo": "xaicompare.models.zoo",
    "LoadedModel": "xaicompare.models.base",
    "explain": "xaicompare.attribution",
    "explain_full": "xaicompare.attribution",
    "similarity": "xaicompare.compare",
    "dissimilarity": "xaicompare.compare",
    "similarity_matrix": "xaicompare.compare",
    "similarity_matrices": "xaicompare.compare",
    "conventions": "xaicompare.compare",
    "rank_agreement": "xaicompare.compare",
    "ssim": "xaicompare.compare",
    "cka": "xaicompare.compare",
    "cka_matrix": "xaicompare.compare",
    "consensus": "xaicompare.compare",
    "stratified_agreement": "xaicompare.diversity",
    "cluster": "xaicompare.clustering",
    "communities": "xaicompare.clustering",
    "error_consistency": "xaicompare.diversity",
    "open_dataset": "xaicompare.data",
    "make_shapes": "xaicompare.data.shapes",
    "Study": "xaicompare.study",
    "UserError": "xaicompare.errors",
}

__all__ = sorted(_PUBLIC) + ["__version__", "plotting"]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    if name == "plotting":  # figures, style() and display_names(); imports matplotlib
        return import_module("xaicompare.plotting")
    raise AttributeError(f"module 'xaicompare' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__
