"""A synthetic benchmark with exact object masks: K shapes on textured backgrounds.

Everything is drawn with implicit shape functions on coordinate grids for a whole chunk of
images at once, so 10,000 images of 64 px take seconds. Pixels are deterministic from
(seed, split, image index): chunks have a fixed size and their own derived seed, so the
first n images of a larger set equal a set of n.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError

SPLITS = ("train", "val", "test")
SHAPE_NAMES = ("disc", "square", "triangle", "star", "cross", "ring", "crescent", "ellipse",
               "diamond", "semicircle", "hexagon", "L-shape")
TEXTURE_NAMES = ("flat", "noise", "stripes", "checkerboard", "dots", "gradient", "blotches",
                 "rings")
CHUNK = 512
RADIUS_RANGE = (0.26, 0.40)  # circumradius as a fraction of the image side
CUE_STRENGTH = 0.9  # cue-conflict train split: P(object texture == label mod T)


@dataclass
class ShapesBatch:
    images: torch.Tensor  # uint8 [N, 3, S, S]
    masks: torch.Tensor  # bool [N, S, S], exactly the object's pixels
    labels: torch.Tensor  # int64 [N], index into class_names
    object_texture: torch.Tensor  # int64 [N], index into TEXTURE_NAMES
    background_texture: torch.Tensor  # int64 [N]
    class_names: list[str]
    centers: torch.Tensor  # float32 [N, 2] (x, y) in pixels, pixel centres at i + 0.5
    radii: torch.Tensor  # float32 [N] circumradius in pixels
    angles: torch.Tensor  # float32 [N] rotation in radians


# -- shapes: u, v are object coordinates (unit circumradius); each returns a bool mask.
def _polygon(u: torch.Tensor, v: torch.Tensor, n: int, apothem: float) -> torch.Tensor:
    """Regular n-gon with a vertex on +u: fold the angle into one edge's sector."""
    rho, phi = torch.hypot(u, v), torch.atan2(v, u)
    sector = 2 * math.pi / n
    folded = torch.remainder(phi, sector) - sector / 2
    return rho * torch.cos(folded) <= apothem


def _star(u: torch.Tensor, v: torch.Tensor, n: int = 5, inner: float = 0.5) -> torch.Tensor:
    """n-pointed star: inside the triangle (origin, tip, inner vertex) after angle folding."""
    rho, phi = torch.hypot(u, v), torch.atan2(v, u)
    half = math.pi / n
    folded = torch.abs(torch.remainder(phi + half, 2 * half) - half)
    px, py = rho * torch.cos(folded), rho * torch.sin(folded)
    bx, by = inner * math.cos(half), inner * math.sin(half)
    # Left of the edge tip(1, 0) -> inner vertex (bx, by), i.e. on the origin's side.
    return (bx - 1.0) * py - by * (px - 1.0) >= 0


SHAPE_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "disc": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: torch.maximum(u.abs(), v.abs()) <= 0.72,
    "triangle": lambda u, v: _polygon(u, v, 3, 0.5),
    "star": _star,
    "cross": lambda u, v: ((u.abs() <= 0.3) & (v.abs() <= 0.95))
    | ((v.abs() <= 0.3) & (u.abs() <= 0.95)),
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.55**2),
    "crescent": lambda u, v: (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + v * v >= 0.75**2),
    "ellipse": lambda u, v: u * u + (v / 0.45) ** 2 <= 1.0,
    "diamond": lambda u, v: u.abs() + v.abs() / 0.6 <= 1.0,
    "semicircle": lambda u, v: (u * u + (v + 0.4) ** 2 <= 1.0) & (v + 0.4 >= 0),
    "hexagon": lambda u, v: _polygon(u, v, 6, math.cos(math.pi / 6)),
    "L-shape": lambda u, v: (torch.maximum(u.abs(), v.abs()) <= 0.72) & ((u < -0.1) | (v < -0.1)),
}


