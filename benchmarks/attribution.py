"""Explanation speed and agreement: xaicompare side by side with captum, pytorch-grad-cam, shap.

The same models (timm, random init), images and settings run in one process through
xaicompare and through each peer. Printed per model and method: seconds per image, the
ratio to the compute limit measured in the same run (n_steps x forward+backward to the
input for IG, n_samples x forward for KernelSHAP, one forward+backward for Grad-CAM, each
at its best batch size), the speed-up over each peer, and the largest difference between
our maps and theirs. IG's limit is timed alternately with IG itself (the same images x
n_steps points, at the limit's best batch size as IG's internal_batch_size, and IG at its
default), `--repeats` times, so each repeat's ratio is taken under the same machine load;
printed: min and median of those ratios.

    PYTHONPATH=. python benchmarks/attribution.py --models resnet18 vit_tiny_patch16_224 \
        --size 224 --images 2 --methods gradcam ig kernelshap

Peers as a published study would call them (assumptions stated where the study is silent):
- captum IntegratedGradients, one call per image, `internal_batch_size=--captum-ig-ibs`
  (default: n_steps, all steps of the image in one batch), method = --ig-quadrature;
- captum KernelShap, one call per image with its defaults (perturbations_per_eval=1) plus
  n_samples, a black baseline and the same SLIC superpixels as feature_mask;
- shap KernelExplainer over the same superpixels (background: all features off = black);
- pytorch-grad-cam GradCAM and captum LayerGradCam (+ LayerAttribution.interpolate) on the
  model's default Grad-CAM layer; captum cannot reshape token layers, so it is skipped there.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from attribution_cam import CAM_CASES, bench_cams

# the gradient and perturbation cases (run as a script: benchmarks/ is on sys.path)
from attribution_gradient_perturbation import CASES as GRADIENT_PERTURBATION_CASES
from attribution_gradient_perturbation import add_arguments as add_gp_arguments
from timing import best_time, display_normalise, timed_once

from xaicompare.attribution import explain
from xaicompare.models.loading import load_model

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


def load_images(count: int, size: int) -> torch.Tensor:
    """Real photos from ../shared when present (resized, centre frame), else seeded noise."""
    paths = sorted(SAMPLES_DIR.glob("*.JPEG"))[:count] if SAMPLES_DIR.is_dir() else []
    if len(paths) < count:
        return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0))
    from PIL import Image

    pictures = [
        torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((size, size))).copy())
        for p in paths
    ]
    return torch.stack(pictures).permute(0, 3, 1, 2).float() / 255


def per_point_costs(model, image: torch.Tensor, batch_sizes: list[int], repeats: int
                    ) -> tuple[float, float]:
    """Best seconds per point of (forward, forward+backward to the input) over batch sizes."""
    forward, backward = float("inf"), float("inf")
    for size in batch_sizes:
        x = image.expand(size, -1, -1, -1).contiguous()

        def fwd(x=x):
            with torch.inference_mode():
                model(x)

        def fwd_bwd(x=x):
            inputs = x.clone().requires_grad_(True)
            torch.autograd.grad(model(inputs)[:, 0].sum(), inputs)

        forward = min(forward, best_time(fwd, repeats) / size)
        backward = min(backward, best_time(fwd_bwd, repeats) / size)
    return forward, backward


def report(rows: list[tuple[str, float, str]], ours: float) -> None:
    for name, seconds, note in rows:
        speed = f"{seconds / ours:6.2f}x" if name != "xaicompare" else "      "
        print(f"    {name:<26} {seconds:8.3f} s/img  speed-up {speed}  {note}")


def bench_gradcam(model, images, target, fwd_bwd, repeats):
    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    batch, size = images.shape[0], images.shape[-1]
    ours = explain(model, images, "gradcam", target=target)
    t_ours = best_time(lambda: explain(model, images, "gradcam", target=target), repeats) / batch
    rows = [("xaicompare", t_ours, f"limit ratio {t_ours / fwd_bwd:.2f} (1 fwd+bwd)")]

    token_layer = model.family in ("transformer", "hybrid") and hasattr(model.net, "blocks")
    if not token_layer:
        captum = LayerGradCam(model, model.cam_layer)

        def run_captum():
            native = captum.attribute(images, target=target, relu_attributions=True)
            return LayerAttribution.interpolate(native, (size, size), "bilinear")[:, 0]

        diff = (run_captum() - ours).abs().max().item()
        rows.append(("captum LayerGradCam", best_time(run_captum, repeats) / batch,
                     f"max|diff| {diff:.2e} (raw maps)"))
    else:
        rows.append(("captum LayerGradCam", float("nan"), "n/a: cannot reshape token layers"))

    cam = GradCAM(model=model, target_layers=[model.cam_layer],
                  reshape_transform=None if model.to_nchw is None else model.to_nchw)
    targets = [ClassifierOutputTarget(int(t)) for t in target]
    theirs = torch.from_numpy(cam(input_tensor=images, targets=targets))
    diff = (display_normalise(ours) - theirs).abs().max().item()
    t_pgc = best_time(lambda: cam(input_tensor=images, targets=targets), repeats) / batch
    cam.activations_and_grads.release()
    model.zero_grad(set_to_none=True)
    rows.append(("pytorch-grad-cam GradCAM", t_pgc, f"max|diff| {diff:.2e} (min-max maps)"))
    report(rows, t_ours)


def limit_pass(model, points: torch.Tensor, targets: torch.Tensor, batch: int) -> None:
    """The IG compute limit: one forward+backward to the input (never the parameters) per
    point, `batch` points at a time. Points are built before timing, so this is only the
    model's cost."""
    for start in range(0, len(points), batch):
        x = points[start : start + batch].detach().requires_grad_(True)
        out = model(x).gather(1, targets[start : start + batch, None]).sum()
        torch.autograd.grad(out, x)


