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

TEMPLATE_DIR = Path(__file__).parent / "templates"
IMAGE_MIME = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
SECTION_KEYS = {"title", "figures", "tables", "text", "tests"}
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


@dataclass
class Section:
    id: str
    title: str
    paragraphs: list[str]
    figures: list[FigureEntry] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    tests: Table | None = None


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


def _tests_table(tests: Sequence[Mapping]) -> Table:
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
    table = frame_to_table(pd.DataFrame(rows), caption="Statistical tests")
    p_col = table.header.index("p value")
    for row, test in zip(table.rows, tests, strict=True):
        p = test.get("p_value")
        row[p_col].css = "num sig" if p is not None and float(p) < 0.05 else "num"
    return table


def _embed_figure(entry: object) -> FigureEntry:
    caption = None
    if isinstance(entry, Mapping):
        path, caption = entry.get("path"), entry.get("caption")
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
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    # <img> never runs scripts inside an SVG, so embedding SVG this way is safe.
    return FigureEntry(src=f"data:{mime};base64,{data}", alt=path.stem, caption=caption)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48]


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
        else:
            tables.append(frame_to_table(entry))
    tests = raw.get("tests") or []
    return Section(
        id=section_id,
        title=str(raw["title"]),
        paragraphs=_paragraphs(raw.get("text")),
        figures=[_embed_figure(f) for f in raw.get("figures") or []],
        tables=tables,
        tests=_tests_table(tests) if tests else None,
    )


def build_report(
    out_path: str | Path,
    *,
    title: str,
    summary: Mapping[str, object] | None = None,
    sections: Sequence[Mapping[str, object]] = (),
    subtitle: str | None = None,
    generated: str | None = None,
) -> Path:
    """Write one self-contained HTML report and return its path.

    `summary`: run facts (models with families, images, methods with parameters, versions,
    seeds, timings, skipped images, degenerate maps...); DataFrames, dicts, lists or scalars.
    `sections`: dicts with `title` and optional `text` (blank lines split paragraphs),
    `figures` (paths, or {path, caption}; PNG/SVG/JPEG), `tables` (DataFrames, or
    {table, caption}), `tests` ([{name, statistic, p_value, ...}]).
    Section ids are `summary` and `sec-<slug of title>` (made unique), linked from the contents.
    """
    if summary is not None and not isinstance(summary, Mapping):
        raise UserError(f"summary must be a dict, got {type(summary).__name__}")
    used: set[str] = {"summary", "top", "toc"}
    built = [_section(s, k, used) for k, s in enumerate(sections, start=1)]
    toc = [{"id": "summary", "title": "Run summary"}]
    toc += [{"id": s.id, "title": s.title} for s in built]
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
        summary=_summary_blocks(summary or {}),
        sections=built,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_path, lambda handle: handle.write(html.encode("utf-8")))
    return out_path
