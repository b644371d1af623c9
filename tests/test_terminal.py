"""What the terminal shows around a run: one progress line per stage (restored work shown
as done), warnings summarised once with what they mean, and the Ctrl-C message."""

import io
import logging
import sys
import warnings

import pytest
import yaml

from xaicompare import progress
from xaicompare.cli import TERMINAL_LOG, main
from xaicompare.study import Study
from xaicompare.terminal import WarningSummary, summarised_warnings

STAGES = ("explain", "compare", "cluster", "diversity", "trust")


def tiny_config(tmp_path) -> dict:
    """Three zoo models on 2 shapes images: every analysis stage in a few seconds."""
    return {
        "name": "tiny", "output": str(tmp_path / "run"), "seed": 0,
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 40, "size": 64},
                    "n_images": 2},
        "models": [{"source": "zoo:shapes-resnet"}, {"source": "zoo:shapes-mixer"},
                   {"source": "zoo:shapes-convnext"}],
        "methods": {"gradcam": {}},
        "compare": {"metrics": ["cosine"]},
        "cluster": {"k": 2, "permutations": 9},
        "diversity": {"corruptions": ["gaussian_noise"], "severities": [1]},
        "trust": {"n_resamples": 20, "n_shuffles": 5, "stability_resamples": 10,
                  "faithfulness_images": 2, "faithfulness_steps": 4, "randomization": False},
        "report": {"atlas_images": 1, "formats": ["png"]},
    }


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("terminal")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path)))
    return path


def test_every_stage_prints_one_line_when_not_a_terminal(tiny, capsys):
    study = Study.from_yaml(tiny)
    study.run(STAGES)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.split(":")[0] in STAGES]
    assert [x.split(":")[0] for x in lines] == list(STAGES)  # one line each, in order
    # 3 models x 2 images x (logits + gradcam); the corruption images under diversity
    assert lines[0].startswith("explain: 12/12 maps,")
    assert lines[1].startswith("compare: 2/2 methods")  # gradcam + the representation lens
    assert lines[2].startswith("cluster: 1/1 matrices")
    assert lines[3].startswith("diversity: 5/5 steps")
    assert lines[4].startswith("trust: 4/4 steps")  # bootstrap, stability, intervals, faith.

    # a second run finds everything in the store: shown as done, not as 0/12
    again = Study.from_yaml(tiny)
    again.run(("explain",))
    err = capsys.readouterr().err
    assert "explain: 12/12 maps (12 restored from the store)" in err


def test_on_a_terminal_the_bar_shows_restored_work_as_done(tiny, monkeypatch):
    Study.from_yaml(tiny, progress=False).run(("explain",))  # stored (or already was)
    screen = FakeTTY()
    monkeypatch.setattr(sys, "stderr", screen)
    Study.from_yaml(tiny).run(("explain",))
    final = [x for x in screen.getvalue().replace("\r", "\n").splitlines() if x.strip()][-1]
    assert final.startswith("explain: 100%") and "12/12" in final


def test_quiet_prints_nothing(tiny, capsys):
    Study.from_yaml(tiny, progress=False).run(("explain",))
    assert "explain:" not in capsys.readouterr().err


def test_report_plans_its_sections_up_front_and_takes_every_step(tiny, capsys, monkeypatch):
    """The report's total is known before its first step (so the bar has an ETA) and equals
    the steps it takes; an unchanged report shows them all as restored."""
    from xaicompare.stages import paper_figures
    from xaicompare.stages.report import SECTIONS, STEPS

    Study.from_yaml(tiny, progress=False).run(STAGES)  # stored already, or now
    capsys.readouterr()
    plan, planned = progress.plan, []

    def recording(total, unit="step"):
        planned.append((total, unit, progress.active().current.n))
        plan(total, unit)

    monkeypatch.setattr(progress, "plan", recording)
    paper = []  # the paper figures' step, without their 17 s of drawing at 300 dpi
    monkeypatch.setattr(paper_figures, "write_paper_figures", paper.append)
    study = Study.from_yaml(tiny)
    study.run(("report",))
    assert planned == [(STEPS, "section", 0)] and STEPS == len(SECTIONS) + 2
    assert [ctx.results.run_dir for ctx in paper] == [study.run_dir]  # drawn once, this run's
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("report:"))
    assert line.startswith(f"report: {STEPS}/{STEPS} sections,"), line

    Study.from_yaml(tiny).run(("report",))  # nothing changed: all restored, none redrawn
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("report:"))
    assert line.startswith(f"report: {STEPS}/{STEPS} sections ({STEPS} restored"), line


