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
import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool as BrokenExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from ..devices import intra_op_threads, usable_cores
from ..errors import UserError
from ..models.base import LoadedModel
from ..models.checkpoints import weights_hash
from ..models.loading import save_model
from ..models.zoo import WEIGHTS_DIR, ZOO_INDEX, ZOO_SPECS, build_zoo_model, load_zoo, zoo_spec
from ..provenance import library_versions
from ..store import atomic_write
from .fit import accuracy, fit
from .workers import InlineExecutor, exit_with_parent, sigterm_as_exit, stop_workers

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
    workers: int | None = 1,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the zoo on shapes and write safetensors + zoo.json to `out_dir`; returns the index.

    epochs: None (each spec's default), one int for all, or {name: epochs}.
    workers: models trained at once (1: in this process; more: one spawned process each,
    so call train_zoo under `if __name__ == "__main__":` in a script; None: as many as the
    usable cores allow at `threads` each, at most one per model, as `xaicompare zoo train`
    does). The weights do not depend on it.
    threads: torch threads per model. The weights do depend on it (float summation order);
    the shipped zoo was trained with 1.
    """
    chosen = list(dict.fromkeys(ZOO_SPECS if names is None else names))
    specs = {name: zoo_spec(name) for name in chosen}  # unknown names fail before training
    if not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a positive int, got {threads!r}")
    if workers is None:
        workers = max(1, min(len(chosen), usable_cores() // threads))
    if not isinstance(workers, int) or workers < 1:
        raise UserError(f"workers must be a positive int, got {workers!r}")
    out = Path(out_dir)
    index = _new_index(out, chosen)
    for name, spec in specs.items():  # a teacher outside this run must be trained and listed
        teacher = spec.get("teacher")
        if teacher and teacher not in specs and teacher not in index["models"]:
            raise UserError(f"zoo model '{name}' needs teacher '{teacher}', which is neither "
                            f"in this run nor listed in '{out / ZOO_INDEX}'; train it first "
                            f"(--name {teacher}, Python: names=[..., '{teacher}'])")
    out.mkdir(parents=True, exist_ok=True)
    log = _logger(progress)
    start = time.perf_counter()
    command = _command(out, seed, epochs, n_train, n_test, names, threads)
    versions = _versions()
    jobs = {name: {"name": name, "out": str(out), "seed": seed, "n_train": n_train,
                   "n_test": n_test, "epochs": _epochs_for(name, specs[name], epochs),
                   "threads": threads, "progress": progress, "command": command,
                   "versions": versions}
            for name in chosen}
    if log:
        log(f"training {len(chosen)} zoo model(s) with {workers} worker(s) x {threads} "
            f"thread(s): {', '.join(chosen)}")
    failures = _run_jobs(jobs, specs, workers, index, out, log)
    index["total_seconds"] = round(time.perf_counter() - start, 1)
    _write_index(out, index, chosen)
    _warn_stale_students(index["models"])
    if failures:
        raise UserError("zoo training failed for " + "; ".join(
            f"{name}: {why}" for name, why in failures.items())
            + f". The models that finished are in '{out}'; train the rest with --name NAME "
            "(Python: names=[...])")
    return index


def _warn_stale_students(models: dict[str, dict[str, Any]]) -> None:
    """A student kept from an earlier run may have learnt from a teacher retrained since."""
    for name, entry in models.items():
        teacher = models.get(entry.get("teacher") or "")
        learnt_from = entry.get("teacher_weights_id")
        if teacher and learnt_from and teacher["weights_id"] != learnt_from:
            logging.getLogger("xaicompare").warning(
                "zoo model '%s' was distilled from earlier weights of '%s' (%s, now %s); "
                "retrain it with --name %s", name, entry["teacher"], learnt_from,
                teacher["weights_id"], name)


def _command(out: Path, seed: int, epochs: int | dict[str, int] | None, n_train: int,
             n_test: int, names: Sequence[str] | None, threads: int) -> str:
    """The command that retrains these models: the CLI where it can say it, else Python."""
    if epochs is None and (n_train, n_test) == (4000, 1000):
        chosen = "".join(f" --name {shlex.quote(name)}" for name in names or ())
        return (f"xaicompare zoo train --out {shlex.quote(str(out))} --seed {seed} "
                f"--threads {threads}{chosen}")
    code = (f"from xaicompare.training.zoo_train import train_zoo; "
            f"train_zoo({str(out)!r}, seed={seed}, epochs={epochs!r}, n_train={n_train}, "
            f"n_test={n_test}, names={names if names is None else list(names)!r}, "
            f"threads={threads})")
    return f"python -c {shlex.quote(code)}"


def _run_jobs(jobs: dict[str, dict[str, Any]], specs: dict[str, dict[str, Any]], workers: int,
              index: dict[str, Any], out: Path, log: Callable[[str], None] | None
              ) -> dict[str, str]:
    """Run every job, a student after its teacher; returns {name: why} for those that failed.

    Stopping the run (Ctrl-C, SIGTERM) stops the worker processes too; what finished before
    is already in zoo.json.
    """
    teacher = {name: specs[name].get("teacher") for name in jobs}
    priority = longest_chains(_estimated_seconds(jobs), teacher)
    pending, running, failures = set(jobs), {}, {}
    order = {name: i for i, name in enumerate(jobs)}  # ties: the order asked for
    pool = InlineExecutor() if workers == 1 else ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=exit_with_parent,
        initargs=(os.getpid(),))
    try:
        with sigterm_as_exit(workers > 1):
            while pending or running:
                ready = sorted((n for n in pending if teacher[n] not in pending
                                and teacher[n] not in running),
                               key=lambda n: (-priority[n], order[n]))
                for name in ready[:workers - len(running)]:
                    pending.discard(name)
                    try:
                        running[name] = pool.submit(_train_one, jobs[name])
                    except BrokenExecutor:
                        failures.update({n: _DIED for n in [name, *pending]})
                        pending.clear()
                        break
                if not running:
                    if pending:  # cannot happen: every pending job's teacher is known
                        raise RuntimeError(f"zoo jobs stuck waiting: {sorted(pending)}")
                    break
                finished, _ = wait(list(running.values()), return_when=FIRST_COMPLETED)
                for name in [n for n, future in running.items() if future in finished]:
                    _collect(name, running.pop(name), index, failures, teacher, pending, log)
                    if name in index["models"]:
                        _write_index(out, index, list(jobs))  # after each model: resumable
    except BaseException:
        stop_workers(pool)
        raise
    pool.shutdown(wait=True)
    return failures


_DIED = ("a worker process died (killed, or out of memory?); from a script, call train_zoo "
         "under `if __name__ == \"__main__\":` or pass workers=1")


def _collect(name: str, future: Future, index: dict[str, Any], failures: dict[str, str],
             teacher: dict[str, str | None], pending: set[str],
             log: Callable[[str], None] | None) -> None:
    """File a finished job: its entry into the index, or its failure and its students'."""
    try:
        index["models"][name] = entry = future.result()
    except Exception as error:  # noqa: BLE001  (report it, keep the others going)
        failures[name] = _DIED if isinstance(error, BrokenExecutor) else \
            f"{type(error).__name__}: {error}"
        if log and not isinstance(error, BrokenExecutor):  # the traceback, for a bug report
            log("".join(traceback.format_exception(error)).rstrip())
        for student in _students_of(name, teacher, pending):
            pending.discard(student)
            failures[student] = f"its teacher '{name}' failed"
        return
    if log:
        log(f"{name}: test accuracy {entry['test_accuracy']:.3f} after {entry['epochs']} "
            f"epochs ({entry['train_seconds']:.0f}s)")


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


def longest_chains(seconds: dict[str, float], teacher: dict[str, str | None]
                   ) -> dict[str, float]:
    """Seconds from a model's start to the end of its longest chain of students; starting
    the longest chain first keeps every worker busy to the end."""

    def chain(name: str) -> float:
        students = [chain(s) for s in seconds if teacher[s] == name]
        return seconds[name] + max(students, default=0.0)

    return {name: chain(name) for name in seconds}


def _estimated_seconds(jobs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each job's training time, from the shipped zoo's recorded seconds per epoch (1 per
    epoch for a recipe without a record)."""
    shipped = {}
    if (WEIGHTS_DIR / ZOO_INDEX).is_file():
        shipped = json.loads((WEIGHTS_DIR / ZOO_INDEX).read_text())["models"]

    def cost(name: str) -> float:
        record = shipped.get(name, {})
        per_epoch = record.get("train_seconds", 1.0) / max(1, record.get("epochs", 1))
        return per_epoch * jobs[name]["epochs"] * jobs[name]["n_train"] / 4000

    return {name: cost(name) for name in jobs}


def _train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train, test and save one zoo model; returns its zoo.json entry (runs in a worker)."""

    name, out, seed = job["name"], Path(job["out"]), job["seed"]
    spec = zoo_spec(name)
    log = _logger(job["progress"])
    with intra_op_threads(job["threads"]):
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
            "teacher_weights_id": teacher.weights_id if teacher is not None else None,
            "n_train": job["n_train"], "n_test": job["n_test"],
            "train_seconds": round(seconds, 1), "weights_id": model.weights_id,
            "command": job["command"], "versions": job["versions"],
        }


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


def _new_index(out: Path, chosen: list[str]) -> dict[str, Any]:
    """zoo.json's header, keeping models trained earlier into the same folder (each entry
    carries its own seed, data sizes, teacher weights and library versions)."""
    from ..data.shapes import SHAPE_NAMES

    index: dict[str, Any] = {"canonical_size": CANONICAL_SIZE,
                             "class_names": list(SHAPE_NAMES[:10]), "dataset": "shapes",
                             "models": {}}
    path = out / ZOO_INDEX
    if path.is_file():
        try:
            earlier = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise UserError(f"'{path}' is not valid JSON ({error}); move it away to start "
                            "this folder's zoo afresh") from error
        index["models"] = {k: v for k, v in earlier.get("models", {}).items() if k not in chosen}
    return index


def _write_index(out: Path, index: dict[str, Any], chosen: list[str]) -> None:
    """zoo.json with the models in a stable order (earlier ones, then this run's, spec order),
    written whole or not at all."""
    models = index["models"]
    ordered = [n for n in models if n not in chosen] + [n for n in chosen if n in models]
    index["models"] = {n: models[n] for n in ordered}
    text = json.dumps(index, indent=2)
    atomic_write(out / ZOO_INDEX, lambda handle: handle.write(text.encode()))


def _versions() -> dict[str, str]:
    """The library versions that decide a model's weights."""
    every = library_versions()
    return {k: every[k] for k in ("python", "xaicompare", "torch", "timm", "numpy")}


def _epochs_for(name: str, spec: dict[str, Any], epochs: int | dict[str, int] | None) -> int:
    if epochs is None:
        return int(spec["epochs"])
    if isinstance(epochs, dict):
        return int(epochs.get(name, spec["epochs"]))
    return int(epochs)


def _load_teacher(folder: Path, name: str) -> LoadedModel:
    """The teacher from `folder`'s zoo, checked against the weights id its zoo.json records."""
    try:
        return load_zoo([name], weights_dir=folder)[0]
    except UserError as error:
        raise UserError(f"teacher '{name}': {error}; train it (again) with --name {name}"
                        ) from error


def _logger(progress: bool) -> Callable[[str], None] | None:
    return (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else None