def bench_ig(model, images, target, fwd_bwd, args):
    """IG against its limit, interleaved: per repeat the limit (images x n_steps points at
    the best batch size) and then IG at that internal_batch_size (and at its default), so
    each repeat's ratio compares runs under the same machine load. min and median ratios."""
    from captum.attr import IntegratedGradients

    batch, steps = images.shape[0], args.steps
    params = {"n_steps": steps, "quadrature": args.ig_quadrature, "baseline": "black"}
    points = images.repeat_interleave(steps, 0)
    targets = target.repeat_interleave(steps, 0)
    sizes = sorted({min(b, len(points)) for b in args.limit_batch_sizes})
    limit_pass(model, points, targets, sizes[0])  # warm-up

    def once(b):
        start = time.perf_counter()
        limit_pass(model, points, targets, b)
        return time.perf_counter() - start

    best = min(sizes, key=once)

    def ours(ibs):
        return explain(model, images, "integrated_gradients", target=target,
                       internal_batch_size=ibs, **params)

    runs = {"limit": lambda: limit_pass(model, points, targets, best),
            f"IG ibs={best}": lambda: ours(best), "IG ibs=auto": lambda: ours(None)}
    for run in runs.values():
        run()  # warm-up
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    limit = np.array(times["limit"])
    print(f"    limit: {len(points)} points (= {batch} images x {steps} steps) x fwd+bwd to "
          f"the input, batch {best} (best of {sizes}): min {limit.min() / batch:.3f} s/img")
    for name in list(runs)[1:]:
        ratio = np.array(times[name]) / limit
        print(f"    {name:<12} min {min(times[name]) / batch:.3f} s/img   ratio to limit per "
              f"repeat: min {ratio.min():.3f}, median {np.median(ratio):.3f} "
              f"(ratio of mins {min(times[name]) / limit.min():.3f}, {args.repeats} repeats)")

    t_ours = min(times[f"IG ibs={best}"]) / batch
    mine = ours(best)
    ig = IntegratedGradients(model)
    ibs = args.captum_ig_ibs or steps

    def run_captum():
        return torch.cat([
            ig.attribute(images[i : i + 1], baselines=torch.zeros_like(images[i : i + 1]),
                         target=int(target[i]), n_steps=steps, method=args.ig_quadrature,
                         internal_batch_size=ibs).sum(dim=1)
            for i in range(batch)
        ])

    theirs = run_captum()
    scale = theirs.abs().max().item()
    diff = (theirs - mine).abs().max().item()
    t_captum = best_time(run_captum, args.repeats) / batch
    model.zero_grad(set_to_none=True)
    rows = [("xaicompare", t_ours, f"ibs={best}"),
            (f"captum IG (ibs={ibs})", t_captum, f"max|diff| {diff:.2e} (max|map| {scale:.2e})")]
    report(rows, t_ours)


def bench_kernelshap(model, images, target, forward, args):
    try:
        import xaicompare.attribution.kernelshap  # noqa: F401
        from xaicompare.attribution.superpixels import compute_segments
    except ModuleNotFoundError as err:
        print(f"    kernelshap skipped: {err.name} is not there yet")
        return
    from captum.attr import KernelShap

    batch, n = images.shape[0], args.samples
    segments, _ = compute_segments(images, args.segments)
    params = {"n_samples": n, "n_segments": args.segments, "seed": 0, "segments": segments}
    ours = explain(model, images, "kernelshap", target=target, **params)
    t_ours = best_time(lambda: explain(model, images, "kernelshap", target=target, **params),
                       args.repeats) / batch
    limit = n * forward
    rows = [("xaicompare", t_ours, f"limit ratio {t_ours / limit:.2f} "
                                   f"(limit {limit:.3f} s = {n} x fwd)")]

    def corr(a, b):
        return np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]

    shap_explainer = KernelShap(model)

    def run_captum():
        with torch.no_grad():
            return torch.cat([
                shap_explainer.attribute(
                    images[i : i + 1], baselines=0.0, target=int(target[i]), n_samples=n,
                    feature_mask=segments[i : i + 1, None].expand(-1, 3, -1, -1),
                ).sum(dim=1) / 3  # every channel of a superpixel carries its value
                for i in range(batch)
            ])

    t_captum, theirs = timed_once(run_captum)
    rows.append(("captum KernelShap", t_captum / batch,
                 f"max|diff| {(theirs - ours).abs().max().item():.2e}, "
                 f"r={corr(theirs, ours):.3f} (both sampled)"))

    if args.shap_samples:
        t_shap, shap_maps = run_shap(model, images, target, segments, args.shap_samples)
        rows.append((f"shap KernelExplainer ({args.shap_samples})", t_shap,
                     f"max|diff| {(shap_maps - ours).abs().max().item():.2e}, "
                     f"r={corr(shap_maps, ours):.3f}"))
    report(rows, t_ours)


