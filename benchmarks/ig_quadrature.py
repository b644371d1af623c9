"""Integrated Gradients: completeness error of each quadrature rule across architectures.

For every model (timm, random weights, small input) and image, IG's attributions should sum
to F(x) - F(x') (completeness). This script measures, per quadrature rule at the same step
count, the relative completeness error

    |sum(attributions) - (F(x) - F(x'))| / |F(x) - F(x')|

with the black baseline (all-zero canonical image, which for mean 0 / std 1 models such as
MobileViT is an all-zero network input) and the predicted class, and prints one row per model
(median over images) and a summary per rule (median and max over all models and images).
It is the measurement behind `integrated_gradients`' default `quadrature`.

    PYTHONPATH=. python benchmarks/ig_quadrature.py               # all models, n_steps=32
    PYTHONPATH=. python benchmarks/ig_quadrature.py --steps 64 --models resnet18 mobilevit_xxs

Random weights: any all-zero weight matrix (zero-initialised classifier heads, e.g. MLP-Mixer,
ResMLP) is re-drawn from N(0, 0.02^2), so the target logit depends on the input at all.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attribution import load_images  # noqa: E402  (real photos from ../shared, else noise)

from xaicompare.attribution import explain_full  # noqa: E402
from xaicompare.attribution.integrated_gradients import QUADRATURES  # noqa: E402
from xaicompare.models.loading import load_model  # noqa: E402

# timm name -> create_model kwargs: one or two small models per kind of architecture.
MODELS = {
    "resnet18": {},
    "resnet50d": {},
    "densenet121": {},
    "efficientnet_b0": {},
    "mobilenetv2_050": {},
    "mobilenetv3_small_100": {},
    "ghostnet_100": {},
    "regnetx_002": {},
    "convnext_atto": {},
    "vit_tiny_patch16_224": {"img_size": 64},
    "deit_tiny_distilled_patch16_224": {"img_size": 64},
    "vit_small_patch14_reg4_dinov2": {"img_size": 56},
    "beit_base_patch16_224": {"img_size": 64},
    "eva02_tiny_patch14_224": {"img_size": 56},
    "cait_xxs24_224": {"img_size": 64},
    "swin_tiny_patch4_window7_224": {"img_size": 64, "window_size": 4},
    "pvt_v2_b0": {},
    "mobilevit_xxs": {},
    "mobilevitv2_050": {},
    "mixer_s16_224": {"img_size": 64},
    "resmlp_12_224": {"img_size": 64},
    "poolformer_s12": {},
}
SIZE = 64


def random_model(name: str, kwargs: dict):
    torch.manual_seed(0)
    size = kwargs.get("img_size", SIZE)
    model = load_model(name, pretrained=False, num_classes=10, class_indices=None,
                       input_size=size, probe=False, **kwargs)
    with torch.no_grad():
        for p in model.net.parameters():
            if p.ndim >= 2 and not p.any():  # zero-initialised head: the logit would be constant
                p.normal_(0.0, 0.02)
    return model


def relative_errors(model, images: torch.Tensor, steps: int, rules) -> dict[str, np.ndarray]:
    """Per rule: relative completeness error [B] for the predicted class, black baseline."""
    with torch.no_grad():
        target = model(images).argmax(dim=1)
        f_x = model(images).gather(1, target[:, None])[:, 0]
        f_b = model(torch.zeros_like(images)).gather(1, target[:, None])[:, 0]
    gap = (f_x - f_b).abs().double()
    out = {}
    for rule in rules:
        result = explain_full(model, images, "integrated_gradients", target=target,
                              n_steps=steps, baseline="black", quadrature=rule)
        out[rule] = (result.extras["delta"].abs().double() / gap).numpy()
    return out


def fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:9.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--steps", type=int, default=32, help="n_steps (the API default: 32)")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--rules", nargs="*", default=list(QUADRATURES))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    per_rule: dict[str, list[float]] = {rule: [] for rule in args.rules}
    print(f"n_steps={args.steps}, images={args.images}, black baseline, predicted class; "
          "relative completeness error, median over images")
    print(f"{'model':36s}" + "".join(f"{r:>19s}" for r in args.rules) + "   seconds")
    for name in args.models:
        start = time.perf_counter()
        kwargs = MODELS.get(name, {})
        model = random_model(name, kwargs)
        images = load_images(args.images, kwargs.get("img_size", SIZE))
        errors = relative_errors(model, images, args.steps, args.rules)
        for rule, values in errors.items():
            per_rule[rule].extend(values.tolist())
        row = "".join(f"{fmt(float(np.median(errors[r]))):>19s}" for r in args.rules)
        print(f"{name:36s}{row}   {time.perf_counter() - start:7.1f}", flush=True)

    print(f"\nover {len(args.models)} models x {args.images} images:")
    print(f"{'rule':20s}{'median':>11s}{'max':>11s}{'share < 0.01':>14s}{'share < 0.05':>14s}")
    for rule, values in per_rule.items():
        v = np.asarray(values)
        finite = np.where(np.isfinite(v), v, np.inf)
        print(f"{rule:20s}{fmt(float(np.median(finite))):>11s}{fmt(float(finite.max())):>11s}"
              f"{float(np.mean(finite < 0.01)):>14.2f}{float(np.mean(finite < 0.05)):>14.2f}")


if __name__ == "__main__":
    main()