# -- textures: each returns a field in [0, 1] of shape [m, S, S].
def _texture(kind: int, x: torch.Tensor, y: torch.Tensor, p: dict[str, torch.Tensor],
             noise: torch.Tensor, coarse: torch.Tensor, size: int) -> torch.Tensor:
    cos, sin = torch.cos(p["orient"]), torch.sin(p["orient"])
    along, across = x * cos + y * sin, -x * sin + y * cos
    period, phase = p["period"], p["phase"]
    name = TEXTURE_NAMES[kind]
    if name == "flat":
        return torch.full_like(along, 0.5)
    if name == "noise":
        return noise
    if name == "stripes":
        return (torch.sin(2 * math.pi * along / period + phase) > 0).float()
    if name == "checkerboard":
        cells = torch.floor(along / period) + torch.floor(across / period)
        return torch.remainder(cells, 2.0)
    if name == "dots":
        du = torch.remainder(along, period) - period / 2
        dv = torch.remainder(across, period) - period / 2
        return (du * du + dv * dv <= (0.3 * period) ** 2).float()
    if name == "gradient":
        return (along / (size * math.sqrt(2)) + 0.5).clamp(0, 1)
    if name == "blotches":
        smooth = torch.nn.functional.interpolate(coarse[:, None], size=(size, size),
                                                 mode="bicubic", align_corners=False)[:, 0]
        return (smooth > 0.5).float()
    if name == "rings":
        dist = torch.hypot(x - p["cx"], y - p["cy"])
        return (torch.sin(2 * math.pi * dist / period + phase) > 0).float()
    raise AssertionError(name)


def _draw_textures(kinds: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                   params: dict[str, torch.Tensor], noise: torch.Tensor, coarse: torch.Tensor,
                   size: int) -> torch.Tensor:
    field = torch.empty(len(kinds), size, size)
    for kind in torch.unique(kinds).tolist():
        rows = torch.nonzero(kinds == kind).flatten()
        sub = {k: v[rows][:, None, None] for k, v in params.items()}
        field[rows] = _texture(kind, x, y, sub, noise[rows], coarse[rows], size)
    return field


def _chunk_rng(seed: int, split: str, chunk: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), chunk]))


def _texture_params(rng: np.random.Generator, n: int, size: int) -> dict[str, np.ndarray]:
    return {"orient": rng.uniform(0, math.pi, n), "period": rng.uniform(0.09, 0.18, n) * size,
            "phase": rng.uniform(0, 2 * math.pi, n), "cx": rng.uniform(0, size, n),
            "cy": rng.uniform(0, size, n)}


def _draw_params(rng: np.random.Generator, *, split: str, size: int, n_classes: int,
                 cue_conflict: bool, cue_strength: float = CUE_STRENGTH) -> dict[str, np.ndarray]:
    """Every random choice for one CHUNK of images (always a full chunk: fixed stream)."""
    n_textures = len(TEXTURE_NAMES)
    labels = rng.permutation(np.arange(CHUNK) % n_classes)
    radius = rng.uniform(*RADIUS_RANGE, CHUNK) * size
    margin = 1.05 * radius  # every shape fits in 1.05 x its circumradius
    center = rng.uniform(margin[:, None], size - margin[:, None], (CHUNK, 2))
    angle = rng.uniform(0, 2 * math.pi, CHUNK)
    bg_base = rng.uniform(0.15, 0.85, (CHUNK, 3))
    # Object colour differs from the background by 0.3-0.7 in every channel.
    obj_base = np.remainder(bg_base + 0.5 + rng.uniform(-0.2, 0.2, (CHUNK, 3)), 1.0)
    obj_amp, bg_amp = rng.uniform(-1, 1, (2, CHUNK, 3)) * 0.25
    obj_tex = rng.integers(0, n_textures, CHUNK)
    bg_tex = rng.integers(0, n_textures, CHUNK)
    if cue_conflict and split == "train":
        cued = rng.random(CHUNK) < cue_strength
        obj_tex = np.where(cued, labels % n_textures, obj_tex)
    obj_params, bg_params = _texture_params(rng, CHUNK, size), _texture_params(rng, CHUNK, size)
    noise = rng.random((2, CHUNK, size, size), dtype=np.float32)
    coarse = rng.random((2, CHUNK, 6, 6), dtype=np.float32)
    return {"labels": labels, "radius": radius, "cx": center[:, 0], "cy": center[:, 1],
            "angle": angle, "obj_base": obj_base, "bg_base": bg_base, "obj_amp": obj_amp,
            "bg_amp": bg_amp, "obj_tex": obj_tex, "bg_tex": bg_tex,
            **{f"obj_{k}": v for k, v in obj_params.items()},
            **{f"bg_{k}": v for k, v in bg_params.items()},
            "obj_noise": noise[0], "bg_noise": noise[1],
            "obj_coarse": coarse[0], "bg_coarse": coarse[1]}


