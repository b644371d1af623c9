"""Named model lists and class-space mappings used by studies."""

from __future__ import annotations

try:  # the data package owns the class space; keep a copy so models/ stands alone
    from ..data.classes import IMAGENETTE_IMAGENET_INDICES
except ImportError:  # pragma: no cover
    IMAGENETTE_IMAGENET_INDICES = (0, 217, 482, 491, 497, 566, 569, 571, 574, 701)

# The 14 ImageNet-1k models of the published Imagenette study (timm name.tag).
IMAGENETTE_14: tuple[str, ...] = (
    "convnextv2_nano.fcmae_ft_in22k_in1k",
    "densenet121.tv_in1k",
    "efficientnet_b3.ra2_in1k",
    "efficientnet_b4.ra2_in1k",
    "mobilenetv3_large_100.ra_in1k",
    "resnet18d.ra2_in1k",
    "resnet50d.ra2_in1k",
    "resnext50_32x4d.a1h_in1k",
    "res2net50_14w_8s.in1k",
    "deit_small_patch16_224.fb_in1k",
    "deit_tiny_patch16_224.fb_in1k",
    "pvt_v2_b2.in1k",
    "swin_tiny_patch4_window7_224.ms_in1k",
    "vit_base_patch32_224.augreg_in21k_ft_in1k",
)

# Named class spaces: ImageNet-1k output indices kept, in study class order.
CLASS_SUBSETS: dict[str, tuple[int, ...]] = {"imagenette": tuple(IMAGENETTE_IMAGENET_INDICES)}
