"""Grad-CAM layers read off timm's `forward_intermediates()`: timm's own answer to "which
tensor is the feature map at depth k, and in which layout".

timm returns each intermediate as NCHW with prefix tokens stripped, channels-last permuted
and Hiera unrolled, but as a *copy* beside the forward path, so the gradient of a logit
with respect to it is not defined. This module therefore derives, once per model, where
each intermediate comes from and how it is laid out:

1. one `forward_intermediates` pass with every module's output recorded; walking the
   autograd graph back from intermediate k finds the module output it was cut from
   (the *source*: a module name plus the position inside a tuple/list output);
2. back-propagating position labels through that cut gives an index map: element j of
   the NCHW map is element `index[j]` of the source (per image), checked to reproduce
   timm's map exactly on two images;
3. one ordinary forward checks that the source runs once there with the same values and
   that its map receives gradient from the features the head reads (a random projection,
   so a zero-initialised head does not hide it).

Grad-CAM then hooks the source in the ordinary forward (the detached-leaf design) and
gathers both activation and gradient through the index map: exactly timm's map, and the
exact gradient of the target logit with respect to it.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch
from torch import nn

OutputPath = tuple[int, ...]
_MAX_LABELS = 2**24  # float32 represents every integer label up to here exactly
_MAX_WALK = 64  # autograd nodes visited from an intermediate back to its source


@dataclass(eq=False)
class GatherToNCHW:
    """Source activation [B, ...] -> [B, C, h, w] through a fixed per-image index map."""

    index: torch.Tensor  # long [C*h*w], positions in one image's flattened source
    shape: tuple[int, int, int]  # (C, h, w)

    def __call__(self, activation: torch.Tensor) -> torch.Tensor:
        flat = activation.reshape(activation.shape[0], -1)
        index = self.index.to(flat.device)
        return flat.index_select(1, index).reshape(activation.shape[0], *self.shape)

    def __repr__(self) -> str:
        return f"GatherToNCHW(shape={self.shape})"


@dataclass(eq=False)
class Intermediate:
    """Intermediate k of `forward_intermediates` and, when usable, its source module."""

    index: int
    grid: tuple[int, int] | None = None
    name: str | None = None  # source module name in the network
    path: OutputPath = ()  # where the map sits inside the module's output
    to_nchw: GatherToNCHW | None = None
    problem: str | None = None  # why it cannot be hooked (None: usable)
    has_gradient: bool = True  # the head's features depend on this map

    @property
    def usable(self) -> bool:
        return self.problem is None and self.has_gradient


@dataclass
class IntermediatesReport:
    """Every intermediate of a model (empty with `problem` when timm's call failed)."""

    layers: list[Intermediate] = field(default_factory=list)
    problem: str | None = None


def has_forward_intermediates(net: nn.Module) -> bool:
    return callable(getattr(net, "forward_intermediates", None))


def output_tensors(output, path: OutputPath = ()):
    """(path, tensor) for every tensor in a module output, descending tuples and lists."""
    if isinstance(output, torch.Tensor):
        yield path, output
    elif isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            yield from output_tensors(item, (*path, i))


def tensor_at(output, path: OutputPath):
    for i in path:
        output = output[i]
    return output


def replace_at(output, path: OutputPath, value):
    """`output` with the item at `path` replaced (tuples and lists rebuilt)."""
    if not path:
        return value
    items = list(output)
    items[path[0]] = replace_at(items[path[0]], path[1:], value)
    return type(output)(items) if isinstance(output, tuple) else items


def _call_intermediates(net: nn.Module, images: torch.Tensor) -> list:
    accepted = inspect.signature(net.forward_intermediates).parameters
    options = {"indices": None, "norm": False, "output_fmt": "NCHW", "intermediates_only": True}
    out = net.forward_intermediates(images, **{k: v for k, v in options.items() if k in accepted})
    if isinstance(out, dict):
        out = out.get("image_intermediates", [])
    elif isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], (list, tuple)):
        out = out[1]
    return list(out)


