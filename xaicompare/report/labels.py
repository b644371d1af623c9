"""Point labels that avoid each other: a greedy choice among four offsets per label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes

# (dx, dy) in points and the text alignment that puts the label on that side of the point
_CANDIDATES = (
    (4, 3, "left", "bottom"),
    (4, -3, "left", "top"),
    (-4, 3, "right", "bottom"),
    (-4, -3, "right", "top"),
)


def _overlap(a: np.ndarray, boxes: np.ndarray) -> float:
    if boxes.size == 0:
        return 0.0
    w = np.clip(np.minimum(a[2], boxes[:, 2]) - np.maximum(a[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(a[3], boxes[:, 3]) - np.maximum(a[1], boxes[:, 1]), 0, None)
    return float((w * h).sum())


def annotate_points(ax: Axes, xy: np.ndarray, labels: Sequence[str], fontsize: float = 6) -> None:
    """Label each point on the side where its text overlaps the fewest labels and markers.

    Text sizes are estimated (0.6 em per character), in points, from the current data
    transform; good enough to separate the usual handful of close model names.
    """
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    if xy.size == 0:
        return
    ax.autoscale_view()
    ax.apply_aspect()
    scale = 72.0 / ax.figure.dpi  # display pixels -> points
    points = ax.transData.transform(xy) * scale
    marker = 4.0
    marker_boxes = np.column_stack([points - marker, points + marker])
    x_lo, y_lo, x_hi, y_hi = (ax.get_window_extent().extents * scale).tolist()
    placed: list[np.ndarray] = []
    for k, (label, (px, py)) in enumerate(zip(labels, points, strict=True)):
        width, height = 0.6 * fontsize * len(label), 1.2 * fontsize
        others = np.delete(marker_boxes, k, axis=0)
        best, best_cost = _CANDIDATES[0], np.inf
        for candidate in _CANDIDATES:
            dx, dy, ha, va = candidate
            x0 = px + dx if ha == "left" else px + dx - width
            y0 = py + dy if va == "bottom" else py + dy - height
            box = np.array([x0, y0, x0 + width, y0 + height])
            cost = _overlap(box, np.array(placed).reshape(-1, 4)) + _overlap(box, others)
            inside = _overlap(box, np.array([[x_lo, y_lo, x_hi, y_hi]]))
            cost += 2.0 * (width * height - inside)  # text sticking out of the axes is worse
            if cost < best_cost:
                best, best_cost, best_box = candidate, cost, box
            if cost == 0:
                break
        placed.append(best_box)
        dx, dy, ha, va = best
        ax.annotate(
            label,
            xy[k],
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=fontsize,
        )
