"""The offline zoo's training loop (`fit`, on in-memory tensors), and the optimizer, schedule
and augmentation that fine-tuning (finetune.py, streamed batches) shares with it.

Models train through `LoadedModel`, so the normalisation used in training is the one used
at explanation time. In `fit`, images are resized to the network's input size once, with the
same differentiable resize the wrapper applies, so an epoch does not pay for resizing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from ..models.base import LoadedModel


def augment(images: torch.Tensor, generator: torch.Generator, max_shift: int = 3) -> torch.Tensor:
    """Random horizontal flips and translations (reflect padding); labels are unchanged.

    Shape classes are mirror-symmetric categories, so flips keep the label.
    """
    n, _, h, w = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if max_shift <= 0:
        return images
    padded = F.pad(images, (max_shift,) * 4, mode="reflect")
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    width = padded.shape[-1]
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, 3, h, width)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, 3, h, w)
    return padded.gather(2, rows).gather(3, cols)


def resize_for(model: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """Canonical images resized as `model.preprocess` would (without normalising)."""
    if model.input_size is None or tuple(images.shape[-2:]) == model.input_size:
        return images
    smooth = model.resize_mode in ("bilinear", "bicubic")
    shrink = smooth and any(t < s for t, s in zip(model.input_size, images.shape[-2:], strict=True))
    with torch.no_grad():
        return F.interpolate(images, size=model.input_size, mode=model.resize_mode,
                             align_corners=False if smooth else None, antialias=shrink)


def fit(
    model: LoadedModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    epoch_data: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    batch_size: int = 128,
    seed: int = 0,
    teacher: LoadedModel | None = None,
    distill_weight: float = 0.5,
    temperature: float = 2.0,
    label_smoothing: float = 0.1,
    max_shift: int = 3,
    log: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Train `model` (all parameters) with AdamW, warmup + cosine schedule, augmentation.

    images: float [N, 3, H, W] in [0, 1] (canonical or already at the model's input size).
    epoch_data: optional epoch -> (images, labels) giving fresh images for each epoch after
    the first (synthetic data is free, and unseen images are what lets small transformers
    and MLPs learn shapes instead of memorising a fixed set).
    teacher: optional model whose softened logits are also matched (knowledge distillation);
    it sees the same augmented batch, so transformers learn from a CNN's shape evidence.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = resize_for(model, images.float())
    x_teacher = resize_for(teacher, images.float()) if teacher is not None else None
    steps_per_epoch = math.ceil(len(x) / batch_size)
    params, optimizer, schedule = adamw_warmup_cosine(model, lr, weight_decay, epochs,
                                                      steps_per_epoch)
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        if epoch_data is not None and epoch > 0:
            images, labels = epoch_data(epoch)
            x = resize_for(model, images.float())
            x_teacher = resize_for(teacher, images.float()) if teacher is not None else None
        order = torch.randperm(len(x), generator=generator)
        running, count = 0.0, 0
        for first in range(0, len(x), batch_size):
            rows = order[first:first + batch_size]
            state = generator.get_state()
            batch = augment(x[rows], generator, max_shift)
            logits = model(batch)
            loss = F.cross_entropy(logits, labels[rows], label_smoothing=label_smoothing)
            if teacher is not None:
                generator_t = torch.Generator().manual_seed(0)
                generator_t.set_state(state)  # same flips and shifts as the student's batch
                with torch.no_grad():
                    soft = teacher(augment(x_teacher[rows], generator_t, max_shift))
                kd = F.kl_div(F.log_softmax(logits / temperature, 1),
                              F.softmax(soft / temperature, 1), reduction="batchmean")
                loss = (1 - distill_weight) * loss + distill_weight * temperature**2 * kd
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            schedule.step()
            running += loss.item() * len(rows)
            count += len(rows)
        if log is not None:
            log(f"{model.name}: epoch {epoch + 1}/{epochs} loss {running / count:.3f} "
                f"({time.perf_counter() - start:.0f}s)")
    model.eval()
    return model


def adamw_warmup_cosine(model: torch.nn.Module, lr: float, weight_decay: float, epochs: int,
                        steps_per_epoch: int, head: Iterable[torch.nn.Parameter] = (),
                        head_lr: float | None = None):
    """(trainable params, AdamW without decay on biases/norms, per-step schedule: linear
    warmup over the first tenth of steps, at most 3 epochs, then cosine to zero).

    head, head_lr: parameters (a new classifier's) trained at their own learning rate.
    """
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total // 10 + 1, 3 * steps_per_epoch)
    params = [p for p in model.parameters() if p.requires_grad]
    in_head = {id(p) for p in head}
    groups = []
    for is_head, rate in ((False, lr), (True, lr if head_lr is None else head_lr)):
        chosen = [p for p in params if (id(p) in in_head) == is_head]
        groups += [{"params": [p for p in chosen if p.dim() > 1], "weight_decay": weight_decay,
                    "lr": rate},
                   {"params": [p for p in chosen if p.dim() <= 1], "weight_decay": 0.0,
                    "lr": rate}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / total)))
    return params, optimizer, schedule


@torch.no_grad()
def accuracy(model: LoadedModel, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 256) -> float:
    """Top-1 accuracy of `model` on canonical images [N, 3, H, W] in [0, 1]."""
    model.eval()
    correct = 0
    for first in range(0, len(images), batch_size):
        logits = model(images[first:first + batch_size].float())
        correct += int((logits.argmax(1) == labels[first:first + batch_size]).sum())
    return correct / max(1, len(images))
