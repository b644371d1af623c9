"""No way in through inputs: pickled checkpoints are refused before any code runs, archives
cannot write outside their folder, the package holds no unsafe call, the store holds no
pickles. (The HTML report's escaping is checked in test_reliability_crash.py on a real
study whose model and class names are HTML.)"""

from __future__ import annotations

import builtins
import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import xaicompare
from xaicompare.data.archive import safe_extract
from xaicompare.errors import UserError
from xaicompare.models import load_model
from xaicompare.store import Store

PACKAGE = Path(xaicompare.__file__).parent


class Payload:
    """Unpickling this object calls open(marker, 'w'): a visible side effect."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.parametrize("wrap", ["bare", "in_state_dict"])
def test_pickle_checkpoint_is_refused_and_never_runs(tmp_path, wrap):
    marker = tmp_path / "pwned"
    obj = Payload(marker) if wrap == "bare" else {"state_dict": {"fc.weight": Payload(marker)}}
    path = tmp_path / "evil.pth"
    torch.save(obj, path)
    assert not marker.exists()
    with pytest.raises(UserError, match="refusing to load checkpoint"):
        load_model("test_resnet", pretrained=False, checkpoint=path, num_classes=10,
                   class_indices=None)
    assert not marker.exists()


def test_pickle_disguised_as_safetensors_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    torch.save(Payload(marker), path)
    with pytest.raises(Exception):  # noqa: B017 - the type is the next test's concern
        load_model("test_resnet", pretrained=False, checkpoint=path, num_classes=10,
                   class_indices=None)
    assert not marker.exists()


def test_corrupt_safetensors_is_a_user_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="bad.safetensors"):
        load_model("test_resnet", pretrained=False, checkpoint=path, num_classes=10,
                   class_indices=None)


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    return tarfile.TarInfo(name), data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


ESCAPES = {
    "parent": [_file("ok.txt"), _file("../outside/evil.txt")],
    "absolute": [_file("/tmp/xaicompare-evil-abs.txt")],
    "symlink out": [_link("data", "../outside"), _file("data/evil.txt")],
    "write through link": [_link("up", ".."), _file("up/outside/evil.txt")],
    "absolute symlink": [_link("etc", "/etc")],
    "hard link": [_link("passwd", "/etc/passwd", tarfile.LNKTYPE)],
    "device": [(lambda i: (setattr(i, "type", tarfile.CHRTYPE), i)[1])(
        tarfile.TarInfo("null")), None],
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_archive_cannot_write_outside_its_folder(tmp_path, case):
    members = ESCAPES[case]
    if case == "device":
        members = [tuple(members)]
    archive = _tar(tmp_path / "evil.tgz", members)
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="unsafe archive member"):
        safe_extract(archive, dest)
    assert not (tmp_path / "outside").exists()
    assert not Path("/tmp/xaicompare-evil-abs.txt").exists()
    assert not dest.exists() or not any(dest.iterdir())  # checked before anything is written


def test_safe_archive_extracts(tmp_path):
    archive = _tar(tmp_path / "ok.tgz", [_file("a/b.txt", b"hello"), _link("a/c", "b.txt")])
    safe_extract(archive, tmp_path / "dest")
    assert (tmp_path / "dest/a/c").read_text() == "hello"


# -- static checks over the package source -------------------------------------------------
UNSAFE = {
    r"shell\s*=\s*True": "subprocess with a shell",
    r"(?<![\w.])eval\(": "eval",
    r"(?<![\w.])exec\(": "exec",
    r"pickle\.loads?\(": "pickle.load",
    r"(?<![\w.])Unpickler\(": "Unpickler",
    r"allow_pickle\s*=\s*True": "allow_pickle=True",
    r"yaml\.unsafe_load|yaml\.full_load|yaml\.Loader\b|UnsafeLoader": "unsafe YAML loader",
    r"os\.system\(|os\.popen\(": "os.system/popen",
    r"marshal\.loads?\(": "marshal",
}


def _calls(text: str, name: str) -> list[str]:
    """The argument text of every call to `name(` (balanced parentheses)."""
    out = []
    for match in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, match.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append(text[match.end():i - 1])
    return out


def test_package_has_no_unsafe_calls():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 40
    problems = []
    for path in sources:
        text = path.read_text()
        where = path.relative_to(PACKAGE)
        problems += [f"{where}: {what}" for pattern, what in UNSAFE.items()
                     if re.search(pattern, text)]
        problems += [f"{where}: torch.load without weights_only=True"
                     for args in _calls(text, "torch.load")
                     if not re.search(r"weights_only\s*=\s*True", args)]
        problems += [f"{where}: yaml.load without SafeLoader"
                     for args in _calls(text, "yaml.load") if "SafeLoader" not in args]
        problems += [f"{where}: np.load with pickles"
                     for args in _calls(text, "np.load") if "allow_pickle=True" in args]
    assert problems == []


def test_static_check_catches_what_it_looks_for():
    bad = "torch.load(f, map_location='cpu')\nyaml.load(text)\nx = eval('1')"
    assert _calls(bad, "torch.load") == ["f, map_location='cpu'"]
    assert re.search(UNSAFE[r"(?<![\w.])eval\("] and r"(?<![\w.])eval\(", bad)
    assert not re.search(r"(?<![\w.])eval\(", "model.eval()")


def test_report_templates_never_switch_escaping_off():
    templates = list((PACKAGE / "report").rglob("*.j2")) + list((PACKAGE / "report").rglob(
        "*.html"))
    assert templates
    for path in templates:
        text = path.read_text()
        assert "|safe" not in text.replace(" ", "") and "autoescape false" not in text, path
        assert "<script" not in text.lower() and "http://" not in text.replace(
            "http://www.w3.org", ""), path
    html_source = (PACKAGE / "report" / "html.py").read_text()
    assert "autoescape=True" in html_source and "Markup(" not in html_source


def test_store_refuses_object_arrays_and_writes_loadable_npz(tmp_path):
    entry = Store(tmp_path).entry("maps", "m", {})
    with pytest.raises(TypeError, match="dtype object"):
        entry.write(["a"], {"maps": np.array([{"x": 1}], dtype=object)})
    path = entry.write(["a"], {"maps": np.ones((1, 2), dtype=np.float16)})
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["ids", "maps"] and data["ids"].dtype.kind == "U"
