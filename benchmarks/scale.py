"""Scale: the local executor beside Ray on this machine, autocast's effect on maps, and
per-method throughput on a GPU against the compute limit, all measured in one run.

CPU executors (always): the same job (models x methods x images, shapes dataset) run by
the local executor (torch's default threads, and 1 thread), then by Ray with 1 and 2
workers (1 thread each), each into a fresh store. Printed: images/s (images x models per
second of the explain call) and the ratio to the local run. Ray's start-up (starting Ray
and its worker processes) is timed separately by a warm-up run on two images, so the
throughput rows are steady state; the start-up row says what a short study pays once.

Autocast (always): maps computed under torch.autocast(bf16) on the CPU against float32:
the largest absolute difference of maps scaled to max |map| = 1, and the mean cosine.

GPU (when CUDA is available): for resnet50 and vit_base_patch16_224 at 224 px (random
weights), images/s of each method through the local executor (batch size from free
memory, channels_last for CNNs), and the ratio to the limit measured in the same run at
the same batch size: one forward+backward to the input per image for Grad-CAM, n_steps of
them for IG, n_samples + 2 forward passes for KernelSHAP.

    nice -n 5 env PYTHONPATH=. python benchmarks/scale.py --images 32 --size 64
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from xaicompare.config import ExecutorConfig
from xaicompare.data import open_dataset
from xaicompare.engine.runner import run_explanations
from xaicompare.engine.units import autocast
from xaicompare.models.loading import load_model
from xaicompare.store import Store
from xaicompare.store.keys import maps_entry

DATASET = {"name": "benchmark"}


class Subset:
    """The first n images of a dataset (the ImageSet interface the runner uses)."""

    def __init__(self, dataset, n: int) -> None:
        self.dataset, self.ids = dataset, list(dataset.ids[:n])
        self.labels = None if dataset.labels is None else np.asarray(dataset.labels)[:n]

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, rows):
        return self.dataset.load(rows)


def cpu_models(size: int) -> list:
    torch.manual_seed(0)
    cnn = load_model("resnet10t", pretrained=False, num_classes=10, class_indices=None)
    vit = load_model("vit_tiny_patch16_224", pretrained=False, num_classes=10,
                     class_indices=None, name="vit_tiny", img_size=size, patch_size=8)
    return [cnn, vit]


def timed_run(models, data, methods, executor, batch_size, folder: Path) -> tuple[float, Store]:
    store = Store(tempfile.mkdtemp(dir=folder))
    start = time.perf_counter()
    run_explanations(models, data, methods, store, dataset_identity=DATASET,
                     batch_size=batch_size, device="cpu", progress=False, executor=executor)
    return time.perf_counter() - start, store


def max_map_difference(models, methods, a: Store, b: Store, ids) -> float:
    worst = 0.0
    for model in models:
        for method, params in methods.items():
            x, y = (maps_entry(s, model, method, params, DATASET, "predicted").read(ids)["maps"]
                    for s in (a, b))
            worst = max(worst, float(np.abs(x.astype(np.float32) - y).max()))
    return worst


def executors_section(args) -> None:
    import ray

    data = Subset(open_dataset("shapes", split="test", n=max(args.images, 64),
                               size=args.size), args.images)
    models = cpu_models(args.size)
    methods = {"gradcam": {}, "integrated_gradients": {"n_steps": args.ig_steps}}
    work = len(data) * len(models)
    print(f"\n== executors on CPU: {len(models)} models x {len(data)} images of {args.size} px, "
          f"methods {', '.join(methods)} (IG n_steps {args.ig_steps}), batch {args.batch} ==")
    rows, folder = [], Path(tempfile.mkdtemp(prefix="xc-scale-"))
    local_s, _ = timed_run(models, data, methods, "local", args.batch, folder)
    rows.append((f"local ({torch.get_num_threads()} threads)", local_s))
    one_s, one_store = timed_run(models, data, methods, ExecutorConfig(threads=1), args.batch,
                                 folder)
    rows.append(("local (1 thread)", one_s))
    start = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    warm = ExecutorConfig(kind="ray", threads=1, workers=2)
    timed_run(models, Subset(data, 2 * args.batch), methods, warm, args.batch, folder)
    startup = time.perf_counter() - start
    stores = {}
    for workers in (1, 2):
        options = ExecutorConfig(kind="ray", threads=1, workers=workers)
        seconds, stores[workers] = timed_run(models, data, methods, options, args.batch,
                                             folder)
        rows.append((f"ray, {workers} worker(s) x 1 thread", seconds))
    ray.shutdown()
    print(f"{'executor':<32}{'seconds':>9}{'images/s':>10}{'vs local':>10}")
    for name, seconds in rows:
        print(f"{name:<32}{seconds:9.2f}{work / seconds:10.2f}{local_s / seconds:10.2f}")
    print(f"ray start-up (ray.init + 2 workers + warm-up on {2 * args.batch} images): "
          f"{startup:.1f} s, paid once per session")
    same = max(max_map_difference(models, methods, one_store, s, data.ids)
               for s in stores.values())
    print(f"largest map difference, ray vs local at 1 thread: {same:.3g} (0 = bitwise equal)")
    shutil.rmtree(folder, ignore_errors=True)


def normalised(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.reshape(len(maps), -1).double()
    return flat / flat.abs().amax(1, keepdim=True).clamp_min(1e-30)


def autocast_section(args) -> None:
    from xaicompare.attribution import explain

    images = open_dataset("shapes", split="test", n=64, size=args.size).load(range(8))
    methods = {"gradcam": {}, "integrated_gradients": {"n_steps": args.ig_steps},
               "kernelshap": {"n_samples": 64, "n_segments": 16, "seed": 0}}
    print(f"\n== autocast bf16 vs float32 on CPU: 8 images of {args.size} px "
          "(maps scaled to max |map| = 1) ==")
    print(f"{'model':<12}{'method':<22}{'max |diff|':>11}{'mean cosine':>13}"
          f"{'min cosine':>12}{'seconds fp32':>14}{'bf16':>8}")
    cpu = torch.device("cpu")
    for model in cpu_models(args.size):
        with torch.no_grad():
            targets = model(images).argmax(1)
        for method, params in methods.items():
            out, seconds = {}, {}
            for mode in ("none", "bf16"):
                start = time.perf_counter()
                with autocast(cpu, mode, model):
                    out[mode] = normalised(explain(model, images, method=method,
                                                   target=targets, **params).float())
                seconds[mode] = time.perf_counter() - start
            a, b = out["none"], out["bf16"]
            cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
            print(f"{model.name:<12}{method:<22}{float((a - b).abs().max()):11.3g}"
                  f"{float(cosine.mean()):13.4f}{float(cosine.min()):12.4f}"
                  f"{seconds['none']:14.2f}{seconds['bf16']:8.2f}")


def images_per_second(fn, n_images: int, repeats: int = 3) -> float:
    fn()  # warm-up (cudnn autotuning, allocator)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return n_images / best


def gpu_limits(model, batch: int, size: int, mode: str) -> tuple[float, float]:
    """(forward, forward+backward to the input) images/s of `model` at `batch` images."""
    device = torch.device("cuda")
    x = torch.rand(batch, 3, size, size, device=device)

    def forward():
        with torch.no_grad(), autocast(device, mode):
            model(x)

    def forward_backward():
        inputs = x.clone().requires_grad_(True)
        with autocast(device, mode):
            out = model(inputs)
        out.gather(1, out.argmax(1, keepdim=True)).sum().backward()

    return images_per_second(forward, batch), images_per_second(forward_backward, batch)


def gpu_section(args) -> None:
    from xaicompare.engine.batching import place_model, probe_batch_size
    from xaicompare.engine.units import ExplainJob

    device = torch.device("cuda")
    size, n = 224, args.gpu_images
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))

    class Images:
        ids = [f"img{i}" for i in range(n)]
        labels = None

        def __len__(self):
            return n

        def load(self, rows):
            return images[list(rows)]

    methods = {"gradcam": {}, "integrated_gradients": {"n_steps": args.gpu_ig_steps},
               "kernelshap": {"n_samples": args.gpu_shap_samples, "n_segments": 50}}
    print(f"\n== GPU ({torch.cuda.get_device_name()}): {n} images of {size} px, autocast "
          f"{args.autocast}; limits at batch {args.gpu_limit_batch} ==")
    print(f"{'model':<24}{'method':<22}{'batch':>6}{'images/s':>10}{'limit':>10}{'ratio':>7}")
    for name in ("resnet50", "vit_base_patch16_224"):
        torch.manual_seed(0)
        model = place_model(load_model(name, pretrained=False, class_indices=None), device)
        forward, forward_backward = gpu_limits(model, args.gpu_limit_batch, size, args.autocast)
        for method, params in methods.items():
            job = ExplainJob({method: params}, DATASET, autocast=args.autocast)
            batch = probe_batch_size(model, images[:2].to(device), job, device, 32)
            with tempfile.TemporaryDirectory() as folder:
                summary = run_explanations([model], Images(), {method: params}, Store(folder),
                                           dataset_identity=DATASET, batch_size=batch,
                                           device="cuda", progress=False,
                                           autocast=args.autocast)
            rate = n / summary.seconds[f"{model.name}/{method}"]
            limit = {"gradcam": forward_backward,
                     "integrated_gradients": forward_backward / params.get("n_steps", 1),
                     "kernelshap": forward / (params.get("n_samples", 1) + 2)}[method]
            print(f"{name:<24}{method:<22}{batch:6d}{rate:10.2f}{limit:10.2f}"
                  f"{rate / limit:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--ig-steps", type=int, default=8)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--gpu-images", type=int, default=64)
    parser.add_argument("--gpu-ig-steps", type=int, default=32)
    parser.add_argument("--gpu-shap-samples", type=int, default=256)
    parser.add_argument("--gpu-limit-batch", type=int, default=64)
    parser.add_argument("--autocast", choices=["none", "bf16", "fp16"], default="none",
                        help="GPU section only")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          f"CUDA: {torch.cuda.is_available()}")
    if not args.skip_ray:
        executors_section(args)
    autocast_section(args)
    if torch.cuda.is_available():
        gpu_section(args)
    else:
        print("\n(no CUDA device: GPU section skipped)")


if __name__ == "__main__":
    main()
