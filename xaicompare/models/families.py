"""Architecture family of a network: cnn | transformer | hybrid | mlp."""

from __future__ import annotations

from torch import nn

from ..errors import UserError
from .base import FAMILIES

# timm model module (last dotted part) -> family. Anything else in timm.models is a CNN.
_MODULE_FAMILY: dict[str, str] = {
    **dict.fromkeys(
        ["vision_transformer", "vision_transformer_relpos", "vision_transformer_sam",
         "deit", "cait", "xcit", "eva", "beit", "swin_transformer", "swin_transformer_v2",
         "swin_transformer_v2_cr", "pvt_v2", "twins", "crossvit", "tnt", "pit", "gcvit",
         "nest", "sequencer", "focalnet", "davit", "hiera", "tiny_vit", "vitamin", "volo",
         "hieradet_sam2", "naflexvit", "mvitv2", "visformer"], "transformer"),
    **dict.fromkeys(
        ["mlp_mixer", "convmixer"], "mlp"),
    **dict.fromkeys(
        ["coat", "maxxvit", "mobilevit", "efficientformer", "efficientformer_v2", "fastvit",
         "levit", "vision_transformer_hybrid", "convit", "edgenext", "efficientvit_mit",
         "efficientvit_msra", "nextvit", "metaformer", "shvit", "swiftformer"], "hybrid"),
}


def detect_family(net: nn.Module) -> str:
    """Family of a timm network from its defining module; 'cnn' for unknown modules.

    MobileViT is a ByobNet (a CNN builder) with transformer blocks inside, so ByobNets
    that contain a MobileVit block are hybrids.
    """
    module = type(net).__module__
    if module.startswith("timm.models."):
        short = module.split(".")[2]
        if short == "byobnet":
            has_vit = any(type(m).__name__.startswith("MobileVit") for m in net.modules())
            return "hybrid" if has_vit else "cnn"
        return _MODULE_FAMILY.get(short, "cnn")
    return "cnn"


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise UserError(f"unknown family '{family}'; accepted: {', '.join(FAMILIES)}")
    return family
