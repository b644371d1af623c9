"""What the command line prints around a run: warnings summarised once at the end, and the
line printed when the user stops a run with Ctrl-C.

During a run the terminal's warnings are collected (log.txt still gets every one as it
happens) and printed at the end grouped by kind, each with its count, where it came from
and one sentence on what it means.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LOGGERS = ("xaicompare", "py.warnings")

# (pattern in the warning, what it means for the user's numbers); first match wins.
MEANINGS: tuple[tuple[str, str], ...] = (
    ("Mantel test skipped",
     "the Mantel test correlates explanation dissimilarity with error consistency over "
     "model pairs and needs at least 3 models with both defined; no test, no p-value."),
    ("degenerate",
     "all-zero, constant or non-finite maps or logits carry no information; they are "
     "left out of every pair they are in (counts: tables/degenerate_models.csv)."),
    ("representation similarity skipped",
     "CKA compares the models' penultimate features; it needs 2 models whose classifier "
     "input can be read and at least 4 images, so tables/representation/ is not written."),
    ("error consistency is undefined",
     "kappa is 0/0 when two models are both right (or both wrong) on every image, "
     "common with few images; those pairs are NaN, not 0."),
    ("not applicable",
     "the method does not apply to some models (e.g. rollout needs attention layers); "
     "their maps are NaN and their pairs left out, the other models are compared."),
    ("left out of clustering",
     "a model with undefined dissimilarities cannot be placed in a tree; the others are "
     "clustered without it."),
    ("Louvain not possible",
     "the similarity graph had no positive edge, so every model is its own community."),
    ("clustering skipped",
     "fewer than 2 models had defined dissimilarities, so there is nothing to cluster."),
    ("non-finite",
     "NaN or inf outputs are stored as they are and excluded from the statistics they "
     "would corrupt; check the model and its input size."),
    ("only consistent at resolution 1",
     "python-louvain applies the resolution inconsistently; use "
     "cluster.louvain_backend: networkx to sweep resolutions."),
    ("non-zero diagonal",
     "a model's distance to itself is taken as 0, as scipy's linkage does."),
    ("skipped image",
     "an image that could not be read is left out of the study; the rest is used."),
    ("out of memory",
     "the batch was halved and retried; results are the same, only slower."),
    ("layout",
     "matplotlib could not fit every label with its automatic layout; the figure is "
     "saved as drawn (check it for overlapping text)."),
    ("empty slice|Degrees of freedom|invalid value|divide by zero|All-NaN",
     "numpy met an empty or 0/0 computation (a statistic over pairs or images with no "
     "usable value); the result is NaN and shown as missing, never as a number."),
)

_WARNING_TEXT = re.compile(r"^(?P<file>.*?):(?P<line>\d+): (?P<category>\w+): (?P<message>.*)$",
                           re.S)


@dataclass
class _Group:
    first: str  # the first message of its kind, as printed
    count: int = 0
    sources: list[str] = field(default_factory=list)


def meaning(text: str) -> str | None:
    """The one-sentence reading of a warning (None when there is none)."""
    for pattern, sentence in MEANINGS:
        if re.search(pattern, text):
            return sentence
    return None


class WarningSummary(logging.Handler):
    """Collects WARNING records, grouped by kind, for one summary at the end."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.groups: dict[tuple[str, str], _Group] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno != logging.WARNING:
            return
        try:
            key, text, source = self._describe(record)
        except Exception:  # a summary must never stop a run
            key, text, source = ("", record.getMessage()), record.getMessage(), None
        group = self.groups.setdefault(key, _Group(text))
        group.count += 1
        if source and source not in group.sources:
            group.sources.append(source)

    @staticmethod
    def _describe(record: logging.LogRecord) -> tuple[tuple[str, str], str, str | None]:
        message = record.getMessage()
        if record.name == "py.warnings":  # "file:line: Category: message\n  source line"
            match = _WARNING_TEXT.match(message.strip())
            if match:
                text = match["message"].splitlines()[0].strip()
                category = match["category"]
                source = f"{_short(match['file'])}:{match['line']}"
                return (category, text), f"{category}: {text}", source
            return ("warning", message), message.strip(), None
        # xaicompare's own: one kind per format string ("%s/%s: Mantel test skipped ...")
        return ("log", str(record.msg)), message, None

    def lines(self) -> list[str]:
        """The summary, one entry per kind of warning (empty when there were none)."""
        if not self.groups:
            return []
        total = sum(g.count for g in self.groups.values())
        out = [f"warnings ({total}, {len(self.groups)} kinds; every one is in log.txt):"]
        for group in self.groups.values():
            times = f" (x{group.count})" if group.count > 1 else ""
            where = f" [{', '.join(group.sources[:3])}]" if group.sources else ""
            out.append(f"  - {group.first}{times}{where}")
            reading = meaning(group.first)
            if reading:
                out.append(f"    means: {reading}")
        return out


def _short(path: str) -> str:
    """A source file's path from the package or site-packages on (not the whole path)."""
    parts = Path(path).parts
    for anchor in ("xaicompare", "site-packages"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return "/".join(parts[i + (anchor == "site-packages"):])
    return Path(path).name


@contextlib.contextmanager
def summarised_warnings(live: logging.Handler, echo) -> Iterator[WarningSummary]:
    """Hold back the warnings `live` would print during the block; `echo` the summary at
    its end (also when the block fails or is interrupted). Errors still print live."""
    summary = WarningSummary()
    hold_back = _DropWarnings()
    live.addFilter(hold_back)
    for name in LOGGERS:
        logging.getLogger(name).addHandler(summary)
    try:
        with warnings.catch_warnings():  # Python warnings reach the summary whoever
            warnings.showwarning = _log_warning  # installed showwarning (pytest, Jupyter)
            yield summary
    finally:
        live.removeFilter(hold_back)
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(summary)
        for line in summary.lines():
            echo(line)


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = warnings.formatwarning(message, category, filename, lineno, line)
    logging.getLogger("py.warnings").warning("%s", text)


class _DropWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.WARNING


def interrupted_message(display, run_dir: Path | None, argv: list[str]) -> str:
    """The line printed on Ctrl-C: what is kept and the exact command that resumes."""
    command = shlex.join(["xaicompare", *argv])
    if display is None or run_dir is None:
        return f"interrupted before any result was stored; to start again: {command}"
    where = Path(run_dir).resolve()
    return (f"interrupted ({display.interrupted()}); every finished unit is kept in {where} "
            f"and is not recomputed; resume with: {command}")
