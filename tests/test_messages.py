"""Messages that name the real cause: NaN weights, a missing checkpoint file, a full disk
during extraction or download, and pretrained weights missing from the hub cache."""

from __future__ import annotations

import errno
import io
import logging
import os
import subprocess
import sys
import tarfile

import pytest
import torch
from safetensors.torch import save_file

from xaicompare.data.archive import download, safe_extract
from xaicompare.errors import UserError
from xaicompare.models import load_model
from xaicompare.study_config import parse_config

TINY = {"layers": [1, 1, 1, 1], "channels": [8, 8, 8, 8], "stem_width": 8, "output_stride": 8}


def tiny_state(**changes) -> dict:
    torch.manual_seed(0)
    net = load_model("resnet18", pretrained=False, num_classes=3, class_indices=None,
                     input_size=32, probe=False, **TINY).net
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state.update(changes)
    return state


def test_nan_weights_are_named_as_nan_not_as_a_gradient_problem(tmp_path):
    state = tiny_state()
    state["layer4.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    state["fc.bias"][1] = float("inf")
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    with pytest.raises(UserError) as info:
        load_model("resnet18", checkpoint=path, num_classes=3, class_indices=None,
                   input_size=32, **TINY)
    text = str(info.value)
    assert "weights contain NaN or inf (2 values in 2 tensors" in text
    assert "gradient" not in text and "\n" not in text


@pytest.mark.parametrize("source", ["runs/old/model", "./model", "missing.safetensors",
                                    "models/ft.pt"])
def test_a_missing_checkpoint_file_is_not_called_an_unknown_model(tmp_path, source):
    with pytest.raises(UserError) as info:
        load_model(str(tmp_path / source) if source.startswith("runs") else source)
    assert "does not exist" in str(info.value) and "unknown timm model" not in str(info.value)
    data = {"name": "m", "output": str(tmp_path / "run"), "methods": {"gradcam": {}},
            "models": [{"source": source}]}
    with pytest.raises(UserError, match=r"models\[0\].source: checkpoint file .* does not "):
        parse_config(data)
    data["models"] = [{"source": "resnet18", "checkpoint": source}]
    with pytest.raises(UserError, match=r"models\[0\].checkpoint: file .* does not exist"):
        parse_config(data)


def small_archive(path):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("data/a.txt")
        payload = b"x" * 1000
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


def test_a_full_disk_during_extraction_says_so(tmp_path, monkeypatch):
    archive = small_archive(tmp_path / "a.tgz")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out/data/a.txt"))

    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    with pytest.raises(UserError) as info:
        safe_extract(archive, tmp_path / "out")
    text = str(info.value)
    assert "No space left on device" in text and "incomplete" not in text
    assert "download it again" not in text and archive.exists()


def test_a_truncated_archive_is_still_called_incomplete(tmp_path):
    archive = small_archive(tmp_path / "a.tgz")
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(UserError, match="incomplete or unreadable"):
        safe_extract(archive, tmp_path / "out")


def test_a_full_disk_during_download_says_so(tmp_path):
    def fetch(url, part):
        part.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(part))

    with pytest.raises(UserError, match="No space left on device.*the download resumes"):
        download("https://example.org/a.tgz", tmp_path / "a.tgz", cache=tmp_path / "cache",
                 fetch=fetch)
    assert (tmp_path / "cache" / "a.tgz.part").exists()  # kept for resuming


HUB_SCRIPT = """
from xaicompare.models import load_model
from xaicompare.errors import UserError
try:
    load_model("resnet18.a1_in1k")
except UserError as err:
    print(err)
"""


def test_offline_hub_without_cache_is_one_line_and_no_noise(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", HUB_SCRIPT], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.stderr.strip() == ""
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, lines
    assert "pretrained weights for 'resnet18.a1_in1k' are not in the Hugging Face cache" \
        in lines[0]
    assert "hf download timm/resnet18.a1_in1k" in lines[0] and str(tmp_path / "hf") in lines[0]


def test_hub_retry_warnings_are_silenced(monkeypatch, capfd):
    """Without HF_HUB_OFFLINE the hub logs ~22 retry lines before failing: none reach the
    terminal, the one-line error says what to do."""
    import timm
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline_create_model(*args, **kwargs):
        if not kwargs.get("pretrained"):
            return real(*args, **kwargs)
        log = logging.getLogger("huggingface_hub.utils._http")
        for attempt in range(11):
            log.warning("'[Errno -2] Name or service not known' thrown while requesting HEAD")
            log.warning("Retrying in %ss [Retry %s/5].", 2 ** attempt, attempt)
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    real = timm.create_model
    level = logging.getLogger("huggingface_hub").level
    monkeypatch.setattr(timm, "create_model", offline_create_model)
    with pytest.raises(UserError, match="are not in the Hugging Face cache"):
        load_model("resnet18.a1_in1k")
    captured = capfd.readouterr()
    assert "Retry" not in captured.err and "thrown while requesting" not in captured.err
    assert logging.getLogger("huggingface_hub").level == level  # restored
