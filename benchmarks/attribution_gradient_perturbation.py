"""Gradient and perturbation cases of benchmarks/attribution.py: each method beside its
reference, timed in the same run, with its ratio to the compute limit.

Limit = the method's count of passes per image, run as plain batched forward (or
forward+backward to the input) passes over the images repeated that many times, at the best
of --limit-batch-sizes: saliency / input_x_gradient 1 fwd+bwd, smoothgrad / gradient_shap
n_samples fwd+bwd, occlusion (windows + 1) fwd, lime n_samples fwd, rise n_masks fwd. As for
IG, the limit and our method are timed alternately, `--repeats` times, so each repeat's
ratio compares runs under the same machine load (the CPU is shared): printed, the median of
those ratios. Ours runs as the engine calls it (explain_full with check_logits=False).

References, as a published study would call them:
- captum Saliency (abs=True) / InputXGradient on the whole batch;
- captum NoiseTunnel(Saliency) with our noise (torch.normal patched), the whole batch;
- captum GradientShap, one call per image (our baselines are per image: a blurred one is the
  image's own), with our draws (np.random.choice, torch.normal, np.random.uniform patched);
- captum Occlusion with its default perturbations_per_eval=1, and with the best setting
  (the best of --occlusion-ppe);
- captum Lime, one call per image, default perturbations_per_eval=1 and SkLearnLasso(0.01),
  fed our coalition rows through perturb_func (a generator), the same superpixels;
- RISE: a direct loop over the masks, one masked image per forward, as the paper writes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from unittest import mock

import numpy as np
import torch

from xaicompare.attribution import explain_full


def explain(model, images, method, target, **params) -> torch.Tensor:
    """Our maps as a study computes them (the engine checks the logits itself)."""
    return explain_full(model, images, method, target, check_logits=False, **params).maps


def _limit_pass(model, points: torch.Tensor, targets: torch.Tensor, batch: int,
                backward: bool) -> None:
    for start in range(0, len(points), batch):
        x, t = points[start:start + batch], targets[start:start + batch, None]
        if backward:
            x = x.detach().requires_grad_(True)
            torch.autograd.grad(model(x).gather(1, t).sum(), x)
        else:
            with torch.inference_mode():
                model(x).gather(1, t)


def against_limit(ours: Callable[[], torch.Tensor], model, images, target,
                  count: int | torch.Tensor, backward: bool, args
                  ) -> tuple[float, float, float, torch.Tensor]:
    """(our best seconds, the limit's best seconds, median of per-repeat ratios, our maps):
    the limit (`count` passes per image, or one count per image, at its best batch size)
    and ours, alternately."""
    points = images.repeat_interleave(count, 0)
    targets = target.repeat_interleave(count, 0)
    sizes = sorted({min(b, len(points)) for b in args.limit_batch_sizes})
    _limit_pass(model, points, targets, sizes[0], backward)  # warm-up

    def limit_once(batch: int) -> float:
        start = time.perf_counter()
        _limit_pass(model, points, targets, batch, backward)
        return time.perf_counter() - start

    best = min(sizes, key=limit_once)
    result = ours()  # warm-up
    t_ours, t_limit = [], []
    for _ in range(args.repeats):
        t_limit.append(limit_once(best))
        start = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - start)
    ratio = float(np.median(np.array(t_ours) / np.array(t_limit)))
    return min(t_ours), min(t_limit), ratio, result


def _timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    """(best seconds of `repeats` runs after a warm-up, the result)."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _once(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _diff(ours: torch.Tensor, ref: torch.Tensor) -> str:
    scale = ref.abs().max().item()
    return f"max|diff|/max|ref| {(ours - ref).abs().max().item() / max(scale, 1e-30):.1e}"


def _print(measured: tuple, limit_note: str, refs: list[tuple[str, float, str]],
           batch: int) -> None:
    t, limit, ratio = measured[0] / batch, measured[1] / batch, measured[2]
    print(f"    {'xaicompare':<34} {t:8.4f} s/img  limit {limit:8.4f} s/img ({limit_note})  "
          f"ratio to limit {ratio:5.2f} (median of repeats)")
    for ref_name, seconds, note in refs:
        s = seconds / batch
        print(f"    {ref_name:<34} {s:8.4f} s/img  speed-up {s / t:7.2f}x  {note}")


def bench_saliency(model, images, target, args):
    from captum.attr import Saliency

    measured = against_limit(lambda: explain(model, images, "saliency", target),
                             model, images, target, 1, True, args)
    t_ref, ref = _timed(lambda: Saliency(model).attribute(images, target=target, abs=True)
                        .amax(1), args.repeats)
    _print(measured, "1 fwd+bwd", [("captum Saliency", t_ref, _diff(measured[3], ref))],
           len(images))


def bench_input_x_gradient(model, images, target, args):
    from captum.attr import InputXGradient

    measured = against_limit(lambda: explain(model, images, "input_x_gradient", target),
                             model, images, target, 1, True, args)
    t_ref, ref = _timed(lambda: InputXGradient(model).attribute(images, target=target).sum(1),
                        args.repeats)
    _print(measured, "1 fwd+bwd",
           [("captum InputXGradient", t_ref, _diff(measured[3], ref))], len(images))


def bench_smoothgrad(model, images, target, args):
    from captum.attr import NoiseTunnel, Saliency

    from xaicompare.attribution.gradients import smoothgrad_noise

    n, level = args.grad_samples, 0.15
    seeds = torch.arange(len(images)) + 11
    measured = against_limit(lambda: explain(model, images, "smoothgrad", target, n_samples=n,
                                             noise_level=level, image_seeds=seeds),
                             model, images, target, n, True, args)
    noise = smoothgrad_noise(images, n, level, seeds.tolist()).reshape(-1, *images.shape[1:])

    def run_captum():
        with mock.patch.object(torch, "normal", lambda mean, std: noise.clone()):
            return NoiseTunnel(Saliency(model)).attribute(
                images, nt_type="smoothgrad", nt_samples=n, stdevs=level, target=target,
                abs=True).amax(1)

    t_ref, ref = _timed(run_captum, args.repeats)
    _print(measured, f"{n} fwd+bwd",
           [("captum NoiseTunnel(Saliency)", t_ref, _diff(measured[3], ref))], len(images))


def bench_gradient_shap(model, images, target, args):
    from captum.attr import GradientShap

    from xaicompare.attribution.gradient_shap import baseline_distribution, gradient_shap_draws

    n, stdevs, kinds = args.grad_samples, 0.05, ["black", "blur"]
    seeds = torch.arange(len(images)) + 21
    measured = against_limit(lambda: explain(model, images, "gradient_shap", target,
                                             n_samples=n, stdevs=stdevs, baselines=kinds,
                                             image_seeds=seeds),
                             model, images, target, n, True, args)
    bases = baseline_distribution(images, kinds, seed=0)
    index, alpha, noise = gradient_shap_draws(n, len(kinds), stdevs, tuple(images.shape[1:]),
                                              seeds.tolist())

    def run_captum():
        maps = []
        for i in range(len(images)):
            draws = (mock.patch.object(np.random, "choice", lambda k, size, i=i: index[i].numpy()),
                     mock.patch.object(np.random, "uniform",
                                       lambda lo, hi, size, i=i: alpha[i].numpy()),
                     mock.patch.object(torch, "normal", lambda mean, std, i=i: noise[i].clone()))
            with draws[0], draws[1], draws[2]:
                maps.append(GradientShap(model).attribute(
                    images[i:i + 1], baselines=bases[i], n_samples=n, stdevs=stdevs,
                    target=int(target[i])).sum(1))
        return torch.cat(maps)

    t_ref, ref = _timed(run_captum, args.repeats)
    _print(measured, f"{n} fwd+bwd",
           [("captum GradientShap", t_ref, _diff(measured[3], ref))], len(images))


def bench_occlusion(model, images, target, args):
    from captum.attr import Occlusion

    size = images.shape[-1]
    window, stride = max(1, size // 8), max(1, size // 16)
    windows = (int(np.ceil((size - window) / stride)) + 1) ** 2
    measured = against_limit(lambda: explain(model, images, "occlusion", target),
                             model, images, target, windows + 1, False, args)

    def run_captum(ppe):
        return Occlusion(model).attribute(images, target=target, baselines=0.0,
                                          sliding_window_shapes=(3, window, window),
                                          strides=(3, stride, stride),
                                          perturbations_per_eval=ppe)[:, 0]

    t_default, ref = _once(lambda: run_captum(1))
    best_ppe, t_best = None, float("inf")
    for ppe in args.occlusion_ppe:
        seconds, _ = _once(lambda ppe=ppe: run_captum(ppe))
        if seconds < t_best:
            best_ppe, t_best = ppe, seconds
    _print(measured, f"{windows}+1 fwd",
           [("captum Occlusion (ppe=1, default)", t_default, _diff(measured[3], ref)),
            (f"captum Occlusion (ppe={best_ppe}, best)", t_best, "")], len(images))


def bench_lime(model, images, target, args):
    from captum.attr import Lime

    from xaicompare.attribution.kernelshap import _stack_designs, superpixel_coalitions
    from xaicompare.attribution.superpixels import compute_segments

    n = args.samples
    segments, n_features = compute_segments(images, args.segments)
    if int(n_features.min()) < 4:  # SLIC on noise images (no photos found): a regular grid
        side = max(2, round(args.segments ** 0.5))
        rows = torch.arange(images.shape[-2])[:, None] * side // images.shape[-2]
        cols = torch.arange(images.shape[-1])[None, :] * side // images.shape[-1]
        segments = (rows * side + cols).expand(len(images), -1, -1).clone()
    seeds = torch.arange(len(images)) + 31
    segs, n_features, designs = superpixel_coalitions(images, n, args.segments, 10.0,
                                                      segments, seeds.tolist())
    masks, _, n_rows = _stack_designs(designs, images.device)
    # evaluations: n_samples, or fewer when the design is exact or a draw repeats
    measured = against_limit(lambda: explain(model, images, "lime", target, n_samples=n,
                                             segments=segments, image_seeds=seeds),
                             model, images, target, n_rows, False, args)

    def run_captum():
        maps = []
        for i in range(len(images)):
            rows = masks[i, :int(n_rows[i]), :int(n_features[i])]

            def perturb(inputs, rows=rows, **kwargs):
                yield from (row[None].long() for row in rows)

            maps.append(Lime(model, perturb_func=perturb).attribute(
                images[i:i + 1], baselines=0.0, target=int(target[i]),
                feature_mask=segs[i:i + 1, None], n_samples=len(rows))[:, 0])
        return torch.cat(maps)

    t_ref, ref = _once(run_captum)
    _print(measured, f"{n_rows.tolist()} fwd, M={n_features.tolist()}",
           [("captum Lime (ppe=1, default)", t_ref, _diff(measured[3], ref))], len(images))


def bench_rise(model, images, target, args):
    from xaicompare.attribution.perturbation import rise_masks

    n, grid, p = args.rise_masks, 7, 0.5
    seeds = torch.arange(len(images)) + 41
    measured = against_limit(lambda: explain(model, images, "rise", target, n_masks=n,
                                             grid=grid, p=p, image_seeds=seeds),
                             model, images, target, n, False, args)
    height, width = images.shape[-2:]

    def direct():
        maps = []
        for b in range(len(images)):
            total = torch.zeros(height, width)
            for mask in rise_masks(int(seeds[b]), n, grid, p, height, width):
                with torch.no_grad():
                    total += float(model(images[b:b + 1] * mask)[0, target[b]]) * mask
            maps.append(total / (n * p))
        return torch.stack(maps)

    t_ref, ref = _once(direct)
    _print(measured, f"{n} fwd",
           [("direct loop (1 mask per forward)", t_ref, _diff(measured[3], ref))], len(images))


CASES = {"saliency": bench_saliency, "input_x_gradient": bench_input_x_gradient,
         "smoothgrad": bench_smoothgrad, "gradient_shap": bench_gradient_shap,
         "occlusion": bench_occlusion, "lime": bench_lime, "rise": bench_rise}


def add_arguments(parser) -> None:
    parser.add_argument("--grad-samples", type=int, default=16,
                        help="smoothgrad / gradient_shap n_samples")
    parser.add_argument("--rise-masks", type=int, default=256)
    parser.add_argument("--occlusion-ppe", type=int, nargs="+", default=[16, 64, 256],
                        help="captum Occlusion perturbations_per_eval tried for its best")
