"""The GPU figures of the published study, in one run that fits 10 minutes on an H200.

Sections 1-3 run on the shared Imagenette photos at 224 px (synthetic photos where
../shared is absent: SLIC needs structure, uniform noise can leave captum one superpixel).

1. Throughput: images/s of each method for resnet50 and vit_base_patch16_224 at 224 px
   (random weights) through the engine at batch_size auto, beside the limit measured in
   the same run at one large batch: one forward+backward to the input per image for
   Grad-CAM, n_steps of them for IG, n_samples forward passes for KernelSHAP (n_samples
   counts the empty and full coalitions, as captum does). Printed with the batch size the
   auto probe chose (its log line) and the peak GPU memory of the method's run.
2. KernelSHAP against captum as the published study called it: captum's KernelShap, one
   call per image with its defaults (perturbations_per_eval=1), black baseline, the same
   SLIC superpixels as feature_mask; seconds per image both ways and the maps' correlation
   (both sample coalitions, with different samplers, so r < 1).
3. Reduced precision: maps under autocast bf16 and fp16 against float32 (maps scaled to
   max |map| = 1): largest absolute difference, mean and worst cosine, seconds.
4. The published study's full scale: configs/imagenette-14.yaml with random weights
   (pretrained: false) on 128 images, Grad-CAM + IG 64 + KernelSHAP 350 and every other
   published budget, stage by stage through the Study API, each stage timed. Images: the
   shared Imagenette photos (mirrored and cropped copies up to 128), or seeded synthetic
   photos where ../shared is absent. Stages that would start after --budget-s are skipped
   (and said so).

    PYTHONPATH=. python benchmarks/gpu.py              # needs CUDA
    PYTHONPATH=. python benchmarks/gpu.py --smoke      # tiny sizes, on the CPU too

Without a CUDA device (and without --smoke) it exits at once with a message.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # real_path_fixture, shared with test_real_path.py
# xaicompare, timm and captum are imported where used, so that a machine without CUDA hears
# so at once (their import takes a while)

DATASET = {"name": "gpu-benchmark"}
START = time.perf_counter()


def elapsed() -> float:
    return time.perf_counter() - START


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_rate(fn, n_images: int, device: torch.device, repeats: int = 3) -> float:
    """Images per second of `fn` (which handles n_images), best of `repeats` after a warm-up."""
    fn()
    sync(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return n_images / best


def limits(model, batch: int, device: torch.device) -> tuple[float, float]:
    """(forward, forward+backward to the input) images/s of `model` at `batch` images."""
    x = torch.rand(batch, 3, *model.input_size, device=device)

    def forward():
        with torch.no_grad():
            model(x)

    def forward_backward():
        inputs = x.clone().requires_grad_(True)
        out = model(inputs)
        out.gather(1, out.argmax(1, keepdim=True)).sum().backward()

    return best_rate(forward, batch, device), best_rate(forward_backward, batch, device)


class TensorImages:
    """What the runner needs of an ImageSet, over a tensor of images."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images, self.labels = images, None
        self.ids = [f"img{i}" for i in range(len(images))]

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, rows):
        return self.images[list(rows)]


