"""Score-CAM (Wang et al., 2020), batched: every channel of the layer becomes a mask on the
input, and the channel's weight is the softmax over channels of the target logit of the
masked image. As pytorch-grad-cam 1.5 computes it: each channel upsampled to the input
size (bilinear, align_corners=True, its UpsamplingBilinear2d), min-max normalised per
channel (+1e-8), multiplied into the image.

Cost: one forward per channel and image. The masked images of all channels of all images
in the batch go through the model in passes of `internal_batch_size` (pytorch-grad-cam:
16 per pass, one image at a time). An all-zero channel (common after a ReLU) gives an
all-zero mask, hence a black image: one forward of a black image scores all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .gradcam import (
    _store_identity,
    cam_attribution,
    check_upsample,
    layer_activations,
    resolve_cam_layer,
    weighted_sum,
)
from .passes import inputs_per_pass
from .registry import Explanation, register_method

AUTO_INPUTS_CPU = 64  # masked images per forward pass when internal_batch_size is None
AUTO_INPUTS_CUDA = 256


def channel_masks(channels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Channels [n, h, w] -> masks [n, H, W] in [0, 1]: upsampled, min-max per channel."""
    up = F.interpolate(channels[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]
    flat = up.flatten(1)
    low, high = flat.amin(dim=1)[:, None, None], flat.amax(dim=1)[:, None, None]
    return (up - low) / (high - low + 1e-8)


def channel_scores(model: nn.Module, images: torch.Tensor, target: torch.Tensor,
                   activation: torch.Tensor, per_pass: int) -> torch.Tensor:
    """Target logit of the image masked by each channel: [B, C]."""
    batch, channels = activation.shape[:2]
    rows = activation.flatten(0, 1)  # [B*C, h, w], image-major
    image_of = torch.arange(batch, device=images.device).repeat_interleave(channels)
    dead = ~rows.flatten(1).any(dim=1)  # all zero: mask 0, the masked image is black
    scores = torch.empty(batch * channels, device=images.device)
    with torch.no_grad():
        for part in (~dead).nonzero().squeeze(1).split(per_pass):
            b = image_of[part]
            masked = images[b] * channel_masks(rows[part], tuple(images.shape[-2:]))[:, None]
            scores[part] = model(masked).gather(1, target[b, None]).squeeze(1).float()
        if dead.any():
            black = model(torch.zeros_like(images[:1]))[0].float()
            scores[dead] = black[target[image_of[dead]]]
    return scores.view(batch, channels)


def _cost(p: dict, n: int, size: int, model: nn.Module | None = None):
    """At most: per image, the pass to the layer, one forward per channel of the layer the
    study uses (all-zero channels skip theirs: hence an upper bound) and the black image's
    (one per shard that has an all-zero channel; counted per image, also an upper bound). None without the model: the channel
    count needs its layer, read by a pass of one blank image to that layer."""
    if model is None:
        return None
    cam = resolve_cam_layer(model, p.get("layer"))
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    blank = torch.zeros(1, 3, size, size, device=device)
    channels = layer_activations(model, blank, cam.module, cam.to_nchw, cam.path).shape[1]
    return n * (1 + channels + 1), 0, False


@register_method("scorecam", display_name="Score-CAM", family="cam", signed=False,
                 cost=_cost, cost_note="at most: one forward per channel of its CAM layer per "
                 "image, plus the pass to the layer and a black image's; all-zero channels "
                 "share the black image's forward instead of their own")
def scorecam(model: nn.Module, images: torch.Tensor, target: torch.Tensor, *,
             layer=None, upsample: str = "bilinear", relu: bool = True,
             internal_batch_size: int | None = None) -> Explanation:
    """Score-CAM maps [B, H, W] in the canonical frame; extras["native"] is the layer grid.

    layer:    None (model.cam_layer), a module name, a relative depth, or an nn.Module
    upsample: "bilinear" | "nearest", from the layer grid to the canonical H, W
    relu:     clamp negative evidence to zero (the original definition)
    internal_batch_size: masked images per forward pass (None: 64 on CPU, 256 on CUDA at
              224 x 224, scaled by image area)
    """
    check_upsample(upsample)
    per_pass = inputs_per_pass(images, internal_batch_size, AUTO_INPUTS_CPU, AUTO_INPUTS_CUDA)
    cam = resolve_cam_layer(model, layer)
    activation = layer_activations(model, images, cam.module, cam.to_nchw, cam.path)
    weights = torch.softmax(channel_scores(model, images, target, activation, per_pass), dim=1)
    native = weighted_sum(weights.to(activation.dtype), activation)
    return cam_attribution(native, images, cam, upsample, relu, n_channels=activation.shape[1])


scorecam.store_identity = _store_identity
