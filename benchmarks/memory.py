"""What a memory budget costs: the same maps split into smaller passes, timed against unsplit.

executor.memory caps the model evaluations per pass (engine/memory.py). Here one timm model
(random init) explains the same images with each method unsplit (every evaluation of the
batch in one pass, as internal_batch_size = all) and under caps of fewer evaluations per
pass, alternating the settings `--repeats` times so every ratio is taken under the same
machine load. Printed per method and cap: median CPU seconds of this process, the ratio to unsplit (min and
median over repeats), the largest map difference (float32 kernels round differently at
other batch sizes), and the budget that gives that cap from the probe's cost per evaluation.

    PYTHONPATH=. python benchmarks/memory.py --model resnet18 --size 224 --images 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from xaicompare.attribution import explain_full
from xaicompare.attribution.passes import PassLimit, pass_limit
from xaicompare.engine.memory import evaluation_cost, format_bytes
from xaicompare.models.loading import load_model

METHODS = {
    "integrated_gradients": ({"n_steps": 16}, True),
    "smoothgrad": ({"n_samples": 16}, True),
    "kernelshap": ({"n_samples": 64, "n_segments": 25}, False),
}


def run(model, images, target, method, params, cap):
    limit = None if cap is None else PassLimit(cap, cap)
    unsplit = {"batch_size" if method == "kernelshap" else "internal_batch_size": 10_000}
    start = time.process_time()  # CPU seconds of this process: less sensitive to other load
    with pass_limit(limit):
        maps = explain_full(model, images, method, target, check_logits=False, **unsplit,
                            **params).maps
    return time.process_time() - start, maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--caps", type=int, nargs="+", default=[8, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model, pretrained=False).eval()
    images = torch.rand(args.images, 3, args.size, args.size,
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = model(images).argmax(1)
    cost = evaluation_cost(model, images[:1])
    print(f"{args.model} at {args.size} px, {args.images} images, {args.threads} thread(s); "
          f"probe: {format_bytes(cost.backward)} per evaluation with gradients, "
          f"{format_bytes(cost.forward)} forward only")
    print(f"{'method':<22} {'per pass':>9} {'budget':>10} {'seconds':>8} {'ratio min':>10} "
          f"{'ratio med':>10} {'max |diff|':>11}")
    for method in args.methods:
        params, backward = METHODS[method]
        per_eval = cost.backward if backward else cost.forward
        times: dict = {None: [], **{cap: [] for cap in args.caps}}
        maps: dict = {}
        run(model, images, target, method, params, None)  # warm-up
        for _ in range(args.repeats):
            for cap in times:
                seconds, maps[cap] = run(model, images, target, method, params, cap)
                times[cap].append(seconds)
        for cap, values in times.items():
            ratios = [t / u for t, u in zip(values, times[None], strict=True)]
            diff = (maps[cap] - maps[None]).abs().max().item()
            budget = "none" if cap is None else format_bytes(cap * per_eval)
            print(f"{method:<22} {cap or 'all':>9} {budget:>10} {statistics.median(values):>8.2f} "
                  f"{min(ratios):>10.3f} {statistics.median(ratios):>10.3f} {diff:>11.2e}")


if __name__ == "__main__":
    main()