def test_engine_work_inside_a_planned_stage_gets_its_own_line():
    display = progress.RunDisplay(stream=io.StringIO())
    with display.stage("diversity"):
        progress.plan(3, "step")
        sub = progress.bar(10, desc="corruptions", unit="img")
        sub.restore(4)
        sub.update(6)
        assert (sub.n, sub.restored) == (10, 4)
        progress.step(n=3)
    assert display.finished == [display.finished[0]]
    assert display.finished[0].startswith("diversity: 3/3 steps")


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tiny, capsys, monkeypatch):
    def interrupted(self):
        progress.step()  # some work of the stage is done, then the user presses Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(Study, "compare", interrupted)
    code = main(["run", str(tiny), "--quiet"])
    err = capsys.readouterr().err
    assert code == 130
    assert "Traceback" not in err
    line = next(x for x in err.splitlines() if x.startswith("interrupted"))
    assert "stages finished: explain" in line and "compare stopped at 1" in line
    assert str((tiny.parent / "run").resolve()) in line
    assert line.endswith(f"resume with: xaicompare run {tiny} --quiet")


def test_run_ends_with_one_summary_of_its_warnings(tiny, capsys):
    """2 images: error consistency is 0/0 (a RuntimeWarning with a source line) and the
    Mantel test is skipped; each appears once, counted, with what it means."""
    assert main(["explain", str(tiny), "--quiet"]) == 0
    assert main(["compare", str(tiny), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["diversity", str(tiny), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "WARNING" not in err  # nothing printed live
    summary = err[err.index("warnings ("):].splitlines()
    kappa = [x for x in summary if "error consistency is undefined" in x]
    assert len(kappa) == 1 and kappa[0].strip().startswith("- RuntimeWarning:")
    assert "(x2)" in kappa[0] and "[xaicompare/diversity/pairwise.py:" in kappa[0]
    assert "return labelled" not in err  # the source line itself is not repeated
    mantel = [i for i, x in enumerate(summary) if "Mantel test skipped" in x]
    assert len(mantel) == 1 and summary[mantel[0] + 1].strip().startswith("means: ")


def test_repeated_warnings_are_counted_once_per_kind():
    summary = WarningSummary()
    log = logging.getLogger("test_terminal.repeats")
    log.addHandler(summary)
    log.propagate = False
    try:
        for method in ("gradcam", "ig", "kernelshap"):
            for metric in ("cosine", "rbf", "kappa", "spearman"):
                log.warning("%s/%s: Mantel test skipped (fewer than 3 models)", method, metric)
        log.warning("something else entirely")
        log.error("an error is not a warning: printed live, not summarised")
    finally:
        log.removeHandler(summary)
    lines = summary.lines()
    assert lines[0].startswith("warnings (13, 2 kinds")
    assert "gradcam/cosine: Mantel test skipped" in lines[1] and "(x12)" in lines[1]
    assert lines[2].startswith("    means: the Mantel test")
    assert lines[3] == "  - something else entirely" and len(lines) == 4


def test_python_warnings_are_held_back_and_summarised(capsys):
    live = TERMINAL_LOG  # the CLI's terminal handler (main attaches it once per process)
    attached = live in logging.getLogger("py.warnings").handlers
    logging.getLogger("py.warnings").addHandler(live)
    printed = []
    try:
        with summarised_warnings(live, printed.append):
            import numpy as np

            for _ in range(3):
                with warnings.catch_warnings():
                    warnings.simplefilter("always")
                    np.mean(np.array([]))  # "Mean of empty slice"
    finally:
        if not attached:
            logging.getLogger("py.warnings").removeHandler(live)
    assert capsys.readouterr().err == ""
    assert printed[0].startswith("warnings (")
    empty = [x for x in printed if "Mean of empty slice" in x]
    assert len(empty) == 1 and "RuntimeWarning" in empty[0] and "(x3)" in empty[0]
    assert "numpy met an empty" in printed[printed.index(empty[0]) + 1]
