"""Labelled matrix CSV in, labelled table CSV (with provenance) out."""

import json

import numpy as np
import pandas as pd
import pytest

from xaicompare.compare import (
    read_matrix_csv,
    read_table_csv,
    similarity_matrix,
    table_provenance,
    write_table_csv,
)
from xaicompare.errors import UserError


def test_roundtrip_of_a_similarity_result_with_provenance(tmp_path):
    maps = np.random.default_rng(0).normal(size=(3, 4, 5, 5))
    result = similarity_matrix(maps, "rbf", names=["a", "b", "c"], sigma=0.5)
    provenance = {"method": "gradcam", **result.provenance()}
    path = write_table_csv(result.dissimilarity, tmp_path / "out" / "dis.csv", provenance)
    # plain CSV: pandas reads it as is; the provenance is in the JSON sidecar
    plain_read = pd.read_csv(path, index_col=0)
    assert np.allclose(plain_read.to_numpy(), result.dissimilarity.to_numpy())
    sidecar = json.loads((path.parent / "dis.csv.json").read_text())
    assert sidecar["provenance"]["method"] == "gradcam" and sidecar["table"] == "dis.csv"
    assert table_provenance(path) == sidecar["provenance"]
    loaded = read_matrix_csv(path)
    assert np.allclose(loaded.to_numpy(), result.dissimilarity.to_numpy())
    assert list(loaded.index) == ["a", "b", "c"] and list(loaded.columns) == ["a", "b", "c"]
    assert loaded.attrs["provenance"]["metric.sigma"] == pytest.approx(result.params["sigma"])
    assert loaded.attrs["provenance"]["n_images"] == 4
    # a plain CSV from elsewhere (no header comments, columns in another order) works too
    plain = tmp_path / "plain.csv"
    loaded[["c", "a", "b"]].to_csv(plain)
    assert np.allclose(read_matrix_csv(plain).to_numpy(), loaded.to_numpy())


def test_old_run_folders_with_provenance_lines_still_read(tmp_path):
    """Tables written before the sidecar kept provenance as '# xaicompare' lines."""
    path = tmp_path / "old.csv"
    path.write_text('# xaicompare method="gradcam"\n# xaicompare n_images=4\n'
                    ",a,b\na,0.0,0.5\nb,0.5,0.0\n")
    matrix = read_matrix_csv(path)
    assert matrix.loc["a", "b"] == 0.5
    assert matrix.attrs["provenance"] == {"method": "gradcam", "n_images": 4}
    table = read_table_csv(path, index_col=0)
    assert list(table.columns) == ["a", "b"] and table_provenance(path)["n_images"] == 4


@pytest.mark.parametrize(
    "table, message",
    [
        (pd.DataFrame([[0, 1, 2], [1, 0, 3]], index=["a", "b"], columns=["a", "b", "c"]), "square"),
        (pd.DataFrame([[0, 1], [1, 0]], index=["a", "b"], columns=["a", "x"]), "labels differ"),
        (pd.DataFrame([[0, 1], [2, 0]], index=["a", "b"], columns=["a", "b"]), "not symmetric"),
        (pd.DataFrame([[0, "z"], ["z", 0]], index=["a", "b"], columns=["a", "b"]), "numbers"),
    ],
)
def test_bad_matrices_raise_user_errors(tmp_path, table, message):
    path = tmp_path / "m.csv"
    table.to_csv(path)
    with pytest.raises(UserError, match=message):
        read_matrix_csv(path)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_matrix_csv(tmp_path / "nope.csv")