def read_intermediates(net: nn.Module, input_size: tuple[int, int]) -> IntermediatesReport:
    """Sources, index maps and gradient flow of every intermediate (see module docstring)."""
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, *input_size, generator=generator).to(device, dtype)
    images = (images - 0.45) / 0.25  # roughly normalised input
    outputs: dict[int, list[tuple[str, OutputPath, torch.Tensor]]] = {}
    calls: dict[str, int] = {}

    def record(name):
        def hook(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            for path, tensor in output_tensors(output):
                if tensor.grad_fn is not None:
                    outputs.setdefault(id(tensor.grad_fn), []).append((name, path, tensor))
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in net.named_modules() if n]
    try:
        with torch.enable_grad():
            maps = _call_intermediates(net, images.requires_grad_(True))
    except Exception as err:  # noqa: BLE001 - any failure sends the model to the hook route
        return IntermediatesReport(problem=f"forward_intermediates failed: "
                                           f"{type(err).__name__}: {_first_line(err)}")
    finally:
        for handle in handles:
            handle.remove()
    layers = [_locate(k, a, outputs, calls) for k, a in enumerate(maps)]
    references = {layer.index: maps[layer.index].detach() for layer in layers}
    _check_in_forward(net, images.detach(), layers, references)
    return IntermediatesReport(layers=layers)


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [""])[0][:160]


def _locate(k: int, fmap, outputs, calls) -> Intermediate:
    if not isinstance(fmap, torch.Tensor) or fmap.dim() != 4:
        shape = tuple(fmap.shape) if isinstance(fmap, torch.Tensor) else type(fmap).__name__
        return Intermediate(k, problem=f"intermediate is {shape}, not NCHW")
    layer = Intermediate(k, grid=(int(fmap.shape[2]), int(fmap.shape[3])))
    source = _find_source(fmap, outputs, calls)
    if source is None:
        layer.problem = "no module output found under the intermediate"
        return layer
    name, path, tensor = source
    index = _index_map(fmap, tensor)
    if index is None:
        layer.problem = f"'{name}' output is not a re-indexing of the intermediate"
        return layer
    layer.name, layer.path = name, path
    layer.to_nchw = GatherToNCHW(index, tuple(int(s) for s in fmap.shape[1:]))
    return layer


def _find_source(fmap: torch.Tensor, outputs, calls):
    """Nearest module output (breadth first through the autograd graph) under `fmap`."""
    frontier, seen = [fmap.grad_fn], set()
    while frontier and len(seen) < _MAX_WALK:
        node = frontier.pop(0)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        found = [o for o in outputs.get(id(node), []) if calls.get(o[0]) == 1]
        if found:  # nested containers share one output: the outermost name reads best
            return min(found, key=lambda o: (o[0].count("."), len(o[0])))
        frontier.extend(next_node for next_node, _ in node.next_functions)
    return None


def _index_map(fmap: torch.Tensor, source: torch.Tensor) -> torch.Tensor | None:
    """Per-image positions in `source` of every element of `fmap`, or None when `fmap`
    is not a pure re-indexing of `source` with the batch first."""
    per_image = fmap[0].numel()
    if per_image >= _MAX_LABELS or source.shape[0] != fmap.shape[0]:
        return None
    labels = torch.zeros_like(fmap)
    labels[0] = torch.arange(1, per_image + 1, dtype=fmap.dtype,
                             device=fmap.device).view(fmap.shape[1:])
    try:
        (spread,) = torch.autograd.grad(fmap, source, labels, retain_graph=True)
    except RuntimeError:
        return None
    if spread[1:].any():  # labels of image 0 landed in another image
        return None
    flat = spread[0].flatten()
    positions = flat.nonzero().squeeze(1)
    index = torch.full((per_image,), -1, dtype=torch.long, device=fmap.device)
    index[flat[positions].round().long() - 1] = positions
    if (index < 0).any():
        return None
    gathered = source.detach().reshape(source.shape[0], -1).index_select(1, index)
    if not torch.equal(gathered.reshape(fmap.shape), fmap.detach()):
        return None
    return index.cpu()


