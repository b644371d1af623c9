"""Report sections of explanation atlases: the first images, the depth atlas (Grad-CAM at
several depths: stored maps, computed by engine units when missing) and the images the
models disagree on."""

from __future__ import annotations

import logging

import numpy as np
import torch

from .. import report as rp
from ..attribution.registry import METHODS, method_info
from .contexts import AtlasContext
from .report_common import FigureWriter

log = logging.getLogger("xaicompare")


def atlas_section(ctx: AtlasContext, save: FigureWriter) -> dict | None:
    n = min(ctx.report.atlas_images, len(ctx.images))
    if n == 0:
        return None
    ids = list(ctx.images.ids[:n])
    return {"title": "Explanation atlas", "figures": write_atlas(ctx, ids),
            "text": "One row per model (grouped by family), one column per method. Signed "
                    "maps (IG, KernelSHAP) use a diverging colormap centred at 0; Grad-CAM a "
                    "sequential one. Each map is scaled to its own 99th percentile of |value|."}


def disagreement_ids(ctx: AtlasContext, k: int) -> list[str]:
    """The k images the models disagree on most: first by predicted class (images where every
    model agrees are left out), then by explanation (the first method's dissimilarity)."""
    chosen: list[str] = []
    predictions = ctx.results.disagreement("predictions", missing_ok=True)
    if predictions is not None:
        chosen += [str(i) for i in predictions.loc[predictions["score"] > 0, "id"]]
    first = next(iter(ctx.methods), None)
    explanations = ctx.results.disagreement(f"explanations_{first}", missing_ok=True)
    if explanations is not None:
        chosen += [str(i) for i in explanations["id"]]
    known = set(ctx.images.ids)
    return [i for i in dict.fromkeys(chosen) if i in known][:k]


def disagreement_section(ctx: AtlasContext, save: FigureWriter) -> dict | None:
    ids = disagreement_ids(ctx, ctx.report.disagreement_images)
    if not ids:
        return None
    return {"title": "Disagreement atlas",
            "figures": write_atlas(ctx, ids, prefix="disagreement"),
            "text": "The images the models disagree on most: first those where their "
                    "predicted classes differ most, then those where their explanations differ "
                    f"most (method {next(iter(ctx.methods))}; "
                    "tables/joint/disagreement_*)."}


def depth_section(ctx: AtlasContext, save: FigureWriter) -> dict | None:
    depths = ctx.report.depths
    n = min(ctx.report.depth_images, len(ctx.images))
    if not depths or n == 0:
        return None
    ids = list(ctx.images.ids[:n])
    return {"title": "Depth atlas",
            "figures": write_atlas(ctx, ids, prefix="depth", depths=depths),
            "text": "Grad-CAM at " + ", ".join(f"{d:.0%}" for d in depths) + " of each "
                    "model's depth (the published study's depth experiment), with the other "
                    "methods beside it. Deep layers are coarse (a 1x1 grid gives a constant "
                    "map); shallow layers are sharper but less class-specific."}


def depth_maps(ctx: AtlasContext, images: torch.Tensor, targets: np.ndarray,
               depths: list[float], ids: list[str] | None = None
               ) -> dict[str, dict[float, np.ndarray]]:
    """Grad-CAM maps [B, H, W] per model and depth for the canonical `images` [B, 3, H, W]
    with ids `ids` (default: the study's first B images, the depth atlas's). The maps
    explain the study's targets (its stored logits and target rule), which the atlas passes
    as `targets` [M, B]; a difference is logged.

    Grad-CAM at `layer=depth` is an ordinary method: engine units compute the maps and the
    store keeps them (keyed like every map, the depth in the parameters), so drawing the
    report again reads them and calls no model. A model without a layer at a depth, or whose
    units fail there, is left out of that depth (logged), the others kept."""
    from ..errors import UserError

    ids = list(ctx.images.ids[:len(images)]) if ids is None else list(ids)
    expected = explained_targets(ctx, ids)
    if np.shape(targets) != expected.shape or not np.array_equal(targets, expected):
        # (only where logits are not numbers or tie can the atlas's differ from the engine's)
        log.warning("depth atlas: the maps explain the study's targets (the stored logits' "
                    "class or the label), which differ from the targets given for %d maps",
                    int(np.sum(np.asarray(targets) != expected)) if np.shape(targets)
                    == expected.shape else expected.size)

    out: dict[str, dict[float, np.ndarray]] = {name: {} for name in ctx.models}
    for depth in depths:
        usable = []
        for model in ctx.models:
            try:
                ctx.depth.check(model, depth)  # resolves the layer at that depth
                usable.append(model)
            except UserError as error:  # e.g. no spatial grid there: shown as missing
                log.warning("depth atlas: model '%s' at depth %s: %s", model, depth, error)
        try:
            ctx.depth.compute(usable, depth, ids)
        except UserError:  # one model failed: run them one by one, to keep the others
            for model in list(usable):
                try:
                    ctx.depth.compute([model], depth, ids)
                except UserError as error:
                    log.warning("depth atlas: model '%s' at depth %s: %s", model, depth,
                                error)
                    usable.remove(model)
        for model in usable:
            out[model][depth] = ctx.depth.read(model, depth, ids).astype(np.float32)
    return out


