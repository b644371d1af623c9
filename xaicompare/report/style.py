"""Shared look of every figure: paper-column fonts, colour-blind-safe palettes, saving.

Figures are built on `matplotlib.figure.Figure` directly (never pyplot), so nothing needs a
display, no global figure list fills up, and plotting works in threads and on headless
machines. The Agg backend is selected for the odd caller that still goes through pyplot.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg", force=False)

import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .. import progress  # noqa: E402
from ..errors import UserError  # noqa: E402
from ..store import atomic_write  # noqa: E402

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}
FAMILY_ORDER = ("cnn", "hybrid", "transformer", "mlp")
FAMILY_COLORS = {
    "cnn": OKABE_ITO["blue"],
    "transformer": OKABE_ITO["vermillion"],
    "hybrid": OKABE_ITO["bluish_green"],
    "mlp": OKABE_ITO["reddish_purple"],
}
FAMILY_MARKERS = {"cnn": "o", "transformer": "s", "hybrid": "D", "mlp": "^"}
# Colours for families outside the four known ones, and for categorical data (communities).
_EXTRA_COLORS = ("#E69F00", "#56B4E9", "#F0E442", "#000000", "#999999")
CATEGORICAL = (
    OKABE_ITO["blue"],
    OKABE_ITO["orange"],
    OKABE_ITO["bluish_green"],
    OKABE_ITO["vermillion"],
    OKABE_ITO["sky_blue"],
    OKABE_ITO["reddish_purple"],
    OKABE_ITO["yellow"],
    "#000000",
)
_EXTRA_MARKERS = ("v", "P", "X", "p", "h", "*")

SEQUENTIAL_CMAP = "viridis"
SEQUENTIAL_CMAP_ALT = "cividis"
DIVERGING_CMAP = "RdBu_r"
OVERLAY_CMAP = "inferno"  # unsigned maps over photos: dark-to-bright reads well on grey
WRONG_COLOR = OKABE_ITO["vermillion"]
UNKNOWN_FAMILY = "unknown"

# Sizes for a two-column paper: 8 pt text at 3.3 in per column keeps labels legible.
COLUMN_WIDTH_IN = 3.3
PAGE_WIDTH_IN = 6.9
PAPER_RC: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "figure.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.4,
    "figure.dpi": 100,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by paper venues
    "ps.fonttype": 42,
    "svg.fonttype": "path",  # SVGs look the same on machines without DejaVu
    "svg.hashsalt": "xaicompare",  # deterministic SVG ids -> byte-stable outputs
    "image.cmap": SEQUENTIAL_CMAP,
}

F = TypeVar("F", bound=Callable[..., Any])


def paper_style(func: F) -> F:
    """Run a plotting function under PAPER_RC without touching the caller's global rcParams."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(PAPER_RC):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(width: float = COLUMN_WIDTH_IN, height: float = 2.6) -> Figure:
    """A pyplot-free Figure with constrained layout (labels are kept inside the canvas)."""
    return Figure(figsize=(width, height), layout="constrained")


def figure_and_axes(ax: Axes | None, width: float, height: float) -> tuple[Figure, Axes]:
    """The caller's Axes and its Figure, or a fresh single-Axes figure of the given size."""
    if ax is not None:
        if not isinstance(ax, Axes):
            raise UserError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
        return ax.figure, ax  # type: ignore[return-value]
    fig = new_figure(width, height)
    return fig, fig.add_subplot()


def family_palette(families: Iterable[str]) -> dict[str, str]:
    """Colour per family: the fixed four first, other names get further Okabe-Ito colours."""
    palette: dict[str, str] = {}
    extra = iter(_EXTRA_COLORS * 10)
    for family in sorted(set(families), key=family_sort_key):
        palette[family] = FAMILY_COLORS.get(family) or next(extra)
    return palette


def family_markers(families: Iterable[str]) -> dict[str, str]:
    markers: dict[str, str] = {}
    extra = iter(_EXTRA_MARKERS * 10)
    for family in sorted(set(families), key=family_sort_key):
        markers[family] = FAMILY_MARKERS.get(family) or next(extra)
    return markers


def family_sort_key(family: str) -> tuple[int, str]:
    """Known families in FAMILY_ORDER, then the rest alphabetically."""
    if family in FAMILY_ORDER:
        return (FAMILY_ORDER.index(family), "")
    return (len(FAMILY_ORDER), str(family))


def categorical_colors(n: int) -> list[str]:
    """n distinguishable colours: Okabe-Ito up to 8, then tab20 (less safe, but distinct)."""
    if n <= len(CATEGORICAL):
        return list(CATEGORICAL[:n])
    cmap = matplotlib.colormaps["tab20"]
    return [matplotlib.colors.to_hex(cmap(i % 20)) for i in range(n)]


def resolve_families(models: Sequence[str], families: Mapping[str, str] | None) -> dict[str, str]:
    """Family of every model; models missing from `families` are 'unknown' (never an error)."""
    if families is None:
        return {m: UNKNOWN_FAMILY for m in models}
    if not isinstance(families, Mapping):
        raise UserError(f"families must be a dict model -> family, got {type(families).__name__}")
    return {m: str(families.get(m, UNKNOWN_FAMILY)) for m in models}


def text_color_for(rgba: Sequence[float]) -> str:
    """Black or white, whichever is more legible on a cell of this colour (WCAG luminance)."""
    r, g, b = (np.asarray(rgba[:3], dtype=float) ** 2.2).tolist()
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.18 else "white"


SAVE_FORMATS = ("png", "pdf", "svg", "jpg", "eps")


def save_figure(
    fig: Figure | Axes,
    path_without_suffix: str | Path,
    formats: Sequence[str] = ("png", "pdf", "svg"),
    dpi: int = 200,
) -> list[Path]:
    """Write `fig` once per format next to each other; returns the written paths.

    Vector formats (pdf, svg) keep text as fonts/paths for papers; PNG is for the HTML report.
    Metadata dates are dropped so that re-running a study gives identical files.
    """
    if isinstance(fig, Axes):
        fig = fig.figure  # type: ignore[assignment]
    if not isinstance(fig, Figure):
        raise UserError(f"save_figure needs a matplotlib Figure or Axes, got {type(fig).__name__}")
    if isinstance(formats, str):
        formats = (formats,)
    bad = [f for f in formats if f.lower().lstrip(".") not in SAVE_FORMATS]
    if bad or not formats:
        raise UserError(f"unknown figure format(s) {bad or formats!r}; accepted: {SAVE_FORMATS}")
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context(PAPER_RC):
        for fmt in (f.lower().lstrip(".") for f in formats):
            path = base.with_name(base.name + "." + fmt)
            metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(fmt)
            # temp file + rename: a kill or a full disk never leaves a truncated figure
            atomic_write(path, lambda handle, fmt=fmt, metadata=metadata: fig.savefig(
                handle, format=fmt, dpi=dpi, metadata=metadata))
            written.append(path)
    progress.step(base.name)  # the report stage's progress line counts figures
    return written
