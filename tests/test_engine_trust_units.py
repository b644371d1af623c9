"""The trust stage's engine units give the numbers the stage computed itself before:
faithfulness curves (deletion / insertion, Petsiuk et al.) and the randomisation test
(Adebayo et al.), checked against the public functions called directly on the same stored
maps, targets and images; both units resume from the store."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from xaicompare.attribution import explain
from xaicompare.engine.trust_runs import run_faithfulness, run_randomized_maps
from xaicompare.engine.trust_units import (
    FaithfulnessJob,
    RandomizationJob,
    curves_entry,
    random_order_seeds,
)
from xaicompare.engine.units import map_array
from xaicompare.stages import trust as trust_stage
from xaicompare.stages.contexts import trust_context
from xaicompare.study import Study
from xaicompare.trust import (
    deletion_insertion_curves,
    randomization_similarity,
    randomize_weights,
    sanity_scores,
)
from xaicompare.trust.randomization import randomization_row

N = 3  # images of the trust subsets


def config(folder):
    return {
        "name": "trust-units", "output": str(folder), "seed": 2,
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 20, "size": 32},
                    "n_images": 4},
        "models": [{"source": "zoo:shapes-resnet"}, {"source": "zoo:shapes-pvt"}],
        "methods": {"gradcam": {}, "integrated_gradients": {"n_steps": 4}},
        "trust": {"faithfulness_images": N, "faithfulness_steps": 3, "randomization": True,
                  "randomization_images": N},
        "executor": {"threads": 1, "batch_size": 2},
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    study = Study.from_dict(config(tmp_path_factory.mktemp("trust-units") / "run"),
                            progress=False)
    study.explain()
    return study


def job(study, orders=("descending", "random")) -> FaithfulnessJob:
    return FaithfulnessJob(dict(study.config.methods), study.dataset_identity, "predicted",
                           study.config.seed, "none", study.config.trust.faithfulness_steps,
                           "black", orders)


def old_faithfulness_table(study) -> pd.DataFrame:
    """The trust stage's faithfulness before the engine ran it: its own curves per model x
    method on the whole subset at once, from the stored maps and logits."""
    ids = list(study.dataset.ids[:N])
    images, logits = study.dataset.load(list(range(N))), study.read_logits(ids=ids)
    rows = []
    for method in study.config.methods:
        maps = study.read_maps(method, ids)
        for m, model in enumerate(study.models):
            curves = deletion_insertion_curves(
                model, images, torch.from_numpy(maps[m]), torch.from_numpy(logits[m].argmax(-1)),
                steps=study.config.trust.faithfulness_steps, baseline="black",
                order="descending", seed=study.config.seed)
            rows.append({"model": model.name, "method": method, "order": "descending",
                         "deletion_auc": float(np.mean(curves.deletion_auc)),
                         "insertion_auc": float(np.mean(curves.insertion_auc)),
                         "n_images": N})
    return pd.DataFrame(rows)


def test_faithfulness_table_equals_the_stage_s_own_curves(study):
    trust_stage.faithfulness(trust_context(study))
    table = pd.read_csv(study.run_dir / "tables/trust/faithfulness.csv", comment="#")
    descending = table[table["order"] == "descending"].reset_index(drop=True)
    old = old_faithfulness_table(study)
    pd.testing.assert_frame_equal(descending[old.columns], old, rtol=1e-12, atol=0)
    assert set(table["order"]) == {"descending", "random"} and len(table) == 2 * len(old)


def test_random_order_is_drawn_per_image_id(study):
    """Each image's random order comes from (seed, image id): the stored AUCs equal the
    curve function on that image alone with that image's seed, whatever the shard."""
    ids = list(study.dataset.ids[:N])
    run_faithfulness(study.models, study.dataset.subset(range(N)), job(study, ("random",)),
                     study.store, batch_size=2, device="cpu", progress=False)
    model, seeds = study.models[0], random_order_seeds(ids, study.config.seed)
    maps = study.read_maps("gradcam", ids)[0]
    targets = study.read_logits(ids=ids)[0].argmax(-1)
    stored = curves_entry(study.store, model, "gradcam", "random", job(study)).read(ids)
    for k in range(N):
        alone = deletion_insertion_curves(
            model, study.dataset.load([k]), torch.from_numpy(maps[k:k + 1]),
            torch.tensor([targets[k]]), steps=study.config.trust.faithfulness_steps,
            order="random", seed=int(seeds[k]))
        np.testing.assert_allclose(stored["deletion_auc"][k], alone.deletion_auc[0], rtol=1e-6)
        np.testing.assert_allclose(stored["insertion_auc"][k], alone.insertion_auc[0],
                                   rtol=1e-6)
        np.testing.assert_allclose(stored["deletion"][k], alone.deletion[0], rtol=1e-6)


