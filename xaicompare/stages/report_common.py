"""Helpers every report section shares: the figure writer, the table reader, anchors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import report as rp
from .paths import figure_path


class FigureWriter:
    """Saves each figure in the configured formats and keeps the PNG for the HTML report."""

    def __init__(self, study) -> None:
        self.study = study
        self.formats = tuple(dict.fromkeys(["png", *study.config.report.formats]))

    def __call__(self, fig, *parts: str) -> Path:
        import matplotlib.pyplot as plt

        paths = rp.save_figure(fig, figure_path(self.study, *parts), formats=self.formats)
        plt.close(getattr(fig, "figure", fig))  # plot functions return an Axes or a Figure
        return next(p for p in paths if p.suffix == ".png")


def read_table(path: Path, index_col=0) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pd.read_csv(path, comment="#", index_col=index_col)


def anchor_of(study, *parts: str) -> str | None:
    """The report id of the figure FigureWriter saved under `parts`, if it was drawn."""
    png = figure_path(study, *parts[:-1], parts[-1] + ".png")
    return rp.figure_anchor(png) if png.is_file() else None


def method_labels(study) -> dict[str, str]:
    """Display name of each of the study's methods (as the method registered it)."""
    from ..attribution.registry import method_info

    return {method: method_info(method).display_name for method in study.config.methods}