def _render(p: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [m, 3, S, S] and masks bool [m, S, S] for a block of parameters."""
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    y, x = torch.meshgrid(grid, grid, indexing="ij")

    def col(name: str) -> torch.Tensor:
        return p[name][:, None, None]

    dx, dy = x - col("cx"), y - col("cy")
    cos, sin, inv_r = torch.cos(col("angle")), torch.sin(col("angle")), 1.0 / col("radius")
    u = (dx * cos + dy * sin).mul_(inv_r)
    v = (dy * cos - dx * sin).mul_(inv_r)
    labels = p["labels"]
    mask = torch.empty(len(labels), size, size, dtype=torch.bool)
    for k in torch.unique(labels).tolist():
        rows = torch.nonzero(labels == k).flatten()
        mask[rows] = SHAPE_FUNCTIONS[SHAPE_NAMES[k]](u[rows], v[rows])
    fields = {}
    for part in ("obj", "bg"):
        params = {k: p[f"{part}_{k}"] for k in ("orient", "period", "phase", "cx", "cy")}
        fields[part] = _draw_textures(p[f"{part}_tex"], x, y, params, p[f"{part}_noise"],
                                      p[f"{part}_coarse"], size).mul_(2).sub_(1)  # [-1, 1]
    def channel(name: str, c: int) -> torch.Tensor:
        return p[name][:, c, None, None] * 255

    image = torch.empty(len(labels), 3, size, size)
    for c in range(3):  # colour = base + amplitude * texture, per region, in 0..255
        obj = torch.addcmul(channel("obj_base", c), channel("obj_amp", c), fields["obj"])
        bg = torch.addcmul(channel("bg_base", c), channel("bg_amp", c), fields["bg"])
        torch.where(mask, obj, bg, out=image[:, c])
    return image.add_(0.5).clamp_(0, 255).to(torch.uint8), mask


RENDER_BLOCK = 64  # images rendered together: small enough for temporaries to stay in cache


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Per-op work is small; on a busy CPU intra-op threads cost far more than they give."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_shapes(n: int, *, split: str = "train", size: int = 64, n_classes: int = 10,
                seed: int = 0, cue_conflict: bool = False,
                cue_strength: float = CUE_STRENGTH) -> ShapesBatch:
    """`n` synthetic images of `n_classes` shapes with exact masks, deterministic from seed.

    cue_conflict: in the train split the object texture equals `label mod T` with
    probability `cue_strength` (0.9: a shortcut), in val/test it is uniform at random (the
    shortcut breaks).
    """
    if not 0 <= cue_strength <= 1:
        raise UserError(f"cue_strength must be a probability in [0, 1], got {cue_strength!r}")
    if split not in SPLITS:
        raise UserError(f"unknown shapes split '{split}'; accepted: {', '.join(SPLITS)}")
    if not isinstance(n_classes, int) or not 1 <= n_classes <= len(SHAPE_NAMES):
        raise UserError(f"n_classes must be an int in 1..{len(SHAPE_NAMES)}, got {n_classes!r}")
    if not isinstance(n, int) or n < 0:
        raise UserError(f"n must be a non-negative int, got {n!r}")
    if not isinstance(size, int) or size < 8:
        raise UserError(f"size must be an int >= 8 pixels, got {size!r}")
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    masks = torch.empty(n, size, size, dtype=torch.bool)
    meta: dict[str, list[np.ndarray]] = {k: [] for k in ("labels", "obj_tex", "bg_tex", "cx",
                                                          "cy", "radius", "angle")}
    with _single_threaded():
        for chunk, start in enumerate(range(0, n, CHUNK)):
            drawn = _draw_params(_chunk_rng(seed, split, chunk), split=split, size=size,
                                 n_classes=n_classes, cue_conflict=cue_conflict,
                                 cue_strength=cue_strength)
            count = min(CHUNK, n - start)
            for key in meta:
                meta[key].append(drawn[key][:count])
            for block in range(0, count, RENDER_BLOCK):
                stop = min(block + RENDER_BLOCK, count)
                rows = slice(start + block, start + stop)
                images[rows], masks[rows] = _render(_block_params(drawn, block, stop), size)
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in meta.items()}
    return ShapesBatch(
        images=images, masks=masks, labels=torch.from_numpy(cat["labels"]).long(),
        object_texture=torch.from_numpy(cat["obj_tex"]).long(),
        background_texture=torch.from_numpy(cat["bg_tex"]).long(),
        class_names=list(SHAPE_NAMES[:n_classes]),
        centers=torch.from_numpy(np.stack([cat["cx"], cat["cy"]], axis=-1)).float().reshape(-1, 2),
        radii=torch.from_numpy(cat["radius"]).float(),
        angles=torch.from_numpy(cat["angle"]).float())


def _block_params(drawn: dict[str, np.ndarray], start: int, stop: int) -> dict[str, torch.Tensor]:
    block = {k: torch.from_numpy(np.ascontiguousarray(v[start:stop])) for k, v in drawn.items()}
    return {k: v.long() if k in ("labels", "obj_tex", "bg_tex") else v.float()
            for k, v in block.items()}
