"""Trust stage: uncertainty, stability, null baselines and faithfulness for every comparison.

Bootstrap intervals are a reweighting of the per-image values the compare stage stored;
nothing is explained again except for faithfulness curves and the (opt-in) randomisation
check, which run on a small, fixed subset of images.

Writes tables/trust/<method>/<metric>_{bootstrap,nulls}.csv, <method>/coclustering.csv,
<method>/sample_size.csv, faithfulness.csv, prediction_bootstrap.csv, ensemble_gain.csv,
randomization.csv.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from .. import progress
from ..attribution.registry import method_info
from ..diversity import to_probs
from ..errors import UserError
from ..trust import (
    bootstrap_ensemble_gain,
    bootstrap_matrix,
    bootstrap_pairwise,
    centre_bias_similarity,
    coclustering_frequency,
    null_table,
    sample_size_curve,
    sanity_scores,
    shuffled_null,
)
from .cluster import louvain_settings
from .compare import compare_options, study_ddof
from .contexts import TrustContext

log = logging.getLogger("xaicompare")

READS = ("per_image", "similarity")
WRITES = ("trust_bootstrap", "trust_nulls", "coclustering", "sample_size",
          "prediction_bootstrap", "ensemble_gain", "faithfulness", "randomization")


def run_trust(ctx: TrustContext) -> None:
    """The trust stage: the tables of `trust_tables`, then the faithfulness curves and the
    randomisation test (whose model passes the engine runs: ctx.passes)."""
    cfg = ctx.trust
    if not cfg.enabled:
        return
    methods, metrics = ctx.methods, ctx.compare.metrics
    randomized = [m for m in methods if method_info(m).randomization] if cfg.randomization \
        else []
    progress.plan(len(methods) * (len(metrics) + 1 + (cfg.faithfulness_images > 0)) + 1
                  + len(randomized), "step")
    trust_tables(ctx)
    faithfulness(ctx)
    if cfg.randomization:
        randomization(ctx)
    else:  # an earlier run's table would read as this run's
        ctx.results.remove("randomization")


def trust_tables(ctx: TrustContext) -> None:
    """Bootstrap intervals, nulls, clustering stability, sample-size curves and prediction
    intervals: a reweighting of what the compare stage stored (nothing is explained)."""
    cfg, seed, results = ctx.trust, ctx.seed, ctx.results
    options, ddof = compare_options(ctx.compare), study_ddof(ctx.compare)
    for method in ctx.methods:
        maps = None
        for metric in ctx.compare.metrics:
            progress.note(f"{method}/{metric}: bootstrap and nulls")
            per_image = results.per_image(method, metric)
            values, names = per_image.values, per_image.names
            provenance = {"method": method, "metric": metric, "n_resamples": cfg.n_resamples,
                          "ci": cfg.ci, "seed": seed, "ddof": ddof}
            tables = [bootstrap_matrix(values, statistic, n_resamples=cfg.n_resamples,
                                       seed=seed, ci=cfg.ci, names=names, ddof=ddof).table()
                      .assign(statistic=statistic) for statistic in ("mean", "dissimilarity")]
            results.write_trust_bootstrap(method, metric, pd.concat(tables, ignore_index=True),
                                          provenance)
            if metric not in ("cosine", "spearman", "pearson"):
                progress.step()
                continue  # the centre-prior null of a pair is defined for correlations
            maps = ctx.read_maps(method) if maps is None else maps
            mean = results.similarity(method, metric, "mean")
            centre = centre_bias_similarity(maps, metric, names, options=options)
            shuffled = shuffled_null(maps, metric, n_shuffles=cfg.n_shuffles, seed=seed,
                                     names=names)
            results.write_trust_nulls(method, metric, null_table(mean, centre, shuffled),
                                      {**provenance, "n_shuffles": cfg.n_shuffles})
            progress.step()
        progress.note(f"{method}: clustering stability")
        primary = ctx.compare.metrics[0]
        values = results.per_image(method, primary).values
        stability(ctx, method, primary, values)
        sizes = [n for n in (5, 10, 20, 50, 100, 200, 500, 1000) if n < values.shape[-1]]
        if sizes:
            results.write_sample_size(
                method, sample_size_curve(values, sizes + [values.shape[-1]],
                                          n_subsets=cfg.sample_size_subsets, seed=seed,
                                          ddof=ddof),
                {"metric": primary, "statistic": "dissimilarity", "ddof": ddof})
        else:
            results.remove("sample_size", method=method)
        progress.step()
    progress.note("prediction intervals")
    prediction_intervals(ctx)
    progress.step()


def stability(ctx: TrustContext, method: str, metric: str, values: np.ndarray) -> None:
    """How often two models land in the same cluster / community over bootstrap resamples."""
    cfg, names = ctx.trust, list(ctx.models)
    pair_defined = ~np.isnan(values).all(axis=-1) & ~np.eye(len(names), dtype=bool)
    keep = pair_defined.any(axis=1)  # a method not applicable to a model: no pair at all
    names, values = [n for n, ok in zip(names, keep, strict=True) if ok], values[
        np.ix_(keep, keep)]
    if len(names) < 3 or (np.isnan(values).all(axis=-1) & ~np.eye(len(names), dtype=bool)).any():
        log.info("%s: too few models or undefined pairs; clustering stability skipped", method)
        ctx.results.remove("coclustering", method=method)
        return
    k = ctx.cluster.k or 2
    backend, louvain_seed = louvain_settings(ctx.cluster, ctx.compare, ctx.seed)
    frames = {}
    for algorithm in ("hierarchical", "louvain"):
        try:
            frames[algorithm] = coclustering_frequency(
                values, k=k, method=ctx.cluster.method, algorithm=algorithm,
                resolution=ctx.cluster.louvain_resolution,
                n_resamples=cfg.stability_resamples, seed=ctx.seed, names=names,
                louvain_seed=louvain_seed, backend=backend, ddof=study_ddof(ctx.compare))
        except UserError as err:
            log.warning("%s: %s co-clustering not possible: %s", method, algorithm, err)
    if frames:
        table = pd.concat(frames, names=["algorithm", "model"])
        ctx.results.write_coclustering(method, table, {"metric": metric, "k": k,
                                                       "n_resamples": cfg.stability_resamples})
    else:
        ctx.results.remove("coclustering", method=method)


def prediction_intervals(ctx: TrustContext) -> None:
    """Bootstrap intervals for error consistency and the diversities, and ensemble gains."""
    labels = ctx.images.labels
    logits = ctx.read_logits()
    healthy = np.isfinite(logits).all(axis=(1, 2))  # resampled images must be scored by all
    names = [n for n, ok in zip(ctx.models, healthy, strict=True) if ok]
    if labels is None or len(names) < 2:
        ctx.results.remove("prediction_bootstrap")
        ctx.results.remove("ensemble_gain")
        return
    if not healthy.all():
        log.warning("prediction intervals without models %s (non-finite logits)",
                    [n for n, ok in zip(ctx.models, healthy, strict=True) if not ok])
    cfg = ctx.trust
    labels = np.asarray(labels)
    probs = np.stack([to_probs(x, kind="logits") for x in logits[healthy]])
    correct = (probs.argmax(-1) == labels[None]).astype(float)
    p_true = np.take_along_axis(probs, labels[None, :, None], axis=2)[..., 0]
    rows = []
    for metric, values in (("error_consistency", correct), ("zero_one_diversity", correct),
                           ("ce_diversity", p_true)):
        rows.append(bootstrap_pairwise(values, metric, n_resamples=cfg.n_resamples,
                                       seed=ctx.seed, ci=cfg.ci, names=names)
                    .table().assign(metric=metric))
    provenance = {"n_resamples": cfg.n_resamples, "ci": cfg.ci, "seed": ctx.seed}
    ctx.results.write_prediction_bootstrap(pd.concat(rows, ignore_index=True), provenance)
    gains = bootstrap_ensemble_gain(probs, labels, names, k=2, n_resamples=cfg.n_resamples,
                                    seed=ctx.seed, ci=cfg.ci)
    gains["members"] = gains["members"].map(lambda m: " + ".join(m) if not isinstance(m, str)
                                            else m)
    ctx.results.write_ensemble_gain(gains, provenance)


def faithfulness(ctx: TrustContext) -> None:
    """Deletion/insertion AUCs per model and method on the first `faithfulness_images`
    images, beside a random-order null curve; the curves are engine units (stored per image),
    computed where missing and read here."""
    cfg = ctx.trust
    if cfg.faithfulness_images == 0:
        ctx.results.remove("faithfulness")
        return
    ids = list(ctx.images.ids[:cfg.faithfulness_images])
    ctx.passes.compute_curves(ids)
    result = []
    for method in ctx.methods:
        progress.note(f"{method}: faithfulness")
        skip = ctx.not_applicable[method]
        for model in ctx.models:
            if model in skip:
                continue
            for order in ctx.passes.curve_orders:
                curves = ctx.passes.read_curves(model, method, order, ids)
                result.append({"model": model, "method": method, "order": order,
                               "deletion_auc": float(np.mean(curves["deletion_auc"])),
                               "insertion_auc": float(np.mean(curves["insertion_auc"])),
                               "n_images": len(ids)})
        progress.step()
    ctx.results.write_faithfulness(
        pd.DataFrame(result), {"baseline": "black", "steps": cfg.faithfulness_steps,
                               "score": "probability of the predicted class",
                               "null": "order=random ranks pixels at random"})


def randomization(ctx: TrustContext) -> None:
    """Model-parameter randomisation test on the first `randomization_images` images: the
    stored maps of each model vs those of its randomised copy (engine units explain it)."""
    from ..trust.randomization import randomization_row

    ids = list(ctx.images.ids[:ctx.trust.randomization_images])
    # e.g. not KernelSHAP: would need the stored superpixels
    methods = {m: p for m, p in ctx.methods.items() if method_info(m).randomization}
    if methods:
        ctx.passes.compute_randomized_maps(methods, ids)
    tables = []
    for method in methods:
        progress.note(f"{method}: randomisation test")
        skip = ctx.not_applicable[method]
        for model in [m for m in ctx.models if m not in skip]:
            original = ctx.read_maps(method, ids, models=[model])[0]
            randomized = ctx.passes.read_randomized_maps(model, method, ids)
            # n_blocks (0): the full randomisation is one block; sanity_scores drops it
            row = randomization_row(model, method, torch.from_numpy(original),
                                    torch.from_numpy(randomized), "spearman", "all")
            tables.append(pd.DataFrame([row]))
        progress.step()
    if tables:
        ctx.results.write_randomization(
            sanity_scores(tables), {"metric": "spearman", "mode": "full", "images": len(ids)})
    else:
        ctx.results.remove("randomization")