def explained_targets(ctx: AtlasContext, ids: list[str]) -> np.ndarray:
    """The classes the study explains [M, B]: predicted, or the label where it has one."""
    targets = ctx.read_logits(ids=ids).argmax(-1)
    labels = ctx.images.labels
    if ctx.target == "label" and labels is not None:
        index = {image_id: i for i, image_id in enumerate(ctx.images.ids)}
        label_rows = np.asarray(labels)[[index[i] for i in ids]]
        targets = np.where(label_rows >= 0, label_rows[None], targets)
    return targets


CONSENSUS_ROW = "consensus"


def consensus_maps(ctx: AtlasContext, ids: list[str]) -> dict[str, np.ndarray]:
    """Each method's consensus map (mean of the models' maps over max |map|; lenses.py) for
    `ids`, where the compare stage wrote one."""
    out = {}
    for method in ctx.methods:
        stored = ctx.results.consensus_maps(method, missing_ok=True)
        if stored is not None:
            where = {i: k for k, i in enumerate(stored.ids)}
            if all(i in where for i in ids):
                out[method] = stored.maps[[where[i] for i in ids]]
    return out


def write_atlas(ctx: AtlasContext, ids: list[str], prefix: str = "atlas",
                depths: list[float] | None = None) -> list[dict]:
    """Atlas pages (PNG + PDF) for `ids`; with `depths`, Grad-CAM columns per depth first.
    Returns the report's figure entries: one PNG page per image, captioned with its id."""
    index = {image_id: i for i, image_id in enumerate(ctx.images.ids)}
    rows = [index[i] for i in ids]
    images = ctx.load_images(rows)
    known = list(ctx.images.class_names or ())
    logits = ctx.read_logits(ids=ids)  # only the pages' images, not the whole study
    # A model may predict classes the dataset does not name (e.g. an unlabelled folder).
    class_names = [known[k] if k < len(known) else f"class {k}" for k in range(logits.shape[-1])]
    probs = torch.from_numpy(logits).softmax(-1).numpy()
    labels = ctx.images.labels
    maps = {method: ctx.read_maps(method, ids) for method in ctx.methods}
    skip = {method: ctx.not_applicable[method] for method in maps}
    consensus = None if depths else consensus_maps(ctx, ids)
    by_depth = None
    if depths:
        targets = probs.argmax(-1)
        if ctx.target == "label" and labels is not None:
            label_rows = np.asarray(labels)[rows]
            targets = np.where(label_rows >= 0, label_rows[None], targets)
        by_depth = depth_maps(ctx, images, targets, depths, ids)
    page_images, page_maps, predictions, true_labels = {}, {}, {}, {}
    for k, image_id in enumerate(ids):
        page_images[image_id] = images[k].numpy()
        page_maps[image_id] = {name: {method: "not applicable" if name in skip[method]
                                      else maps[method][m, k] for method in maps}
                               for m, name in enumerate(ctx.models)}
        if by_depth is not None:  # Grad-CAM columns per depth, then the stored methods
            page_maps[image_id] = {
                name: {**{f"Grad-CAM {d:.0%}": by_depth[name][d][k] for d in depths
                          if d in by_depth[name]},
                       **{m: v for m, v in row.items() if m != "gradcam"}}
                for name, row in page_maps[image_id].items()}
        if by_depth is None and consensus:  # the committee's map beside each model's
            page_maps[image_id][CONSENSUS_ROW] = {method: consensus[method][k]
                                                  for method in consensus}
        label = None if labels is None else int(labels[rows[k]])
        true_labels[image_id] = class_names[label] if label is not None and label >= 0 else None
        predictions[image_id] = {
            name: (class_names[int(probs[m, k].argmax())], float(probs[m, k].max()),
                   None if label is None or label < 0 else bool(probs[m, k].argmax() == label))
            for m, name in enumerate(ctx.models)}
    signed = {**{m: method_info(m).signed for m in METHODS.names()
                 if method_info(m).signed is not None},
              **{f"Grad-CAM {d:.0%}": False for d in depths or []}}
    families = {**ctx.families, CONSENSUS_ROW: "consensus"}
    paths = rp.write_atlas_pages(page_images, page_maps, predictions, families,
                                 ctx.results.run_dir / "figures" / "atlas", ids=ids,
                                 formats=("png", "pdf"), true_labels=true_labels, signed=signed,
                                 prefix=prefix)
    pngs = [p for p in paths if p.suffix == ".png"]
    return [{"path": p, "caption": f"Image {i}"} for i, p in zip(ids, pngs, strict=True)]
