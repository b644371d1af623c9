"""run.json keeps what earlier processes recorded: `xaicompare explain` then `xaicompare
compare` (two processes, two Study objects) leave the explain record and both timings."""

from __future__ import annotations

import json

from xaicompare.study import Study


def config(folder):
    return {
        "name": "metadata", "output": str(folder), "seed": 0,
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 8, "size": 32},
                    "n_images": 2},
        "models": [{"source": "zoo:shapes-resnet"}, {"source": "zoo:shapes-mixer"}],
        "methods": {"gradcam": {}},
        "compare": {"metrics": ["cosine"]},
        "executor": {"threads": 1, "batch_size": 2},
    }


def test_a_later_stage_process_keeps_the_explain_record_and_timings(tmp_path):
    Study.from_dict(config(tmp_path / "run"), progress=False).run(("explain",))
    first = json.loads((tmp_path / "run" / "run.json").read_text())
    assert first["explain"]["computed"] and "explain" in first["timings"]

    Study.from_dict(config(tmp_path / "run"), progress=False).run(("compare",))
    later = json.loads((tmp_path / "run" / "run.json").read_text())
    assert later["explain"] == first["explain"]  # not recomputed, not dropped
    assert set(later["timings"]) >= {"explain", "compare"}
    assert later["timings"]["explain"] == first["timings"]["explain"]