def run_shap(model, images, target, segments, n_samples):
    """shap.KernelExplainer per image over superpixels (1 = keep, 0 = black)."""
    import shap

    maps, start = [], time.perf_counter()
    for i in range(images.shape[0]):
        seg, n_features = segments[i], int(segments[i].max()) + 1

        def f(z, i=i, seg=seg):
            keep = torch.from_numpy(z).bool()[:, seg]  # [S, H, W]
            with torch.no_grad():
                out = model(images[i : i + 1] * keep[:, None].float())
            return out[:, int(target[i])].numpy()

        explainer = shap.KernelExplainer(f, np.zeros((1, n_features)))
        phi = explainer.shap_values(np.ones((1, n_features)), nsamples=n_samples, silent=True)
        maps.append(torch.from_numpy(np.asarray(phi).reshape(-1)).float()[seg])
    return (time.perf_counter() - start) / images.shape[0], torch.stack(maps)


# ---- CAM variants beside pytorch-grad-cam --------------------------------------------------
# One case per variant: our method, its pytorch-grad-cam class (run with its defaults on the
# model's default CAM layer, model.to_nchw as reshape_transform) and the compute limit it is
# held to, each measured in this run:
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "vit_tiny_patch16_224"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--model-size", type=int, default=None,
                        help="the models' input_size (default: their own; images are resized)")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["gradcam", "ig", "kernelshap"],
                        choices=["gradcam", "ig", "kernelshap", "cams",
                                 *(c.method for c in CAM_CASES), *GRADIENT_PERTURBATION_CASES],
                        help="cams: every CAM variant beside pytorch-grad-cam")
    parser.add_argument("--steps", type=int, default=32, help="IG n_steps")
    parser.add_argument("--ig-quadrature", default="gausslegendre")
    parser.add_argument("--captum-ig-ibs", type=int, default=None,
                        help="captum internal_batch_size (default: n_steps)")
    parser.add_argument("--samples", type=int, default=200, help="KernelSHAP n_samples")
    parser.add_argument("--segments", type=int, default=50)
    parser.add_argument("--shap-samples", type=int, default=100, help="0 skips shap")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit-batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_gp_arguments(parser)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 avoids waiting on a busy core at every op)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    images = load_images(args.images, args.size).to(args.device)
    print(f"device={args.device} threads={torch.get_num_threads()} images={args.images} "
          f"size={args.size} IG n_steps={args.steps} ({args.ig_quadrature}) "
          f"KernelSHAP n_samples={args.samples} n_segments={args.segments}")
    for name in args.models:
        sized = {"input_size": args.model_size} if args.model_size else {}
        model = load_model(name, pretrained=False, class_indices=None, device=args.device,
                           probe=False, **sized)
        with torch.no_grad():
            target = model(images).argmax(1)
        forward = fwd_bwd = float("nan")  # IG, the CAMs and the cases below time their own
        if set(args.methods) & {"gradcam", "kernelshap"}:
            forward, fwd_bwd = per_point_costs(model, images[:1], args.limit_batch_sizes,
                                               args.repeats)
        print(f"\n{name}: best per point: forward {forward * 1e3:.1f} ms, "
              f"forward+backward {fwd_bwd * 1e3:.1f} ms")
        cams = [c for c in CAM_CASES if "cams" in args.methods or c.method in args.methods]
        if cams:
            print("  CAM variants")
            bench_cams(model, images, target, cams, args)
        for method in [m for m in args.methods
                       if m in ("gradcam", "ig", "kernelshap", *GRADIENT_PERTURBATION_CASES)]:
            print(f"  {method}")
            if method == "gradcam":
                bench_gradcam(model, images, target, fwd_bwd, args.repeats)
            elif method == "ig":
                bench_ig(model, images, target, fwd_bwd, args)
            elif method in GRADIENT_PERTURBATION_CASES:
                GRADIENT_PERTURBATION_CASES[method](model, images, target, args)
            else:
                bench_kernelshap(model, images, target, forward, args)


if __name__ == "__main__":
    main()
