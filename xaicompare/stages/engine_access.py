"""What a stage may ask of the engine about the study's models, without holding them.

`StudyEngine` binds the loaded models, the images, the store and the run's settings; the
stage contexts (contexts.py) carry its bound methods as narrow callables: compute something
with engine units (stored per shard, resumable, local or on Ray) and read it back from the
store, by model name. So a stage never calls a model, and a test hands it fakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import ExecutorConfig
from ..store import Store


def corrupted_condition(name: str, severity: int, seed: int) -> str:
    """The store key of a corruption's predictions; a changed corruption gets a new one."""
    from ..data.corruptions import VERSIONS

    version = VERSIONS.get(name, 1)
    return f"{name}{f'-v{version}' if version > 1 else ''}-s{severity}-seed{seed}"


@dataclass(frozen=True)
class StudyEngine:
    models: tuple  # the loaded models, in the study's order (only engine units call them)
    dataset: Any  # the study's ImageSet
    store: Store
    dataset_identity: dict
    target: str  # the study's target rule ("predicted" or "label"): part of every map's key
    seed: int
    methods: Mapping[str, dict]  # method -> its parameters (the study's)
    executor: ExecutorConfig
    progress: bool

    def _model(self, name: str):
        return {m.name: m for m in self.models}[name]

    def _options(self) -> dict:
        executor = self.executor
        return {"batch_size": executor.batch_size, "device": executor.device,
                "progress": self.progress, "executor": executor}

    # -- faithfulness curves (engine/trust_units.py) ----------------------------------------
    def faithfulness_job(self, steps: int):
        from ..engine.trust_units import FaithfulnessJob

        return FaithfulnessJob(dict(self.methods), self.dataset_identity, self.target,
                               self.seed, self.executor.autocast, steps, "black",
                               memory=self.executor.memory)

    def curve_orders(self, steps: int) -> tuple[str, ...]:
        return self.faithfulness_job(steps).orders

    def compute_curves(self, ids: Sequence[str], steps: int) -> None:
        """Deletion / insertion curves of every model x method (that applies) x order."""
        from ..engine.trust_runs import run_faithfulness

        run_faithfulness(self.models, self.dataset.select_ids(list(ids)),
                         self.faithfulness_job(steps), self.store, **self._options())

    def read_curves(self, model: str, method: str, order: str, ids: Sequence[str],
                    steps: int) -> dict[str, np.ndarray]:
        """Each image's deletion and insertion AUC [N] (of the stored curves)."""
        from ..engine.trust_units import curves_entry

        entry = curves_entry(self.store, self._model(model), method, order,
                             self.faithfulness_job(steps))
        return entry.read(list(ids), ["deletion_auc", "insertion_auc"])

    # -- the randomised models' maps ---------------------------------------------------------
    def randomization_job(self, methods: Mapping[str, dict]):
        from ..engine.trust_units import RandomizationJob

        return RandomizationJob(dict(methods), self.dataset_identity, self.target, self.seed,
                                self.executor.autocast, memory=self.executor.memory)

    def compute_randomized_maps(self, methods: Mapping[str, dict], ids: Sequence[str]) -> None:
        """Maps of every model's randomised copy for `methods` (that apply to it)."""
        from ..engine.trust_runs import run_randomized_maps

        run_randomized_maps(self.models, self.dataset.select_ids(list(ids)),
                            self.randomization_job(methods), self.store, **self._options())

    def read_randomized_maps(self, model: str, method: str, ids: Sequence[str]) -> np.ndarray:
        """The randomised copy's maps [N, H, W] as float32 (stored in float16)."""
        from ..store.keys import randomized_maps_entry

        job = self.randomization_job({method: self.methods[method]})
        entry = randomized_maps_entry(self.store, self._model(model), method,
                                      self.methods[method], self.dataset_identity,
                                      self.target, job.mode, job.seed, job.autocast)
        return entry.read(list(ids), ["maps"])["maps"].astype(np.float32)

    # -- Grad-CAM at other depths (an ordinary method: `layer` is the depth) -----------------
    def _depth_entry(self, model: str, depth: float):
        from ..store.keys import maps_entry

        cfg = self.executor
        return maps_entry(self.store, self._model(model), "gradcam", {"layer": depth},
                          self.dataset_identity, self.target, cfg.autocast, self.seed)

    def check_depth(self, model: str, depth: float) -> None:
        """UserError where `model` has no Grad-CAM layer at `depth` (e.g. no spatial grid)."""
        self._depth_entry(model, depth)  # resolves the layer at that depth

    def compute_depth_maps(self, models: Sequence[str], depth: float,
                           ids: Sequence[str]) -> None:
        from ..engine.runner import run_explanations

        chosen = [self._model(name) for name in models]
        run_explanations(chosen, self.dataset.select_ids(list(ids)),
                         {"gradcam": {"layer": depth}}, self.store,
                         dataset_identity=self.dataset_identity, target=self.target,
                         seed=self.seed, autocast=self.executor.autocast, **self._options())

    def read_depth_maps(self, model: str, depth: float, ids: Sequence[str]) -> np.ndarray:
        return self._depth_entry(model, depth).read(list(ids), ["maps"])["maps"].astype(
            np.float32)

    # -- corrupted predictions (engine/corrupted_logits.py) ----------------------------------
    def compute_corrupted_logits(self, corruptions: Sequence[str],
                                 severities: Sequence[int]) -> None:
        """Logits of every model on every corruption x severity (their store keys:
        corrupted_condition)."""
        from ..engine.corrupted_logits import Condition, run_corrupted_logits

        conditions = [Condition(c, s, corrupted_condition(c, s, self.seed))
                      for c in corruptions for s in severities]
        run_corrupted_logits(self.models, self.dataset, conditions, self.store,
                             dataset_identity=self.dataset_identity, seed=self.seed,
                             **self._options())
