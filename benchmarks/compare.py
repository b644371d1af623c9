"""Vectorised similarity matrix vs a straightforward loop over model pairs.

    PYTHONPATH=. python benchmarks/compare.py                 # 14 models x 1000 images, 224x224
    PYTHONPATH=. python benchmarks/compare.py --metric kappa --repeats 5 --threads 1

Maps are random, stored as float16 (as the store holds them). The baseline is the loop a
user would write without `similarity_matrix`: for every unordered pair of models (i < j),
`xc.similarity(maps[i], maps[j], metric)` on the two [N, H, W] stacks - the library's own
per-image metric, itself vectorised over images, so the speed-up measures only what doing
all pairs in one pass buys (each model's maps are read, converted and checked once instead
of once per pair, and the per-image Gram products of all pairs are one batched product).
Both are near memory speed, so expect about M - 1 (13 for 14 models): the loop reads
M (M - 1) model stacks, the single pass M. A ratio far above that would mean a slow loop.

--baseline numpy instead loops over pairs AND images with numpy in float64, one image at a
time (the loop of the previous version of this script and of tests/test_compare_matrix.py;
cosine, rbf and kappa only): slower, so its ratio is larger.

The two are timed alternately `--repeats` times (the machine is shared and noisy); each
repeat gives one ratio loop / vectorised, and the min and median are printed. The loop can
be timed on the first --loop-images images and scaled linearly (it is linear in images).
Also printed: one fp16 -> fp32 conversion pass over all maps, the floor for any method that
reads every map once, and the largest difference between the two results.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time

import numpy as np
import torch

from xaicompare.compare import similarity, similarity_matrix

METRIC_OPTIONS = {"rbf": {"sigma": 0.3}}  # a fixed sigma: the loop cannot pool a median


def random_maps(models: int, images: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    maps = np.empty((models, images, size, size), dtype=np.float16)
    for m in range(models):  # fill per model to keep the float32 temporary small
        maps[m] = rng.random((images, size, size), dtype=np.float32)
    return maps


def time_vectorised(maps, metric, options, chunk: dict):
    start = time.perf_counter()
    result = similarity_matrix(maps, metric, **chunk, **options)
    return time.perf_counter() - start, result.per_image


def time_loop(maps, metric, options, n_images):
    """Every unordered pair through xc.similarity on the first n_images images."""
    pairs = list(itertools.combinations(range(maps.shape[0]), 2))
    values = np.empty((len(pairs), n_images))
    start = time.perf_counter()
    for p, (i, j) in enumerate(pairs):
        values[p] = similarity(maps[i, :n_images], maps[j, :n_images], metric, **options)
    return time.perf_counter() - start, pairs, values


def numpy_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def numpy_rbf(a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return math.exp(-np.mean((a - b) ** 2) / (2 * sigma**2))


def numpy_kappa(a: np.ndarray, b: np.ndarray) -> float:
    def classes(x):
        x = x.astype(np.float64).ravel()
        return ((x - x.min()) / (x.max() - x.min()) >= 0.5).astype(np.int64)

    la, lb = classes(a), classes(b)
    observed = np.mean(la == lb)
    expected = np.mean(la) * np.mean(lb) + np.mean(1 - la) * np.mean(1 - lb)
    return float((observed - expected) / (1 - expected))


NUMPY_LOOPS = {"cosine": numpy_cosine, "rbf": numpy_rbf, "kappa": numpy_kappa}


def time_numpy_loop(maps, metric, options, n_images):
    """Every unordered pair, every image, one numpy call each (float64)."""
    pairs = list(itertools.combinations(range(maps.shape[0]), 2))
    values = np.empty((len(pairs), n_images))
    fn = NUMPY_LOOPS[metric]
    start = time.perf_counter()
    for p, (i, j) in enumerate(pairs):
        for n in range(n_images):
            values[p, n] = fn(maps[i, n], maps[j, n], **options)
    return time.perf_counter() - start, pairs, values


def time_conversion(maps, chunk_images):
    buffer = torch.empty((maps.shape[0], chunk_images, *maps.shape[2:]))
    source = torch.from_numpy(maps)
    start = time.perf_counter()
    for first in range(0, maps.shape[1], chunk_images):
        part = source[:, first : first + chunk_images]
        buffer[:, : part.shape[1]].copy_(part)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=14)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--metric", default="cosine")
    parser.add_argument("--loop-images", type=int, default=None, help="default: all images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-images", type=int, default=None, help="default: library's")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--baseline", choices=["similarity", "numpy"], default="similarity")
    args = parser.parse_args()
    if args.baseline == "numpy" and args.metric not in NUMPY_LOOPS:
        parser.error(f"--baseline numpy has metrics {sorted(NUMPY_LOOPS)}")
    loop_fn = time_loop if args.baseline == "similarity" else time_numpy_loop
    if args.threads:
        torch.set_num_threads(args.threads)

    maps = random_maps(args.models, args.images, args.size)
    options = METRIC_OPTIONS.get(args.metric, {})
    n_loop = min(args.loop_images or args.images, args.images)
    chunk = {} if args.chunk_images is None else {"chunk_images": args.chunk_images}
    print(
        f"{args.models} models x {args.images} images at {args.size}x{args.size} (float16, "
        f"{maps.nbytes / 2**30:.2f} GiB), metric={args.metric} {options}, torch threads="
        f"{torch.get_num_threads()}, baseline {args.baseline} timed on {n_loop} images"
    )
    vec_times, loop_times, ratios = [], [], []
    for repeat in range(args.repeats):
        vec, per_image = time_vectorised(maps, args.metric, options, chunk)
        loop, pairs, values = loop_fn(maps, args.metric, options, n_loop)
        loop *= args.images / n_loop
        vec_times.append(vec)
        loop_times.append(loop)
        ratios.append(loop / vec)
        print(
            f"  repeat {repeat}: vectorised {vec:7.2f} s   loop {loop:8.2f} s   x{loop / vec:.1f}"
        )
    got = np.stack([per_image[i, j, :n_loop] for i, j in pairs])
    max_diff = float(np.nanmax(np.abs(got - values)))
    same_nan = bool((np.isnan(got) == np.isnan(values)).all())
    conversion = time_conversion(maps, 8)
    print(
        f"vectorised similarity_matrix: min {min(vec_times):.2f} s, median "
        f"{statistics.median(vec_times):.2f} s ({len(pairs)} pairs x {args.images} images)"
    )
    print(
        f"loop ({args.baseline}): min {min(loop_times):.2f} s, median "
        f"{statistics.median(loop_times):.2f} s"
    )
    print(
        f"speed-up per repeat: min {min(ratios):.1f}x, median {statistics.median(ratios):.1f}x"
        f" (ratio of mins {min(loop_times) / min(vec_times):.1f}x)"
    )
    print(
        f"one fp16->fp32 pass over all maps: {conversion:.2f} s "
        f"(vectorised = {min(vec_times) / conversion:.1f}x that)"
    )
    print(f"max |vectorised - loop| = {max_diff:.2e}, same NaN pattern: {same_nan}")
    if not same_nan or max_diff > 1e-5:
        raise SystemExit("vectorised and loop results differ")


if __name__ == "__main__":
    main()
