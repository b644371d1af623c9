"""The HTML report: self-contained, escaped, with the expected sections and content."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from xaicompare.errors import UserError
from xaicompare.report import build_report, save_figure

EVIL = "<script>alert(1)</script>"
EVIL_ATTR = '"><img src=x onerror=alert(2)>'


class _Collector(HTMLParser):
    """Tags and attributes as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


@pytest.fixture
def figure_files(tmp_path):
    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot().plot([0, 1], [1, 0])
    return save_figure(fig, tmp_path / "line", formats=("png", "svg"))


def _report(tmp_path, figure_files, **overrides):
    summary = {
        "models": {"resnet18": {"family": "cnn"}, EVIL: {"family": EVIL_ATTR}},
        "images": [f"img_{i}.jpg" for i in range(20)],
        "methods": {"integrated_gradients": {"n_steps": 64, "baseline": "black"}},
        "seeds": {"data": 0},
        "timings": pd.DataFrame({"stage": ["explain"], "seconds": [12.345678]}),
        "skipped_images": [{"image": EVIL_ATTR, "reason": "unreadable"}],
        "degenerate_maps": [],
    }
    table = pd.DataFrame(
        {EVIL: [0.123456, np.nan], "name": [EVIL_ATTR, "ok"]},
        index=pd.Index([EVIL, "b"], name="model"),
    )
    sections = [
        {
            "title": "Explanation similarity",
            "text": f"First.\n\nSecond {EVIL}",
            "figures": [figure_files[0], {"path": figure_files[1], "caption": EVIL_ATTR}],
            "tables": [table, {"table": table, "caption": EVIL}],
            "tests": [
                {"name": "Mantel", "statistic": 0.4, "p_value": 0.00001},
                {"name": EVIL, "statistic": 0.1, "p_value": 0.5},
            ],
        },
        {"title": "Explanation similarity", "text": "same title twice"},
        {"title": EVIL},
    ]
    kwargs = {"title": f"Study {EVIL}", "summary": summary, "sections": sections}
    kwargs.update(overrides)
    return build_report(tmp_path / "out" / "report.html", **kwargs)


def test_report_is_self_contained(tmp_path, figure_files):
    html = _report(tmp_path, figure_files).read_text(encoding="utf-8")
    parsed = _parse(html)
    assert not [t for t, _ in parsed.tags if t == "script"]
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), (tag, value[:60])
    assert not re.search(r"https?://", html.replace("http-equiv", ""))
    csp = [a for t, a in parsed.tags if t == "meta" and a.get("http-equiv")]
    assert "default-src 'none'" in csp[0]["content"]


def test_figures_are_embedded_byte_for_byte(tmp_path, figure_files):
    parsed = _parse(_report(tmp_path, figure_files).read_text(encoding="utf-8"))
    images = [a for t, a in parsed.tags if t == "img"]
    assert len(images) == 2  # the hostile strings added no <img>
    png = images[0]["src"].removeprefix("data:image/png;base64,")
    assert base64.b64decode(png) == figure_files[0].read_bytes()
    svg = images[1]["src"].removeprefix("data:image/svg+xml;base64,")
    assert base64.b64decode(svg) == figure_files[1].read_bytes()


def test_hostile_strings_are_escaped_everywhere(tmp_path, figure_files):
    html = _report(tmp_path, figure_files).read_text(encoding="utf-8")
    assert EVIL not in html and EVIL_ATTR not in html
    assert "onerror=alert(2)>" not in html
    parsed = _parse(html)
    text = "".join(parsed.text)
    # the strings survive as visible text: in title, model table, table cells, headers, tests
    assert text.count(EVIL) >= 7
    assert text.count(EVIL_ATTR) >= 4
    assert all("onerror" not in attrs for _, attrs in parsed.tags)


def test_sections_toc_and_tables(tmp_path, figure_files):
    html = _report(tmp_path, figure_files).read_text(encoding="utf-8")
    parsed = _parse(html)
    ids = [a["id"] for t, a in parsed.tags if t == "section"]
    assert ids == [
        "summary",
        "sec-explanation-similarity",
        "sec-explanation-similarity-2",
        "sec-script-alert-1-script",
    ]
    toc = [a["href"] for t, a in parsed.tags if t == "a"]
    assert toc == [f"#{i}" for i in ids]
    text = "".join(parsed.text)
    assert "0.1235" in text and "12.35" in text  # 4 significant digits
    assert "< 0.0001" in text
    assert "—" in text  # NaN and missing parameters
    assert "Integrated_gradients" not in text and "integrated_gradients" in text
    assert "20: img_0.jpg" in text  # long lists fold into <details>
    assert [t for t, _ in parsed.tags].count("details") == 1
    assert ">First.</p>" in html and "<p>Second " in html
    assert 'class="num sig"' in html  # the significant test is highlighted


def test_bad_inputs_name_the_problem(tmp_path, figure_files):
    with pytest.raises(UserError, match="does not exist"):
        _report(tmp_path, figure_files, sections=[{"title": "x", "figures": ["nope.png"]}])
    with pytest.raises(UserError, match="suffix"):
        _report(tmp_path, figure_files, sections=[{"title": "x", "figures": ["a.bmp"]}])
    with pytest.raises(UserError, match="figurs"):
        _report(tmp_path, figure_files, sections=[{"title": "x", "figurs": []}])
    with pytest.raises(UserError, match="DataFrame"):
        _report(tmp_path, figure_files, sections=[{"title": "x", "tables": [[1, 2]]}])
