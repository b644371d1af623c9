"""One self-contained HTML report: figures inlined as data URIs, inline CSS, no scripts, no
network, every user string escaped by Jinja2's autoescape (plus a CSP that forbids scripts)."""

from __future__ import annotations

import base64
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from ..errors import UserError
from ..store import atomic_write
from .html_images import HTML_MAX_WIDTH, IMAGE_MIME, html_image  # noqa: F401  (re-exported)

TEMPLATE_DIR = Path(__file__).parent / "templates"
SECTION_KEYS = {"title", "figures", "tables", "text", "tests"}
FINDING_KEYS = {"text", "anchor"}
# Summary keys in the order a reader wants them; other keys follow in the caller's order.
SUMMARY_ORDER = (
    "models",
    "images",
    "methods",
    "versions",
    "seeds",
    "timings",
    "skipped_images",
    "degenerate_maps",
)
# The HTML copy of a raster figure: at most this wide (the page is 1120 CSS px; 1600 px
# stays sharp on most high-density screens), WebP quality for photographic pages, and the
# colour count above which a page counts as photographic.
SHORT_LIST = 8  # longer lists fold into a <details> element (no JavaScript needed)
MAX_LIST_ITEMS = 500
LONG_TEXT = 60  # cells longer than this may wrap instead of widening the table


@dataclass
class Cell:
    text: str
    css: str = ""


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    has_index: bool
    caption: str | None = None
    reading: str | None = None  # one line saying what the table shows


@dataclass
class SummaryBlock:
    heading: str
    kind: str  # "table" | "list" | "text"
    table: Table | None = None
    text: str = ""
    preview: str = ""


@dataclass
class FigureEntry:
    src: str
    alt: str
    caption: str | None
    id: str = ""


@dataclass
class Section:
    id: str
    title: str
    paragraphs: list[str]
    figures: list[FigureEntry] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    tests: list[Table] = field(default_factory=list)


