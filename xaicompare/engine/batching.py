"""How a model runs on its device: shard size from free GPU memory, channels_last for CNNs.

On CUDA, `probe_batch_size` explains two images with every method of the job, measures the
peak memory that took, and scales the shard size to the free memory (with headroom); the
runner's out-of-memory back-off still halves it if a later shard needs more. On the CPU the
fixed default is kept (memory is rarely the limit there, and fixed shards keep a run's
results independent of the machine's free memory).
"""

from __future__ import annotations

import tempfile

import torch

from ..store import Store
from .units import ExplainJob, Shard, explain_unit

PROBE_IMAGES = 2
HEADROOM = 0.7  # of the free memory: fragmentation and the largest shard's extras
MAX_SHARD = 256


def place_model(model, device: torch.device):
    """The model on `device`; CNNs in channels_last on CUDA (faster convolutions there)."""
    model = model.to(device)
    if device.type == "cuda" and getattr(model, "family", None) == "cnn":
        model = model.to(memory_format=torch.channels_last)
    return model


def probe_batch_size(model, images: torch.Tensor, job: ExplainJob, device: torch.device,
                     default: int) -> int:
    """Shard size that fits the free CUDA memory, from one probe shard's peak memory."""
    if device.type != "cuda" or len(images) == 0:
        return default
    n = len(images)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    shard = Shard(tuple(range(n)), tuple(f"probe{i}" for i in range(n)), None)
    probe_job = ExplainJob(job.methods, {"probe": True}, "predicted", job.seed, job.map_dtype,
                           job.autocast)
    with tempfile.TemporaryDirectory() as scratch:  # the probe's results are thrown away
        explain_unit(model, shard, probe_job, Store(scratch), device, lambda: images)
    torch.cuda.synchronize(device)
    per_image = max(1, (torch.cuda.max_memory_allocated(device) - base) / n)
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(MAX_SHARD, HEADROOM * free // per_image)))


def auto_batch_size(device: torch.device) -> int:
    """Shard size without a probe (CPU; Ray workers), see batching.probe_batch_size."""
    return 32 if device.type == "cuda" else 8
