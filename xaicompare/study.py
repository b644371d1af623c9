"""A Study: the whole pipeline for one config, each stage resuming from the store.

    study = Study.from_yaml("configs/quickstart.yaml")
    result = study.run()

Stages: prepare (images + manifest) -> explain -> compare -> cluster -> diversity -> trust
-> report.
Every stage writes into the run folder (see README, "What a run writes").
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .config import StudyConfig
from .errors import UserError
from .progress import RunDisplay
from .provenance import library_versions
from .store import Store, atomic_write
from .study_config import load_config, parse_config

log = logging.getLogger("xaicompare")

STAGES = ("explain", "compare", "cluster", "diversity", "trust", "report")


@dataclass
class StudyResult:
    run_dir: Path
    tables: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    report: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    explained: object | None = None  # engine.runner.RunSummary of the explain stage
    findings: list = field(default_factory=list)  # report.findings.Finding, report stage


class Study:
    def __init__(self, config: StudyConfig, *, progress: bool = True) -> None:
        self.config = config
        self.class_space: list = []  # one ClassMapping per model, set when models load
        self.progress = progress
        self.display = None  # progress.RunDisplay of the current (or last) run
        self.run_dir = config.output_dir
        self.result = StudyResult(self.run_dir)

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs) -> Study:
        return cls(load_config(path), **kwargs)

    @classmethod
    def from_dict(cls, data: dict, **kwargs) -> Study:
        return cls(parse_config(data), **kwargs)

    # -- shared pieces ------------------------------------------------------------------
    @cached_property
    def store(self) -> Store:
        return Store(self.run_dir / "store")

    @cached_property
    def results(self):
        """The run folder's tables and arrays (stages/results.py): one reader and one writer
        per artefact."""
        from .stages.results import Results

        return Results(self.run_dir)

    @cached_property
    def dataset(self):
        """The study's images: opened once, subset chosen by seed, manifest written."""
        from .data import open_dataset, open_manifest, select_subset
        from .data.imageset import manifest_json

        cfg = self.config.dataset
        full = open_dataset(cfg.name, **cfg.options)
        if cfg.manifest:  # exactly the images of an earlier run; errors if labels changed
            images = open_manifest(cfg.manifest)
        elif cfg.n_images is not None and cfg.n_images < len(full):
            images = select_subset(full, cfg.n_images, seed=cfg.seed, stratify=cfg.stratify)
        else:
            images = full
            if cfg.n_images is not None and cfg.n_images > len(full) and cfg.name != "shapes":
                # (shapes: warned when the config is parsed)
                log.warning("dataset.n_images is %d but dataset '%s' has only %d usable "
                            "images; all %d are used", cfg.n_images, cfg.name, len(full),
                            len(full))
        if len(images) == 0:
            raise UserError(f"dataset '{cfg.name}' has no usable images "
                            f"({len(full.skipped)} skipped); check dataset.options")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = manifest_json(images)  # complete or absent, as every file a run writes
        atomic_write(self.run_dir / "manifest.json", lambda h: h.write(text.encode()))
        for path, reason in full.skipped:
            log.warning("skipped image %s: %s", path, reason)
        return images

    @cached_property
    def dataset_identity(self) -> dict:
        cfg = self.config.dataset
        return {"name": cfg.name, "options": cfg.options}

    @cached_property
    def models(self) -> list:
        from .models import load_model
        from .models.zoo import load_zoo

        loaded, specs = [], []
        for spec in self.config.models:
            auto = spec.class_indices == "auto"
            if spec.source.startswith("zoo:"):
                name = spec.source[4:]
                zoo = load_zoo(None if name == "all" else [name])
                loaded.extend(zoo)
                specs.extend([spec] * len(zoo))
                continue
            try:
                # Random-init weights (pretrained: false) are seeded, so a rerun gets the
                # same weights, the same store keys and the same numbers.
                with torch.random.fork_rng():
                    torch.manual_seed(self.config.seed)
                    model = load_model(
                        spec.source, pretrained=spec.pretrained, checkpoint=spec.checkpoint,
                        weights=spec.weights, num_classes=spec.num_classes, family=spec.family,
                        layer=spec.layer, class_indices=None if auto else spec.class_indices,
                        name=spec.name, **spec.kwargs)
                loaded.append(model)
                specs.append(spec)
            except (TypeError, AssertionError, ValueError) as err:  # timm rejects kwargs
                raise UserError(f"model '{spec.source}' could not be built with kwargs "
                                f"{spec.kwargs}: {err}") from err
        names = [m.name for m in loaded]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UserError(f"models: duplicate model names {duplicates}; give each a `name:`")
        self.class_space = self._map_classes(loaded, specs)
        return loaded

    def _map_classes(self, models: list, specs: list) -> list:
        """Put every model in the dataset's class space (by wnid or name, never by folder
        order) before anything is explained; a class that matches nothing stops here."""
        from .models.class_space import explicit_mapping, map_classes
        from .models.loading import resolve_class_indices

        data = self.dataset
        mappings = []
        for model, spec in zip(models, specs, strict=True):
            if spec.class_indices == "auto":
                mapping = map_classes(model, data.class_names, data.class_wnids,
                                      data.class_order_defined)
                model.set_class_indices(mapping.indices)
            else:
                if spec.source.startswith("zoo:"):  # zoo models load with their own head
                    model.set_class_indices(resolve_class_indices(
                        spec.class_indices, model.metadata.get("num_classes"), model.name))
                mapping = explicit_mapping(model, data.class_names)
            log.info("class space of model %s: %s", model.name, mapping.rule)
            mappings.append(mapping)
        return mappings

    def class_space_record(self) -> dict:
        """The study's class space as run.json records it (labels, and each model's outputs)."""
        data, mappings = self.dataset, getattr(self, "class_space", None) or []
        return {"classes": list(data.class_names), "wnids": data.class_wnids,
                "order": "dataset definition" if data.class_order_defined
                else "matched by name to each model",
                "scores": "accuracy and confidence use the softmax over these classes' logits",
                "models": [m.describe() for m in mappings]}

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def families(self) -> dict[str, str]:
        return {m.name: m.family for m in self.models}

    def write_metadata(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = self.config.to_yaml()
        atomic_write(self.run_dir / "config.yaml", lambda h: h.write(config.encode()))
        earlier = self._earlier_metadata()  # stages run as separate processes add up
        meta = {"versions": library_versions(), "seed": self.config.seed,
                "timings": {**earlier.get("timings", {}), **self.result.timings},
                "models": [{"name": m.name, "family": m.family, "weights": m.weights_id,
                            "weights_source": m.weights_source}
                           for m in self.models],
                "class_space": self.class_space_record(),
                "not_applicable": {method: self.not_applicable(method)
                                   for method in self.config.methods
                                   if self.not_applicable(method)}}
        if self.result.explained is not None:  # counts, seconds and non-finite outputs
            meta["explain"] = dataclasses.asdict(self.result.explained)
        elif "explain" in earlier:  # explained by an earlier process (`xaicompare explain`)
            meta["explain"] = earlier["explain"]
        text = json.dumps(meta, indent=2, default=str)
        atomic_write(self.run_dir / "run.json", lambda h: h.write(text.encode()))

    def _earlier_metadata(self) -> dict:
        """run.json as an earlier process wrote it ({} when there is none or it is unreadable)."""
        try:
            earlier = json.loads((self.run_dir / "run.json").read_text())
        except (OSError, ValueError):
            return {}
        return earlier if isinstance(earlier, dict) else {}

    # -- stages -------------------------------------------------------------------------
    def explain(self):
        from .engine.runner import run_explanations

        cfg = self.config
        for method in cfg.methods:
            skipped = self.not_applicable(method)
            if len(skipped) == len(self.models):
                raise UserError(f"methods.{method}: applies to none of the models "
                                f"({', '.join(skipped)}); remove it or add a model it explains")
            if skipped:
                log.warning("%s: not applicable to models %s; computed for the others",
                            method, skipped)
        self.result.explained = run_explanations(
            self.models, self.dataset, cfg.methods, self.store,
            dataset_identity=self.dataset_identity, target=cfg.target,
            batch_size=cfg.executor.batch_size, device=cfg.executor.device, seed=cfg.seed,
            progress=self.progress, executor=cfg.executor, autocast=cfg.executor.autocast)
        return self.result.explained

    def compare(self):
        from .stages.compare import run_compare
        from .stages.contexts import compare_context
        from .stages.method_agreement import method_agreement_table

        context = compare_context(self)
        results = run_compare(context)
        method_agreement_table(context)  # the report's method x method view
        return results

    def cluster(self):
        from .stages.cluster import run_cluster
        from .stages.contexts import cluster_context

        return run_cluster(cluster_context(self))

    def diversity(self):
        from .stages.contexts import diversity_context
        from .stages.diversity import run_diversity

        return run_diversity(diversity_context(self))

    def trust(self):
        from .stages.contexts import trust_context
        from .stages.trust import run_trust

        if not self.config.trust.enabled:  # (its context would load the models)
            return None
        return run_trust(trust_context(self))

    def report(self):
        from .report import display_names, style
        from .stages.contexts import report_context, run_facts
        from .stages.report import run_report

        if not self.config.report.enabled:  # (its context would load the models)
            self.result.report = None
            return None
        with style(), display_names(**self.display_names()):  # every figure of the report
            self.result.report, self.result.findings = run_report(report_context(self),
                                                                  run_facts(self))
        return self.result.report

    def display_names(self) -> dict[str, dict[str, str]]:
        """Names shown in figures: `display_names:` and each model's `display_name:`."""
        from .config import model_id

        models = dict(self.config.display_names.models)
        for spec in self.config.models:
            if spec.display_name is not None:
                models[model_id(spec)] = spec.display_name
        return {"models": models, "methods": dict(self.config.display_names.methods)}

    def read_maps(self, method: str, ids: Sequence[str] | None = None,
                  models: Sequence[str] | None = None) -> np.ndarray:
        """Maps of every model for `method`, as float32 [M, N, H, W] (models x images);
        `ids` reads only those images (default: all of the study's), `models` only those
        models, in that order (default: all)."""
        from .attribution import applies_to
        from .store.keys import maps_entry

        params = self.config.methods[method]
        ids = self.dataset.ids if ids is None else list(ids)
        shape = (len(ids), self.dataset.size, self.dataset.size)
        chosen = self.models
        if models is not None:
            by_name = {m.name: m for m in self.models}
            unknown = [name for name in models if name not in by_name]
            if unknown:
                raise UserError(f"models {unknown} are not in the study; accepted: "
                                f"{', '.join(by_name)}")
            chosen = [by_name[name] for name in models]
        out = [maps_entry(self.store, m, method, params, self.dataset_identity,
                          self.config.target, autocast=self.config.executor.autocast,
                          seed=self.config.seed)
               .read(ids, ["maps"])["maps"] if applies_to(method, m)
               else np.full(shape, np.nan, np.float32)  # not applicable: no map at all
               for m in chosen]
        return np.stack(out).astype(np.float32, copy=False)

    def not_applicable(self, method: str) -> list[str]:
        """Models `method` cannot explain (their maps read as NaN and are left out)."""
        from .attribution import applies_to

        return [m.name for m in self.models if not applies_to(method, m)]

    def read_logits(self, condition: str = "clean",
                    ids: Sequence[str] | None = None) -> np.ndarray:
        """Logits of every model as float32 [M, N, K]; `ids` as for read_maps."""
        from .store.keys import logits_entry

        # autocast applies to the explain stage only (clean logits), not to corruptions
        precision = self.config.executor.autocast if condition == "clean" else "none"
        ids = self.dataset.ids if ids is None else list(ids)
        out = [logits_entry(self.store, m, self.dataset_identity, condition, autocast=precision)
               .read(ids, ["logits"])["logits"] for m in self.models]
        return np.stack(out).astype(np.float32)

    def read_features(self, ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Each model's penultimate representation (classifier input) of the clean images,
        float32 [N, F]; models without a readable classifier input are left out."""
        from .store.keys import features_entry

        ids = self.dataset.ids if ids is None else list(ids)
        out = {m.name: features_entry(self.store, m, self.dataset_identity,
                                      self.config.executor.autocast)
               .read(ids, ["features"])["features"].astype(np.float32) for m in self.models}
        return {name: f for name, f in out.items() if f.shape[1] > 0}

    def run(self, stages: tuple[str, ...] = STAGES) -> StudyResult:
        """Run `stages` in order, each resuming from the store.

        Holds the run folder's lock (engine/lock.py) throughout: a second run on the same
        folder stops with a UserError naming the holder. A full disk or a read-only folder
        is a UserError naming the folder; everything finished before it stays in the store.
        """
        import contextlib

        from .engine.lock import run_lock
        from .files import UNWRITABLE, remove_stale_temporaries, unwritable_folder_error

        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise UserError(f"unknown stage(s) {unknown}; accepted: {', '.join(STAGES)}")
        from .config_checks import check_executor

        check_executor(self.config)  # a device set after parsing is checked before compute
        if "compare" in stages:
            from .stages.compare import check_compare_settings

            # before hours of explaining
            check_compare_settings(self.config.compare, self.config.methods)
        with run_lock(self.run_dir), contextlib.ExitStack() as cleanup:
            try:
                # left by a killed run anywhere in the run folder; we hold the lock
                remove_stale_temporaries(self.run_dir)
                handler = logging.FileHandler(self.run_dir / "log.txt")
                cleanup.callback(handler.close)
                handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
                for logger in (log, logging.getLogger("py.warnings")):
                    logger.addHandler(handler)
                    cleanup.callback(logger.removeHandler, handler)
                log.setLevel(logging.INFO)
                self.display = RunDisplay(enabled=self.progress)
                for stage in stages:
                    start = time.perf_counter()
                    log.info("stage %s started", stage)
                    with self.display.stage(stage):
                        getattr(self, stage)()
                    self.result.timings[stage] = round(time.perf_counter() - start, 2)
                    log.info("stage %s finished in %.1f s", stage, self.result.timings[stage])
                    self.write_metadata()
            except OSError as err:
                if err.errno in UNWRITABLE:
                    raise unwritable_folder_error(self.run_dir, err) from None
                raise
        return self.result
