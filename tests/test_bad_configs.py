"""The adversarial corpus of bad study files, kept as a table: each YAML text gets exit code 2
from `xaicompare validate` with one line naming the problem (no traceback), before any
compute. Most run the CLI in-process (fast); a few run the real command in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xaicompare.cli import main

MODEL = "{source: test_resnet, pretrained: false, num_classes: 10, class_indices: null}"
DEFAULTS = {"name": "bad", "output": "OUT/run", "models": f"[{MODEL}]",
            "methods": "{gradcam: {}}"}


def doc(**sections: str) -> str:
    """A study file: the defaults above, with top-level sections replaced or added (None
    drops one)."""
    merged = {**DEFAULTS, **sections}
    return "".join(f"{key}: {value}\n" for key, value in merged.items() if value is not None)


def bomb(levels: int = 9) -> str:
    """A billion-laughs alias bomb as the body of a mapping (flow style)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "{" + ", ".join(lines) + "}"


ZOO = "zoo:shapes-resnet"
CASES: list[tuple[str, str, str]] = [
    # -- the YAML itself
    ("empty file", "", "a study config must be a mapping of keys, got NoneType"),
    ("a list", "- a\n- b\n", "must be a mapping of keys, got list"),
    ("a scalar", "just text\n", "must be a mapping of keys, got str"),
    ("unclosed", "name: [unclosed\n", "not valid YAML"),
    ("tab indent", "name: x\nmodels:\n\t- {source: resnet18}\n", "not valid YAML"),
    ("duplicate top key", doc() + "name: again\n", "duplicate key 'name' (first on line 1)"),
    ("duplicate nested key", doc(compare="{metrics: [cosine], metrics: [rbf]}"),
     "duplicate key 'metrics'"),
    ("duplicate method", doc(methods="{gradcam: {}, gradcam: {}}"), "duplicate key 'gradcam'"),
    ("bomb in metric_options", doc(compare=f"{{metric_options: {{rbf: {bomb()}}}}}"),
     "YAML aliases expand to more than 100000 values"),
    ("bomb at top level", doc(extra=bomb()), "YAML aliases expand to more than"),
    ("bomb in kwargs", doc(models=f"[{{source: test_resnet, kwargs: {bomb()}}}]"),
     "YAML aliases expand to more than"),
    ("recursive alias", doc(compare="&c {metric_options: {rbf: *c}}"), "recursive structure"),
    ("too many aliases", "x: &x 1\nl: [" + ", ".join(["*x"] * 101) + "]\n" + doc(),
     "more than 100 YAML aliases"),
    ("unknown top key", doc(modelz="[]"), "modelz: unknown key (did you mean 'models'?)"),
    # -- name, output, seed, target
    ("no name", doc(name=None), "name: Field required"),
    ("empty name", doc(name="''"), "name: String should have at least 1 character"),
    ("name ..", doc(name="'..'"), "name: got '..'; accepted: a non-empty folder name"),
    ("name .", doc(name="'.'"), "name: got '.'; accepted"),
    ("name with slash", doc(name="a/b"), "name: got 'a/b'; accepted"),
    ("name with spaces", doc(name="' x'"), "name: got ' x'; accepted"),
    ("name a list", doc(name="[a]"), "name: Input should be a valid string"),
    ("empty output", doc(output="''"), "output: String should have at least 1 character"),
    ("output is a file", doc(output="OUT/file.txt"), "is an existing file, not a folder"),
    ("output under a file", doc(output="OUT/file.txt/run"), "cannot be made: "),
    ("output placeholder", doc(output="'runs/{nam}'"), "is not a valid folder template"),
    ("output NUL", doc(output='"runs/a\\0b"'), "contains a NUL character"),
    ("seed -1", doc(seed="-1"), "seed: Input should be greater than or equal to 0"),
    ("seed float", doc(seed="1.5"), "seed: Input should be a valid integer"),
    ("seed text", doc(seed="abc"), "seed: Input should be a valid integer"),
    ("target", doc(target="labels"), "target: got 'labels'; input should be 'predicted'"),
    # -- models
    ("no models", doc(models=None), "models: Field required"),
    ("empty models", doc(models="[]"), "models: List should have at least 1 item"),
    ("models a mapping", doc(models="{source: resnet18}"), "models: Input should be a valid list"),
    ("model typo key", doc(models="[{source: resnet18, pretraind: false}]"),
     "models[0].pretraind: unknown key (did you mean 'pretrained'?)"),
    ("model no source", doc(models="[{pretrained: false}]"), "models[0].source: Field required"),
    ("unknown timm", doc(models="[{source: resnet181}]"),
     "models[0].source: unknown timm model 'resnet181'"),
    ("unknown zoo", doc(models="[{source: 'zoo:nope'}]"), "unknown zoo model 'nope'"),
    ("missing checkpoint source", doc(models="[{source: ./missing.safetensors}]"),
     "models[0].source: checkpoint file './missing.safetensors' does not exist"),
    ("missing checkpoint path", doc(models="[{source: runs/old/model}]"),
     "models[0].source: checkpoint file 'runs/old/model' does not exist"),
    ("missing checkpoint field", doc(models="[{source: resnet18, checkpoint: gone.pt}]"),
     "models[0].checkpoint: file 'gone.pt' does not exist"),
    ("family", doc(models="[{source: resnet18, family: rnn}]"), "models[0].family: got 'rnn'"),
    ("pretrained maybe", doc(models="[{source: resnet18, pretrained: maybe}]"),
     "models[0].pretrained: Input should be a valid boolean"),
    ("num_classes text", doc(models="[{source: resnet18, num_classes: ten}]"),
     "models[0].num_classes: Input should be a valid integer"),
    ("kwargs a list", doc(models="[{source: resnet18, kwargs: [1]}]"),
     "models[0].kwargs: Input should be a valid dictionary"),
    ("zoo with layer", doc(models=f"[{{source: '{ZOO}', layer: 0.5}}]"),
     "models[0].layer: not used for zoo models"),
    ("zoo with kwargs", doc(models=f"[{{source: '{ZOO}', kwargs: {{drop_rate: 0.1}}}}]"),
     "models[0].kwargs: not used for zoo models"),
    ("zoo with num_classes", doc(models=f"[{{source: '{ZOO}', num_classes: 5}}]"),
     "models[0].num_classes: not used for zoo models"),
    ("zoo:all with name", doc(models="[{source: 'zoo:all', name: mine}]"),
     "models[0].name: not used for zoo models"),
    ("kwargs checkpoint_path", doc(models="[{source: resnet18, kwargs: {checkpoint_path: x}}]"),
     "models[0].kwargs.checkpoint_path: not accepted: it makes timm torch.load a file"),
    ("kwargs overlay file", doc(models="[{source: resnet18, kwargs: "
                                       "{pretrained_cfg_overlay: {file: x.pth}}}]"),
     "models[0].kwargs.pretrained_cfg_overlay.file: not accepted"),
    ("kwargs pretrained_cfg url", doc(models="[{source: resnet18, kwargs: "
                                             "{pretrained_cfg: {url: 'http://x'}}}]"),
     "models[0].kwargs.pretrained_cfg.url: not accepted"),
    ("kwargs pretrained", doc(models="[{source: resnet18, kwargs: {pretrained: true}}]"),
     "models[0].kwargs.pretrained: not accepted"),
    ("kwargs features_only", doc(models="[{source: resnet18, kwargs: {features_only: true}}]"),
     "models[0].kwargs.features_only: not accepted"),
    ("kwargs cache_dir", doc(models="[{source: resnet18, kwargs: {cache_dir: /tmp}}]"),
     "models[0].kwargs.cache_dir: not accepted"),
    # -- methods
    ("no methods", doc(methods="{}"), "methods: Dictionary should have at least 1 item"),
    ("methods a list", doc(methods="[gradcam]"), "methods: Input should be a valid dictionary"),
    ("method params a number", doc(methods="{gradcam: 3}"),
     "methods.gradcam: Input should be a valid dictionary"),
    ("unknown method", doc(methods="{gradcamm: {}}"),
     "methods.gradcamm: unknown method (did you mean 'gradcam'?)"),
    ("ig typo", doc(methods="{integrated_gradients: {nsteps: 8}}"),
     "methods.integrated_gradients.nsteps: unknown parameter (did you mean 'n_steps'?)"),
    ("ig n_steps 0", doc(methods="{integrated_gradients: {n_steps: 0}}"),
     "methods.integrated_gradients.n_steps: got 0; accepted: an integer >= 1"),
    ("shap n_samples 0", doc(methods="{kernelshap: {n_samples: 0}}"),
     "methods.kernelshap.n_samples: got 0"),
    ("shap n_samples text", doc(methods="{kernelshap: {n_samples: many}}"),
     "methods.kernelshap.n_samples: got 'many'"),
    ("shap n_segments 1", doc(methods="{kernelshap: {n_segments: 1}}"),
     "methods.kernelshap.n_segments: got 1; accepted: an integer >= 2"),
    ("gradcam upsample", doc(methods="{gradcam: {upsample: bicubic}}"),
     "methods.gradcam.upsample: got 'bicubic'; accepted: one of bilinear, nearest"),
    ("gradcam relu", doc(methods="{gradcam: {relu: 'no'}}"),
     "methods.gradcam.relu: got 'no'; accepted: true or false"),
    ("gradcam layer depth", doc(methods="{gradcam: {layer: 1.5}}"),
     "methods.gradcam.layer: got 1.5; accepted: a module name or a relative depth in (0, 1]"),
    ("ig baseline", doc(methods="{integrated_gradients: {baseline: blak}}"),
     "methods.integrated_gradients.baseline: got 'blak'; accepted: one of black, white"),
    ("ig quadrature", doc(methods="{integrated_gradients: {quadrature: simpson}}"),
     "methods.integrated_gradients.quadrature: got 'simpson'"),
    ("ig reduction", doc(methods="{integrated_gradients: {reduction: max}}"),
     "methods.integrated_gradients.reduction: got 'max'; accepted: one of sum, abs, l2"),
    ("ig seed", doc(methods="{integrated_gradients: {seed: -1}}"),
     "methods.integrated_gradients.seed: got -1; accepted: an integer >= 0"),
    ("ig internal batch", doc(methods="{integrated_gradients: {internal_batch_size: 0}}"),
     "methods.integrated_gradients.internal_batch_size: got 0"),
    ("shap compactness", doc(methods="{kernelshap: {compactness: 0}}"),
     "methods.kernelshap.compactness: got 0; accepted: a number > 0"),
    ("shap segments", doc(methods="{kernelshap: {segments: [1, 2]}}"),
     "methods.kernelshap.segments: not set in a study file"),
    ("rollout fusion", doc(models="[{source: vit_tiny_patch16_224, pretrained: false}]",
                           methods="{rollout: {head_fusion: avg}}"),
     "methods.rollout.head_fusion: got 'avg'; accepted: one of mean, max, min"),
    ("rollout discard", doc(models="[{source: vit_tiny_patch16_224, pretrained: false}]",
                            methods="{rollout: {discard_ratio: 1.0}}"),
     "methods.rollout.discard_ratio: got 1.0; accepted: a number in [0, 1)"),
    ("rollout on a cnn", doc(methods="{rollout: {}}"),
     "methods.rollout: applies to none of the study's models (test_resnet)"),
    ("rollout on swin", doc(models="[{source: swin_tiny_patch4_window7_224, pretrained: false}]",
                            methods="{gradcam: {}, rollout: {}}"),
     "methods.rollout: applies to none"),
    # -- dataset
    ("dataset name", doc(dataset="{name: cifar}"), "dataset.name: got 'cifar'"),
    ("folder without root", doc(dataset="{name: folder}"),
     "dataset.options.root: required for dataset 'folder'"),
    ("folder root missing", doc(dataset="{name: folder, options: {root: OUT/none}}"),
     "dataset.options.root: folder 'OUT/none' does not exist"),
    ("folder root a file", doc(dataset="{name: folder, options: {root: OUT/file.txt}}"),
     "dataset.options.root: folder 'OUT/file.txt' is a file; accepted: a folder"),
    ("shapes unknown option", doc(dataset="{name: shapes, options: {bogus: 1}}"),
     "dataset.options.bogus: unknown option for dataset 'shapes'; accepted: n, split"),
    ("imagenette option typo", doc(dataset="{name: imagenette, options: {sizee: 3}}"),
     "dataset.options.sizee: unknown option for dataset 'imagenette' (did you mean 'size'?)"),
    ("folder option typo", doc(dataset="{name: folder, options: {root: OUT, class_name: [a]}}"),
     "dataset.options.class_name: unknown option for dataset 'folder' (did you mean "
     "'class_names'?)"),
    ("shapes split", doc(dataset="{name: shapes, options: {split: validation}}"),
     "dataset.options.split: got 'validation' for dataset 'shapes'; accepted: train, val, test"),
    ("imagenette split", doc(dataset="{name: imagenette, options: {split: test}}"),
     "dataset.options.split: got 'test' for dataset 'imagenette'; accepted: train, val"),
    ("imagenette size variant", doc(dataset="{name: imagenette, options: {size_variant: 224}}"),
     "dataset.options.size_variant: got 224 for dataset 'imagenette'; accepted: None, 320, 160"),
    ("resize policy", doc(dataset="{name: folder, options: {root: OUT, policy: stretch}}"),
     "dataset.options.policy: got 'stretch' for dataset 'folder'; accepted: resize_crop"),
    ("image size 0", doc(dataset="{name: shapes, options: {size: 0}}"),
     "dataset.options.size: got 0; accepted: an integer >= 1"),
    ("shapes n text", doc(dataset="{name: shapes, options: {n: lots}}"),
     "dataset.options.n: got 'lots'"),
    ("dataset options a list", doc(dataset="{name: shapes, options: [1]}"),
     "dataset.options: Input should be a valid dictionary"),
    ("n_images 0", doc(dataset="{n_images: 0}"),
     "dataset.n_images: Input should be greater than or equal to 1"),
    ("n_images text", doc(dataset="{n_images: many}"), "dataset.n_images: Input should be"),
    ("dataset seed", doc(dataset="{seed: -3}"), "dataset.seed: Input should be greater than"),
    ("stratify", doc(dataset="{stratify: maybe}"), "dataset.stratify: Input should be a valid "
                                                   "boolean"),
    ("manifest missing", doc(dataset="{manifest: OUT/none.json}"),
     "dataset.manifest: 'OUT/none.json' does not exist"),
    # -- compare
    ("no metrics", doc(compare="{metrics: []}"),
     "compare.metrics: List should have at least 1 item"),
    ("metrics a string", doc(compare="{metrics: cosine}"),
     "compare.metrics: Input should be a valid list"),
    ("metric typo", doc(compare="{metrics: [cosin]}"),
     "compare.metrics[0]: unknown metric 'cosin' (did you mean 'cosine'?)"),
    ("normalization typo", doc(compare="{normalization: minmx}"),
     "compare.normalization: got 'minmx' (did you mean 'minmax'?); accepted: none, abs"),
    ("resolution typo", doc(compare="{resolution: pixel}"),
     "compare.resolution: got 'pixel' (did you mean 'pixels'?)"),
    ("resolution pixels without size", doc(compare="{resolution: pixels}"),
     "compare.resolution: 'pixels' needs a target size, which a study file cannot give"),
    ("degenerate", doc(compare="{degenerate: drop}"), "compare.degenerate: got 'drop'"),
    ("filter", doc(compare="{filter: nope}"), "compare.filter: unknown filter 'nope'"),
    ("options for an absent metric", doc(compare="{metrics: [cosine], "
                                                 "metric_options: {rbf: {sigma: 2}}}"),
     "compare.metric_options.rbf: not one of compare.metrics (cosine)"),
    ("metric option typo", doc(compare="{metric_options: {rbf: {sigmaa: 1}}}"),
     "compare.metric_options.rbf: metric 'rbf' got unknown option(s) ['sigmaa']"),
    ("rbf sigma negative", doc(compare="{metric_options: {rbf: {sigma: -1}}}"),
     "compare.metric_options.rbf: rbf sigma=-1 is not accepted"),
    ("metric options a number", doc(compare="{metric_options: {rbf: 3}}"),
     "compare.metric_options.rbf: Input should be a valid dictionary"),
    # -- cluster
    ("k 0", doc(cluster="{k: 0}"), "cluster.k: Input should be greater than or equal to 1"),
    ("k beyond the models", doc(cluster="{k: 5}"),
     "cluster.k: 5 clusters asked for, but the study has 1 model(s); accepted: 1 to 1"),
    ("k beyond zoo:all", doc(models="[{source: 'zoo:all'}]", cluster="{k: 50}"),
     "cluster.k: 50 clusters asked for, but the study has 7 model(s)"),
    ("linkage", doc(cluster="{method: centroid}"), "cluster.method: got 'centroid'"),
    ("louvain resolution", doc(cluster="{louvain_resolution: 0}"),
     "cluster.louvain_resolution: Input should be greater than 0"),
    ("permutations", doc(cluster="{permutations: 0}"), "cluster.permutations: Input should be"),
    ("louvain weight", doc(cluster="{louvain_weight: raw}"), "cluster.louvain_weight: got 'raw'"),
    # -- diversity, trust, report
    ("corruption typo", doc(diversity="{corruptions: [gaussian_nois]}"),
     "diversity.corruptions[0]: unknown corruption 'gaussian_nois' (did you mean"),
    ("severity 6", doc(diversity="{severities: [6]}"), "diversity.severities[0]: got 6"),
    ("severity 0", doc(diversity="{severities: [1, 0]}"), "diversity.severities[1]: got 0"),
    ("ensemble size", doc(diversity="{ensemble_size: 1}"), "diversity.ensemble_size: Input"),
    ("calibration bins", doc(diversity="{calibration_bins: 1}"), "diversity.calibration_bins"),
    ("binning", doc(diversity="{calibration_binning: quantile}"),
     "diversity.calibration_binning: got 'quantile'"),
    ("resamples", doc(trust="{n_resamples: 5}"),
     "trust.n_resamples: Input should be greater than or equal to 10"),
    ("ci 1.5", doc(trust="{ci: 1.5}"), "trust.ci: Input should be less than 1"),
    ("ci 0", doc(trust="{ci: 0}"), "trust.ci: Input should be greater than 0"),
    ("faithfulness steps", doc(trust="{faithfulness_steps: 1}"), "trust.faithfulness_steps"),
    ("randomization images", doc(trust="{randomization_images: 0}"),
     "trust.randomization_images"),
    ("report format", doc(report="{formats: [gif]}"), "report.formats[0]: got 'gif'"),
    ("report depth 0", doc(report="{depths: [0]}"), "report.depths[0]: Input should be greater"),
    ("report depth 1.5", doc(report="{depths: [1.5]}"), "report.depths[0]: Input should be less"),
    ("atlas images", doc(report="{atlas_images: -1}"), "report.atlas_images: Input should be"),
    # -- executor
    ("executor kind", doc(executor="{kind: slurm}"), "executor.kind: got 'slurm'"),
    ("device tpu", doc(executor="{device: tpu}"),
     "executor.device: got 'tpu'; accepted: auto, cpu, cuda, cuda:N, mps (this machine has:"),
    ("device GPU", doc(executor="{device: GPU}"), "executor.device: got 'GPU'"),
    ("device number", doc(executor="{device: 0}"), "executor.device: got 0"),
    ("device absent gpu", doc(executor="{device: 'cuda:99'}"),
     "executor.device: 'cuda:99' is not available on this machine; it has: cpu"),
    ("batch 0", doc(executor="{batch_size: 0}"),
     "executor.batch_size: got 0; accepted: auto or an integer >= 1"),
    ("batch negative", doc(executor="{batch_size: -4}"), "executor.batch_size: got -4"),
    ("batch text", doc(executor="{batch_size: big}"), "executor.batch_size: got 'big'"),
    ("batch float", doc(executor="{batch_size: 2.5}"), "executor.batch_size: got 2.5"),
    ("batch bool", doc(executor="{batch_size: true}"), "executor.batch_size: got True"),
    ("threads", doc(executor="{threads: 0}"), "executor.threads: Input should be greater"),
    ("workers", doc(executor="{workers: 0}"), "executor.workers: Input should be greater"),
    ("cpus per worker", doc(executor="{cpus_per_worker: 0}"), "executor.cpus_per_worker"),
    ("gpus per worker", doc(executor="{gpus_per_worker: -1}"), "executor.gpus_per_worker"),
    ("retries", doc(executor="{retries: -1}"), "executor.retries: Input should be greater"),
    ("autocast", doc(executor="{autocast: fp8}"), "executor.autocast: got 'fp8'"),
]


