"""Store: keyed entries, atomic chunks, resume, corrupt chunks recomputed, no pickles."""

import numpy as np
import pytest

from xaicompare.store import Store, entry_key


def test_write_read_round_trip_in_requested_order(tmp_path):
    entry = Store(tmp_path).entry("maps", "m__gradcam", {"model": "m", "params": {"a": 1}})
    maps = np.arange(4 * 2 * 2, dtype=np.float16).reshape(4, 2, 2)
    entry.write(["a", "b"], {"maps": maps[:2]})
    entry.write(["c", "d"], {"maps": maps[2:]})
    out = entry.read(["d", "a", "c"])["maps"]
    np.testing.assert_array_equal(out, maps[[3, 0, 2]])
    assert out.dtype == np.float16
    assert entry.missing(["a", "z"]) == ["z"]
    with pytest.raises(KeyError, match="1 images not in store"):
        entry.read(["a", "z"])


def test_changed_parameters_make_a_new_entry(tmp_path):
    store = Store(tmp_path)
    a = store.entry("maps", "m", {"params": {"n_steps": 8}})
    b = store.entry("maps", "m", {"params": {"n_steps": 16}})
    c = store.entry("maps", "m", {"params": {"n_steps": 8}})
    assert a.directory != b.directory and a.directory == c.directory
    a.write(["x"], {"maps": np.zeros((1, 2))})
    assert b.missing(["x"]) == ["x"] and c.missing(["x"]) == []


def test_key_ignores_dict_order():
    assert entry_key("p", {"a": 1, "b": 2}) == entry_key("p", {"b": 2, "a": 1})


def test_corrupt_chunk_is_treated_as_missing(tmp_path):
    entry = Store(tmp_path).entry("maps", "m", {})
    path = entry.write(["a"], {"maps": np.ones((1, 3))})
    entry.write(["b"], {"maps": np.ones((1, 3))})
    path.write_bytes(b"garbage")
    fresh = Store(tmp_path).entry("maps", "m", {})
    assert fresh.missing(["a", "b"]) == ["a"]
    assert path.with_suffix(".corrupt").exists()


def test_leftover_temporary_file_is_ignored(tmp_path):
    entry = Store(tmp_path).entry("maps", "m", {})
    entry.write(["a"], {"maps": np.ones((1, 3))})
    (entry.directory / "chunks" / ".half.npz.123.tmp").write_bytes(b"partial")
    assert Store(tmp_path).entry("maps", "m", {}).missing(["a"]) == []


def test_entries_listing_reads_identity(tmp_path):
    store = Store(tmp_path)
    store.entry("logits", "m", {"model": "m"}).write(["a"], {"logits": np.zeros((1, 10))})
    [entry] = store.entries("logits")
    assert entry.identity == {"model": "m"}


def test_writes_extend_a_built_index_without_rereading_chunks(tmp_path, monkeypatch):
    entry = Store(tmp_path).entry("maps", "m__gradcam", {"model": "m"})
    entry.write(["a", "b"], {"maps": np.zeros((2, 2), np.float32)})
    assert entry.has_all(["a", "b"])  # index built once here

    def no_rebuild():
        raise AssertionError("index rebuilt")

    monkeypatch.setattr(entry, "_build_index", no_rebuild)
    entry.write(["b", "c"], {"maps": np.ones((2, 2), np.float32)})  # "b" recomputed
    assert entry.has_all(["a", "b", "c"])
    np.testing.assert_array_equal(entry.read(["a", "b", "c"])["maps"][:, 0], [0, 1, 1])
    fresh = Store(tmp_path).entry("maps", "m__gradcam", {"model": "m"})
    assert sorted(fresh.index) == ["a", "b", "c"]
