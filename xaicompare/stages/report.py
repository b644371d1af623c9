"""Report stage: figures (PNG + vector), explanation atlases and one self-contained HTML file.

Reads only what earlier stages wrote (tables/, arrays/, the store), so it runs on its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import report as rp
from ..attribution.registry import METHODS, method_info
from ..cluster import read_family_tests
from ..store import atomic_write
from . import paper_figures, report_lenses
from .cluster import read_dissimilarity
from .health import summary_line as degenerate_summary
from .paths import array_path, figure_path, table_path
from .report_lenses import lenses_section

log = logging.getLogger("xaicompare")

FINGERPRINT_NAME = "report.fingerprint"


class FigureWriter:
    """Saves each figure in the configured formats and keeps the PNG for the HTML report."""

    def __init__(self, study) -> None:
        self.study = study
        self.formats = tuple(dict.fromkeys(["png", *study.config.report.formats]))

    def __call__(self, fig, *parts: str) -> Path:
        import matplotlib.pyplot as plt

        paths = rp.save_figure(fig, figure_path(self.study, *parts), formats=self.formats)
        plt.close(getattr(fig, "figure", fig))  # plot functions return an Axes or a Figure
        return next(p for p in paths if p.suffix == ".png")


def _read(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pd.read_csv(path, comment="#", index_col=0)


def metric_note(metric: str) -> str:
    """What a reader needs to read a metric's numbers, from the metric's own declaration."""
    from ..compare import METRICS

    spec = METRICS.get(metric)
    note = spec.properties.describe() if spec.properties else ""
    if not (spec.properties and spec.properties.sign_aware):
        note += ", ignores sign"
    if spec.normalization:
        note += f", on the maps as they are (normalisation '{spec.normalization}')"
    return note


def similarity_sections(study, save: FigureWriter) -> list[dict]:
    """Per method: a heatmap, tests and mean table per metric; structure plots for the first."""
    sections = []
    primary = study.config.compare.metrics[0]
    for method in study.config.methods:
        figures, tables, tests, readings = [], [], [], []
        for metric in study.config.compare.metrics:
            D = read_dissimilarity(study, method, metric)
            tree_path = array_path(study, "cluster", f"{method}__{metric}")
            tree = np.load(tree_path) if tree_path.exists() else None
            order = None if tree is None else [str(x) for x in tree["order"]]
            if order is not None:
                D = D.loc[order, order]  # models with undefined entries were left out
            if metric == primary:
                figures += structure_figures(study, save, method, metric, D, tree)
            figures.append({"path": save(rp.plot_dissimilarity_heatmap(
                D, study.families, order=order, title=f"{method} / {metric}"), method,
                f"dissimilarity_{metric}"),
                "caption": f"Dissimilarity sqrt((1 - mean)^2 + std^2) of per-image {metric} "
                           f"similarity ({metric_note(metric)}), ordered by the dendrogram."})
            family_tests = _read(table_path(study, "cluster", method, f"{metric}_tests"))
            if family_tests is not None:
                tests += [{"name": f"{metric}: {name}", "statistic": row["statistic"],
                           "p_value": row["p_value"]} for name, row in family_tests.iterrows()]
                reading = family_tests_in_words(family_tests)
                if reading:
                    readings.append(f"Family tests, {metric}: {reading}")
            mean = _read(table_path(study, "similarity", method, f"{metric}_mean"))
            tables.append({"table": mean.round(3),
                           "caption": f"Mean per-image {metric} similarity "
                                      f"({metric_note(metric)})"})
        per_image = np.load(array_path(study, "similarity", f"{method}__{primary}"))
        figures.append({"path": save(_histograms(per_image), method, "similarity_histograms"),
                        "caption": f"Per-image {primary} similarity for every model pair."})
        sections.append({"title": f"Explanation similarity: {method}",
                         "text": f"Parameters: {json.dumps(study.config.methods[method])}. "
                                 f"Maps normalised with '{study.config.compare.normalization}' "
                                 f"at '{study.config.compare.resolution}' resolution before "
                                 "comparison. " + " ".join(readings),
                         "figures": figures, "tables": tables, "tests": tests})
    return sections


def family_tests_in_words(tests: pd.DataFrame) -> str | None:
    """The PERMANOVA / PERMDISP pair of a tests table in words (None if either is missing)."""
    if not {"permanova", "permdisp"} <= set(tests.index):
        return None
    permdisp = tests.loc["permdisp"]
    dispersion = permdisp.get("dispersion")
    dispersion = json.loads(dispersion) if isinstance(dispersion, str) else None
    exact = all(str(tests.loc[t].get("exact")) == "True" for t in ("permanova", "permdisp"))
    n_groupings = int(permdisp["n_permutations"]) if exact else None
    return read_family_tests(float(tests.loc["permanova", "p_value"]),
                             float(permdisp["p_value"]), dispersion, n_groupings)


def structure_figures(study, save, method: str, metric: str, D, tree) -> list[dict]:
    """Dendrogram, Louvain community graph and MDS embedding of one dissimilarity matrix."""
    figures = []
    if tree is not None:
        figures.append({"path": save(rp.plot_dendrogram(
            tree["linkage"], [str(x) for x in tree["labels"]], study.families,
            title=f"{method} / {metric}"), method, f"dendrogram_{metric}"),
            "caption": f"Dendrogram ({study.config.cluster.method} linkage) of the {metric} "
                       f"dissimilarity of {method} maps."})
    assignments = _read(table_path(study, "cluster", method, f"{metric}_assignments"))
    if assignments is not None and len(D) >= 2:
        figures.append({"path": save(rp.plot_community_graph(
            D.clip(upper=1.0).rsub(1.0), assignments["community"].to_dict(), study.families,
            seed=study.config.seed, title=f"Louvain communities, {method} / {metric}"), method,
            f"communities_{metric}"), "caption": "Edge width: 1 - dissimilarity."})
    coords = _read(table_path(study, "cluster", method, f"{metric}_mds"))
    if coords is not None:
        figures.append({"path": save(rp.plot_embedding(
            coords, study.families, title=f"MDS, {method} / {metric}"), method, f"mds_{metric}"),
            "caption": "Classical MDS of the dissimilarity matrix."})
    return figures


def _histograms(per_image):
    names = [str(x) for x in per_image["names"]]
    values = per_image["per_image"]
    pairs = {(names[i], names[j]): values[i, j]
             for i in range(len(names)) for j in range(i + 1, len(names))}
    return rp.plot_similarity_histograms(pairs)


def diversity_section(study, save: FigureWriter) -> dict | None:
    metrics = _read(table_path(study, "diversity", "model_metrics"))
    if metrics is None:
        return None
    figures, tables, tests = [], [metrics], []
    for name, title, center in (("error_consistency", "Error consistency (kappa)", 0.0),
                                ("zero_one_components",
                                 "Row model right where column model wrong", None)):
        M = _read(table_path(study, "diversity", name))
        if M is not None:
            figures.append({"path": save(rp.plot_matrix_heatmap(M, title=title, center=center),
                                         "diversity", name), "caption": title})
    ensembles = _read(table_path(study, "diversity", "ensembles"))
    if ensembles is not None and len(ensembles):
        figures.append({"path": save(rp.plot_gain_vs_diversity(ensembles), "diversity",
                                     "gain_vs_diversity"),
                        "caption": "Ensemble accuracy gain over its best member vs the "
                                   "members' 0/1 diversity."})
        tables.append({"table": ensembles.round(3), "caption": "Softmax-averaged ensembles"})
    retention = _read(table_path(study, "diversity", "retention"))
    if retention is not None:
        figures.append({"path": save(rp.plot_retention_curves(
            retention, ensembles=["ensemble(all)"]), "diversity", "retention"),
            "caption": "Accuracy retention (corrupted / clean accuracy) over severity."})
    cue = _read(table_path(study, "diversity", "cue_conflict"))
    if cue is not None:
        figures.append({"path": save(rp.plot_cue_conflict(cue), "diversity", "cue_conflict"),
                        "caption": "Cue-conflict images (object texture cued with another "
                                   "class in the cue-conflict training split): does each "
                                   "model decide by shape or by texture?"})
        tables.append({"table": cue.round(3), "caption": "Texture reliance on cue-conflict "
                       "images (shape bias = shape / (shape + texture) decisions)"})
    reliability = _read(table_path(study, "diversity", "reliability"))
    if reliability is not None:
        figures.append({"path": save(rp.plot_reliability_diagram(reliability), "diversity",
                                     "reliability"), "caption": "Reliability diagram."})
    mantel = _read(table_path(study, "joint", "mantel"))
    if mantel is not None:
        for _, row in mantel.iterrows():
            tests.append({"name": f"Mantel: {row['method']}/{row['metric']} dissimilarity vs "
                                  "error consistency", "statistic": row["r"],
                          "p_value": row["p_value"]})
    return {"title": "Prediction diversity", "figures": figures, "tables": tables,
            "tests": tests,
            "text": "Do models that explain alike also err alike? The Mantel tests correlate "
                    "explanation dissimilarity with error consistency (one-sided: a negative "
                    "r means models with similar explanations make the same mistakes)."}


def localisation_section(study, save: FigureWriter) -> dict | None:
    table = _read(table_path(study, "localisation"))
    if table is None:
        return None
    table = table.reset_index(drop=True) if "model" in table.columns else table.reset_index()
    return {"title": "Localisation against object masks",
            "text": "Pointing game: share of images whose map maximum lies on the object. "
                    "Mass in mask: share of positive attribution on the object. The object's "
                    "area is the chance level for both.",
            "figures": [{"path": save(rp.plot_localisation(table), "localisation"),
                         "caption": "Localisation per model and method."}],
            "tables": [table.round(3)]}


def atlas_section(study, save: FigureWriter) -> dict | None:
    n = min(study.config.report.atlas_images, len(study.dataset))
    if n == 0:
        return None
    ids = list(study.dataset.ids[:n])
    return {"title": "Explanation atlas", "figures": write_atlas(study, ids),
            "text": "One row per model (grouped by family), one column per method. Signed "
                    "maps (IG, KernelSHAP) use a diverging colormap centred at 0; Grad-CAM a "
                    "sequential one. Each map is scaled to its own 99th percentile of |value|."}


def disagreement_ids(study, k: int) -> list[str]:
    """The k images the models disagree on most: first by predicted class (images where every
    model agrees are left out), then by explanation (the first method's dissimilarity)."""
    chosen: list[str] = []
    predictions = _read(table_path(study, "joint", "disagreement_predictions"))
    if predictions is not None:
        chosen += [str(i) for i in predictions.loc[predictions["score"] > 0, "id"]]
    first = next(iter(study.config.methods), None)
    explanations = _read(table_path(study, "joint", f"disagreement_explanations_{first}"))
    if explanations is not None:
        chosen += [str(i) for i in explanations["id"]]
    known = set(study.dataset.ids)
    return [i for i in dict.fromkeys(chosen) if i in known][:k]


def disagreement_section(study, save: FigureWriter) -> dict | None:
    ids = disagreement_ids(study, study.config.report.disagreement_images)
    if not ids:
        return None
    return {"title": "Disagreement atlas",
            "figures": write_atlas(study, ids, prefix="disagreement"),
            "text": "The images the models disagree on most: first those where their "
                    "predicted classes differ most, then those where their explanations differ "
                    f"most (method {next(iter(study.config.methods))}; "
                    "tables/joint/disagreement_*)."}


def depth_section(study, save: FigureWriter) -> dict | None:
    depths = study.config.report.depths
    n = min(study.config.report.depth_images, len(study.dataset))
    if not depths or n == 0:
        return None
    ids = list(study.dataset.ids[:n])
    return {"title": "Depth atlas",
            "figures": write_atlas(study, ids, prefix="depth", depths=depths),
            "text": "Grad-CAM at " + ", ".join(f"{d:.0%}" for d in depths) + " of each "
                    "model's depth (the published study's depth experiment), with the other "
                    "methods beside it. Deep layers are coarse (a 1x1 grid gives a constant "
                    "map); shallow layers are sharper but less class-specific."}


def depth_maps(study, images: torch.Tensor, targets: np.ndarray,
               depths: list[float]) -> dict[str, dict[float, np.ndarray]]:
    """Grad-CAM maps [B, H, W] per model and depth for canonical `images` [B, 3, H, W] and
    per-model `targets` [M, B], computed here (a few images)."""
    from ..attribution import explain
    from ..errors import UserError

    out: dict[str, dict[float, np.ndarray]] = {}
    for m, model in enumerate(study.models):
        device = next(model.parameters()).device
        target = torch.as_tensor(targets[m], device=device)
        out[model.name] = {}
        for depth in depths:
            try:
                maps = explain(model, images.to(device), "gradcam", target, layer=depth)
            except UserError as error:  # e.g. no spatial grid at that depth: shown as missing
                log.warning("depth atlas: model '%s' at depth %s: %s", model.name, depth, error)
                continue
            out[model.name][depth] = maps.detach().float().cpu().numpy()
    return out


CONSENSUS_ROW = "consensus"


def consensus_maps(study, ids: list[str]) -> dict[str, np.ndarray]:
    """Each method's consensus map (mean of the models' maps over max |map|; lenses.py) for
    `ids`, where the compare stage wrote one."""
    out = {}
    for method in study.config.methods:
        path = array_path(study, "consensus", method)
        if path.exists():
            stored = np.load(path)
            where = {str(i): k for k, i in enumerate(stored["ids"])}
            if all(i in where for i in ids):
                out[method] = stored["consensus"][[where[i] for i in ids]]
    return out


def write_atlas(study, ids: list[str], prefix: str = "atlas",
                depths: list[float] | None = None) -> list[dict]:
    """Atlas pages (PNG + PDF) for `ids`; with `depths`, Grad-CAM columns per depth first.
    Returns the report's figure entries: one PNG page per image, captioned with its id."""
    index = {image_id: i for i, image_id in enumerate(study.dataset.ids)}
    rows = [index[i] for i in ids]
    images = study.dataset.load(rows)
    known = list(study.dataset.class_names)
    logits = study.read_logits(ids=ids)  # only the pages' images, not the whole study
    # A model may predict classes the dataset does not name (e.g. an unlabelled folder).
    class_names = [known[k] if k < len(known) else f"class {k}" for k in range(logits.shape[-1])]
    probs = torch.from_numpy(logits).softmax(-1).numpy()
    labels = study.dataset.labels
    maps = {method: study.read_maps(method, ids) for method in study.config.methods}
    skip = {method: study.not_applicable(method) for method in maps}
    consensus = None if depths else consensus_maps(study, ids)
    by_depth = None
    if depths:
        targets = probs.argmax(-1)
        if study.config.target == "label" and labels is not None:
            label_rows = np.asarray(labels)[rows]
            targets = np.where(label_rows >= 0, label_rows[None], targets)
        by_depth = depth_maps(study, images, targets, depths)
    page_images, page_maps, predictions, true_labels = {}, {}, {}, {}
    for k, image_id in enumerate(ids):
        page_images[image_id] = images[k].numpy()
        page_maps[image_id] = {name: {method: "not applicable" if name in skip[method]
                                      else maps[method][m, k] for method in maps}
                               for m, name in enumerate(study.model_names)}
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
            for m, name in enumerate(study.model_names)}
    signed = {**{m: method_info(m).signed for m in METHODS.names()
                 if method_info(m).signed is not None},
              **{f"Grad-CAM {d:.0%}": False for d in depths or []}}
    families = {**study.families, CONSENSUS_ROW: "consensus"}
    paths = rp.write_atlas_pages(page_images, page_maps, predictions, families,
                                 study.run_dir / "figures" / "atlas", ids=ids,
                                 formats=("png", "pdf"), true_labels=true_labels, signed=signed,
                                 prefix=prefix)
    pngs = [p for p in paths if p.suffix == ".png"]
    return [{"path": p, "caption": f"Image {i}"} for i, p in zip(ids, pngs, strict=True)]


