"""Figures are written like every other file of a run: temp file + rename. A writer that dies
mid-figure leaves the old figure or none, never half of one; the report's fingerprint covers
the figures' own bytes, so a damaged figure is redrawn; stale temp files go on resume."""

from __future__ import annotations

import io

import pytest
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from PIL import Image

from xaicompare.report import save_figure
from xaicompare.study import Study

MODELS = [{"source": "test_resnet", "pretrained": False, "num_classes": 10,
           "class_indices": None, "name": f"m{i}"} for i in range(2)]


def study_dict(tmp_path, formats=("png", "pdf")) -> dict:
    return {"name": "figs", "output": str(tmp_path / "run"), "models": MODELS,
            "dataset": {"name": "shapes", "options": {"split": "test", "n": 6, "size": 32}},
            "methods": {"gradcam": {}}, "compare": {"metrics": ["cosine"]},
            "cluster": {"permutations": 9}, "diversity": {"enabled": False},
            "trust": {"enabled": False},
            "report": {"atlas_images": 1, "depths": [], "disagreement_images": 0,
                       "formats": list(formats)}}


def complete(path) -> bool:
    """Whether a figure file is whole: PNGs decode, PDFs end with %%EOF, SVGs close."""
    data = path.read_bytes()
    if path.suffix == ".png":
        try:
            Image.open(io.BytesIO(data)).load()
        except OSError:
            return False
        return True
    if path.suffix == ".pdf":
        return data.rstrip().endswith(b"%%EOF")
    return data.rstrip().endswith(b"</svg>")


def figures(run_dir) -> dict:
    return {p.relative_to(run_dir): p.read_bytes()
            for p in sorted((run_dir / "figures").rglob("*"))
            if p.is_file() and p.suffix in (".png", ".pdf", ".svg")}


def temporaries(run_dir) -> list:
    return [p for p in run_dir.rglob("*.tmp")]


def run(tmp_path, **kwargs):
    return Study.from_dict(study_dict(tmp_path, **kwargs), progress=False).run()


@pytest.fixture
def failing_savefig(monkeypatch):
    """Figure.savefig that writes half the figure, then fails (a kill, a full disk)."""
    real = Figure.savefig
    calls = {"n": 0, "fail_at": None}

    def savefig(self, fname, *args, **kwargs):
        if isinstance(fname, PdfPages):  # a page of a book: the book is written whole
            return real(self, fname, *args, **kwargs)
        calls["n"] += 1
        if calls["fail_at"] is None or calls["n"] < calls["fail_at"]:
            return real(self, fname, *args, **kwargs)
        buffer = io.BytesIO()
        real(self, buffer, *args, **kwargs)
        data = buffer.getvalue()
        if hasattr(fname, "write"):
            fname.write(data[: len(data) // 2])
        else:
            with open(fname, "wb") as handle:
                handle.write(data[: len(data) // 2])
        raise OSError("simulated failure half-way through a figure")

    calls["install"] = lambda: monkeypatch.setattr(Figure, "savefig", savefig)
    return calls


def test_a_writer_failing_mid_figure_leaves_no_truncated_figure(tmp_path, failing_savefig):
    run(tmp_path)
    before = figures(tmp_path / "run")
    assert before and all(complete(tmp_path / "run" / p) for p in before)
    # a report option changes (svg added): the redraw fails half-way through its 3rd figure
    failing_savefig["install"]()
    failing_savefig["fail_at"] = 3
    with pytest.raises(OSError, match="simulated failure"):
        run(tmp_path, formats=("png", "pdf", "svg"))
    after = figures(tmp_path / "run")
    for path, data in after.items():
        assert complete(tmp_path / "run" / path), path  # old or new, never half
        if path.suffix != ".svg":
            assert data == before[path], path  # redrawn to the same bytes, or untouched
    assert temporaries(tmp_path / "run") == []
    # the option is reverted: the next run must not keep a half-drawn report
    failing_savefig["fail_at"] = None
    result = run(tmp_path)
    assert result.report is not None and figures(tmp_path / "run").keys() >= before.keys()
    assert all(complete(tmp_path / "run" / p) for p in figures(tmp_path / "run"))


def test_a_damaged_figure_is_redrawn_though_nothing_else_changed(tmp_path, caplog):
    run(tmp_path)
    before = figures(tmp_path / "run")
    victim = next(p for p in before if p.suffix == ".pdf")
    (tmp_path / "run" / victim).write_bytes(before[victim][:100])  # as an in-place kill did
    caplog.set_level("INFO", logger="xaicompare")
    run(tmp_path)
    assert "report unchanged" not in caplog.text
    assert figures(tmp_path / "run") == before
    caplog.clear()
    run(tmp_path)  # now whole: the report is not redrawn again
    assert "report unchanged" in caplog.text


def test_stale_temporaries_anywhere_in_the_run_folder_are_removed_on_resume(tmp_path):
    run_dir = tmp_path / "run"  # as a killed run left it
    stale = [run_dir / "tables" / "similarity" / "gradcam" / ".cosine_mean.csv.4242.tmp",
             run_dir / "figures" / "gradcam" / ".dendrogram_cosine.png.4242.tmp",
             run_dir / "arrays" / "similarity" / ".gradcam__cosine.npz.4242.tmp",
             run_dir / ".manifest.json.4242.tmp", run_dir / "store" / "logits" / ".x.4242.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    keep = run_dir / "figures" / "notes.tmp"  # not a temp file of ours: left alone
    keep.write_text("mine")
    run(tmp_path)
    assert [p for p in stale if p.exists()] == []
    assert keep.read_text() == "mine"


def test_save_figure_never_leaves_half_a_file(tmp_path, failing_savefig):
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "f", formats=("png",))
    whole = (tmp_path / "f.png").read_bytes()
    failing_savefig["install"]()
    failing_savefig["fail_at"] = 1
    with pytest.raises(OSError):
        save_figure(fig, tmp_path / "f", formats=("png",))
    assert (tmp_path / "f.png").read_bytes() == whole
    assert list(tmp_path.glob(".*")) == []
