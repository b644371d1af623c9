"""The report's table-driven sections as functions of a ReportContext: tables written by
the cluster stage on a synthetic matrix, figures out, no Study."""

from __future__ import annotations

import numpy as np
import pandas as pd
from stage_fixtures import MODELS, cluster_context, common

from xaicompare.config import ClusterConfig, ReportConfig
from xaicompare.stages import report as report_stage
from xaicompare.stages.cluster import run_cluster
from xaicompare.stages.contexts import ReportContext
from xaicompare.stages.report_common import FigureWriter
from xaicompare.stages.report_diversity import diversity_section
from xaicompare.stages.report_findings import findings_section
from xaicompare.stages.report_similarity import similarity_sections
from xaicompare.stages.report_trust import trust_section


def test_similarity_sections_draw_from_the_tables_alone(tmp_path):
    rng = np.random.default_rng(4)
    per_image = rng.uniform(0.2, 0.9, size=(4, 4, 6))
    per_image = (per_image + per_image.transpose(1, 0, 2)) / 2
    D = pd.DataFrame(np.sqrt((1 - per_image.mean(-1)) ** 2 + per_image.std(-1) ** 2),
                     index=list(MODELS), columns=list(MODELS))
    for i in range(4):
        D.iloc[i, i] = 0.0
    clustering = cluster_context(tmp_path, k=2, permutations=99)
    results = clustering.results
    results.write_per_image("gradcam", "cosine", per_image, MODELS, [f"i{k}" for k in range(6)])
    results.write_similarity("gradcam", "cosine", "dissimilarity", D, {})
    results.write_similarity("gradcam", "cosine", "mean", 1 - D, {})
    run_cluster(clustering)
    ctx = ReportContext(**common(tmp_path), cluster=ClusterConfig(k=2),
                        report=ReportConfig(formats=["png"]))
    save = FigureWriter(ctx)
    (section,) = similarity_sections(ctx, save)
    drawn = {p["path"].relative_to(tmp_path / "figures").as_posix() for p in section["figures"]}
    assert {"gradcam/dendrogram_cosine.png", "gradcam/dissimilarity_cosine.png",
            "gradcam/similarity_histograms.png"} <= drawn
    assert all((tmp_path / "figures" / p).is_file() for p in drawn)
    assert section["tests"][0]["caption"] == "Family tests, gradcam / cosine"
    assert trust_section(ctx, save)["figures"] == []  # the trust stage has not run
    assert diversity_section(ctx, save) is None  # nor the diversity stage
    findings = findings_section(ctx)
    assert any(f.topic == "structure" for f in findings)
    assert ctx.results.reads <= set(report_stage.READS)
    assert ctx.results.writes == set()
