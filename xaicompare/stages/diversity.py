"""Diversity stage: per-model accuracy and calibration, pairwise diversity, ensembles,
corruptions (logits stored and resumable like clean ones), the joint view with explanations
and disagreement mining.

Writes tables/diversity/*.csv and tables/joint/*.csv.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import progress
from ..diversity import (
    diversity_components,
    ensemble_table,
    explanation_disagreement,
    mantel_test,
    model_metrics,
    pairwise_matrix,
    prediction_disagreement,
    reliability_data,
    retention_table,
    similarity_by_outcome,
    texture_reliance,
    to_probs,
    top_disagreements,
)
from .cluster import defined_part
from .contexts import DiversityContext
from .engine_access import corrupted_condition
from .lenses import joint_lenses

log = logging.getLogger("xaicompare")

READS = ("similarity", "per_image", "cka", "consensus")
WRITES = ("diversity", "outcome_similarity", "mantel", "disagreement", "stratified_agreement",
          "matrix_agreement", "consensus_accuracy")


def run_diversity(ctx: DiversityContext) -> dict:
    cfg = ctx.diversity
    if not cfg.enabled:
        return {}
    names = list(ctx.models)
    labels = ctx.images.labels
    if labels is None or (labels < 0).all():
        log.warning("diversity needs labels; the dataset has none, stage skipped")
        return {}
    progress.plan(5, "step")  # metrics, pairwise, corruptions, joint view, disagreement
    progress.note("accuracy and calibration")
    logits = ctx.read_logits()
    finite = np.isfinite(logits).all(-1)  # [M, N]: images whose logits are numbers
    probs = np.full(logits.shape, np.nan)
    for m, model_logits in enumerate(logits):
        if finite[m].any():
            probs[m, finite[m]] = to_probs(model_logits[finite[m]], kind="logits")
    correct = probs.argmax(-1) == labels[None]
    provenance = {"n_images": len(labels), "models": names, "condition": "clean"}

    def write(df, name, **extra):
        ctx.results.write_diversity(name, df, {**provenance, **extra})

    metrics = pd.DataFrame({name: finite_metrics(p, labels, ok, cfg)
                            for name, p, ok in zip(names, probs, finite, strict=True)}).T
    metrics.insert(0, "family", pd.Series(ctx.families))
    write(metrics, "model_metrics", bins=cfg.calibration_bins, binning=cfg.calibration_binning,
          left_out="images with non-finite logits of that model (n_left_out)")
    reliability = pd.concat(
        {name: reliability_data(p[ok], labels[ok], n_bins=cfg.calibration_bins,
                                binning=cfg.calibration_binning)
         for name, p, ok in zip(names, probs, finite, strict=True) if ok.any()},
        names=["model"]).reset_index(level=0)
    write(reliability, "reliability", bins=cfg.calibration_bins, binning=cfg.calibration_binning)
    p_true = np.take_along_axis(np.nan_to_num(probs), labels[None, :, None], axis=2)[..., 0]
    healthy = finite.all(axis=1)
    if not healthy.all():  # named once; pairs still use every image both models score
        log.warning("diversity: models %s have non-finite logits; each is scored on its "
                    "finite images and each pair on the images both score, and they are left "
                    "out of ensembles, components, retention, disagreement and the joint view",
                    [n for n, ok in zip(names, healthy, strict=True) if not ok])
    progress.step("error consistency and diversity")
    if len(names) >= 2:
        for kind, values in (("error_consistency", correct), ("zero_one_diversity", correct),
                             ("ce_diversity", p_true)):
            write(pairwise_over_finite(values, finite, kind, names), kind,
                  images="per pair: those both models score with finite logits")
    keep = np.flatnonzero(healthy)
    names, probs, correct = [names[i] for i in keep], probs[keep], correct[keep]
    if len(names) >= 2:
        write(diversity_components(correct, names), "zero_one_components")
        sizes = [k for k in range(2, cfg.ensemble_size + 1) if k <= len(names)]
        ensembles = ensemble_table(probs, labels, names, k=sizes)
        ensembles["members"] = ensembles["members"].map(" + ".join)
        write(ensembles, "ensembles")
    progress.step("corruptions")
    if cfg.corruptions:
        write(corruption_table(ctx, names, labels, metrics, keep), "retention",
              corruptions=cfg.corruptions, severities=cfg.severities, seed=ctx.seed)
    progress.step("joint view and lenses")
    joint_view(ctx, correct, names, keep)
    if len(names) >= 3:
        joint_lenses(ctx, correct, pairwise_matrix(correct, "error_consistency", names),
                     metrics["accuracy"], keep)
    progress.step("disagreement")
    if len(names) >= 2:  # disagreement needs two models
        disagreement(ctx, probs.argmax(-1))
    progress.step()
    texture = ctx.images.attributes.get("object_texture")
    if texture is not None:  # the shapes benchmark: texture reliance on cue-conflict images
        n_textures = ctx.images.n_textures
        write(texture_reliance(probs.argmax(-1), labels, texture, probs.shape[-1], n_textures,
                               names), "cue_conflict", n_textures=n_textures,
              rule="class k is cued by texture t when k mod n_textures == t")
    return {"metrics": metrics}


def finite_metrics(probs: np.ndarray, labels: np.ndarray, finite: np.ndarray, cfg) -> dict:
    """model_metrics over the images whose logits are finite; n_left_out counts the rest."""
    left_out = {"n_left_out": int((~finite).sum())}
    if not finite.any():
        return {"n": 0, "accuracy": np.nan, **left_out}
    return {**model_metrics(probs[finite], labels[finite], n_bins=cfg.calibration_bins,
                            binning=cfg.calibration_binning, kind="probs"), **left_out}


def pairwise_over_finite(values: np.ndarray, finite: np.ndarray, kind: str,
                         names: list[str]) -> pd.DataFrame:
    """pairwise_matrix, each pair over the images both models score (all when all do)."""
    if finite.all():
        return pairwise_matrix(values, kind, names)
    out = pd.DataFrame(np.nan, index=names, columns=names)
    for i in range(len(names)):
        if finite[i].any():
            out.iloc[i, i] = pairwise_matrix(values[[i]][:, finite[i]], kind)[0, 0]
        for j in range(i + 1, len(names)):
            rows = finite[i] & finite[j]
            if rows.any():
                pair = pairwise_matrix(values[[i, j]][:, rows], kind)
                out.iloc[i, j], out.iloc[j, i] = pair[0, 1], pair[1, 0]
    return out


def corruption_table(ctx: DiversityContext, names, labels, metrics, keep) -> pd.DataFrame:
    """Accuracy per model and per ensemble of all models, per corruption and severity
    (names: the models at positions `keep`, those with finite clean logits)."""
    cfg = ctx.diversity
    ctx.corrupted_logits()
    rows = []
    for name, severity in [(c, s) for c in cfg.corruptions for s in cfg.severities]:
        condition = corrupted_condition(name, severity, ctx.seed)
        probs = np.stack([to_probs(x, kind="logits")
                          for x in ctx.read_logits(condition)[keep]])
        for model, p in zip(names, probs, strict=True):
            rows.append({"model": model, "corruption": name, "severity": severity,
                         "accuracy": float((p.argmax(-1) == labels).mean())})
        if len(names) >= 2:
            rows.append({"model": "ensemble(all)", "corruption": name, "severity": severity,
                         "accuracy": float((probs.mean(0).argmax(-1) == labels).mean())})
    clean = metrics.loc[names, "accuracy"].astype(float).to_dict()
    if len(names) >= 2:
        probs = np.stack([to_probs(x, kind="logits") for x in ctx.read_logits()[keep]])
        clean["ensemble(all)"] = float((probs.mean(0).argmax(-1) == labels).mean())
    return retention_table(clean, pd.DataFrame(rows))


def joint_view(ctx: DiversityContext, correct, names, keep) -> None:
    """Do models that explain alike also err alike? Mantel test + similarity by outcome.
    names, correct: the models at positions `keep` of the study's models."""
    if len(names) < 3:
        return
    errors = pairwise_matrix(correct, "error_consistency", names)
    rows = []
    for method in ctx.methods:
        for metric in ctx.compare.metrics:
            D = ctx.results.dissimilarity(method, metric).loc[names, names]
            D = defined_part(D, f"{method}/{metric}")
            errors_here = errors.loc[D.index, D.index]
            if len(D) < 3 or errors_here.isna().to_numpy().any():
                log.warning("%s/%s: Mantel test skipped (fewer than 3 models with defined "
                            "dissimilarity and error consistency)", method, metric)
                continue
            # Dissimilar explanations vs consistent errors: expect a negative correlation.
            result = mantel_test(D, errors_here, seed=ctx.seed, alternative="less")
            rows.append({"method": method, "metric": metric, **result})
            per_image = ctx.results.per_image(method, metric).values
            by_outcome = similarity_by_outcome(per_image[np.ix_(keep, keep)],
                                               correct, names, by_pair=False)
            ctx.results.write_outcome_similarity(method, metric, by_outcome,
                                                 {"method": method, "metric": metric})
    if rows:
        ctx.results.write_mantel(pd.DataFrame(rows),
                                 {"test": "Mantel, explanation dissimilarity vs error "
                                          "consistency", "diagonal": "excluded"})


def disagreement(ctx: DiversityContext, preds) -> None:
    """The images the models disagree on most, in predictions and in explanations."""
    ids = list(ctx.images.ids)
    tables = {"predictions": top_disagreements(prediction_disagreement(preds), ids, n=10)}
    for method in ctx.methods:
        metric = ctx.compare.metrics[0]
        per_image = ctx.results.per_image(method, metric).values
        tables[f"explanations_{method}"] = top_disagreements(
            explanation_disagreement(per_image), ids, n=10)
    for name, table in tables.items():
        ctx.results.write_disagreement(name, table, {})