def trust_section(study, save: FigureWriter) -> dict | None:
    """Intervals, stability, nulls and faithfulness: how far each number can be trusted."""
    if not study.config.trust.enabled:
        return None
    primary = study.config.compare.metrics[0]
    figures, tables = [], []
    for method in study.config.methods:
        boot = _read(table_path(study, "trust", method, f"{primary}_bootstrap"))
        if boot is not None:
            mean = boot[boot["statistic"] == "mean"]
            frames = {key: mean.pivot(index="model_a", columns="model_b", values=key)
                      .loc[study.model_names, study.model_names]
                      for key in ("estimate", "low", "high")}
            figures.append({"path": save(rp.plot_interval_heatmap(
                frames["estimate"], frames["low"], frames["high"],
                title=f"{method} / {primary}: mean similarity [{study.config.trust.ci:.0%} CI]"),
                "trust", f"{method}_intervals"),
                "caption": f"Bootstrap over images ({study.config.trust.n_resamples} "
                           "resamples); hatched cells have wider-than-median intervals."})
        freq = _read(table_path(study, "trust", method, "coclustering"))
        if freq is not None:
            freq = pd.read_csv(table_path(study, "trust", method, "coclustering"), comment="#",
                               index_col=[0, 1])
            for algorithm in freq.index.get_level_values(0).unique():
                figures.append({"path": save(rp.plot_matrix_heatmap(
                    freq.loc[algorithm], title=f"{method}: co-clustering ({algorithm})",
                    vmin=0, vmax=1, cbar_label="frequency"), "trust",
                    f"{method}_coclustering_{algorithm}"),
                    "caption": "How often two models share a cluster over bootstrap "
                               "resamples of the images (1 = always)."})
        nulls = _read(table_path(study, "trust", method, f"{primary}_nulls"))
        if nulls is not None:
            tables.append({"table": nulls.round(3), "caption": f"{method}: observed {primary} "
                           "similarity beside its shuffled-image and centre-prior nulls, and "
                           "the chance-corrected scores"})
        sizes = _read(table_path(study, "trust", method, "sample_size"))
        if sizes is not None:
            tables.append({"table": sizes.round(4), "caption": f"{method}: how the "
                           "dissimilarity matrix settles as the number of images grows"})
    for name, caption in (("faithfulness", "Deletion / insertion AUCs (lower deletion and "
                                           "higher insertion = more faithful; order=random is "
                                           "the null)"),
                          ("prediction_bootstrap", "Bootstrap intervals of error consistency "
                                                   "and diversities"),
                          ("ensemble_gain", "Ensemble gains with bootstrap intervals"),
                          ("randomization", "Model-parameter randomisation sanity scores")):
        table = _read(table_path(study, "trust", name))
        if table is not None:
            tables.append({"table": table.round(3), "caption": caption})
    return {"title": "Trustworthy numbers", "figures": figures, "tables": tables,
            "text": "Every similarity is shown with a bootstrap interval over images, every "
                    "clustering with its stability, and every observed similarity beside what "
                    "mismatched images or a centred blob would give by chance."}