class BatchSizeLines(logging.Handler):
    """Keeps the engine's log lines about batch sizes (the auto probe's choice, OOM backoff)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record) -> None:
        if "batch size" in record.getMessage():
            self.lines.append(record.getMessage())


def bench_models(args, device: torch.device) -> list:
    from xaicompare.models.loading import load_model

    out = []
    for name in args.models:
        torch.manual_seed(0)
        out.append(load_model(name, pretrained=False, class_indices=None, device=device))
    return out


def throughput_section(args, device, models, images) -> None:
    from xaicompare.engine.runner import run_explanations
    from xaicompare.store import Store

    methods = {"gradcam": {}, "integrated_gradients": {"n_steps": args.ig_steps},
               "kernelshap": {"n_samples": args.shap_samples, "n_segments": args.shap_segments}}
    print(f"\n== 1. throughput: {len(images)} photos of {tuple(images.shape[-2:])} px, "
          f"batch_size auto; limits at batch {args.limit_batch} ==")
    print(f"{'model':<24}{'method':<22}{'images/s':>10}{'limit':>10}{'ratio':>7}"
          f"{'peak GB':>9}  auto batch")
    capture = BatchSizeLines()
    logger = logging.getLogger("xaicompare")
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    for model in models:
        forward, forward_backward = limits(model, args.limit_batch, device)
        for method, params in methods.items():
            capture.lines.clear()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with tempfile.TemporaryDirectory() as folder:
                summary = run_explanations([model], TensorImages(images), {method: params},
                                           Store(folder), dataset_identity=DATASET,
                                           batch_size="auto", device=str(device),
                                           progress=False)
            rate = len(images) / summary.seconds[f"{model.name}/{method}"]
            limit = {"gradcam": forward_backward,
                     "integrated_gradients": forward_backward / params.get("n_steps", 1),
                     "kernelshap": forward / params.get("n_samples", 1)}[method]
            peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" \
                else float("nan")
            chosen = "; ".join(capture.lines) or "(default: no probe on this device)"
            print(f"{model.name:<24}{method:<22}{rate:10.2f}{limit:10.2f}{rate / limit:7.2f}"
                  f"{peak:9.2f}  {chosen}", flush=True)
    logger.removeHandler(capture)


def captum_section(args, device, models, images) -> None:
    from captum.attr import KernelShap

    from xaicompare.attribution import explain
    from xaicompare.attribution.superpixels import compute_segments

    images = images[: args.captum_images].to(device)
    n = args.shap_samples
    segments, _ = compute_segments(images.cpu(), args.shap_segments)
    segments = segments.to(device)
    print(f"\n== 2. KernelSHAP vs captum KernelShap as the published study called it: "
          f"{len(images)} images, n_samples {n}, {args.shap_segments} superpixels ==")
    print(f"{'model':<24}{'ours s/img':>11}{'captum s/img':>13}{'speed-up':>9}{'r':>7}")
    for model in models:
        with torch.no_grad():
            target = model(images).argmax(1)
        params = {"n_samples": n, "n_segments": args.shap_segments, "seed": 0,
                  "segments": segments}

        mine = explain(model, images, "kernelshap", target=target, **params)  # + warm-up
        sync(device)
        start = time.perf_counter()
        explain(model, images, "kernelshap", target=target, **params)
        sync(device)
        t_ours = (time.perf_counter() - start) / len(images)
        shap = KernelShap(model)
        start = time.perf_counter()
        with torch.no_grad():
            theirs = torch.cat([shap.attribute(
                images[i: i + 1], baselines=0.0, target=int(target[i]), n_samples=n,
                feature_mask=segments[i: i + 1, None].expand(-1, 3, -1, -1)).sum(1) / 3
                for i in range(len(images))])
        sync(device)
        t_captum = (time.perf_counter() - start) / len(images)
        r = np.corrcoef(mine.flatten().float().cpu().numpy(),
                        theirs.flatten().float().cpu().numpy())[0, 1]
        print(f"{model.name:<24}{t_ours:11.3f}{t_captum:13.3f}{t_captum / t_ours:9.1f}"
              f"{r:7.3f}", flush=True)


def scaled(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.reshape(len(maps), -1).double()
    return flat / flat.abs().amax(1, keepdim=True).clamp_min(1e-30)


def precision_section(args, device, models, images) -> None:
    from xaicompare.attribution import explain
    from xaicompare.engine.units import autocast

    images = images[: args.precision_images].to(device)
    modes = ["bf16", "fp16"] if device.type == "cuda" else ["bf16"]
    methods = {"gradcam": {}, "integrated_gradients": {"n_steps": args.ig_steps},
               "kernelshap": {"n_samples": args.shap_samples,
                              "n_segments": args.shap_segments, "seed": 0}}
    print(f"\n== 3. autocast against float32: {len(images)} images (maps scaled to "
          "max |map| = 1) ==")
    print(f"{'model':<24}{'method':<22}{'mode':<6}{'max |diff|':>11}{'mean cos':>10}"
          f"{'min cos':>9}{'s fp32':>8}{'s mode':>8}")
    for model in models:
        with torch.no_grad():
            target = model(images).argmax(1)
        for method, params in methods.items():
            maps, seconds = {}, {}
            for mode in ["none", *modes]:
                sync(device)
                start = time.perf_counter()
                with autocast(device, mode, model):
                    maps[mode] = scaled(explain(model, images, method, target=target,
                                                **params).float())
                sync(device)
                seconds[mode] = time.perf_counter() - start
            for mode in modes:
                diff = (maps[mode] - maps["none"]).abs().max().item()
                cosine = torch.nn.functional.cosine_similarity(maps[mode], maps["none"], dim=1)
                print(f"{model.name:<24}{method:<22}{mode:<6}{diff:11.3g}"
                      f"{cosine.mean().item():10.4f}{cosine.min().item():9.4f}"
                      f"{seconds['none']:8.2f}{seconds[mode]:8.2f}", flush=True)


def synthetic_photos(folder: Path) -> dict[str, Path]:
    """Seeded smooth-noise photos, one per Imagenette class, where ../shared is absent."""
    from PIL import Image

    from xaicompare.data.classes import IMAGENETTE_CLASSES

    rng = np.random.default_rng(0)
    photos = {}
    folder.mkdir(parents=True, exist_ok=True)
    for cls in IMAGENETTE_CLASSES:
        coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
        photo = folder / f"{cls.wnid}_synthetic.JPEG"
        Image.fromarray(coarse).resize((400, 300), Image.Resampling.BICUBIC).save(photo)
        photos[cls.wnid] = photo
    return photos


def photo_batch(n: int, folder: Path) -> torch.Tensor:
    """n canonical 224 px images: the shared Imagenette photos (else synthetic ones), cycled,
    odd rounds mirrored; real structure gives SLIC (KernelSHAP) its superpixels."""
    from real_path_fixture import imagenette_photos

    from xaicompare.data import open_dataset

    photos = imagenette_photos()
    if len(photos) < 10:
        photos = synthetic_photos(folder)
    files = [str(p) for p in photos.values()]
    base = open_dataset("folder", root=files, size=224).load(range(len(files)))
    rounds = [base.flip(-1) if r % 2 else base for r in range(math.ceil(n / len(base)))]
    return torch.cat(rounds)[:n].contiguous()


def full_scale_section(args, device, work: Path) -> None:
    from real_path_fixture import (
        SMALL_BUDGETS,
        imagenette_photos,
        narrowed_study,
        published_tags,
        write_imagenette,
    )

    from xaicompare.study import STAGES, Study

    photos = imagenette_photos()
    source = "the shared Imagenette photos"
    if len(photos) < 10:
        photos, source = synthetic_photos(work / "photos"), "synthetic photos (no ../shared)"
    budgets = dict(SMALL_BUDGETS) if args.smoke else {}
    budgets["dataset.n_images"] = args.scale_images
    write_imagenette(work / "data", photos, copies=math.ceil(args.scale_images / len(photos)))
    tags = args.scale_tags or published_tags()
    study = narrowed_study(tags, work / "data", work / "run", budgets)
    for model in study["models"]:
        model["pretrained"] = False
    study["executor"] = {"device": str(device), "batch_size": "auto"}
    methods = ", ".join(f"{m} {p}" for m, p in study["methods"].items())
    print(f"\n== 4. full scale: {len(tags)} random-weight models x {args.scale_images} images "
          f"({source}); {methods}; every stage ==")
    runner = Study.from_dict(study, progress=False)
    total = 0.0
    for stage in STAGES:
        if elapsed() > args.budget_s:
            print(f"{stage:<10} skipped: {elapsed():.0f} s used of --budget-s {args.budget_s}")
            continue
        start = time.perf_counter()
        runner.run((stage,))
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{stage:<10}{seconds:9.1f} s", flush=True)
    explained = runner.result.explained
    if explained is not None:
        per_model: dict[str, float] = {}
        for unit, seconds in explained.seconds.items():
            name = unit.split("/")[0]
            per_model[name] = per_model.get(name, 0.0) + seconds
        slowest = sorted(per_model.items(), key=lambda kv: -kv[1])[:3]
        print("explain seconds, slowest models: "
              + ", ".join(f"{name} {s:.1f}" for name, s in slowest))
    print(f"{'total':<10}{total:9.1f} s (models loaded once, in the first stage)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes (runs on the CPU): checks the script, not the figures")
    parser.add_argument("--models", nargs="+", default=["resnet50", "vit_base_patch16_224"])
    parser.add_argument("--images", type=int, default=32, help="section 1")
    parser.add_argument("--ig-steps", type=int, default=64)
    parser.add_argument("--shap-samples", type=int, default=350)
    parser.add_argument("--shap-segments", type=int, default=50)
    parser.add_argument("--limit-batch", type=int, default=128)
    parser.add_argument("--captum-images", type=int, default=2)
    parser.add_argument("--precision-images", type=int, default=8)
    parser.add_argument("--scale-images", type=int, default=128)
    parser.add_argument("--scale-tags", nargs="+", default=None,
                        help="tags of configs/imagenette-14.yaml (default: all 14)")
    parser.add_argument("--budget-s", type=float, default=570,
                        help="no full-scale stage starts after this many seconds")
    parser.add_argument("--sections", nargs="+", type=int, default=[1, 2, 3, 4],
                        choices=[1, 2, 3, 4])
    args = parser.parse_args()
    if args.smoke:
        args.models, args.images, args.ig_steps, args.limit_batch = \
            ["resnet18", "vit_tiny_patch16_224"], 2, 2, 2
        args.shap_samples, args.shap_segments = 8, 6
        args.captum_images, args.precision_images, args.scale_images = 1, 2, 2
        args.scale_tags = args.scale_tags or ["resnet18d.ra2_in1k", "mobilenetv3_large_100.ra_in1k",
                                              "deit_tiny_patch16_224.fb_in1k"]
    if not torch.cuda.is_available() and not args.smoke:
        print("benchmarks/gpu.py needs a CUDA device and torch.cuda.is_available() is False "
              "here; nothing was measured (--smoke runs the script at tiny sizes on the CPU)",
              file=sys.stderr)
        raise SystemExit(2)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, device {name}{' (smoke: tiny sizes)' * args.smoke}")
    with tempfile.TemporaryDirectory(prefix="xc-gpu-photos-") as folder:
        images = photo_batch(args.images, Path(folder))
    models = bench_models(args, device) if {1, 2, 3} & set(args.sections) else []
    sections = {1: throughput_section, 2: captum_section, 3: precision_section}
    for number in sorted(set(args.sections) - {4}):
        sections[number](args, device, models, images)
        print(f"({elapsed():.0f} s so far)")
    if 4 in args.sections:
        with tempfile.TemporaryDirectory(prefix="xc-gpu-") as work:
            full_scale_section(args, device, Path(work))
    print(f"\ndone in {elapsed():.0f} s")


if __name__ == "__main__":
    main()
