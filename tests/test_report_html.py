"""The HTML report: self-contained, escaped, with the expected sections and content."""

from __future__ import annotations

import base64
import io
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


def _pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=float)


def test_figures_are_embedded_faithfully_and_smaller(tmp_path, figure_files):
    """SVG byte for byte; a plot's PNG as a palette PNG that looks the same (the file on
    disk keeps its full quality)."""
    parsed = _parse(_report(tmp_path, figure_files).read_text(encoding="utf-8"))
    images = [a for t, a in parsed.tags if t == "img"]
    assert len(images) == 2  # the hostile strings added no <img>
    embedded = base64.b64decode(images[0]["src"].removeprefix("data:image/png;base64,"))
    original = figure_files[0].read_bytes()
    assert len(embedded) <= len(original)
    a, b = _pixels(embedded), _pixels(original)
    assert a.shape == b.shape and np.abs(a - b).mean() < 1.0 and np.abs(a - b).max() < 40
    svg = images[1]["src"].removeprefix("data:image/svg+xml;base64,")
    assert base64.b64decode(svg) == figure_files[1].read_bytes()


def test_photographic_pages_become_webp_and_wide_ones_are_scaled_down(tmp_path):
    from PIL import Image

    from xaicompare.report.html import HTML_MAX_WIDTH, html_image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:960, 0:2000].astype(float)
    photo = np.stack([128 + 100 * np.sin(x / 37), 128 + 100 * np.cos(y / 23),
                      (x + y) / 12], axis=-1) + rng.normal(0, 3, (960, 2000, 3))
    path = tmp_path / "atlas.png"
    # 2000 px wide, photo-like: smooth, thousands of colours
    Image.fromarray(photo.clip(0, 255).astype(np.uint8)).save(path)
    mime, data = html_image(path)
    assert mime == "image/webp" and len(data) < path.stat().st_size / 4
    with Image.open(io.BytesIO(data)) as image:
        assert image.width == HTML_MAX_WIDTH
        assert image.height == round(960 * HTML_MAX_WIDTH / 2000)


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
    assert ids == [  # provenance is the appendix, at the end
        "sec-explanation-similarity",
        "sec-explanation-similarity-2",
        "sec-script-alert-1-script",
        "summary",
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


def test_findings_come_first_and_link_to_their_figures(tmp_path, figure_files):
    from xaicompare.report import figure_anchor
    from xaicompare.report.findings import Finding

    anchor = figure_anchor(figure_files[0])
    findings = [Finding(f"Family explains nothing {EVIL}.", anchor),
                {"text": "A finding whose figure was not drawn.", "anchor": "fig-missing"}]
    groups = [{"caption": "Family tests", "reading": "PERMANOVA: no evidence.",
               "tests": [{"name": "permanova", "statistic": 0.5, "p_value": 0.8}]},
              {"caption": "Mantel", "tests": [{"name": "m", "statistic": 0.1, "p_value": 0.01}]}]
    html = _report(tmp_path, figure_files, findings=findings, sections=[
        {"title": "Figures", "figures": figure_files, "tests": groups,
         "tables": [{"table": pd.DataFrame({"a": [1]}), "reading": "One row."}]}]
    ).read_text(encoding="utf-8")
    parsed = _parse(html)
    ids = [a["id"] for t, a in parsed.tags if t in ("section", "nav")]
    assert ids == ["findings", "toc", "sec-figures", "summary"]
    assert html.index('id="findings"') < html.index('id="toc"')  # before the contents
    links = [a["href"] for t, a in parsed.tags if t == "a"]
    assert f"#{anchor}" in links and "#fig-missing" not in links  # dangling link dropped
    figure_ids = [a["id"] for t, a in parsed.tags if t == "figure"]
    assert figure_ids[0] == anchor and len(set(figure_ids)) == 2
    assert EVIL not in html and "Family explains nothing" in html
    text = "".join(parsed.text)
    assert "PERMANOVA: no evidence." in text and "One row." in text
    assert [a.get("class") for t, a in parsed.tags if t == "p"].count("reading") == 2
