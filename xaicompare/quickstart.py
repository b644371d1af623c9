"""The offline quickstart: the shipped zoo on the synthetic shapes benchmark, end to end."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from .study import Study, StudyResult
from .study_config import parse_config

QUICKSTART_CONFIG = files("xaicompare") / "configs" / "quickstart.yaml"


def quickstart_config(output: str | Path | None = None):
    import yaml

    data = yaml.safe_load(QUICKSTART_CONFIG.read_text())
    if output is not None:
        data["output"] = str(output)
    return parse_config(data)


def run_quickstart(output: str | Path | None = None, progress: bool = True) -> StudyResult:
    """Run every stage of the quickstart study (resuming from its store) and return results."""
    return Study(quickstart_config(output), progress=progress).run()