def test_faithfulness_units_resume_from_the_store(study):
    subset = study.dataset.subset(range(N))
    first = run_faithfulness(study.models, subset, job(study), study.store, batch_size=2,
                             device="cpu", progress=False)
    assert sum(first.computed.values()) == 0  # stored by the tests above (or here)
    entry = curves_entry(study.store, study.models[1], "integrated_gradients", "descending",
                         job(study))
    before = entry.read(list(subset.ids))
    chunk = sorted((entry.directory / "chunks").glob("*.npz"))[0]
    chunk.unlink()  # one shard lost: only it is computed again
    again = run_faithfulness(study.models, subset, job(study), study.store, batch_size=2,
                             device="cpu", progress=False)
    assert sum(again.computed.values()) in (1, 2)  # the shard's images
    after = curves_entry(study.store, study.models[1], "integrated_gradients", "descending",
                         job(study)).read(list(subset.ids))
    for key in ("deletion_auc", "insertion_auc", "deletion", "insertion"):
        np.testing.assert_array_equal(after[key], before[key])


def randomization_job(study) -> RandomizationJob:
    return RandomizationJob(dict(study.config.methods), study.dataset_identity, "predicted",
                            study.config.seed, "none")


def test_randomization_table_compares_the_stored_maps_with_the_randomised_copy_s(study):
    trust_stage.randomization(trust_context(study))
    table = pd.read_csv(study.run_dir / "tables/trust/randomization.csv", comment="#")
    ids = list(study.dataset.ids[:N])
    images = study.dataset.load(list(range(N)))
    expected, old = [], []
    for method, params in study.config.methods.items():
        for m, model in enumerate(study.models):
            target = torch.from_numpy(study.read_logits(ids=ids)[m].argmax(-1))
            randomized = explain(randomize_weights(model, study.config.seed), images, method,
                                 target, **params).numpy()
            stored = study.read_maps(method, ids, models=[model.name])[0]
            expected.append(pd.DataFrame([randomization_row(
                model.name, method, torch.from_numpy(stored),
                torch.from_numpy(map_array(randomized, "float16").astype(np.float32)),
                "spearman", "all", 0)]))
            old.append(randomization_similarity(model, images, method, metric="spearman",
                                                seed=study.config.seed, **params))
    expected = sanity_scores(expected)
    pd.testing.assert_frame_equal(table[expected.columns], expected, rtol=1e-6, atol=1e-6)
    # the stage before: float32 maps of both models made here, not the stored (float16)
    # ones; the sanity scores differ by the rounding only (measured: < 1e-4)
    old = sanity_scores(old)
    np.testing.assert_allclose(table["sanity_score"], old["sanity_score"], atol=1e-3)


def test_randomized_maps_resume_and_match_a_fresh_explanation(study):
    subset = study.dataset.subset(range(N))
    summary = run_randomized_maps(study.models, subset, randomization_job(study),
                                  study.store, batch_size=2, device="cpu", progress=False)
    assert sum(summary.computed.values()) == 0  # stored by the stage above


def test_out_of_gpu_memory_in_a_unit_is_one_line_and_keeps_finished_units(study, tmp_path,
                                                                           monkeypatch):
    """A CUDA out-of-memory error in a trust unit names the model, the images and the
    setting to change; the units finished before it stay in the store."""
    from xaicompare.engine import trust_runs
    from xaicompare.errors import UserError
    from xaicompare.store import Store

    store = Store(tmp_path / "store")
    subset = study.dataset.subset(list(range(N)))
    for folder in ("maps", "logits"):  # the units read the study's stored maps and logits
        shutil.copytree(study.store.root / folder, store.root / folder)
    real, calls = trust_runs.faithfulness_unit, []

    def second_fails(*args, **kwargs):
        calls.append(args[0].name)
        if len(calls) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(trust_runs, "faithfulness_unit", second_fails)
    one = job(study, orders=("descending",))
    with pytest.raises(UserError, match=r"out of GPU memory for model 'shapes-resnet'.*"
                                        r"executor\.memory.*finished units are kept"):
        run_faithfulness(study.models, subset, one, store, batch_size=N, device="cpu",
                         progress=False)
    first = curves_entry(store, study.models[0], "gradcam", "descending", one)
    assert first.has_all(list(subset.ids))  # the unit before the failure is stored
