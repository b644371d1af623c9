"""Zoo retraining: models side by side (one thread each) against one at a time, in one run.

Both runs train every zoo recipe for the same few epochs on full-size epochs (4000 fresh
images each), into fresh folders:
- baseline: one model at a time in this process with torch's default threads (how the zoo
  was trained before parallel workers);
- parallel: `workers` processes, one thread each (the `xaicompare zoo train` default).
Printed: wall time of each and their ratio, per-model seconds per epoch in each run, and
from these the full retraining time both ways (each recipe's epochs; in parallel,
scheduled as train_zoo schedules them). Measured once for real: `xaicompare zoo train`
took 22.3 min on 2 quiet cores. The weights of the parallel run do not depend on `workers`
(tests/test_models_zoo.py checks that); they differ from the baseline's at float rounding
because the thread count differs.

    nice -n 5 env PYTHONPATH=. python benchmarks/zoo_train.py --epochs 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from xaicompare.devices import usable_cores
from xaicompare.models.zoo import ZOO_SPECS, zoo_spec
from xaicompare.training.zoo_train import longest_chains, train_zoo


def timed(out: Path, **options) -> tuple[float, dict]:
    start = time.perf_counter()
    index = train_zoo(out, progress=False, **options)
    return time.perf_counter() - start, index


def schedule(per_model: dict[str, float], workers: int) -> float:
    """Makespan of the zoo's full recipes on `workers` workers, simulated as train_zoo runs
    them: a model starts when a worker is free and its teacher has finished, the longest
    chain of students first (ties in spec order)."""
    teacher = {n: zoo_spec(n).get("teacher") for n in per_model}
    chain = longest_chains(per_model, teacher)
    order = list(per_model)
    pending, running, done, now = set(per_model), {}, set(), 0.0
    while pending or running:
        ready = sorted((n for n in pending if teacher[n] is None or teacher[n] in done),
                       key=lambda n: (-chain[n], order.index(n)))
        for name in ready[:workers - len(running)]:
            pending.discard(name)
            running[name] = now + per_model[name]
        now = min(running.values())  # the next model to finish frees its worker
        for name in [n for n, end in running.items() if end == now]:
            running.pop(name)
            done.add(name)
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=min(2, usable_cores()))
    args = parser.parse_args()
    names = list(ZOO_SPECS)
    with tempfile.TemporaryDirectory() as tmp:
        threads = torch.get_num_threads()
        base_s, base = timed(Path(tmp) / "serial", epochs=args.epochs, workers=1,
                             threads=threads)
        par_s, par = timed(Path(tmp) / "parallel", epochs=args.epochs, workers=args.workers,
                             threads=1)
    print(f"{len(names)} models x {args.epochs} epochs of 4000 images (wall time; few epochs "
          "leave students waiting on teachers, so this ratio understates a full run)")
    print(f"one at a time, {threads} threads: {base_s:7.1f} s")
    print(f"{args.workers} workers x 1 thread:     {par_s:7.1f} s   ratio {base_s / par_s:.2f}x")
    # seconds per epoch, making the data and the per-model overheads included (so both
    # estimates are a little high), times each recipe's full epochs
    print(f"{'model':18s} {'s/epoch one at a time':>22s} {'s/epoch in parallel':>20s} epochs")
    full_base, full_par = {}, {}
    for name in names:
        epochs = zoo_spec(name)["epochs"]
        base_epoch = base["models"][name]["train_seconds"] / args.epochs
        par_epoch = par["models"][name]["train_seconds"] / args.epochs
        full_base[name], full_par[name] = base_epoch * epochs, par_epoch * epochs
        print(f"{name:18s} {base_epoch:22.1f} {par_epoch:20.1f} {epochs:6d}")
    serial, parallel = sum(full_base.values()), schedule(full_par, args.workers)
    print(f"estimated full retraining: one at a time {serial / 60:.1f} min, {args.workers} "
          f"workers {parallel / 60:.1f} min, ratio {serial / parallel:.2f}x")

if __name__ == "__main__":
    main()
