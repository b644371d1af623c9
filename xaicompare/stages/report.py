"""Report stage: figures (PNG + vector), explanation atlases and one self-contained HTML file.

Reads only what earlier stages wrote (tables/, arrays/, the store), so it runs on its own.
The sections live in report_*.py, one module per part of the story; this module orders
them (key findings first, provenance last) and redraws only when an input changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from .. import progress
from .. import report as rp
from ..store import atomic_write
from . import paper_figures
from .contexts import AtlasContext, RunFacts
from .report_atlas import (  # noqa: F401  (public names of the former single module)
    CONSENSUS_ROW,
    atlas_section,
    consensus_maps,
    depth_maps,
    depth_section,
    disagreement_ids,
    disagreement_section,
    write_atlas,
)
from .report_common import FigureWriter
from .report_diversity import diversity_section, localisation_section
from .report_findings import findings_section
from .report_lenses import lenses_section
from .report_methods import family_summary_section, method_agreement_section
from .report_provenance import class_space_line, run_summary  # noqa: F401
from .report_similarity import (  # noqa: F401
    family_tests_in_words,
    metric_note,
    similarity_sections,
    structure_figures,
)
from .report_trust import trust_section

log = logging.getLogger("xaicompare")

# What the report's sections (report_*.py, paper_figures.py) read; each may be missing
# (a stage not run): its section is left out. Writes: figures/ and report.html only.
READS = ("similarity", "per_image", "degenerate_maps", "degenerate_models", "localisation",
         "method_agreement", "cka", "consensus", "consensus_maps", "agreement_sweep",
         "assignments", "mds", "family_tests", "tree", "diversity", "mantel", "disagreement",
         "stratified_agreement", "matrix_agreement", "consensus_accuracy", "trust_bootstrap",
         "trust_nulls", "coclustering", "sample_size", "faithfulness", "prediction_bootstrap",
         "ensemble_gain", "randomization")
WRITES = ()

# the report's parts in page order, each one step of the stage's progress line; the
# atlases also show images, stored maps and predictions (the AtlasContext), the others
# only tables
SECTIONS = (atlas_section, depth_section, disagreement_section, localisation_section,
            similarity_sections, family_summary_section, method_agreement_section,
            diversity_section, lenses_section, trust_section)
STEPS = len(SECTIONS) + 2  # + key findings and the HTML page, + figures/paper/
FINGERPRINT_NAME = "report.fingerprint"


def report_fingerprint(ctx: AtlasContext, facts: RunFacts) -> str:
    """Hash of everything the report draws from (config, weights, tables and arrays; the
    store's maps are keyed by config and weights) and of what it drew (the figures' and the
    HTML's own bytes, so a truncated or deleted figure is redrawn). Equal hash = the same
    report, complete."""
    from .. import __version__

    run_dir = ctx.results.run_dir
    digest = hashlib.sha256()
    digest.update(f"{__version__}\n{facts.config_yaml}\n".encode())
    digest.update(json.dumps([facts.weights[name] for name in ctx.models]).encode())
    code = Path(rp.__file__).parent
    # the drawing code: the report package (its template too) and the stage modules that
    # feed it (sections, paper figures, results, contexts)
    for source in [*sorted(p for p in code.rglob("*") if p.is_file() and p.suffix != ".pyc"),
                   *sorted(Path(__file__).parent.glob("*.py"))]:
        digest.update(source.read_bytes())
    for folder in ("tables", "arrays", "figures"):
        for path in sorted((run_dir / folder).rglob("*")):
            if path.is_file() and path.name != FINGERPRINT_NAME:
                digest.update(str(path.relative_to(run_dir)).encode())
                digest.update(path.read_bytes())
    html = run_dir / "report.html"
    digest.update(html.read_bytes() if html.is_file() else b"no report")
    return digest.hexdigest()


def run_report(ctx: AtlasContext, facts: RunFacts) -> tuple[Path | None, list]:
    """Draw the report (unless its inputs and drawings are unchanged); returns the HTML's
    path (None: report disabled) and the key findings (also the end-of-run lines)."""
    if not ctx.report.enabled:
        return None, []
    run_dir = ctx.results.run_dir
    path = run_dir / "report.html"
    stamp = run_dir / "figures" / FINGERPRINT_NAME
    progress.plan(STEPS, "section")
    if path.is_file() and stamp.is_file() and stamp.read_text() == report_fingerprint(ctx, facts):
        log.info("report unchanged (same config, weights and results): %s", path)
        progress.restored(STEPS)
        return path, findings_section(ctx)
    save = FigureWriter(ctx)
    sections = []
    for draw in SECTIONS:
        drawn = draw(ctx, save)
        # a section, a list of them (similarity) or None (nothing to show)
        sections += drawn if isinstance(drawn, list) else [drawn] if drawn is not None else []
        progress.step()
    findings = findings_section(ctx)  # after the figures it links to are drawn
    path = rp.build_report(path, title=f"xaicompare: {facts.name}",
                           summary=run_summary(ctx, facts), findings=findings, sections=sections,
                           subtitle=f"{len(ctx.models)} models, {len(ctx.images)} images, "
                                    f"methods: {', '.join(ctx.methods)}")
    progress.step("figures/paper")
    paper_figures.write_paper_figures(ctx)  # figures/paper/: column and page width
    progress.step()
    fingerprint = report_fingerprint(ctx, facts)  # of the inputs and of what was just drawn
    atomic_write(stamp, lambda handle: handle.write(fingerprint.encode()))
    log.info("report written to %s", path)
    return path, findings
