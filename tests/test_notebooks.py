"""The tutorial notebooks run top to bottom, offline, and are committed without outputs.

Each notebook is executed by nbclient in a fresh `python3` kernel with cwd = notebooks/
(as Jupyter runs it); any failing cell fails the test with that cell's traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = [
    "01_quickstart.ipynb",
    "02_compare_your_models.ipynb",
    "03_diversity_and_ensembles.ipynb",
]
CELL_TIMEOUT_S = 300  # per cell; a whole notebook takes about a minute on 2 CPU cores


def read(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    nb = read(name)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{name} has no code cells"
    for index, cell in enumerate(code):
        assert cell.outputs == [], f"{name}: code cell {index} has stored outputs"
        assert cell.execution_count is None, f"{name}: code cell {index} has an execution count"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, monkeypatch, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # The kernel is a subprocess with cwd notebooks/: make the checkout importable there
    # even when the package is not installed (PYTHONPATH=. would point at notebooks/).
    repo = str(NOTEBOOKS.parent)
    paths = [repo] + [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(
        os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks write only to tempfile dirs
    nb = read(name)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()
    except CellExecutionError as err:  # the message holds the failing cell and traceback
        pytest.fail(f"{name} failed:\n{err}", pytrace=False)
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells
                 if cell.cell_type == "code" for out in cell.outputs)
    assert images >= 2, f"{name} rendered {images} figure(s); figures must display inline"
