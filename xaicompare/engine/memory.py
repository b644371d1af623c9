"""The memory budget of every model pass (`executor.memory`): inputs per pass from free memory.

    executor: {memory: auto}     # a safe share of the free memory (RAM on the CPU)
    executor: {memory: 8GB}      # at most 8 GB for this process (GB = 10^9 bytes, GiB = 2^30)
    executor: {memory: none}     # no cap: the methods' own chunk sizes

A probe measures what one model evaluation costs on the model's device: one input through
forward and backward, counting the bytes autograd keeps for the backward pass (every saved
tensor that is not a parameter; on CUDA also the measured peak), and the largest activation
of a forward without gradients. The budget divided by that cost caps the inputs per pass of
every method (attribution/passes.py `pass_limit`), the images of a shard (Grad-CAM and
the logits run a shard in one pass), the diversity stage's passes on corrupted images, the
faithfulness curves, the randomised-model maps and the depth atlas (engine/trust_units.py).
Below one evaluation the cap is 1: the steps of one image then run one per pass. The run
records each model's cap and each method's passes (run.json: explain.pass_limits, .passes).

With `auto`, processes that share a machine's RAM split it: each Ray worker takes
1 / (workers on its node) of the share (`share_ram`, set by engine/ray_pool.py). Not split:
`auto` on a GPU that several workers share (`gpus_per_worker` < 1: each takes 70% of the
free memory), and an explicit size, which bounds each process.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..attribution.passes import PassLimit, pass_limit
from ..errors import UserError
from ..sizes import format_bytes, parse_memory  # noqa: F401  (used here and re-exported)

log = logging.getLogger("xaicompare")

AUTO_SHARE_CPU = 0.5  # of the available RAM: other processes, the allocator's caches
AUTO_SHARE_CUDA = 0.7  # of the free GPU memory (as engine/batching.py's probe)
USABLE = 0.8  # of an explicit budget left after the process's present memory
# Extra bytes per evaluation beyond the saved activations: the backward pass's gradients of
# the largest activations, and for a forward alone the few activations alive at once.
BACKWARD_EXTRA_ACTIVATIONS = 2
FORWARD_LIVE_ACTIVATIONS = 4


def process_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


# Processes of this run on this machine that each take an auto share of its free RAM (Ray
# workers on one node, set by the driver through `share_ram`): each takes 1 / that many.
_RAM_SHARERS = [1]


def share_ram(processes: int) -> None:
    """This process is one of `processes` on its machine that split the free RAM."""
    _RAM_SHARERS[0] = max(1, int(processes))


def auto_budget(free: int, share: float, sharers: int = 1) -> int:
    """executor.memory auto: `share` of the `free` bytes, split among the `sharers`
    processes that see the same free memory (and would each take that share otherwise)."""
    return int(share * free / max(1, sharers))


def available_bytes(memory: str | int, device: torch.device) -> int | None:
    """Bytes the passes of one unit may use now (None: no budget)."""
    memory = parse_memory(memory) if isinstance(memory, str) else memory
    if memory == "none":
        return None
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if memory == "auto":
            return auto_budget(free, AUTO_SHARE_CUDA)
        return int(min(free, USABLE * (memory - torch.cuda.memory_allocated(device))))
    if memory == "auto":
        import psutil

        return auto_budget(psutil.virtual_memory().available, AUTO_SHARE_CPU, _RAM_SHARERS[0])
    return int(USABLE * (memory - process_rss()))


@dataclass(frozen=True)
class EvaluationCost:
    """Bytes one input costs in a pass: with a backward pass, and forward only."""

    backward: int
    forward: int


_COSTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {shape: cost}
_WARNED: set = set()  # (model name, budget) already warned about


def _scores(model, inputs: torch.Tensor) -> torch.Tensor:
    out = model(inputs)
    return out[:, 0] if out.dim() > 1 else out


def _saved_bytes(model, inputs: torch.Tensor) -> tuple[int, int]:
    """(bytes autograd saves for a backward through `inputs`, largest module output)."""
    params = {p.data_ptr() for p in model.parameters()} | {b.data_ptr() for b in model.buffers()}
    seen: dict[int, int] = {}
    largest = [0]

    def pack(tensor):
        if isinstance(tensor, torch.Tensor) and tensor.data_ptr() not in params:
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    def watch(module, args, out):
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out.numel() * out.element_size())

    hooks = [m.register_forward_hook(watch) for m in model.modules()]
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            x = inputs.detach().requires_grad_(True)
            score = _scores(model, x).sum()
        torch.autograd.grad(score, x)
    finally:
        for hook in hooks:
            hook.remove()
    return sum(seen.values()), largest[0]


def evaluation_cost(model, image: torch.Tensor) -> EvaluationCost:
    """What one more input costs in a pass of `model` at `image`'s size (cached per model):
    the difference between a probe of two inputs and one, so fixed costs drop out."""
    key = (tuple(image.shape[-3:]), str(image.device), image.dtype)
    cached = _COSTS.setdefault(model, {})
    if key in cached:
        return cached[key]
    one = image[:1]
    two = torch.cat([one, one])
    cuda = image.device.type == "cuda"
    peaks = []
    sizes = []
    for batch in (one, two):
        if cuda:
            torch.cuda.synchronize(image.device)
            base = torch.cuda.memory_allocated(image.device)
            torch.cuda.reset_peak_memory_stats(image.device)
        saved, largest = _saved_bytes(model, batch)
        if cuda:
            torch.cuda.synchronize(image.device)
            peaks.append(torch.cuda.max_memory_allocated(image.device) - base)
        sizes.append((saved, largest))
    saved = max(1, sizes[1][0] - sizes[0][0])
    largest = max(1, sizes[1][1] - sizes[0][1], sizes[0][1])
    backward = saved + BACKWARD_EXTRA_ACTIVATIONS * largest
    if cuda:
        backward = max(backward, peaks[1] - peaks[0])
    cost = EvaluationCost(int(backward), int(FORWARD_LIVE_ACTIVATIONS * largest))
    cached[key] = cost
    return cost


def limit_for(model, image: torch.Tensor, memory: str | int) -> PassLimit | None:
    """Inputs per pass within `memory` for `model` at `image`'s size (None: no budget)."""
    budget = available_bytes(memory, image.device)
    if budget is None:
        return None
    cost = evaluation_cost(model, image)
    limit = PassLimit(max(1, budget // cost.backward), max(1, budget // cost.forward))
    name = getattr(model, "name", type(model).__name__)
    if budget < cost.backward and (name, memory) not in _WARNED:
        _WARNED.add((name, memory))
        log.warning("model '%s': one evaluation with gradients needs about %s but the memory "
                    "budget (executor.memory: %s) leaves %s; running one input per pass, "
                    "which may still exceed it", name, format_bytes(cost.backward),
                    memory, format_bytes(max(budget, 0)))
    return limit


@contextlib.contextmanager
def memory_budget(model, images: torch.Tensor, memory: str | int
                  ) -> Iterator[PassLimit | None]:
    """Run the block with the methods' inputs per pass capped to `memory` (see module doc);
    yields the cap (None: no budget)."""
    if memory == "none" or len(images) == 0:
        yield None
        return
    limit = limit_for(model, images[:1], memory)
    with pass_limit(limit):
        yield limit


@dataclass
class PassCount:
    """Forward passes through a model in a block, and the most inputs one of them took."""

    passes: int = 0
    largest: int = 0


@contextlib.contextmanager
def counting_passes(model: torch.nn.Module) -> Iterator[PassCount]:
    """Count the calls of `model` in the block: what the run records of how a method's
    evaluations were split (run.json's explain.passes). Completed calls only: a pass that
    stops at a CAM layer (Score-CAM's layer_activations) is not counted."""
    count = PassCount()

    def seen(module, args, out) -> None:
        count.passes += 1
        if args and isinstance(args[0], torch.Tensor):
            count.largest = max(count.largest, len(args[0]))

    hook = model.register_forward_hook(seen)
    try:
        yield count
    finally:
        hook.remove()


def check_memory_setting(value, where: str = "executor.memory") -> str | int:
    """parse_memory with a UserError naming the key."""
    try:
        return parse_memory(value)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from None