def format_value(value: object) -> tuple[str, str]:
    """Text and CSS class for one table cell: numbers right-aligned, 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—", "num"
    if isinstance(value, bool | np.bool_):
        return str(bool(value)), ""
    if isinstance(value, numbers.Integral):
        return str(int(value)), "num"
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isinf(number):
            return ("∞" if number > 0 else "−∞"), "num"
        return f"{number:.4g}", "num"
    text = str(value)
    return text, "long" if len(text) > LONG_TEXT else ""


def format_p_value(p: object) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    p = float(p)  # type: ignore[arg-type]
    return "< 0.0001" if p < 1e-4 else f"{p:.3g}"


def _label(value: object) -> str:
    if isinstance(value, tuple):  # MultiIndex columns
        return " / ".join(str(v) for v in value if str(v) != "")
    return str(value)


def frame_to_table(frame: pd.DataFrame, caption: str | None = None) -> Table:
    """DataFrame -> escaped-later cells; the index is shown unless it is a plain 0..n-1."""
    if not isinstance(frame, pd.DataFrame):
        raise UserError(f"tables must hold pandas DataFrames, got {type(frame).__name__}")
    plain_index = isinstance(frame.index, pd.RangeIndex) and frame.index.name is None
    header = [_label(c) for c in frame.columns]
    if not plain_index:
        index_name = _label(frame.index.name) if frame.index.name is not None else ""
        header = [index_name, *header]
    rows = []
    for index, values in zip(frame.index, frame.itertuples(index=False, name=None), strict=True):
        cells = [Cell(*format_value(v)) for v in values]
        if not plain_index:
            cells = [Cell(_label(index)), *cells]
        rows.append(cells)
    return Table(header=header, rows=rows, has_index=not plain_index, caption=caption)


def _tests_tables(tests: Sequence[Mapping]) -> list[Table]:
    """A list of tests is one table; a list of groups {tests, caption, reading} one table
    per group, each with its one-line reading."""
    if all(isinstance(t, Mapping) and "tests" in t for t in tests):
        tables = []
        for group in tests:
            table = _tests_table(group["tests"], group.get("caption") or "Statistical tests")
            table.reading = group.get("reading")
            tables.append(table)
        return tables
    return [_tests_table(tests)]


def _tests_table(tests: Sequence[Mapping], caption: str = "Statistical tests") -> Table:
    rows = []
    for test in tests:
        if not isinstance(test, Mapping) or "name" not in test:
            raise UserError(f"each test must be a dict with at least 'name', got {test!r}")
        p = test.get("p_value")
        row = {
            "test": test["name"],
            "statistic": test.get("statistic"),
            "p value": format_p_value(p),
        }
        row.update({k: v for k, v in test.items() if k not in ("name", "statistic", "p_value")})
        rows.append(row)
    table = frame_to_table(pd.DataFrame(rows), caption=caption)
    p_col = table.header.index("p value")
    for row, test in zip(table.rows, tests, strict=True):
        p = test.get("p_value")
        row[p_col].css = "num sig" if p is not None and float(p) < 0.05 else "num"
    return table


def figure_anchor(path: str | Path) -> str:
    """The id a figure gets in the report: from its folder and file name, so a finding can
    link to a figure before the report is built (e.g. figures/gradcam/dendrogram_cosine.png
    -> fig-gradcam-dendrogram-cosine)."""
    path = Path(path)
    return "fig-" + _slug(f"{path.parent.name} {path.stem}", 96)


def _embed_figure(entry: object) -> FigureEntry:
    caption, anchor = None, None
    if isinstance(entry, Mapping):
        path, caption, anchor = entry.get("path"), entry.get("caption"), entry.get("anchor")
    else:
        path = entry
    if path is None:
        raise UserError(f"a figure entry needs a path, got {entry!r}")
    path = Path(path)
    mime = IMAGE_MIME.get(path.suffix.lower())
    if mime is None:
        raise UserError(
            f"figure '{path}' has suffix '{path.suffix}'; accepted: {sorted(IMAGE_MIME)}"
        )
    if not path.is_file():
        raise UserError(f"figure file '{path}' does not exist")
    mime, data = html_image(path)
    encoded = base64.b64encode(data).decode("ascii")
    # <img> never runs scripts inside an SVG, so embedding SVG this way is safe.
    return FigureEntry(src=f"data:{mime};base64,{encoded}", alt=path.stem, caption=caption,
                       id=str(anchor) if anchor else figure_anchor(path))


def _slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit]


def _paragraphs(text: object) -> list[str]:
    if text is None:
        return []
    return [p.strip() for p in re.split(r"\n\s*\n", str(text)) if p.strip()]


def _summary_blocks(summary: Mapping[str, object]) -> list[SummaryBlock]:
    keys = [k for k in SUMMARY_ORDER if k in summary]
    keys += [k for k in summary if k not in SUMMARY_ORDER]
    return [_summary_block(str(k), summary[k]) for k in keys]


def _summary_block(key: str, value: object) -> SummaryBlock:
    heading = key.replace("_", " ").capitalize()
    if isinstance(value, pd.DataFrame):
        return SummaryBlock(heading, "table", table=frame_to_table(value))
    if isinstance(value, pd.Series):
        return SummaryBlock(heading, "table", table=frame_to_table(value.to_frame()))
    if isinstance(value, Mapping):
        if not value:
            return SummaryBlock(heading, "text", text="none")
        if all(isinstance(v, Mapping) for v in value.values()):  # e.g. method -> parameters
            frame = pd.DataFrame.from_dict(
                {k: {kk: _short(vv) for kk, vv in v.items()} for k, v in value.items()},
                orient="index",
            )
        else:
            frame = pd.DataFrame(
                {"value": [_short(v) for v in value.values()]}, index=[str(k) for k in value]
            )
        frame.index.name = key[:-1] if key.endswith("s") else key
        return SummaryBlock(heading, "table", table=frame_to_table(frame))
    if isinstance(value, list | tuple | set):
        items = list(value)
        if items and all(isinstance(v, Mapping) for v in items):
            return SummaryBlock(heading, "table", table=frame_to_table(pd.DataFrame(items)))
        if not items:
            return SummaryBlock(heading, "text", text="none")
        if len(items) <= SHORT_LIST:
            return SummaryBlock(heading, "text", text=", ".join(map(str, items)))
        shown = ", ".join(str(v) for v in items[:MAX_LIST_ITEMS])
        more = f" … ({len(items) - MAX_LIST_ITEMS} more)" if len(items) > MAX_LIST_ITEMS else ""
        preview = ", ".join(str(v) for v in items[:3])
        return SummaryBlock(
            heading, "list", text=f"{shown}{more}", preview=f"{len(items)}: {preview}, …"
        )
    return SummaryBlock(heading, "text", text=format_value(value)[0])


def _short(value: object) -> object:
    """Nested containers in a summary cell are shown as compact text."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return value


