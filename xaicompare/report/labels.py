"""Point labels that never overlap: measured text boxes, a greedy search over offsets, and a
numbered key beside the axes when the names do not fit among the points."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.text import Text

# offsets (points) tried in order: close first, then farther; 8 directions each
_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_DISTANCES = (4, 9, 16)
_MARKER_HALF = 4.0  # points: half a scatter marker's side


def renderer_of(ax: Axes):
    """A renderer for measuring text (Figures made without pyplot get an Agg canvas)."""
    fig = ax.figure
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def _overlaps(box, others) -> bool:
    return any(box.overlaps(other) for other in others)


def _place(ax: Axes, xy: np.ndarray, texts: Sequence[str], fontsize, renderer) -> list[Text]:
    """Each text at the first offset where it overlaps no placed text, no marker and stays in
    the axes; failing that, at the offset with the least overlap. Returns the artists."""
    points = ax.transData.transform(xy)
    scale = ax.figure.dpi / 72.0
    from matplotlib.transforms import Bbox

    markers = [Bbox.from_extents(*(p - _MARKER_HALF * scale), *(p + _MARKER_HALF * scale))
               for p in points]
    frame = ax.get_window_extent(renderer)
    placed_boxes, artists = [], []
    for k, text in enumerate(texts):
        best, best_cost = None, np.inf
        for distance in _DISTANCES:
            for sx, sy in _DIRECTIONS:
                ha = {1: "left", -1: "right", 0: "center"}[sx]
                va = {1: "bottom", -1: "top", 0: "center"}[sy]
                artist = ax.annotate(text, xy[k], xytext=(sx * distance, sy * distance),
                                     textcoords="offset points", ha=ha, va=va,
                                     fontsize=fontsize, annotation_clip=False)
                artist.set_in_layout(False)  # placed after layout: must not move the axes
                box = artist.get_window_extent(renderer)
                others = placed_boxes + markers[:k] + markers[k + 1:]
                cost = sum(1 for other in others if box.overlaps(other))
                inside = Bbox.intersection(box, frame)
                if inside is None or inside.width < box.width - 0.5 or \
                        inside.height < box.height - 0.5:
                    cost += 0.5  # sticking out of the axes: allowed, but only if nothing else
                if cost < best_cost:
                    if best is not None:
                        best[0].remove()
                    best, best_cost = (artist, box), cost
                else:
                    artist.remove()
                if best_cost == 0:
                    break
            if best_cost == 0:
                break
        artists.append(best[0])
        placed_boxes.append(best[1])
    return artists


def labels_overlap(artists: Sequence[Text], renderer) -> bool:
    boxes = [a.get_window_extent(renderer) for a in artists]
    return any(boxes[i].overlaps(boxes[j])
               for i in range(len(boxes)) for j in range(i + 1, len(boxes)))


def annotate_points(ax: Axes, xy: np.ndarray, labels: Sequence[str],
                    fontsize: float | str = "x-small") -> list[Text]:
    """Label each point so that no two labels overlap (bounding boxes measured by the
    renderer). When the names cannot all be placed, the points get numbers and a key beside
    the axes lists "1  name"; returns the label artists (and the key)."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    if xy.size == 0:
        return []
    labels = [str(label) for label in labels]
    fig = ax.figure
    renderer = renderer_of(ax)
    fig.draw_without_rendering()  # settle the layout before measuring where points land
    artists = _place(ax, xy, labels, fontsize, renderer)
    if not labels_overlap(artists, renderer):
        return artists
    for artist in artists:
        artist.remove()
    key = "\n".join(f"{k + 1}  {label}" for k, label in enumerate(labels))
    key_artist = ax.text(1.03, 1.0, key, transform=ax.transAxes, ha="left", va="top",
                         fontsize=fontsize, linespacing=1.3)
    fig.draw_without_rendering()  # the key takes room: the axes move once more
    numbers = _place(ax, xy, [str(k + 1) for k in range(len(labels))], fontsize, renderer)
    return [*numbers, key_artist]
