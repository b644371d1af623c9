"""The report's appendix: what was run, on what, with which versions, seeds and timings."""

from __future__ import annotations

import json

import pandas as pd

from .contexts import AtlasContext, RunFacts
from .health import summary_line as degenerate_summary


def run_summary(ctx: AtlasContext, facts: RunFacts) -> dict:
    run_json = ctx.results.run_dir / "run.json"
    run = json.loads(run_json.read_text()) if run_json.exists() else {}
    degenerate = {}
    for method in ctx.methods:
        table = ctx.results.degenerate_maps(method, missing_ok=True)
        if table is not None and len(table):  # a row per (metric, map): count the maps
            degenerate[method] = len(table[["model", "image"]].drop_duplicates())
    return {
        "models": pd.DataFrame([{"model": m, "family": ctx.families[m],
                                 "weights": facts.weights[m]} for m in ctx.models]),
        "images": {"dataset": facts.dataset, "n_images": len(ctx.images),
                   **facts.dataset_options},
        "class_space": class_space_line(ctx.images.class_names or (), facts.class_rules),
        "methods": {name: json.dumps(params) for name, params in ctx.methods.items()},
        "versions": run.get("versions", {}),
        "seeds": {"study": ctx.seed, "dataset subset": facts.dataset_seed},
        "timings": {k: f"{v:.1f} s" for k, v in facts.timings.items()},
        "skipped_images": [f"{path}: {reason}" for path, reason in facts.skipped] or "none",
        "degenerate_maps": degenerate or "none",
        "degenerate_models": degenerate_summary(ctx.results),
        "not_applicable": {method: ", ".join(skip) for method, skip in
                           ctx.not_applicable.items() if skip} or "none",
    }


def class_space_line(class_names, rules) -> str:
    """One line: the classes the study scores in (`class_names`), and how each model's
    outputs were matched (`rules`: (model, rule) pairs)."""
    names = list(class_names)
    if not names:
        return "unlabelled images: each model's own classes"
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    rules = "; ".join(f"{model}: {rule}" for model, rule in rules)
    return (f"{len(names)} classes ({shown}); accuracy and confidence are the softmax over "
            f"these classes' logits only; outputs matched by {rules}")
