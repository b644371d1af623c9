"""Retraining the offline zoo: every recipe of ZOO_SPECS on fresh shapes, models side by side.

Each model trains with a fixed number of torch threads (1 by default) in its own worker
process, so its weights depend only on its recipe, the seed, the thread count and its
teacher's weights, never on how many models train at once: `workers=2` writes the same files
as `workers=1`. These tiny models gain only 1.2-1.6x from a second thread, while two of them
side by side, one thread each, run at nearly their single-thread speed: on 2 cores the whole
zoo takes 22 min instead of an estimated 31 one at a time (benchmarks/zoo_train.py).
Students start when their teacher's weights are written; the model with the longest
remaining chain of students starts first.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool as BrokenExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .base import LoadedModel
from .checkpoints import weights_hash
from .loading import load_model, save_model
from .train import accuracy, fit
from .zoo import WEIGHTS_DIR, ZOO_INDEX, ZOO_SPECS, build_zoo_model, zoo_spec

CANONICAL_SIZE = 64
ZOO_BATCH_SIZE = 64


def train_zoo(
    out_dir: str | Path,
    *,
    seed: int = 0,
    epochs: int | dict[str, int] | None = None,
    n_train: int = 4000,
    n_test: int = 1000,
    names: Sequence[str] | None = None,
    workers: int | None = None,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the zoo on shapes and write safetensors + zoo.json to `out_dir`; returns the index.

    epochs: None (each spec's default), one int for all, or {name: epochs}.
    workers: models trained at once, each in its own process (None: one per `threads` cores,
    at most one per model; 1 trains in this process). The weights do not depend on it.
    threads: torch threads per model. The weights do depend on it (float summation order);
    the shipped zoo was trained with 1.
    """
    chosen = list(dict.fromkeys(ZOO_SPECS if names is None else names))
    specs = {name: zoo_spec(name) for name in chosen}  # unknown names fail before training
    if not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a positive int, got {threads!r}")
    if workers is None:
        workers = max(1, min(len(chosen), _usable_cores() // threads))
    if not isinstance(workers, int) or workers < 1:
        raise UserError(f"workers must be a positive int, got {workers!r}")
    out = Path(out_dir)
    for name, spec in specs.items():  # a teacher outside this run must already be trained
        teacher = spec.get("teacher")
        if teacher and teacher not in specs and not (out / f"{teacher}.safetensors").is_file():
            raise UserError(f"zoo model '{name}' needs teacher '{teacher}', which is neither "
                            f"in this run nor in '{out}'; train it first "
                            f"(--name {teacher}, Python: names=[..., '{teacher}'])")
    out.mkdir(parents=True, exist_ok=True)
    log = _logger(progress)
    start = time.perf_counter()
    index = _new_index(out, seed, n_train, n_test, chosen)
    command = _command(out, seed, epochs, n_train, n_test, names, threads)
    jobs = {name: {"name": name, "out": str(out), "seed": seed, "n_train": n_train,
                   "n_test": n_test, "epochs": _epochs_for(name, specs[name], epochs),
                   "threads": threads, "progress": progress, "command": command}
            for name in chosen}
    if log:
        log(f"training {len(chosen)} zoo model(s) with {workers} worker(s) x {threads} "
            f"thread(s): {', '.join(chosen)}")
    failures = _run_jobs(jobs, specs, workers, index, out, log)
    index["total_seconds"] = round(time.perf_counter() - start, 1)
    _write_index(out, index, chosen)
    if failures:
        raise UserError("zoo training failed for " + "; ".join(
            f"{name}: {why}" for name, why in failures.items())
            + f". The models that finished are in '{out}'; train the rest with --name NAME "
            "(Python: names=[...])")
    return index


def _command(out: Path, seed: int, epochs: int | dict[str, int] | None, n_train: int,
             n_test: int, names: Sequence[str] | None, threads: int) -> str:
    """The command that retrains these models: the CLI where it can say it, else Python."""
    if epochs is None and (n_train, n_test) == (4000, 1000):
        chosen = "".join(f" --name {name}" for name in names or ())
        return f"xaicompare zoo train --out {out} --seed {seed} --threads {threads}{chosen}"
    return (f"python -c \"from xaicompare.models.zoo_train import train_zoo; "
            f"train_zoo('{out}', seed={seed}, epochs={epochs!r}, n_train={n_train}, "
            f"n_test={n_test}, names={names!r}, threads={threads})\"")


def _run_jobs(jobs: dict[str, dict[str, Any]], specs: dict[str, dict[str, Any]], workers: int,
              index: dict[str, Any], out: Path, log: Callable[[str], None] | None
              ) -> dict[str, str]:
    """Run every job, a student after its teacher; returns {name: why} for those that failed."""
    teacher = {name: specs[name].get("teacher") for name in jobs}
    priority = _critical_path_seconds(jobs, teacher)
    pending, running, failures = set(jobs), {}, {}
    order = {name: i for i, name in enumerate(jobs)}  # ties: the order asked for
    pool = _InlineExecutor() if workers == 1 else ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"))
    try:
        while pending or running:
            ready = sorted((n for n in pending if teacher[n] not in pending
                            and teacher[n] not in running), key=lambda n: (-priority[n], order[n]))
            for name in ready[:workers - len(running)]:
                pending.discard(name)
                try:
                    running[name] = pool.submit(_train_one, jobs[name])
                except BrokenExecutor:  # a worker process died: nothing more can start
                    failures.update({n: "a worker process died" for n in [name, *pending]})
                    pending.clear()
                    break
            if not running:
                break
            finished, _ = wait(list(running.values()), return_when=FIRST_COMPLETED)
            for name in [n for n, future in running.items() if future in finished]:
                future = running.pop(name)
                try:
                    index["models"][name] = future.result()
                except Exception as error:  # noqa: BLE001  (report it, keep the others going)
                    failures[name] = f"{type(error).__name__}: {error}"
                    if log:  # the worker's traceback, for a bug report
                        log("".join(traceback.format_exception(error)).rstrip())
                    for student in _students_of(name, teacher, pending):
                        pending.discard(student)
                        failures[student] = f"its teacher '{name}' failed"
                    continue
                _write_index(out, index, list(jobs))  # after each model: resumable
                if log:
                    entry = index["models"][name]
                    log(f"{name}: test accuracy {entry['test_accuracy']:.3f} after "
                        f"{entry['epochs']} epochs ({entry['train_seconds']:.0f}s)")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failures


def _students_of(name: str, teacher: dict[str, str | None], pending: set[str]) -> list[str]:
    """Every pending model that learns from `name`, directly or through another student."""
    found, frontier = [], [name]
    while frontier:
        current = frontier.pop()
        for student in pending:
            if teacher[student] == current and student not in found:
                found.append(student)
                frontier.append(student)
    return found


def _critical_path_seconds(jobs: dict[str, dict[str, Any]],
                           teacher: dict[str, str | None]) -> dict[str, float]:
    """Estimated seconds from a model's start to the end of its longest chain of students.

    Per-epoch cost comes from the shipped zoo's recorded training times (1 per epoch for a
    recipe without one); starting the longest chain first keeps both workers busy to the end.
    """
    shipped = {}
    if (WEIGHTS_DIR / ZOO_INDEX).is_file():
        shipped = json.loads((WEIGHTS_DIR / ZOO_INDEX).read_text())["models"]

    def cost(name: str) -> float:
        record = shipped.get(name, {})
        per_epoch = record.get("train_seconds", 1.0) / max(1, record.get("epochs", 1))
        return per_epoch * jobs[name]["epochs"] * jobs[name]["n_train"] / 4000

    def chain(name: str) -> float:
        students = [chain(s) for s in jobs if teacher[s] == name]
        return cost(name) + max(students, default=0.0)

    return {name: chain(name) for name in jobs}


def _train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train, test and save one zoo model; returns its zoo.json entry (runs in a worker)."""
    name, out, seed = job["name"], Path(job["out"]), job["seed"]
    spec = zoo_spec(name)
    log = _logger(job["progress"])
    threads = torch.get_num_threads()
    torch.set_num_threads(job["threads"])
    try:
        t0 = time.perf_counter()  # train_seconds: all of it, making the data included
        cue = spec["cue_strength"] if spec["cue_conflict"] else None
        x_train, y_train = fresh_shapes(job["n_train"], seed, cue)(0)
        teacher = _load_teacher(out, spec["teacher"]) if spec.get("teacher") else None
        model = build_zoo_model(name, seed)
        fit(model, x_train, y_train, epochs=job["epochs"], lr=spec["lr"], seed=seed,
            batch_size=ZOO_BATCH_SIZE, teacher=teacher, log=log,
            epoch_data=fresh_shapes(job["n_train"], seed, cue))
        seconds = time.perf_counter() - t0
        x_test, y_test, class_names = _shapes(job["n_test"], "test", None, seed)
        acc = accuracy(model, x_test, y_test)
        model.class_names = tuple(class_names)
        model.weights_id = weights_hash(model.net)  # the id taken at build time is stale now
        file = f"{name}.safetensors"
        save_model(model, out / file, class_names=class_names)
        # in-distribution accuracy of a cue-conflict model: held-out images drawn like its
        # training images (textures still cue the class)
        cue_acc = None if cue is None else round(
            accuracy(model, *_shapes(job["n_test"], "train", cue, seed + 999_999)[:2]), 4)
        return {
            "file": file, "arch": spec["arch"], "kwargs": spec["kwargs"],
            "family": spec["family"], "input_size": spec["input_size"],
            "layer": spec.get("layer"),
            "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(),
            "test_accuracy": round(acc, 4), "epochs": job["epochs"],
            "teacher": spec.get("teacher"), "cue_conflict": cue is not None,
            "cue_strength": cue, "cue_test_accuracy": cue_acc, "seed": seed,
            "threads": job["threads"], "batch_size": ZOO_BATCH_SIZE, "lr": spec["lr"],
            "train_seconds": round(seconds, 1), "weights_id": model.weights_id,
            "command": job["command"],
        }
    finally:
        torch.set_num_threads(threads)


def _shapes(n: int, split: str, cue: float | None, seed: int):
    from ..data.shapes import make_shapes

    batch = make_shapes(n, split=split, size=CANONICAL_SIZE, seed=seed, **_cue_options(cue))
    return batch.images.float() / 255, batch.labels, batch.class_names


def _cue_options(cue: float | None) -> dict[str, Any]:
    """make_shapes options: cue None = plain shapes, else cue-conflict at that strength."""
    return {} if cue is None else {"cue_conflict": True, "cue_strength": cue}


def fresh_shapes(n: int, seed: int, cue: float | None = None):
    """epoch -> a new training set of n shapes images (a different seed every epoch); cue:
    the cue-conflict strength (None: plain shapes)."""

    def data(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _shapes(n, "train", cue, seed + 1000 * epoch)[:2]

    return data


def _new_index(out: Path, seed: int, n_train: int, n_test: int,
               chosen: list[str]) -> dict[str, Any]:
    """zoo.json's header, keeping models trained earlier into the same folder."""
    from ..data.shapes import SHAPE_NAMES
    from ..study import library_versions

    index: dict[str, Any] = {"canonical_size": CANONICAL_SIZE,
                             "class_names": list(SHAPE_NAMES[:10]), "dataset": "shapes",
                             "n_train": n_train, "n_test": n_test, "seed": seed,
                             "versions": library_versions(), "models": {}}
    if (out / ZOO_INDEX).is_file():
        earlier = json.loads((out / ZOO_INDEX).read_text())
        index["models"] = {k: v for k, v in earlier.get("models", {}).items() if k not in chosen}
    return index


def _write_index(out: Path, index: dict[str, Any], chosen: list[str]) -> None:
    """zoo.json with the models in a stable order (earlier ones, then this run's, spec order)."""
    models = index["models"]
    ordered = [n for n in models if n not in chosen] + [n for n in chosen if n in models]
    index["models"] = {n: models[n] for n in ordered}
    (out / ZOO_INDEX).write_text(json.dumps(index, indent=2))


def _epochs_for(name: str, spec: dict[str, Any], epochs: int | dict[str, int] | None) -> int:
    if epochs is None:
        return int(spec["epochs"])
    if isinstance(epochs, dict):
        return int(epochs.get(name, spec["epochs"]))
    return int(epochs)


def _load_teacher(folder: Path, name: str) -> LoadedModel:
    path = folder / f"{name}.safetensors"
    if not path.is_file():
        raise UserError(f"zoo model needs teacher '{name}'; train it first (names=[..., '{name}'])")
    return load_model(path, class_indices=None, probe=False)


def _usable_cores() -> int:
    """Cores this process may run on (a container's limit, not the host's core count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _logger(progress: bool) -> Callable[[str], None] | None:
    return (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else None


class _InlineExecutor(Executor):
    """An executor that runs each job at once in this process (workers=1: no spawn cost)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # noqa: BLE001  (delivered through the future)
            future.set_exception(error)
        return future
