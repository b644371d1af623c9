"""Imagenette: prepare (download with resume, checksum, safe extraction) and open, offline."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xaicompare.data import archive as archive_module
from xaicompare.data.archive import safe_extract
from xaicompare.data.classes import IMAGENETTE_CLASSES
from xaicompare.data.imagenette import ARCHIVES, BUCKET, open_imagenette, prepare_imagenette
from xaicompare.data.sources import open_dataset
from xaicompare.errors import UserError

FOLDER = "imagenette2-160"
PER_SPLIT = 2


def build_imagenette_tree(base: Path) -> dict[str, tuple[int, str]]:
    """The exact imagenette2 layout with tiny JPEGs; returns path -> (class k, split)."""
    root = base / FOLDER
    rows, truth = [], {}
    for k, cls in enumerate(IMAGENETTE_CLASSES):
        for split in ("train", "val"):
            (root / split / cls.wnid).mkdir(parents=True)
            for i in range(PER_SPLIT):
                rel = f"{split}/{cls.wnid}/{cls.wnid}_{i}.JPEG"
                colour = (25 * k, 255 - 25 * k, 100 + 10 * i)
                Image.new("RGB", (24, 20), colour).save(root / rel, quality=95)
                rows.append(f"{rel},{cls.wnid},{cls.wnid},{cls.wnid},{cls.wnid},"
                            f"{cls.wnid},{split == 'val'}")
                truth[rel] = (k, split)
    header = "path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,noisy_labels_50,is_valid"
    (root / "noisy_imagenette.csv").write_text("\n".join([header, *rows]) + "\n")
    return truth


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory):
    base = tmp_path_factory.mktemp("src")
    truth = build_imagenette_tree(base)
    path = base / "imagenette2-160.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(base / FOLDER, arcname=FOLDER)
    return path, truth


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324


def check_prepared(folder: Path, truth: dict) -> None:
    for split in ("train", "val"):
        image_set = open_imagenette(root=folder.parent, size_variant=160, split=split, size=16)
        expected = sorted(p for p, (_, s) in truth.items() if s == split)
        assert image_set.ids == expected
        assert image_set.labels.tolist() == [truth[p][0] for p in expected]
        assert image_set.class_names[0] == "tench" and image_set.class_wnids[9] == "n03888257"
        images = image_set.load([0, len(image_set) - 1])
        k_first, k_last = truth[expected[0]][0], truth[expected[-1]][0]
        # Pixel content follows the generated colour of that class (JPEG tolerance).
        assert abs(images[0, 0].mean().item() - 25 * k_first / 255) < 0.03
        assert abs(images[1, 1].mean().item() - (255 - 25 * k_last) / 255) < 0.03


def test_prepare_from_file_url_then_open(tiny_archive, tmp_path):
    archive, truth = tiny_archive
    folder = prepare_imagenette(160, root=tmp_path, url=archive.as_uri(), progress=False,
                                md5=md5_of(archive))
    assert folder == tmp_path / FOLDER
    check_prepared(folder, truth)
    assert not (tmp_path / "cache" / "imagenette2-160.tgz.part").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".extract")]


def test_resumed_download_keeps_the_partial_bytes(tiny_archive, tmp_path):
    archive, truth = tiny_archive
    data = archive.read_bytes()
    half = len(data) // 2
    # The server's first half is garbage: only a download that resumes after the
    # partial file (instead of restarting) yields the right archive.
    served = tmp_path / "served.tgz"
    served.write_bytes(b"\0" * half + data[half:])
    (tmp_path / "root" / "cache").mkdir(parents=True)
    (tmp_path / "root" / "cache" / "imagenette2-160.tgz.part").write_bytes(data[:half])
    folder = prepare_imagenette(160, root=tmp_path / "root", url=served.as_uri(),
                                progress=False, md5=md5_of(archive))
    check_prepared(folder, truth)


def test_unknown_checksum_still_detects_an_incomplete_archive(tiny_archive, tmp_path):
    archive, _ = tiny_archive
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    with pytest.raises(UserError, match="incomplete or unreadable"):
        prepare_imagenette(160, root=tmp_path / "root", url=cut.as_uri(), progress=False)
    assert not (tmp_path / "root" / FOLDER).exists()


def test_official_download_uses_bucket_and_published_md5(tiny_archive, tmp_path):
    archive, _ = tiny_archive
    calls = []

    def fake_fetch(url, part):
        calls.append(url)
        shutil.copyfile(archive, part)

    # Our tiny archive is not the real one: the published md5 must reject it.
    with pytest.raises(UserError, match=ARCHIVES[160].md5):
        prepare_imagenette(160, root=tmp_path, fetch=fake_fetch, progress=False)
    assert calls == [BUCKET + "imagenette2-160.tgz"]
    assert (tmp_path / "cache" / "imagenette2-160.tgz.corrupt").exists()
    assert not (tmp_path / FOLDER).exists()


def test_injected_fetch_and_existing_folder_is_not_touched(tiny_archive, tmp_path):
    archive, truth = tiny_archive
    folder = prepare_imagenette(160, root=tmp_path, url="https://example.invalid/x.tgz",
                                fetch=lambda url, part: shutil.copyfile(archive, part),
                                progress=False)
    marker = folder / "val" / "user_note.txt"
    marker.write_text("keep me")

    def no_network(url, part):
        raise AssertionError("prepared folder must be recognised without downloading")

    again = prepare_imagenette(160, root=tmp_path, fetch=no_network, progress=False)
    assert again == folder and marker.read_text() == "keep me"


def test_user_archive_is_used_and_checked(tiny_archive, tmp_path):
    archive, truth = tiny_archive
    folder = prepare_imagenette(160, root=tmp_path / "a", archive=archive, progress=False)
    check_prepared(folder, truth)
    with pytest.raises(UserError, match="does not exist"):
        prepare_imagenette(160, root=tmp_path / "b", archive=tmp_path / "nope.tgz")
    with pytest.raises(UserError, match="md5"):
        prepare_imagenette(160, root=tmp_path / "c", archive=archive, md5="0" * 32)


def test_open_before_prepare_says_which_command(tmp_path):
    with pytest.raises(UserError, match="xaicompare datasets prepare imagenette --size 320"):
        open_dataset("imagenette", root=tmp_path)
    with pytest.raises(UserError, match="160, 320"):
        prepare_imagenette(224, root=tmp_path)


def test_http_fetch_sends_range_header(tmp_path, monkeypatch):
    payload = b"0123456789"
    part = tmp_path / "f.part"
    part.write_bytes(payload[:4])
    seen = {}

    class Response(io.BytesIO):
        status, length = 206, 6

        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

    def fake_urlopen(request, timeout):
        seen["range"] = request.get_header("Range")
        return Response(payload[4:])

    monkeypatch.setattr(archive_module.urllib.request, "urlopen", fake_urlopen)
    archive_module.fetch_url("https://example.invalid/f", part, progress=False)
    assert seen["range"] == "bytes=4-" and part.read_bytes() == payload


# -- malicious archives
def add_bytes(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, kind: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink_out", "symlink_abs",
                                  "hardlink_out", "device"])
def test_malicious_members_are_refused(tmp_path, case):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_bytes(tar, "imagenette2-160/ok.txt")
        evil = {
            "dotdot": lambda: add_bytes(tar, "imagenette2-160/../../escape.txt"),
            "absolute": lambda: add_bytes(tar, str(tmp_path / "abs_escape.txt")),
            "symlink_out": lambda: add_link(tar, "imagenette2-160/link", "../../outside",
                                            tarfile.SYMTYPE),
            "symlink_abs": lambda: add_link(tar, "imagenette2-160/link", "/etc/passwd",
                                            tarfile.SYMTYPE),
            "hardlink_out": lambda: add_link(tar, "imagenette2-160/hard", "../escape.txt",
                                             tarfile.LNKTYPE),
            "device": lambda: add_link(tar, "imagenette2-160/dev", "", tarfile.CHRTYPE),
        }
        evil[case]()
    member = {"dotdot": "../../escape.txt", "absolute": "abs_escape.txt", "device": "dev",
              "symlink_out": "link", "symlink_abs": "link", "hardlink_out": "hard"}[case]
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="unsafe archive member") as info:
        safe_extract(path, dest)
    assert member in str(info.value)
    assert not dest.exists()  # checked before anything is written
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "abs_escape.txt").exists()
    with pytest.raises(UserError, match="unsafe archive member"):
        prepare_imagenette(160, root=tmp_path / "root", archive=path, progress=False)
    assert not (tmp_path / "root" / FOLDER).exists()


def test_links_inside_the_target_are_allowed(tmp_path):
    path = tmp_path / "ok.tar"
    with tarfile.open(path, "w") as tar:
        add_bytes(tar, "a/b/file.txt", b"hello")
        add_link(tar, "a/b/link", "file.txt", tarfile.SYMTYPE)
        add_link(tar, "a/c/up", "../b/file.txt", tarfile.SYMTYPE)
    safe_extract(path, tmp_path / "out")
    assert (tmp_path / "out" / "a" / "c" / "up").read_bytes() == b"hello"


def test_class_map_matches_timm_imagenet_metadata():
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    assert len(IMAGENETTE_CLASSES) == 10
    for cls in IMAGENETTE_CLASSES:
        assert info.index_to_label_name(cls.imagenet_index) == cls.wnid
        lemmas = [s.strip() for s in info.label_name_to_description(cls.wnid).split(",")]
        assert cls.name == lemmas[0]
    indices = np.array([c.imagenet_index for c in IMAGENETTE_CLASSES])
    assert (np.diff(indices) > 0).all()  # class order == ImageNet order == wnid order


def test_complete_archive_in_cache_is_reused(tiny_archive, tmp_path):
    archive, truth = tiny_archive
    (tmp_path / "cache").mkdir()
    shutil.copyfile(archive, tmp_path / "cache" / "imagenette2-160.tgz")

    def no_network(url, part):
        raise AssertionError("a complete cached archive must not be downloaded again")

    folder = prepare_imagenette(160, root=tmp_path, url="https://example.invalid/a.tgz",
                                md5=md5_of(archive), fetch=no_network, progress=False)
    check_prepared(folder, truth)