def test_the_corpus_is_large_and_distinct():
    assert len(CASES) >= 80
    assert len({name for name, _, _ in CASES}) == len(CASES)
    assert len({text for _, text, _ in CASES}) == len(CASES)


def write_case(tmp_path: Path, text: str) -> Path:
    (tmp_path / "file.txt").write_text("not a folder")
    path = tmp_path / "study.yaml"
    path.write_text(text.replace("OUT", str(tmp_path)))
    return path


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_validate_exits_2_with_one_line(tmp_path, capsys, name, text, expected):
    path = write_case(tmp_path, text)
    code = main(["validate", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2, (name, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {path}: "), err
    assert expected.replace("OUT", str(tmp_path)) in err, err
    assert not (tmp_path / "run").exists()  # nothing computed, no run folder made


REAL_CLI = ["bomb in metric_options", "duplicate nested key", "device tpu", "batch 0"]


def test_the_real_command_exits_2_without_traceback(tmp_path):
    """The installed entry point (python -m xaicompare.cli), one process for a few cases."""
    by_name = {name: (text, expected) for name, text, expected in CASES}
    for i, name in enumerate(REAL_CLI):
        text, expected = by_name[name]
        folder = tmp_path / str(i)
        folder.mkdir()
        path = write_case(folder, text)
        result = subprocess.run([sys.executable, "-m", "xaicompare.cli", "validate", str(path)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert expected in lines[0], lines[0]


def test_modest_aliases_and_merge_keys_still_load(tmp_path):
    """The limits leave room for what a hand-written study file does with anchors."""
    from xaicompare.study_config import load_config

    text = doc(models="[&m {source: test_resnet, pretrained: false, num_classes: 10, "
                      "class_indices: null, name: a}, {<<: *m, name: b}]",
               compare="{metrics: &metrics [cosine, rbf]}",
               cluster="{k: 2}")
    config = load_config(write_case(tmp_path, text))
    assert [m.name for m in config.models] == ["a", "b"]
    assert config.models[1].source == "test_resnet" and config.compare.metrics == ["cosine", "rbf"]


def test_more_images_than_the_dataset_is_a_warning(tmp_path, capsys):
    text = doc(dataset="{name: shapes, options: {n: 32, size: 32}, n_images: 10000}")
    assert main(["validate", str(write_case(tmp_path, text))]) == 0
    err = capsys.readouterr().err.strip()
    assert err == ("WARNING: dataset.n_images 10000 is more than the 32 images of dataset "
                   "'shapes' (options.n); the study uses all 32")
