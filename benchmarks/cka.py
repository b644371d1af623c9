"""CKA between every pair of models: the blocked one-pass `cka_matrix` vs a per-pair loop.

    PYTHONPATH=. python benchmarks/cka.py                        # 14 models x 10000 x 2048
    PYTHONPATH=. python benchmarks/cka.py --images 2000 --kernel rbf

The baseline is what a user would write from the formula: for each unordered pair, both
n x n Gram matrices (float32 products, as the pass uses), then the unbiased HSIC terms
(`_pair_cka` below). It is timed on --loop-pairs pairs and scaled to all M (M - 1) / 2 pairs
(it is linear in pairs). Both use the same threads; the ratio is printed beside each time,
and the largest difference between the two results.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xaicompare.compare import cka_matrix


def features(models: int, images: int, width: int, seed: int = 0) -> torch.Tensor:
    """Related representations: a shared low-rank signal, a model-specific mix, noise."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(images, 64, generator=g)
    out = torch.empty(models, images, width)
    for m in range(models):
        mix = torch.randn(64, width, generator=g) / 8
        out[m] = torch.relu(shared @ mix + 0.5 * torch.randn(images, width, generator=g))
    return out


def _hsic(k: torch.Tensor, l_: torch.Tensor) -> float:
    n = k.shape[0]
    k, l_ = k.double().fill_diagonal_(0), l_.double().fill_diagonal_(0)
    ks, ls = k.sum(1), l_.sum(1)
    return float(((k * l_).sum() + ks.sum() * ls.sum() / ((n - 1) * (n - 2))
                  - 2 / (n - 2) * (ks @ ls)) / (n * (n - 3)))


def _pair_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(0), y - y.mean(0)
    k, l_ = x @ x.T, y @ y.T
    return _hsic(k, l_) / (_hsic(k, k) * _hsic(l_, l_)) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=14)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--kernel", default="linear", choices=["linear", "rbf"])
    parser.add_argument("--loop-pairs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = features(args.models, args.images, args.width)
    print(f"{args.models} models x {args.images} images x {args.width} features, "
          f"{args.kernel} kernel, {torch.get_num_threads()} threads")
    start = time.perf_counter()
    result = cka_matrix(x, kernel=args.kernel, debiased=True)
    one_pass = time.perf_counter() - start
    print(f"cka_matrix (one blocked pass): {one_pass:.1f} s")
    if args.kernel != "linear":
        return
    pairs = [(i, i + 1) for i in range(min(args.loop_pairs, args.models - 1))]
    start = time.perf_counter()
    loop = [_pair_cka(x[i], x[j]) for i, j in pairs]
    per_pair = (time.perf_counter() - start) / len(pairs)
    total = per_pair * args.models * (args.models - 1) / 2
    diff = max(abs(v - result.estimate.iloc[i, j]) for v, (i, j) in zip(loop, pairs,
                                                                        strict=True))
    print(f"per-pair loop: {per_pair:.1f} s a pair, {total:.0f} s for all pairs (scaled)")
    print(f"ratio loop / one pass: {total / one_pass:.1f}x; largest difference {diff:.2e}")
    np.testing.assert_allclose(loop, [result.estimate.iloc[i, j] for i, j in pairs], atol=1e-4)


if __name__ == "__main__":
    main()