def run_summary(study) -> dict:
    run = json.loads((study.run_dir / "run.json").read_text()) \
        if (study.run_dir / "run.json").exists() else {}
    dataset = study.dataset
    degenerate = {}
    for path in sorted((study.run_dir / "tables" / "similarity").glob("*/degenerate_maps.csv")):
        degenerate[path.parent.name] = int(len(pd.read_csv(path, comment="#")))
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
        "degenerate_models": degenerate_summary(study),
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


def report_fingerprint(study) -> str:
    """Hash of everything the report draws from (config, weights, tables and arrays; the
    store's maps are keyed by config and weights) and of what it drew (the figures' and the
    HTML's own bytes, so a truncated or deleted figure is redrawn). Equal hash = the same
    report, complete."""
    from .. import __version__

    digest = hashlib.sha256()
    digest.update(f"{__version__}\n{study.config.to_yaml()}\n".encode())
    digest.update(json.dumps([m.weights_id for m in study.models]).encode())
    code = Path(rp.__file__).parent
    for source in [*sorted(code.glob("*.py")), Path(__file__), Path(report_lenses.__file__)]:
        digest.update(source.read_bytes())
    for folder in ("tables", "arrays", "figures"):
        for path in sorted((study.run_dir / folder).rglob("*")):
            if path.is_file() and path.name != FINGERPRINT_NAME:
                digest.update(str(path.relative_to(study.run_dir)).encode())
                digest.update(path.read_bytes())
    html = study.run_dir / "report.html"
    digest.update(html.read_bytes() if html.is_file() else b"no report")
    return digest.hexdigest()


