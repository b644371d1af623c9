"""Vectorised similarity matrix vs a straightforward per-pair Python loop.

    PYTHONPATH=. python benchmarks/compare.py                 # 14 models x 1000 images, 224x224
    PYTHONPATH=. python benchmarks/compare.py --metric kappa --loop-images 10

Maps are random, stored as float16 (as a store would hold them). The loop visits every
unordered pair of models and, for each, every image, with numpy on one image at a time; it
is timed on the first --loop-images images and scaled linearly to all images (it is linear
in the number of images). Both results are checked to agree on the images the loop saw.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import torch

from xaicompare.compare import similarity_matrix


def random_maps(models: int, images: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    maps = np.empty((models, images, size, size), dtype=np.float16)
    for m in range(models):  # fill per model to keep the float32 temporary small
        maps[m] = rng.random((images, size, size), dtype=np.float32)
    return maps


def loop_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def loop_rbf(a: np.ndarray, b: np.ndarray, sigma: float = 0.3) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return math.exp(-np.mean((a - b) ** 2) / (2 * sigma**2))


def loop_kappa(a: np.ndarray, b: np.ndarray) -> float:
    def classes(x):
        x = x.astype(np.float64).ravel()
        x = (x - x.min()) / (x.max() - x.min())
        return (x >= 0.5).astype(np.int64)

    la, lb = classes(a), classes(b)
    observed = np.mean(la == lb)
    expected = np.mean(la) * np.mean(lb) + np.mean(1 - la) * np.mean(1 - lb)
    return float((observed - expected) / (1 - expected))


LOOPS = {"cosine": (loop_cosine, {}), "rbf": (loop_rbf, {"sigma": 0.3}), "kappa": (loop_kappa, {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=14)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--metric", choices=sorted(LOOPS), default="cosine")
    parser.add_argument("--loop-images", type=int, default=20)
    parser.add_argument("--chunk-images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    maps = random_maps(args.models, args.images, args.size)
    loop_fn, options = LOOPS[args.metric]
    print(
        f"{args.models} models x {args.images} images at {args.size}x{args.size} (float16, "
        f"{maps.nbytes / 2**30:.2f} GiB), metric={args.metric}, torch threads="
        f"{torch.get_num_threads()}"
    )

    start = time.perf_counter()
    result = similarity_matrix(maps, args.metric, chunk_images=args.chunk_images, **options)
    vectorised = time.perf_counter() - start

    pairs = list(itertools.combinations(range(args.models), 2))
    n_loop = min(args.loop_images, args.images)
    loop_values = np.empty((len(pairs), n_loop))
    start = time.perf_counter()
    for p, (i, j) in enumerate(pairs):
        for n in range(n_loop):
            loop_values[p, n] = loop_fn(maps[i, n], maps[j, n])
    loop_seen = time.perf_counter() - start
    loop_total = loop_seen * args.images / n_loop

    got = np.stack([result.per_image[i, j, :n_loop] for i, j in pairs])
    max_diff = float(np.max(np.abs(got - loop_values)))
    print(
        f"vectorised similarity_matrix: {vectorised:8.2f} s (all {len(pairs)} pairs x {args.images} images)"
    )
    print(
        f"per-pair loop:                {loop_total:8.2f} s (timed {loop_seen:.2f} s on {len(pairs)} pairs x "
        f"{n_loop} images, scaled x{args.images / n_loop:g})"
    )
    print(f"speed-up: {loop_total / vectorised:.1f}x   max |vectorised - loop| = {max_diff:.2e}")


if __name__ == "__main__":
    main()
