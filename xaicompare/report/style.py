"""Shared look of every figure: colour-blind-safe palettes, the house style, saving.

Plotting functions draw under the caller's rcParams; the house style (paper-column font
sizes, no top/right spines) is a context manager, `style()`, that the report stage and
anyone else who wants it wraps around their plotting. Figures made without an `ax` are built
on `matplotlib.figure.Figure` directly (never pyplot), so nothing needs a display and no
global figure list fills up. The Agg backend is selected for callers that go through pyplot.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
# Colours for families outside the four known ones: dark enough for coloured tick labels on
# white (WCAG contrast >= 3; Okabe-Ito yellow, orange and sky blue are not) and apart from
# the four family colours (Paul Tol's dark hues, then greys).
_EXTRA_COLORS = ("#8B5A00", "#332288", "#882255", "#117733", "#555555", "#000000")
# Lines and bars of categorical data (models, methods): Okabe-Ito without its yellow, which
# vanishes on white, then Tol's dark hues.
CATEGORICAL = (
    OKABE_ITO["blue"],
    OKABE_ITO["orange"],
    OKABE_ITO["bluish_green"],
    OKABE_ITO["vermillion"],
    OKABE_ITO["sky_blue"],
    OKABE_ITO["reddish_purple"],
    "#000000",
    "#8B5A00",
    "#332288",
    "#882255",
)
# Community fills in the graph: pale hues (ColorBrewer Pastel1 / Set3 without yellows), so a
# community is never drawn in a family's saturated colour (families are the marker shapes).
COMMUNITY_COLORS = (
    "#A6CEE3",  # pale blue
    "#FDBF6F",  # pale orange
    "#B2DF8A",  # pale green
    "#FB9A99",  # pink
    "#CAB2D6",  # lavender
    "#CCCCCC",  # light grey
    "#8DD3C7",  # aqua
    "#E5C494",  # sand
)
_EXTRA_MARKERS = ("v", "P", "X", "p", "h", "*")

SEQUENTIAL_CMAP = "viridis"
SEQUENTIAL_CMAP_ALT = "cividis"
DIVERGING_CMAP = "RdBu_r"
OVERLAY_CMAP = "inferno"  # unsigned maps over photos: dark-to-bright reads well on grey
# Wrong predictions: black, bold and marked ✗; no hue, since every hue may be a family's.
WRONG_COLOR = "#000000"
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
    "svg.fonttype": "none",  # real <text> in SVGs: editable in Inkscape / Illustrator
    "svg.hashsalt": "xaicompare",  # deterministic SVG ids -> byte-stable outputs
    "image.cmap": SEQUENTIAL_CMAP,
}

# What saving needs whatever the caller's style: fonts embedded as TrueType / real text,
# deterministic ids, tight bounding box.
SAVE_RC = {key: PAPER_RC[key] for key in ("savefig.bbox", "savefig.pad_inches", "pdf.fonttype",
                                          "ps.fonttype", "svg.fonttype", "svg.hashsalt")}

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def style(**overrides: Any) -> Iterator[None]:
    """The house style (8 pt text for a 3.3 in paper column, no top/right spines, TrueType
    fonts in PDFs, real text in SVGs) for the plotting inside the `with` block; `overrides`
    are further rcParams. Outside it every plotting function follows your rcParams.

        with xc.plotting.style():
            ax = plot_dissimilarity_heatmap(D)
    """
    with matplotlib.rc_context({**PAPER_RC, **overrides}):
        yield


def paper_style(func: F) -> F:
    """Decorator: run `func` under `style()` (the house style) without touching the caller's
    rcParams afterwards."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
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
    """n distinguishable colours: CATEGORICAL up to 10, then tab20 (less safe, but distinct)."""
    if n <= len(CATEGORICAL):
        return list(CATEGORICAL[:n])
    cmap = matplotlib.colormaps["tab20"]
    return [matplotlib.colors.to_hex(cmap(i % 20)) for i in range(n)]


def community_colors(n: int) -> list[str]:
    """n pale fills for communities, none of them a family colour (tab20's pale half after 8)."""
    if n <= len(COMMUNITY_COLORS):
        return list(COMMUNITY_COLORS[:n])
    cmap = matplotlib.colormaps["tab20"]
    return [matplotlib.colors.to_hex(cmap(2 * i % 20 + 1)) for i in range(n)]


def contrast_on_white(color: str | Sequence[float]) -> float:
    """WCAG contrast ratio of `color` against white (1 = invisible, 21 = black)."""
    r, g, b = matplotlib.colors.to_rgb(color)
    channels = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    luminance = 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]
    return 1.05 / (luminance + 0.05)


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
    *,
    tight: bool = True,
) -> list[Path]:
    """Write `fig` once per format next to each other; returns the written paths.

    Vector formats keep text editable (TrueType in PDF, <text> in SVG) and heatmap cells as
    vector quads; PNG is for the HTML report.
    Metadata dates are dropped so that re-running a study gives identical files. `tight`:
    crop to the drawn artists; False keeps the figure's own size (a paper's column width).
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
    with matplotlib.rc_context({**SAVE_RC, "savefig.bbox": "tight" if tight else "standard"}):
        for fmt in (f.lower().lstrip(".") for f in formats):
            path = base.with_name(base.name + "." + fmt)
            metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(fmt)
            # temp file + rename: a kill or a full disk never leaves a truncated figure
            atomic_write(path, lambda handle, fmt=fmt, metadata=metadata: fig.savefig(
                handle, format=fmt, dpi=dpi, metadata=metadata))
            written.append(path)
    progress.note(base.name)  # the report stage's line names the figure it is writing
    return written
