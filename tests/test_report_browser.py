"""Render the report in headless Chromium (skipped where /usr/bin/chromium is not installed)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from xaicompare.report import build_report, save_figure

CHROMIUM = Path("/usr/bin/chromium")
# CI (.ci/run installs Chromium) must run these tests, never skip them silently.
if not CHROMIUM.exists() and os.environ.get("CI"):
    raise RuntimeError("CI needs /usr/bin/chromium for the browser tests (apt-get install chromium)")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"
)


def _checker():
    path = Path(__file__).resolve().parents[1] / "scripts" / "check_report_browser.py"
    spec = importlib.util.spec_from_file_location("check_report_browser", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_renders_without_errors_at_desktop_and_narrow_width(tmp_path):
    fig = Figure(figsize=(3, 2))
    fig.add_subplot().plot([0, 1, 2], [2, 0, 1])
    png, svg = save_figure(fig, tmp_path / "fig", formats=("png", "svg"))
    wide = pd.DataFrame([[0.5] * 12], index=["<b>model</b>"], columns=[f"c{i}" for i in range(12)])
    report = build_report(
        tmp_path / "report.html",
        title="<script>alert(1)</script>",
        summary={"models": {"m": "cnn"}, "seeds": {"data": 0}},
        sections=[
            {"title": "Figures", "figures": [png, svg], "tables": [wide]},
            {"title": "Tests", "tests": [{"name": "x", "statistic": 1, "p_value": 0.5}]},
        ],
    )
    shots = tmp_path / "shots"
    problems = _checker().check_report(report, screenshot_dir=shots, screenshot_height=1200)
    assert problems == []
    names = sorted(p.name for p in shots.glob("*.png"))
    assert names == [
        "report_desktop_full.png",
        "report_desktop_top.png",
        "report_narrow_full.png",
        "report_narrow_top.png",
    ]


def test_check_flags_scripts_console_errors_and_missing_sections(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><a href="#gone">x</a><script>console.error("boom")</script>'
        '<img src="https://example.invalid/a.png"></body></html>'
    )
    problems = "\n".join(_checker().check_report(bad))
    assert "<script>" in problems
    assert "external reference" in problems
    assert "boom" in problems  # the console message from Chromium's log
    assert "'gone' missing" in problems


FINDINGS_BACKGROUND = (242, 247, 251)  # section.findings in the report's CSS (#f2f7fb)


def test_story_report_findings_first_with_method_views_at_both_widths(tmp_path):
    """Key findings above the contents (seen in the first screen at 1280 and 400 px), the
    method x method view and the per-method family summary drawn by the real plot
    functions, every finding's link resolving in the rendered page."""
    import numpy as np
    from PIL import Image

    from xaicompare.report import (
        figure_anchor,
        plot_family_test_summary,
        plot_method_agreement,
    )

    agreement = pd.DataFrame(
        [(m, f, a, b, v) for m, f in (("r18", "cnn"), ("vit", "transformer"))
         for (a, b), v in zip([("gradcam", "ig"), ("gradcam", "ks"), ("ig", "ks")],
                              [0.3, 0.5, 0.7], strict=True)],
        columns=["model", "family", "method_a", "method_b", "mean"])
    views = save_figure(plot_method_agreement(agreement, {"r18": "cnn", "vit": "transformer"}),
                        tmp_path / "methods" / "method_agreement", formats=("png",))
    tests = pd.DataFrame({"p_value": [0.87, 0.3], "floor": [0.014, 0.014]},
                         index=["Grad-CAM", "IG"])
    summary = save_figure(plot_family_test_summary(tests), tmp_path / "methods" / "family_tests",
                          formats=("png",))
    findings = [{"text": "Architecture family does not explain how the models explain: "
                         "Grad-CAM p = 0.87, IG p = 0.30; smallest attainable 0.014.",
                 "anchor": figure_anchor(summary[0])},
                {"text": "Methods agree most as IG vs KernelSHAP (0.70).",
                 "anchor": figure_anchor(views[0])}]
    report = build_report(
        tmp_path / "report.html", title="story", findings=findings,
        summary={"versions": {f"lib{i}": "1.0" for i in range(13)}},
        sections=[
            {"title": "Does architecture family explain the structure, method by method?",
             "figures": summary, "tables": [{"table": tests, "reading": "No evidence."}]},
            {"title": "Method × method agreement per model", "figures": views}])
    shots = tmp_path / "shots"
    checker = _checker()
    assert checker.check_report(report, screenshot_dir=shots, screenshot_height=1600) == []
    dom = checker._run_chromium(checker.find_chromium(), ["--dump-dom", report.as_uri()],
                                90).stdout
    order = [dom.index(marker) for marker in ('id="findings"', 'id="toc"',
                                               "<h2>Does architecture family", 'id="summary"')]
    assert order == sorted(order)
    assert "Method × method agreement per model" in dom
    for anchor in (f["anchor"] for f in findings):
        assert f'href="#{anchor}"' in dom and f'id="{anchor}"' in dom
    for width in ("desktop", "narrow"):
        with Image.open(shots / f"report_{width}_top.png") as top:
            pixels = np.asarray(top.convert("RGB"))
        share = (pixels == FINDINGS_BACKGROUND).all(axis=-1).mean()
        assert share > 0.05, f"key findings not in the first screen at {width} width"