def _section(raw: object, position: int, used_ids: set[str]) -> Section:
    if not isinstance(raw, Mapping) or "title" not in raw:
        raise UserError(f"section {position} must be a dict with a 'title', got {raw!r:.80}")
    unknown = set(raw) - SECTION_KEYS
    if unknown:
        raise UserError(
            f"section '{raw['title']}' has unknown key(s) {sorted(unknown)}; "
            f"accepted: {sorted(SECTION_KEYS)}"
        )
    base = f"sec-{_slug(str(raw['title'])) or position}"
    section_id, n = base, 2
    while section_id in used_ids:
        section_id, n = f"{base}-{n}", n + 1
    used_ids.add(section_id)
    tables = []
    for entry in raw.get("tables") or []:
        if isinstance(entry, Mapping):
            tables.append(frame_to_table(entry.get("table"), caption=entry.get("caption")))
            tables[-1].reading = entry.get("reading")
        else:
            tables.append(frame_to_table(entry))
    tests = raw.get("tests") or []
    return Section(
        id=section_id,
        title=str(raw["title"]),
        paragraphs=_paragraphs(raw.get("text")),
        figures=[_embed_figure(f) for f in raw.get("figures") or []],
        tables=tables,
        tests=_tests_tables(tests) if tests else [],
    )


@dataclass
class FindingEntry:
    text: str
    anchor: str | None  # id of the figure (or section) it comes from; None: no link


def _findings(findings: Sequence[object], known_ids: set[str]) -> list[FindingEntry]:
    """Findings as {text, anchor} dicts or objects with those attributes; a link to an id
    the report does not hold is dropped rather than left dangling."""
    out = []
    for finding in findings:
        if isinstance(finding, Mapping):
            unknown = set(finding) - FINDING_KEYS
            if unknown or "text" not in finding:
                raise UserError(f"a finding is a dict with 'text' and optional 'anchor', got "
                                f"{finding!r:.80}")
            text, anchor = finding["text"], finding.get("anchor")
        elif hasattr(finding, "text"):
            text, anchor = finding.text, getattr(finding, "anchor", None)
        else:
            raise UserError(f"a finding is a dict with 'text' and optional 'anchor', got "
                            f"{finding!r:.80}")
        out.append(FindingEntry(str(text), anchor if anchor in known_ids else None))
    return out


def build_report(
    out_path: str | Path,
    *,
    title: str,
    summary: Mapping[str, object] | None = None,
    sections: Sequence[Mapping[str, object]] = (),
    subtitle: str | None = None,
    generated: str | None = None,
    findings: Sequence[object] = (),
) -> Path:
    """Write one self-contained HTML report and return its path.

    `findings`: one-sentence key findings ({text, anchor} or report.findings.Finding),
    shown first; `anchor` is the id of the figure a finding comes from (figure_anchor).
    `sections`: dicts with `title` and optional `text` (blank lines split paragraphs),
    `figures` (paths, or {path, caption, anchor}; PNG/SVG/JPEG/WebP), `tables` (DataFrames,
    or {table, caption, reading}), `tests` ([{name, statistic, p_value, ...}], or groups
    [{tests, caption, reading}], one table each).
    `summary`: run facts (models with families, images, methods with parameters, versions,
    seeds, timings, skipped images, degenerate maps...); DataFrames, dicts, lists or
    scalars, shown last as the provenance appendix.
    Section ids are `findings`, `sec-<slug of title>` (made unique) and `summary`, linked
    from the contents; every figure has an id (made unique).
    """
    if summary is not None and not isinstance(summary, Mapping):
        raise UserError(f"summary must be a dict, got {type(summary).__name__}")
    used: set[str] = {"summary", "top", "toc", "findings"}
    built = [_section(s, k, used) for k, s in enumerate(sections, start=1)]
    for section in built:
        for figure in section.figures:
            base, n = figure.id, 2
            while figure.id in used:
                figure.id, n = f"{base}-{n}", n + 1
            used.add(figure.id)
    shown_findings = _findings(findings, used)
    toc = [{"id": "findings", "title": "Key findings"}] if shown_findings else []
    toc += [{"id": s.id, "title": s.title} for s in built]
    toc += [{"id": "summary", "title": "Appendix: provenance"}]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,  # the template is .html.j2, which select_autoescape would miss
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(
        title=str(title),
        subtitle=subtitle,
        generated=generated,
        toc=toc,
        findings=shown_findings,
        summary=_summary_blocks(summary or {}),
        sections=built,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_path, lambda handle: handle.write(html.encode("utf-8")))
    return out_path