def _check_in_forward(net: nn.Module, images: torch.Tensor, layers: list[Intermediate],
                      references: dict[int, torch.Tensor]) -> None:
    """In one ordinary forward: each source runs once, with the values timm gave, and its
    map receives gradient from the features the classifier reads.

    A source without gradient is usually the last block of a model that pools a prefix
    (cls) token: its patch tokens feed nothing. Then the previous block of the same list,
    whose output has the same layout (the last block's input), takes its place.
    """
    modules = dict(net.named_modules())
    usable = [layer for layer in layers if layer.problem is None]
    hooked = {layer.name for layer in usable}
    hooked |= {p for p in map(_previous_sibling, hooked) if p is not None and p in modules}
    captured: dict[str, list] = {}

    def fresh_views(name):
        # Grad-CAM swaps the returned tensor for a leaf: what counts is the gradient through
        # what is done with it after the module returns, so hand on (and watch) a new view.
        def hook(_module, _inputs, output):
            for path, tensor in list(output_tensors(output)):
                output = replace_at(output, path, tensor.view_as(tensor))
            captured.setdefault(name, []).append(output)
            return output
        return hook

    handles = [modules[name].register_forward_hook(fresh_views(name)) for name in sorted(hooked)]
    head_inputs: list[torch.Tensor] = []
    for head in _classifiers(net):
        handles.append(head.register_forward_pre_hook(
            lambda _m, args: head_inputs.append(args[0]) if args and isinstance(
                args[0], torch.Tensor) else None))
    try:
        with torch.enable_grad():
            logits = net(images.requires_grad_(True))
    except Exception as err:  # noqa: BLE001
        for layer in usable:
            layer.problem = f"forward failed: {type(err).__name__}: {_first_line(err)}"
        return
    finally:
        for handle in handles:
            handle.remove()
    features = [t for t in head_inputs if t.requires_grad] or [
        t for _, t in output_tensors(logits) if t.requires_grad]
    generator = torch.Generator().manual_seed(1)
    score = sum((f * torch.randn(f.shape, generator=generator).to(f)).sum() for f in features)

    def source(name, layer):
        outs = captured.get(name, [])
        tensor = tensor_at(outs[0], layer.path) if len(outs) == 1 else None
        ok = isinstance(tensor, torch.Tensor) and tensor.shape[0] == images.shape[0]
        return tensor if ok and tensor[0].numel() > int(layer.to_nchw.index.max()) else None

    candidates = []  # (layer, its source, the previous sibling's name and output)
    for layer in usable:
        tensor = source(layer.name, layer)
        if tensor is None:
            layer.problem = f"'{layer.name}' does not run once in the ordinary forward"
            continue
        if not torch.allclose(layer.to_nchw(tensor.detach()), references[layer.index],
                              rtol=1e-4, atol=1e-5):
            layer.problem = f"'{layer.name}' differs between forward and forward_intermediates"
            continue
        previous = _previous_sibling(layer.name)
        before = source(previous, layer) if previous else None
        candidates.append((layer, tensor, previous,
                           before if before is not None and before.shape == tensor.shape
                           else None))
    # one backward gives the gradient at every source at once (a backward per source made
    # loading a model cost several backward passes of it)
    gradients = _gradients(score, [t for c in candidates for t in (c[1], c[3]) if t is not None])

    def reaches(layer, tensor) -> bool:
        grad = gradients.get(id(tensor))
        return grad is not None and bool(layer.to_nchw(grad).abs().sum() > 0)

    for layer, tensor, previous, before in candidates:
        layer.has_gradient = reaches(layer, tensor)
        if not layer.has_gradient and before is not None and reaches(layer, before):
            layer.name, layer.has_gradient = previous, True


def _gradients(score, tensors: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    """d score / d tensor for each of `tensors` (by id) that the score depends on."""
    unique = list({id(t): t for t in tensors if t.requires_grad}.values())
    if not unique or not isinstance(score, torch.Tensor) or not score.requires_grad:
        return {}
    grads = torch.autograd.grad(score, unique, allow_unused=True)
    return {id(t): g for t, g in zip(unique, grads, strict=True) if g is not None}


def _previous_sibling(name: str) -> str | None:
    """'blocks.11' -> 'blocks.10'; None for a first block or a name without a position."""
    parent, _, position = name.rpartition(".")
    if not position.isdigit() or int(position) == 0:
        return None
    return f"{parent}.{int(position) - 1}" if parent else str(int(position) - 1)


def _classifiers(net: nn.Module) -> list[nn.Module]:
    get_classifier = getattr(net, "get_classifier", None)
    try:
        heads = get_classifier() if callable(get_classifier) else None
    except Exception:  # noqa: BLE001 - some models raise when they have no head
        return []
    heads = heads if isinstance(heads, (tuple, list)) else (heads,)
    return [h for h in heads if isinstance(h, nn.Module) and not isinstance(h, nn.Identity)]


def depth_index(depth: float, count: int) -> int:
    """Relative depth in (0, 1] -> index among `count` ordered layers (1.0 = the last)."""
    return max(0, math.ceil(depth * count - 1e-9) - 1)


def head_is_zero(net: nn.Module) -> bool:
    """True for a freshly initialised zero head (timm does that for some models): then
    every layer gets zero gradient and every gradient explanation is zero."""
    get_classifier = getattr(net, "get_classifier", None)
    try:
        heads = get_classifier() if callable(get_classifier) else None
    except Exception:  # noqa: BLE001 - some models raise when they have no head
        return False
    heads = heads if isinstance(heads, tuple) else (heads,)  # distilled models: two heads
    weights = [p for h in heads if isinstance(h, nn.Module) for p in h.parameters() if p.dim() > 1]
    return bool(weights) and all(not bool(w.any()) for w in weights)
