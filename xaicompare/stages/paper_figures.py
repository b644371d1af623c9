"""`<run>/figures/paper/`: the study's paper figures (report.figures_paper) from what the
earlier stages wrote; the report stage calls `write_paper_figures(ctx)`."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..report.figures_paper import PaperInputs
from ..report.figures_paper import write_paper_figures as draw_paper_figures
from .contexts import AtlasContext

log = logging.getLogger("xaicompare")

ATLAS_MODELS = 4  # rows of the atlas excerpt: a paper page fits about this many
ATLAS_METHODS = 3


def _family_tests(ctx: AtlasContext) -> pd.DataFrame | None:
    frames = []
    for method in ctx.methods:
        for metric in ctx.compare.metrics:
            tests = ctx.results.family_tests(method, metric, missing_ok=True)
            if tests is not None:  # the test names as a column, as the figure reads them
                frames.append(tests.reset_index().assign(method=method, metric=metric))
    if not frames:
        return None
    tests = pd.concat(frames, ignore_index=True)
    # too few models or families: the tests are undefined and the figure has nothing to show
    shown = tests["test"].isin(["permanova", "permdisp"]) & tests["p_value"].notna()
    return tests if shown.any() else None


def _atlas(ctx: AtlasContext) -> dict | None:
    """The first image with up to 4 models (one per family first) and 3 methods."""
    import torch

    if len(ctx.images) == 0:
        return None
    image_id = ctx.images.ids[0]
    families = ctx.families
    by_family: dict[str, list[str]] = {}
    for name in ctx.models:
        by_family.setdefault(families[name], []).append(name)
    models = [names[0] for names in by_family.values()]
    models += [m for m in ctx.models if m not in models]
    models = models[:ATLAS_MODELS]
    methods = list(ctx.methods)[:ATLAS_METHODS]
    rows = {name: k for k, name in enumerate(ctx.models)}
    maps = {method: ctx.read_maps(method, [image_id]) for method in methods}
    logits = ctx.read_logits(ids=[image_id])
    probs = torch.from_numpy(logits).softmax(-1).numpy()
    known = list(ctx.images.class_names or ())
    labels = ctx.images.labels
    label = None if labels is None else int(labels[0])

    def class_name(k: int) -> str:
        return known[k] if k < len(known) else f"class {k}"

    return {
        "image": ctx.load_images([0])[0].numpy(),
        "maps": {m: {method: ("not applicable" if m in ctx.not_applicable[method]
                              else maps[method][rows[m], 0]) for method in methods}
                 for m in models},
        "predictions": {m: (class_name(int(probs[rows[m], 0].argmax())),
                            float(probs[rows[m], 0].max()),
                            None if label is None or label < 0
                            else bool(probs[rows[m], 0].argmax() == label)) for m in models},
        "true_label": class_name(label) if label is not None and label >= 0 else None,
    }


def paper_inputs(ctx: AtlasContext) -> PaperInputs:
    """The primary method and metric (the first configured) for the similarity figure."""
    method, metric = next(iter(ctx.methods)), ctx.compare.metrics[0]
    inputs = PaperInputs(families=dict(ctx.families),
                         similarity_title=f"{method} {metric} dissimilarity")
    tree = ctx.results.tree(method, metric, missing_ok=True)
    if tree is not None:
        D = ctx.results.dissimilarity(method, metric)
        inputs.dissimilarity = D.loc[tree.labels, tree.labels]
        inputs.linkage, inputs.linkage_labels = tree.linkage, tree.labels
    inputs.family_tests = _family_tests(ctx)
    inputs.error_consistency = ctx.results.diversity("error_consistency", missing_ok=True)
    inputs.ensembles = ctx.results.diversity("ensembles", missing_ok=True)
    try:
        inputs.atlas = _atlas(ctx)
    except (KeyError, FileNotFoundError, ValueError) as error:  # maps not stored: no excerpt
        log.warning("paper figures: no atlas excerpt (%s)", error)
    return inputs


def write_paper_figures(ctx: AtlasContext) -> list[Path]:
    """Write `<run>/figures/paper/<figure>_<column|page>.<pdf|svg|png>`; returns the paths."""
    folder = ctx.results.run_dir / "figures" / "paper"
    paths = draw_paper_figures(paper_inputs(ctx), folder)
    log.info("paper figures: %d files in %s", len(paths), folder)
    return paths
