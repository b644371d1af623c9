"""Folders and file lists: real photos, class folders, bad files reported and never fatal."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xaicompare.data.classes import IMAGENETTE_CLASSES
from xaicompare.data.sources import open_dataset
from xaicompare.errors import UserError

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared ImageNet samples absent")


@needs_samples
def test_real_photos_as_flat_folder_match_torchvision_preprocessing():
    from torchvision.transforms import v2

    image_set = open_dataset("folder", root=SAMPLES, size=224)
    assert len(image_set) == 100 and image_set.labels is None and image_set.skipped == []
    assert image_set.ids[0] == "n01440764_tench.JPEG"
    batch = image_set.load([0, 57])
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == torch.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    # Independent reference: torchvision's Resize(shorter side) + CenterCrop.
    reference = v2.Compose([v2.PILToTensor(), v2.Resize(224, antialias=True), v2.CenterCrop(224),
                            v2.ToDtype(torch.float32, scale=True)])
    for row, index in enumerate([0, 57]):
        with Image.open(SAMPLES / image_set.ids[index]) as im:
            expected = reference(im.convert("RGB"))
        assert (batch[row] - expected).abs().mean() < 0.03


@needs_samples
def test_real_photos_as_file_list():
    files = [SAMPLES / f"{c.wnid}_{c.name.replace(' ', '_')}.JPEG" for c in IMAGENETTE_CLASSES]
    files = [f for f in files if f.exists()]
    assert len(files) >= 8
    image_set = open_dataset("folder", root=[str(f) for f in files], size=64, policy="pad")
    assert image_set.ids == [f.name for f in files] and image_set.labels is None
    assert image_set.load(range(len(files))).shape == (len(files), 3, 64, 64)


def write_image(path: Path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), colour).save(path)


def test_class_folders_named_by_wnid_get_readable_names(tmp_path):
    write_image(tmp_path / "n03888257" / "a.png", (0, 0, 255))
    write_image(tmp_path / "n01440764" / "b.png", (255, 0, 0))
    write_image(tmp_path / "n01440764" / "sub" / "c.png", (255, 0, 0))
    write_image(tmp_path / "stray.png", (0, 255, 0))
    image_set = open_dataset("folder", root=tmp_path, size=8)
    assert image_set.class_names == ["tench", "parachute"]
    assert image_set.class_wnids == ["n01440764", "n03888257"]
    assert image_set.ids == ["n01440764/b.png", "n01440764/sub/c.png", "n03888257/a.png"]
    assert image_set.labels.tolist() == [0, 0, 1]
    assert image_set.skipped == [("stray.png", "not inside a class folder")]
    pixels = image_set.load([0, 2]).mean((2, 3))
    assert torch.allclose(pixels, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))


def test_plain_class_folders_and_a_fixed_class_space(tmp_path):
    for name in ("cat", "dog", "emu"):
        write_image(tmp_path / name / "x.png", (10, 20, 30))
    plain = open_dataset("folder", root=tmp_path)
    assert plain.class_names == ["cat", "dog", "emu"] and plain.class_wnids is None
    fixed = open_dataset("folder", root=tmp_path, class_names=["dog", "cat"])
    assert fixed.class_names == ["dog", "cat"]
    assert dict(zip(fixed.ids, fixed.labels.tolist(), strict=True)) == {
        "cat/x.png": 1, "dog/x.png": 0, "emu/x.png": -1}


def test_bad_files_are_reported_and_good_ones_load(tmp_path):
    rng = np.random.default_rng(1)
    good = {}
    array = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "rgb.png")
    good["rgb.png"] = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    gray = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    good["gray.png"] = torch.from_numpy(gray).float().div(255).expand(3, 16, 16)
    Image.fromarray(array).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(
        tmp_path / "palette.png")
    with Image.open(tmp_path / "palette.png") as im:
        good["palette.png"] = torch.from_numpy(np.array(im.convert("RGB"))).permute(
            2, 0, 1).float() / 255
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    good["clear.png"] = torch.ones(3, 16, 16)  # fully transparent -> white
    Image.new("CMYK", (16, 16), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    good["cmyk.jpg"] = torch.ones(3, 16, 16)  # no ink -> white
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    good["deep.png"] = torch.ones(3, 16, 16)
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 degrees
    top_white = np.zeros((16, 16, 3), dtype=np.uint8)
    top_white[:8] = 255
    Image.fromarray(top_white).save(tmp_path / "rotated.jpg", exif=exif, quality=98)
    good["rotated.jpg"] = torch.from_numpy(top_white[::-1].copy()).permute(2, 0, 1).float() / 255
    jpeg = (tmp_path / "rotated.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "fake.png").write_bytes(b"GIF89a but not really")
    (tmp_path / "readme.txt").write_text("hello")

    image_set = open_dataset("folder", root=tmp_path, size=16, policy="resize")
    assert sorted(image_set.ids) == sorted(good)
    reasons = dict(image_set.skipped)
    assert set(reasons) == {"truncated.jpg", "empty.jpg", "fake.png", "readme.txt"}
    assert "truncated" in reasons["truncated.jpg"] and "empty" in reasons["empty.jpg"]
    assert "not an image" in reasons["fake.png"] and "not an image" in reasons["readme.txt"]
    assert image_set.describe()["n_skipped"] == 4
    loaded = image_set.load(range(len(image_set)))
    for row, image_id in enumerate(image_set.ids):
        tolerance = 0.06 if image_id.endswith(".jpg") else 1e-6
        assert (loaded[row] - good[image_id]).abs().mean() < tolerance, image_id


def test_missing_or_empty_roots_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        open_dataset("folder", root=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no readable images"):
        open_dataset("folder", root=tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_text("x")
    with pytest.raises(UserError, match=r"a\.jpg"):
        open_dataset("folder", root=tmp_path / "junk")
    with pytest.raises(UserError, match="no option"):
        open_dataset("folder", root=tmp_path, colour="red")
    with pytest.raises(UserError, match="did you mean 'folder'"):
        open_dataset("folders", root=tmp_path)


def test_missing_file_in_a_list_is_skipped_not_fatal(tmp_path):
    write_image(tmp_path / "a.png", (1, 2, 3))
    image_set = open_dataset("folder", root=[tmp_path / "a.png", tmp_path / "gone.png"])
    assert image_set.ids == ["a.png"] and image_set.skipped == [("gone.png", "file not found")]
    shutil.rmtree(tmp_path)


def test_a_symlink_to_a_file_outside_the_root_is_not_read(tmp_path):
    outside = tmp_path / "secret.png"
    write_image(outside, (255, 255, 255))
    root = tmp_path / "data"
    write_image(root / "cat" / "a.png", (1, 2, 3))
    write_image(root / "cat" / "inside.png", (4, 5, 6))
    (root / "cat" / "leak.png").symlink_to(outside)
    (root / "cat" / "alias.png").symlink_to(root / "cat" / "inside.png")  # inside: fine
    image_set = open_dataset("folder", root=root, size=8)
    assert image_set.ids == ["cat/a.png", "cat/alias.png", "cat/inside.png"]
    assert dict(image_set.skipped) == {
        "cat/leak.png": "symlink to a file outside the image folder, not read"}


def test_symlinked_and_empty_class_folders_are_reported_not_dropped_silently(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "dog"
    write_image(elsewhere / "d.png", (1, 2, 3))
    root = tmp_path / "data"
    write_image(root / "cat" / "a.png", (1, 2, 3))
    (root / "dog").symlink_to(elsewhere, target_is_directory=True)
    (root / "emu").mkdir()
    image_set = open_dataset("folder", root=root, size=8)
    assert image_set.class_names == ["cat"]
    reasons = dict(image_set.skipped)
    assert "symlinked folder, not followed" in reasons["dog/"]
    assert "class folder without files" in reasons["emu/"]


def test_nested_folders_and_tiny_images_warn(tmp_path):
    write_image(tmp_path / "cat" / "a.png", (1, 2, 3))
    write_image(tmp_path / "cat" / "deeper" / "b.png", (1, 2, 3))
    Image.new("RGB", (1, 1), (9, 9, 9)).save(tmp_path / "cat" / "dot.png")
    with pytest.warns(UserWarning) as caught:
        image_set = open_dataset("folder", root=tmp_path, size=32)
    messages = [str(w.message) for w in caught]
    assert any("sub-folders of class folder(s) ['cat']" in m and "cat/deeper/b.png" in m
               for m in messages)
    assert any("1 tiny image(s) upscaled" in m and "cat/dot.png (1x1)" in m for m in messages)
    assert len(image_set) == 3 and set(image_set.labels.tolist()) == {0}


def test_n_images_larger_than_the_dataset_warns(tmp_path, caplog):
    import logging

    from xaicompare.study import Study

    for name in ("cat", "dog"):
        write_image(tmp_path / "data" / name / "x.png", (10, 20, 30))
    study = Study.from_dict({
        "name": "n", "output": str(tmp_path / "run"),
        "dataset": {"name": "folder", "options": {"root": str(tmp_path / "data"), "size": 16},
                    "n_images": 10000},
        "models": [{"source": "zoo:shapes-resnet"}]}, progress=False)
    with caplog.at_level(logging.WARNING, logger="xaicompare"):
        assert len(study.dataset) == 2
    assert any("n_images is 10000" in r.getMessage() and "only 2" in r.getMessage()
               for r in caplog.records)
