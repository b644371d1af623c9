"""The CLI overrides the study file only with flags the user typed; a device this machine
lacks is one line (exit 2) from the flag, the YAML and the Python API alike, before compute."""

from __future__ import annotations

import pytest
import torch
import yaml

from xaicompare.cli import main
from xaicompare.devices import available_devices, resolve_device
from xaicompare.errors import UserError
from xaicompare.models import load_model
from xaicompare.study import Study

MODEL = {"source": "test_resnet", "pretrained": False, "num_classes": 10,
         "class_indices": None}
ABSENT_GPU = f"cuda:{torch.cuda.device_count() + 7}"  # absent on every machine


def study_dict(tmp_path, **executor) -> dict:
    return {"name": "flags", "output": str(tmp_path / "run"), "models": [MODEL],
            "dataset": {"name": "shapes", "options": {"split": "test", "n": 4, "size": 32}},
            "methods": {"gradcam": {}}, "executor": executor}


def write(tmp_path, **executor):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_dict(tmp_path, **executor)))
    return path


def resolved_executor(tmp_path) -> dict:
    return yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["executor"]


def chunks_per_entry(tmp_path) -> set[int]:
    entries = (tmp_path / "run" / "store").glob("*/*/chunks")
    return {len(list(folder.glob("*.npz"))) for folder in entries}


def test_study_file_executor_is_honoured_without_flags(tmp_path, capsys):
    study = write(tmp_path, device="cpu", batch_size=3)
    assert main(["explain", str(study), "--quiet"]) == 0
    assert resolved_executor(tmp_path)["device"] == "cpu"
    assert resolved_executor(tmp_path)["batch_size"] == 3
    assert chunks_per_entry(tmp_path) == {2}  # 4 images in shards of 3: two chunks


def test_typed_flags_override_the_study_file(tmp_path, capsys):
    study = write(tmp_path, device="cpu", batch_size=3)
    assert main(["explain", str(study), "--quiet", "--batch-size", "4", "--device", "cpu"]) == 0
    assert resolved_executor(tmp_path)["batch_size"] == 4
    assert chunks_per_entry(tmp_path) == {1}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("device", ["tpu", ABSENT_GPU, "cuda:x", "CPU"])
def test_absent_device_from_the_flag_names_the_devices_there_are(tmp_path, capsys, device):
    study = write(tmp_path)
    assert main(["run", str(study), "--quiet", "--device", device]) == 2
    err = one_line_error(capsys)
    assert err.startswith("error: --device: ") and ", ".join(available_devices()) in err
    assert not (tmp_path / "run" / "store").exists()  # nothing computed


@pytest.mark.parametrize("device", ["tpu", ABSENT_GPU])
def test_absent_device_from_the_yaml_fails_validate(tmp_path, capsys, device):
    study = write(tmp_path, device=device)
    assert main(["validate", str(study)]) == 2
    err = one_line_error(capsys)
    assert "executor.device" in err and "cpu" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    study = write(tmp_path, device="cuda")
    assert main(["validate", str(study)]) == 2
    assert "'cuda' is not available on this machine; it has: cpu" in one_line_error(capsys)


def test_absent_device_from_the_python_api(tmp_path):
    with pytest.raises(UserError, match="executor.device: got 'tpu'"):
        Study.from_dict(study_dict(tmp_path, device="tpu"))
    study = Study.from_dict(study_dict(tmp_path))
    study.config.executor.device = ABSENT_GPU  # changed after parsing: checked by run
    with pytest.raises(UserError, match="not available on this machine"):
        study.run()
    assert not (tmp_path / "run" / "store").exists()
    with pytest.raises(UserError, match="device: got 'tpu'"):
        load_model("test_resnet", pretrained=False, device="tpu")
    with pytest.raises(UserError, match="not available"):
        resolve_device(ABSENT_GPU)
    assert resolve_device("cpu") == torch.device("cpu")


def test_ray_checks_only_the_device_name(tmp_path):
    """Ray workers have their own GPUs: cuda is accepted on a driver without one."""
    from xaicompare.study_config import parse_config

    config = parse_config(study_dict(tmp_path, kind="ray", device="cuda"))
    assert config.executor.device == "cuda"
    with pytest.raises(UserError, match="executor.device: got 'tpu'"):
        parse_config(study_dict(tmp_path, kind="ray", device="tpu"))


def test_device_rule_on_a_machine_with_two_gpus(monkeypatch):
    """The rule as a GPU machine sees it (torch's answers replaced; no GPU needed)."""
    from xaicompare.devices import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert available_devices()[:3] == ["cpu", "cuda:0", "cuda:1"]
    assert check_device("cuda") == "cuda" and check_device("cuda:1") == "cuda:1"
    with pytest.raises(UserError, match=r"'cuda:2' is not available on this machine; it has: "
                                        r"cpu, cuda:0, cuda:1"):
        check_device("cuda:2")
    assert resolve_device("auto") == torch.device("cuda")
