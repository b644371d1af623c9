"""A full disk or a read-only output folder: a UserError naming the folder, finished work
kept, and a rerun (space freed) computes only what was missing."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import yaml
from fakes import FakeImages, tiny_cnn

import xaicompare.files as files
import xaicompare.store.arrays as arrays
from xaicompare.cli import main
from xaicompare.engine.runner import run_explanations
from xaicompare.errors import UserError
from xaicompare.store import Store
from xaicompare.store.keys import maps_entry

DATASET = {"name": "fake"}
METHODS = {"gradcam": {}, "integrated_gradients": {"n_steps": 2}}


def fake_images(n=8):
    return FakeImages(n, 8, np.zeros(n, dtype=int))



def fail_nth_savez(monkeypatch, n, code=errno.ENOSPC):
    """Make the n-th and later chunk writes fail with `code` after writing a few bytes."""
    original, calls = np.savez, [0]

    def savez(handle, **arrays_):
        calls[0] += 1
        if calls[0] >= n:
            handle.write(b"partial")
            raise OSError(code, os.strerror(code))
        return original(handle, **arrays_)

    monkeypatch.setattr(arrays.np, "savez", savez)
    return calls


def run(store, data=None):
    return run_explanations([tiny_cnn()], data or fake_images(), METHODS, store,
                            dataset_identity=DATASET, batch_size=2, progress=False)


def test_full_disk_names_the_folder_and_keeps_finished_work(tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    fail_nth_savez(monkeypatch, 7)  # batch 1: features, logits, 2 maps; batch 2: features,
    # logits ok, gradcam fails
    with pytest.raises(UserError, match="No space left on device") as err:
        run(store)
    assert str(tmp_path / "store") in str(err.value) and "finished work is kept" in str(err.value)
    assert not list((tmp_path / "store").rglob("*.tmp"))  # the half chunk was removed
    monkeypatch.undo()  # space freed
    summary = run(store)
    assert summary.computed["tiny/gradcam"] == 6 and summary.skipped["tiny/gradcam"] == 2
    assert summary.computed["tiny/logits"] == 4 and summary.skipped["tiny/logits"] == 4
    clean = Store(tmp_path / "clean")
    run(clean)
    for method, params in METHODS.items():
        ids = fake_images().ids
        got = maps_entry(store, tiny_cnn(), method, params, DATASET, "predicted").read(ids)
        want = maps_entry(clean, tiny_cnn(), method, params, DATASET, "predicted").read(ids)
        np.testing.assert_array_equal(got["maps"], want["maps"])


def test_read_only_store_folder_is_a_user_error(tmp_path, monkeypatch):
    # Tests run as root, which ignores permission bits, so the refusal is simulated where
    # the store opens its temporary file.
    def refuse(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(files, "open", refuse, raising=False)  # where atomic writes open
    with pytest.raises(UserError, match="Read-only file system") as err:
        run(Store(tmp_path / "store"))
    assert "cannot write to output folder" in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits; the read-only "
                    "case is covered by test_read_only_store_folder_is_a_user_error")
def test_chmod_read_only_folder_is_a_user_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UserError, match="Permission denied"):
            run(Store(folder / "store"))
    finally:
        folder.chmod(0o700)


def write_study(tmp_path, output):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "name": "disk", "output": str(output),
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 4, "size": 32}},
        "models": [{"source": "test_vit", "pretrained": False, "num_classes": 10,
                    "class_indices": None, "kwargs": {"img_size": 32, "patch_size": 8}}],
        "methods": {"gradcam": {}}}))
    return study


def test_cli_full_disk_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    study = write_study(tmp_path, tmp_path / "run")
    fail_nth_savez(monkeypatch, 3)  # batch 1 (logits + gradcam) is stored, batch 2 is not
    assert main(["explain", str(study), "--quiet", "--batch-size", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: cannot write to output folder")
    assert "No space left on device" in err and str(tmp_path / "run") in err
    assert len(list((tmp_path / "run" / "store").rglob("*.npz"))) == 2  # finished work kept


def test_unwritable_run_folder_is_a_user_error(tmp_path, monkeypatch, capsys):
    study = write_study(tmp_path, tmp_path / "locked" / "run")
    real_mkdir = type(tmp_path).mkdir

    def mkdir(self, *args, **kwargs):
        if "locked" in self.parts:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "mkdir", mkdir)
    assert main(["explain", str(study), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Permission denied" in err and str(tmp_path / "locked" / "run") in err