def run_report(study) -> Path | None:
    if not study.config.report.enabled:
        return None
    path = study.run_dir / "report.html"
    stamp = study.run_dir / "figures" / FINGERPRINT_NAME
    if path.is_file() and stamp.is_file() and stamp.read_text() == report_fingerprint(study):
        log.info("report unchanged (same config, weights and results): %s", path)
        return path
    save = FigureWriter(study)
    sections = [s for s in (atlas_section(study, save), depth_section(study, save),
                            disagreement_section(study, save), localisation_section(study, save))
                if s is not None]
    sections += similarity_sections(study, save)
    sections += [s for s in (diversity_section(study, save), lenses_section(study, save),
                             trust_section(study, save)) if s is not None]
    path = rp.build_report(study.run_dir / "report.html", title=f"xaicompare: {study.config.name}",
                           summary=run_summary(study), sections=sections,
                           subtitle=f"{len(study.models)} models, {len(study.dataset)} images, "
                                    f"methods: {', '.join(study.config.methods)}")
    paper_figures.write_paper_figures(study)  # figures/paper/: column and page width
    fingerprint = report_fingerprint(study)  # of the inputs and of what was just drawn
    atomic_write(stamp, lambda handle: handle.write(fingerprint.encode()))
    log.info("report written to %s", path)
    return path
