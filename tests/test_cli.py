"""CLI: help, version, exit codes and one-line messages for user errors."""

import subprocess
import sys

import pytest

from xaicompare.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_stage(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for command in ("validate", "explain", "compare", "cluster", "diversity", "report", "run",
                    "quickstart", "models", "datasets"):
        assert command in out


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("xaicompare ")


def test_user_error_is_one_line_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "validate", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert err.strip().startswith("error: study config")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_config_message(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmodels: [{source: resnet18}]\nmethods: {gradcamm: {}}\n")
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2 and "did you mean 'gradcam'" in err


def test_verbose_shows_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "xaicompare.cli", "--verbose", "validate", str(tmp_path / "x.yaml")],
        capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.parametrize("args", [["explain"], ["no-such-command"],
                                  ["explain", "x.yaml", "--batch-size"]])
def test_usage_errors_exit_2(capsys, args):
    code, _, _ = run_cli(capsys, *args)
    assert code == 2


def test_bad_batch_size(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmodels: [{source: resnet18, pretrained: false}]\n")
    code, _, err = run_cli(capsys, "explain", str(path), "--batch-size", "zero")
    assert code == 2 and "--batch-size 'zero'" in err


def test_validate_ok(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmodels: [{source: resnet18, pretrained: false}]\n")
    code, out, _ = run_cli(capsys, "validate", str(path))
    assert code == 0 and "ok" in out


def test_finetune_writes_a_checkpoint_that_loads(capsys, tmp_path):
    from xaicompare.models import load_model

    out = tmp_path / "ft.safetensors"
    code, stdout, err = run_cli(capsys, "finetune", "resnet10t", "--dataset", "shapes",
                                "--size", "32", "--max-images", "24", "--epochs", "1",
                                "--no-pretrained", "--out", str(out))
    assert code == 0, err
    model = load_model(out)
    assert model.class_names[:2] == ("disc", "square") and "checkpoint written" in stdout


def test_models_lists_the_zoo(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "shapes-resnet" in out and "resnet50d.ra2_in1k" in out
    from xaicompare.models.zoo import zoo_entries

    for name, entry in zoo_entries().items():  # each with its family and recorded accuracy
        line = next(row for row in out.splitlines() if row.split()[:1] == [name])
        assert entry["family"] in line and f"{entry['test_accuracy']:.1%}" in line
        assert ("texture cue" in line) == bool(entry.get("cue_conflict"))


def test_zoo_train_replays_its_recorded_command(capsys, tmp_path, monkeypatch):
    """The command zoo.json records is one the CLI accepts, with the same arguments."""
    import shlex

    from xaicompare.training import zoo_train

    folder = tmp_path / "my zoo"  # a space: the command must quote it
    recorded = zoo_train._command(folder, 3, None, 4000, 1000, ["shapes-resnet", "shapes-mixer"], 1)
    calls = []
    monkeypatch.setattr(zoo_train, "train_zoo",
                        lambda out, **kw: calls.append((out, kw)) or {"total_seconds": 6.0})
    code, out, _ = run_cli(capsys, *shlex.split(recorded)[1:])
    assert code == 0 and "zoo written to" in out
    (out_dir, options), = calls
    assert out_dir == folder and options["seed"] == 3 and options["threads"] == 1
    assert options["names"] == ["shapes-resnet", "shapes-mixer"]
    code, _, err = run_cli(capsys, "zoo", "train", "--out", str(tmp_path), "--workers", "0")
    assert code == 2 and "Traceback" not in err
    monkeypatch.undo()
    code, _, err = run_cli(capsys, "zoo", "train", "--out", str(tmp_path), "--name", "nope")
    assert code == 2 and "unknown zoo model 'nope'" in err and len(err.strip().splitlines()) == 1


def test_models_probe_prints_a_layer_path_that_layer_accepts(capsys):
    from xaicompare.models import load_model

    code, out, _ = run_cli(capsys, "models", "vit_tiny_patch16_224")
    assert code == 0
    line = next(x for x in out.splitlines() if "Grad-CAM layer:" in x)
    path = line.split("Grad-CAM layer:")[1].split()[0]
    assert f"`layer: {path}`" in line
    model = load_model("vit_tiny_patch16_224", pretrained=False)
    assert dict(model.net.named_modules())[path] is model.cam_layer  # a module path
    again = load_model("vit_tiny_patch16_224", pretrained=False, layer=path)
    assert again.cam.name == model.cam.name and again.cam.grid == model.cam.grid


@pytest.mark.parametrize("stage", ["cluster", "report"])
def test_stages_without_model_compute_have_no_device_flag(capsys, stage):
    code, out, _ = run_cli(capsys, stage, "--help")
    assert code == 0 and "--device" not in out and "--quiet" in out
    code, _, err = run_cli(capsys, stage, "study.yaml", "--device", "cpu")
    assert code == 2 and "--device" in err
