"""The CAM variants beside pytorch-grad-cam and their compute limits, dispatched from
benchmarks/attribution.py (`--methods cams` or a variant's name)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from timing import best_time, display_normalise, timed_once

#   "fwd+bwd":  one forward + backward (to the input) of the image batch
#   "fwd":      one forward of the image batch (EigenCAM is gradient-free)
#   "channels": forward of n_channels x images masked inputs, at the best batch size


@dataclass(frozen=True)
class CamCase:
    method: str
    reference: str  # pytorch_grad_cam class name
    limit: str  # "fwd+bwd" | "fwd" | "channels"


CAM_CASES = [
    CamCase("gradcampp", "GradCAMPlusPlus", "fwd+bwd"),
    CamCase("hirescam", "HiResCAM", "fwd+bwd"),
    CamCase("xgradcam", "XGradCAM", "fwd+bwd"),
    CamCase("layercam", "LayerCAM", "fwd+bwd"),
    CamCase("eigencam", "EigenCAM", "fwd"),
    CamCase("scorecam", "ScoreCAM", "channels"),
]


def cam_limits(model, images, target, channels: int, batch_sizes: list[int], repeats: int
               ) -> tuple[dict[str, Callable[[], None]], int]:
    """The limits as runnable passes over the whole batch, and the best pass size for the
    n_channels x images forwards (per point on two passes of each size)."""
    def fwd():
        with torch.inference_mode():
            model(images)

    def fwd_bwd():
        x = images.clone().requires_grad_(True)
        torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)

    points = images.repeat_interleave(channels, 0)  # the limit needs inputs, not masks

    def passes(size: int, count: int | None = None):
        with torch.inference_mode():
            for part in points[:count].split(size):
                model(part)

    sizes = sorted({min(b, len(points)) for b in batch_sizes})
    best = min(sizes, key=lambda b: best_time(lambda: passes(b, 2 * b), repeats) / min(
        2 * b, len(points)))
    return {"fwd": fwd, "fwd+bwd": fwd_bwd, "channels": lambda: passes(best)}, best


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, np.ndarray]:
    """Seconds of each run, `repeats` times after one warm-up, the runs taking turns so
    that each repeat's ratios are taken under the same machine load."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: np.array(t) for name, t in times.items()}


def bench_cams(model, images, target, cases: list[CamCase], args) -> None:
    """Every CAM case on the model's default layer, called as the engine calls it
    (explain_full without the logits check), beside its pytorch-grad-cam class and its
    limit, interleaved per repeat: our s/img, theirs, the speed-up, our ratio to the limit
    (median over repeats of the per-repeat ratio), max |diff| of the min-max maps.
    pytorch-grad-cam's ScoreCAM (one forward per channel at its default batch_size 16)
    runs once."""
    from types import SimpleNamespace

    import pytorch_grad_cam
    import pytorch_grad_cam.score_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from xaicompare.attribution import explain_full
    from xaicompare.attribution.gradcam import layer_activations

    pytorch_grad_cam.score_cam.tqdm = SimpleNamespace(tqdm=lambda steps: steps)  # no bars
    cam_layer = model.cam
    activation = layer_activations(model, images, cam_layer.module, cam_layer.to_nchw,
                                   cam_layer.path)
    channels = activation.shape[1]
    live = int(activation.flatten(2).any(dim=2).sum())  # Score-CAM's forwards (+1 if dead)
    limits, best = cam_limits(model, images, target, channels, args.limit_batch_sizes,
                              args.repeats)
    batch = images.shape[0]
    targets = [ClassifierOutputTarget(int(t)) for t in target]
    print(f"    layer {cam_layer.name}, {channels} channels ({live} of {channels * batch} "
          f"image channels not all zero); Score-CAM limit at batch {best}")
    print(f"    {'method':<10} {'ours s/img':>10} {'ref s/img':>10} {'speed-up':>9} "
          f"{'limit s/img':>11} {'limit':>9} {'ratio':>6}  max|diff| (min-max maps)")
    for case in cases:
        params = {"internal_batch_size": best} if case.limit == "channels" else {}

        def ours(case=case, params=params):
            return explain_full(model, images, case.method, target=target,
                                check_logits=False, **params).maps

        reference = getattr(pytorch_grad_cam, case.reference)(
            model=model, target_layers=[cam_layer.module], reshape_transform=model.to_nchw)

        def theirs(reference=reference):
            return torch.from_numpy(reference(input_tensor=images, targets=targets))

        runs = {"limit": limits[case.limit], "ours": ours}
        if case.limit != "channels":  # ScoreCAM: one forward per channel, too slow to repeat
            runs["theirs"] = theirs
        times = interleaved(runs, args.repeats)
        t_ref, maps = timed_once(theirs) if case.limit == "channels" else (
            times["theirs"].min(), theirs())
        reference.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
        diff = (display_normalise(ours()) - maps).abs().max().item()
        note = " (SVD sign: theirs unoriented)" if case.method == "eigencam" else ""
        t_ours, ratio = times["ours"].min(), np.median(times["ours"] / times["limit"])
        print(f"    {case.method:<10} {t_ours / batch:10.4f} {t_ref / batch:10.4f} "
              f"{t_ref / t_ours:8.2f}x {times['limit'].min() / batch:11.4f} {case.limit:>9} "
              f"{ratio:6.2f}  {diff:.1e}{note}")
