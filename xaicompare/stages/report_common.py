"""Helpers every report section shares: the figure writer, anchors, method labels."""

from __future__ import annotations

from pathlib import Path

from .. import report as rp
from .contexts import ReportContext


class FigureWriter:
    """Saves each figure in the configured formats and keeps the PNG for the HTML report."""

    def __init__(self, ctx: ReportContext) -> None:
        self.ctx = ctx
        self.formats = tuple(dict.fromkeys(["png", *ctx.report.formats]))

    def __call__(self, fig, *parts: str) -> Path:
        import matplotlib.pyplot as plt

        paths = rp.save_figure(fig, self.ctx.results.figure_path(*parts),
                               formats=self.formats)
        plt.close(getattr(fig, "figure", fig))  # plot functions return an Axes or a Figure
        return next(p for p in paths if p.suffix == ".png")


def anchor_of(ctx: ReportContext, *parts: str) -> str | None:
    """The report id of the figure FigureWriter saved under `parts`, if it was drawn."""
    png = ctx.results.figure_path(*parts[:-1], parts[-1] + ".png")
    return rp.figure_anchor(png) if png.is_file() else None


def method_labels(ctx: ReportContext) -> dict[str, str]:
    """Display name of each of the study's methods (as the method registered it)."""
    from ..attribution.registry import method_info

    return {method: method_info(method).display_name for method in ctx.methods}
