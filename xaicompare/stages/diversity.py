"""Diversity stage: per-model accuracy and calibration, pairwise diversity, ensembles,
corruptions (logits stored and resumable like clean ones), the joint view with explanations
and disagreement mining.

Writes tables/diversity/*.csv and tables/joint/*.csv.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..compare import write_table_csv
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
from .cluster import defined_part, read_dissimilarity
from .paths import array_path, table_path

log = logging.getLogger("xaicompare")


def corrupted_condition(name: str, severity: int, seed: int) -> str:
    return f"{name}-s{severity}-seed{seed}"


def run_corrupted_logits(study) -> None:
    """Logits of every model on every corruption x severity, stored per shard (resumable),
    locally or on Ray as `executor.kind` says (engine/corruptions.py)."""
    from ..engine.corruptions import Condition
    from ..engine.corruptions import run_corrupted_logits as run_units

    cfg, seed, executor = study.config.diversity, study.config.seed, study.config.executor
    conditions = [Condition(c, s, corrupted_condition(c, s, seed))
                  for c in cfg.corruptions for s in cfg.severities]
    run_units(study.models, study.dataset, conditions, study.store,
              dataset_identity=study.dataset_identity, seed=seed,
              batch_size=executor.batch_size, device=executor.device,
              progress=study.progress, executor=executor)


def run_diversity(study) -> dict:
    cfg = study.config.diversity
    if not cfg.enabled:
        return {}
    names = study.model_names
    labels = np.asarray(study.dataset.labels)
    if study.dataset.labels is None or (labels < 0).all():
        log.warning("diversity needs labels; the dataset has none, stage skipped")
        return {}
    logits = study.read_logits()
    probs = np.stack([to_probs(x, kind="logits") for x in logits])
    correct = probs.argmax(-1) == labels[None]
    provenance = {"n_images": len(labels), "models": names, "condition": "clean"}

    def write(df, *parts, **extra):
        write_table_csv(df, table_path(study, "diversity", *parts), {**provenance, **extra})

    metrics = pd.DataFrame({name: model_metrics(p, labels, n_bins=cfg.calibration_bins,
                                                binning=cfg.calibration_binning)
                            for name, p in zip(names, probs, strict=True)}).T
    metrics.insert(0, "family", pd.Series(study.families))
    write(metrics, "model_metrics", bins=cfg.calibration_bins, binning=cfg.calibration_binning)
    reliability = pd.concat(
        {name: reliability_data(p, labels, n_bins=cfg.calibration_bins,
                                binning=cfg.calibration_binning)
         for name, p in zip(names, probs, strict=True)}, names=["model"]).reset_index(level=0)
    write(reliability, "reliability", bins=cfg.calibration_bins, binning=cfg.calibration_binning)
    p_true = np.take_along_axis(probs, labels[None, :, None], axis=2)[..., 0]
    if len(names) >= 2:
        write(pairwise_matrix(correct, "error_consistency", names), "error_consistency")
        write(pairwise_matrix(correct, "zero_one_diversity", names), "zero_one_diversity")
        write(pairwise_matrix(p_true, "ce_diversity", names), "ce_diversity")
        write(diversity_components(correct, names), "zero_one_components")
        sizes = [k for k in range(2, cfg.ensemble_size + 1) if k <= len(names)]
        ensembles = ensemble_table(probs, labels, names, k=sizes)
        ensembles["members"] = ensembles["members"].map(" + ".join)
        write(ensembles, "ensembles")
    if cfg.corruptions:
        write(corruption_table(study, names, labels, metrics), "retention",
              corruptions=cfg.corruptions, severities=cfg.severities, seed=study.config.seed)
    joint_view(study, correct, names)
    if len(names) >= 2:  # disagreement needs two models
        disagreement(study, probs.argmax(-1))
    texture = study.dataset.attributes.get("object_texture")
    if texture is not None:  # the shapes benchmark: texture reliance on cue-conflict images
        n_textures = int(study.dataset.describe()["n_textures"])
        write(texture_reliance(probs.argmax(-1), labels, texture, probs.shape[-1], n_textures,
                               names), "cue_conflict", n_textures=n_textures,
              rule="class k is cued by texture t when k mod n_textures == t")
    return {"metrics": metrics}


def corruption_table(study, names, labels, metrics) -> pd.DataFrame:
    """Accuracy per model and per ensemble of all models, per corruption and severity."""
    cfg = study.config.diversity
    run_corrupted_logits(study)
    rows = []
    for name, severity in [(c, s) for c in cfg.corruptions for s in cfg.severities]:
        condition = corrupted_condition(name, severity, study.config.seed)
        probs = np.stack([to_probs(x, kind="logits") for x in study.read_logits(condition)])
        for model, p in zip(names, probs, strict=True):
            rows.append({"model": model, "corruption": name, "severity": severity,
                         "accuracy": float((p.argmax(-1) == labels).mean())})
        if len(names) >= 2:
            rows.append({"model": "ensemble(all)", "corruption": name, "severity": severity,
                         "accuracy": float((probs.mean(0).argmax(-1) == labels).mean())})
    clean = metrics["accuracy"].astype(float).to_dict()
    if len(names) >= 2:
        probs = np.stack([to_probs(x, kind="logits") for x in study.read_logits()])
        clean["ensemble(all)"] = float((probs.mean(0).argmax(-1) == labels).mean())
    return retention_table(clean, pd.DataFrame(rows))


def joint_view(study, correct, names) -> None:
    """Do models that explain alike also err alike? Mantel test + similarity by outcome."""
    if len(names) < 3:
        return
    errors = pairwise_matrix(correct, "error_consistency", names)
    rows = []
    for method in study.config.methods:
        for metric in study.config.compare.metrics:
            D = defined_part(read_dissimilarity(study, method, metric), f"{method}/{metric}")
            errors_here = errors.loc[D.index, D.index]
            if len(D) < 3 or errors_here.isna().to_numpy().any():
                log.warning("%s/%s: Mantel test skipped (fewer than 3 models with defined "
                            "dissimilarity and error consistency)", method, metric)
                continue
            # Dissimilar explanations vs consistent errors: expect a negative correlation.
            result = mantel_test(D, errors_here, seed=study.config.seed, alternative="less")
            rows.append({"method": method, "metric": metric, **result})
            per_image = np.load(array_path(study, "similarity", f"{method}__{metric}"))
            by_outcome = similarity_by_outcome(per_image["per_image"], correct, names,
                                               by_pair=False)
            write_table_csv(by_outcome, table_path(study, "joint", method,
                                                   f"{metric}_by_outcome"),
                            {"method": method, "metric": metric})
    if rows:
        write_table_csv(pd.DataFrame(rows), table_path(study, "joint", "mantel"),
                        {"test": "Mantel, explanation dissimilarity vs error consistency",
                         "diagonal": "excluded"})


def disagreement(study, preds) -> None:
    """The images the models disagree on most, in predictions and in explanations."""
    ids = study.dataset.ids
    tables = {"predictions": top_disagreements(prediction_disagreement(preds), ids, n=10)}
    for method in study.config.methods:
        metric = study.config.compare.metrics[0]
        per_image = np.load(array_path(study, "similarity", f"{method}__{metric}"))["per_image"]
        tables[f"explanations_{method}"] = top_disagreements(
            explanation_disagreement(per_image), ids, n=10)
    for name, table in tables.items():
        write_table_csv(table, table_path(study, "joint", f"disagreement_{name}"), {})

