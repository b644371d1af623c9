"""The report's appendix: what was run, on what, with which versions, seeds and timings."""

from __future__ import annotations

import json

import pandas as pd

from .health import summary_line as degenerate_summary


def run_summary(study) -> dict:
    run = json.loads((study.run_dir / "run.json").read_text()) \
        if (study.run_dir / "run.json").exists() else {}
    dataset = study.dataset
    degenerate = {}
    for method in study.config.methods:
        table = study.results.degenerate_maps(method, missing_ok=True)
        if table is not None:
            degenerate[method] = len(table)
    return {
        "models": pd.DataFrame([{"model": m.name, "family": m.family, "weights": m.weights_id}
                                for m in study.models]),
        "images": {"dataset": study.config.dataset.name, "n_images": len(dataset),
                   **study.config.dataset.options},
        "class_space": class_space_line(study),
        "methods": {name: json.dumps(params) for name, params in study.config.methods.items()},
        "versions": run.get("versions", {}),
        "seeds": {"study": study.config.seed, "dataset subset": study.config.dataset.seed},
        "timings": {k: f"{v:.1f} s" for k, v in study.result.timings.items()},
        "skipped_images": [f"{path}: {reason}" for path, reason in dataset.skipped] or "none",
        "degenerate_maps": degenerate or "none",
        "degenerate_models": degenerate_summary(study.results),
        "not_applicable": {method: ", ".join(study.not_applicable(method))
                           for method in study.config.methods
                           if study.not_applicable(method)} or "none",
    }


def class_space_line(study) -> str:
    """One line: the classes the study scores in, and how each model's outputs were matched."""
    names = list(study.dataset.class_names)
    if not names:
        return "unlabelled images: each model's own classes"
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    rules = "; ".join(f"{m.model}: {m.rule}" for m in study.class_space)
    return (f"{len(names)} classes ({shown}); accuracy and confidence are the softmax over "
            f"these classes' logits only; outputs matched by {rules}")
