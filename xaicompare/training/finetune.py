"""Fine-tuning any timm model on an ImageSet: a new head for the dataset's classes.

Batches are streamed from the dataset (decoded by DataLoader worker processes for image
files), so Imagenette's 9,469 training images never sit in memory as one float tensor, and
the model trains on the GPU when there is one. Augmentation (flips, shifts of 1/16 of the
image) is drawn per batch from (seed, epoch, batch), so a run gives the same batches with any
number of workers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..devices import usable_cores
from ..errors import UserError
from ..models.base import LoadedModel
from ..models.checkpoints import weights_hash
from ..models.loading import load_model
from .fit import adamw_warmup_cosine, augment

AMP_MODES = ("none", "bf16")


def finetune(
    model_name: str,
    dataset: Any,
    epochs: int = 1,
    *,
    pretrained: bool = True,
    weights: str | None = None,
    checkpoint: str | Path | None = None,
    lr: float = 1e-4,
    head_lr: float | None = None,
    batch_size: int = 32,
    input_size: int | None = None,
    seed: int = 0,
    max_images: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    amp: str = "none",
    progress: bool = False,
    **model_kwargs: Any,
) -> LoadedModel:
    """Fine-tune a timm model with a new head for `dataset`'s classes (all weights train).

    dataset: ImageSet-like (`load(indices)` -> float [N,3,H,W] in [0,1], `labels`,
    `class_names`). lr: the pretrained weights' learning rate (AdamW, warmup + cosine);
    head_lr: the new head's (default 10 x lr). max_images: train on a seeded random sample
    of this many images. Each epoch drops its last partial batch (a batch of one image
    breaks BatchNorm); the order changes every epoch, so no image is always left out.
    device: auto (CUDA when available) | cpu | cuda | cuda:N. workers: DataLoader processes
    decoding images (None: up to 8 for image files, none for in-memory sets).
    amp: none | bf16 (autocast; weights stay float32; worth it on recent GPUs).
    Returns the trained LoadedModel (on the CPU); save it with `save_model`.
    """
    labels = getattr(dataset, "labels", None)
    if labels is None or len(dataset) == 0:
        raise UserError(f"fine-tuning needs a labelled, non-empty dataset; got {dataset!r}")
    if amp not in AMP_MODES:
        raise UserError(f"amp '{amp}' is not valid; accepted: {', '.join(AMP_MODES)}")
    for name, value, least in (("epochs", epochs, 1), ("batch_size", batch_size, 2),
                               ("seed", seed, 0), ("workers", workers, 0)):
        if value is not None and (not isinstance(value, Integral) or value < least):
            raise UserError(f"{name} must be an int >= {least}, got {value!r}")
    target = _device(device)
    class_names = list(dataset.class_names)
    labels = np.asarray(labels)
    if labels.max() >= len(class_names):
        raise UserError(f"labels go up to {labels.max()}, but the dataset has "
                        f"{len(class_names)} classes ({', '.join(class_names)})")
    labelled = np.flatnonzero(labels >= 0)  # -1: a folder outside the fixed class space
    if len(labelled) < 2:
        raise UserError(f"fine-tuning needs at least 2 images with a label in the class space "
                        f"({', '.join(class_names)}); {dataset!r} has {len(labelled)}")
    rows = labelled[_training_rows(len(labelled), max_images, seed)]
    with torch.random.fork_rng(devices=[]):  # seeded init, the caller's random state kept
        torch.manual_seed(seed)
        model = load_model(model_name, pretrained=pretrained, weights=weights,
                           checkpoint=checkpoint, class_indices=None, input_size=input_size,
                           probe=False, **model_kwargs)
        model.net.reset_classifier(len(class_names))
    model.metadata["num_classes"] = len(class_names)
    if target.type == "cuda":
        torch.cuda.set_device(target)  # pinned memory and kernels on this GPU, not GPU 0
    model.to(target)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else None
    n_workers = _default_workers(dataset) if workers is None else int(workers)
    try:
        fit_streamed(model, dataset, rows, labels, epochs=epochs, lr=lr,
                     head_lr=10 * lr if head_lr is None else head_lr, batch_size=batch_size,
                     seed=seed, device=target, workers=n_workers, amp=amp, log=log)
    finally:
        model.eval()
        model.to("cpu")
    model.weights_id = weights_hash(model.net)
    model.class_names = tuple(class_names)
    return model


def fit_streamed(
    model: LoadedModel,
    dataset: Any,
    rows: Sequence[int],
    labels: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    head_lr: float | None = None,
    workers: int = 0,
    amp: str = "none",
    weight_decay: float = 0.05,
    label_smoothing: float = 0.1,
    log: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Train `model` on `dataset[rows]` with AdamW, warmup + cosine, flips and shifts."""
    plan = _batch_plan(np.asarray(rows, dtype=np.int64), epochs, batch_size, seed)
    steps_per_epoch = len(plan) // epochs
    params, optimizer, schedule = adamw_warmup_cosine(
        model, lr, weight_decay, epochs, steps_per_epoch, head=_head_parameters(model.net),
        head_lr=head_lr)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")
    # One loader for the whole run: its worker processes start once, not every epoch.
    loader = DataLoader(_Batches(dataset, labels, plan, seed), batch_size=None, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda")
    model.train()
    start = time.perf_counter()
    running = torch.zeros((), device=device)  # summed on the device: no sync every step
    for step, (images, targets) in enumerate(loader):
        epoch, in_epoch = divmod(step, steps_per_epoch)
        if in_epoch == 0:
            running.zero_()
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with autocast:
            logits = model(images)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        schedule.step()
        running += loss.detach()
        done = in_epoch + 1
        if log is not None and (done % 50 == 0 or done == steps_per_epoch):
            log(f"{model.name}: epoch {epoch + 1}/{epochs} batch {done}/{steps_per_epoch} "
                f"loss {running.item() / done:.3f} ({time.perf_counter() - start:.0f}s)")
    model.eval()
    return model


def _head_parameters(net: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The classifier's parameters (distilled DeiTs have two heads)."""
    head = net.get_classifier()
    parts = head if isinstance(head, tuple | list) else (head,)
    return [p for part in parts for p in part.parameters()]


def _batch_plan(rows: np.ndarray, epochs: int, batch_size: int, seed: int) -> list[tuple]:
    """(epoch, batch index, rows) for every step: a fresh seeded order each epoch, full
    batches only (all rows in one batch when there are fewer than batch_size)."""
    size = min(batch_size, len(rows))
    plan = []
    for epoch in range(epochs):
        order = rows[np.random.default_rng([seed, epoch]).permutation(len(rows))]
        plan += [(epoch, i, order[i * size:(i + 1) * size]) for i in range(len(order) // size)]
    return plan


class _Batches(Dataset):
    """Whole augmented batches: item i is (images [b,3,S,S] float in [0,1], labels [b])."""

    def __init__(self, dataset: Any, labels: np.ndarray, plan: list[tuple], seed: int) -> None:
        self.dataset, self.labels, self.plan, self.seed = dataset, labels, plan, seed

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, batch, rows = self.plan[i]
        images = self.dataset.load(rows).float()
        state = np.random.SeedSequence([self.seed, epoch, batch]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        images = augment(images, generator, max_shift=max(1, images.shape[-1] // 16))
        return images, torch.as_tensor(self.labels[rows], dtype=torch.long)


def _training_rows(n: int, max_images: int | None, seed: int) -> np.ndarray:
    """All rows, or a seeded random sample (datasets are stored class by class, so the first
    n images would be one or two classes)."""
    if max_images is not None and (not isinstance(max_images, Integral) or max_images < 2):
        raise UserError(f"max_images must be an int >= 2, got {max_images!r}")
    if max_images is None or max_images >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))


def _device(device: str | torch.device) -> torch.device:
    """The study's device rule (auto: CUDA when available; an absent device is a UserError
    naming the ones there are)."""
    from ..devices import resolve_device

    return resolve_device(str(device))


def _default_workers(dataset: Any) -> int:
    """Decoding processes: none for in-memory images, up to 8 for image files."""
    from ..data.imageset import TensorImageSet

    if isinstance(dataset, TensorImageSet):
        return 0
    return max(0, min(8, usable_cores() - 1))
