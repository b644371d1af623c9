"""LoadedModel: a classifier that takes images in the canonical frame.

Every model in a study sees the same pixels: float [B, 3, H, W] in [0, 1]. Its own resize
and normalisation happen inside `forward`, differentiably, so attributions from every model
land in the same pixel frame. Logits come out in the study's class space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

FAMILIES = ("cnn", "transformer", "hybrid", "mlp")


def identity_nchw(activation: torch.Tensor) -> torch.Tensor:
    return activation


class LoadedModel(nn.Module):
    """Wraps a network so it takes canonical images and returns study-class logits.

    net:           the raw network (a timm model or any nn.Module), called on normalised input
    name:          display name / store key part
    family:        "cnn" | "transformer" | "hybrid" | "mlp"
    mean, std:     per-channel normalisation the network expects
    input_size:    (H, W) the network expects; canonical images are resized to it inside
    class_indices: network output indices kept, in study class order (None: all outputs)
    cam_layer:     module whose output Grad-CAM uses by default
    to_nchw:       turns that module's output into [B, C, h, w] (token grids, NHWC, ...)
    weights_id:    short hash that identifies the weights (part of store keys)
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        name: str,
        family: str,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        input_size: tuple[int, int] | None = None,
        class_indices: Sequence[int] | None = None,
        cam_layer: nn.Module | None = None,
        to_nchw: Callable[[torch.Tensor], torch.Tensor] = identity_nchw,
        weights_id: str = "unknown",
        resize_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got '{family}'")
        self.net = net.eval()
        self.name = name
        self.family = family
        self.input_size = tuple(input_size) if input_size is not None else None
        self.resize_mode = resize_mode
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        idx = None if class_indices is None else torch.tensor(list(class_indices), dtype=torch.long)
        self.register_buffer("class_indices", idx)
        self.cam_layer = cam_layer
        self.to_nchw = to_nchw
        self.cam = None  # models.cam_layers.CamLayer: route, name, grid (set by load_model)
        self.weights_id = weights_id
        self.class_names: tuple[str, ...] | None = None  # set when the checkpoint names them
        self.metadata: dict = {}  # arch, timm kwargs, ... (what save_model writes)
        # hub repo@snapshot, checkpoint:<path>, random-init, ... (run.json; set by load_model)
        self.weights_source: str | None = None
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Canonical [0, 1] images -> the network's own input (resized, normalised)."""
        x = images
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            smooth = self.resize_mode in ("bilinear", "bicubic")
            # antialias when shrinking, as PIL/torchvision resizes do (still differentiable)
            shrink = smooth and any(t < s for t, s in zip(self.input_size, x.shape[-2:], strict=True))
            x = F.interpolate(x, size=self.input_size, mode=self.resize_mode,
                              align_corners=False if smooth else None, antialias=shrink)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(self.preprocess(images))
        if self.class_indices is not None:
            logits = logits.index_select(1, self.class_indices)
        return logits

    def set_class_indices(self, indices: Sequence[int] | None) -> None:
        """Keep only these network outputs, in this order (None: all outputs)."""
        self.class_indices = None if indices is None else torch.tensor(
            list(indices), dtype=torch.long, device=self.mean.device)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def __repr__(self) -> str:  # nn.Module's repr prints the whole network
        return f"LoadedModel(name={self.name!r}, family={self.family!r}, weights={self.weights_id})"
