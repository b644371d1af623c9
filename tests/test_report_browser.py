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
