"""Models: load any classifier into the canonical frame, find its Grad-CAM layer, the zoo."""

from .base import FAMILIES, LoadedModel
from .cam_layers import CamLayer, cam_candidates, probe_cam_layer, resolve_layer
from .catalog import CLASS_SUBSETS, IMAGENETTE_14
from .families import detect_family
from .loading import load_model, save_model
from .zoo import ZOO_SPECS, load_zoo

__all__ = [
    "CLASS_SUBSETS", "FAMILIES", "IMAGENETTE_14", "CamLayer", "LoadedModel", "cam_candidates",
    "detect_family", "load_model", "probe_cam_layer", "resolve_layer",
    "save_model", "ZOO_SPECS", "load_zoo",
]
