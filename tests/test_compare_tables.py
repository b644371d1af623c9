"""Labelled matrix CSV in, labelled table CSV (with provenance) out."""

import numpy as np
import pandas as pd
import pytest

from xaicompare.compare import read_matrix_csv, similarity_matrix, write_table_csv
from xaicompare.errors import UserError


def test_roundtrip_of_a_similarity_result_with_provenance(tmp_path):
    maps = np.random.default_rng(0).normal(size=(3, 4, 5, 5))
    result = similarity_matrix(maps, "rbf", names=["a", "b", "c"], sigma=0.5)
    provenance = {"method": "gradcam", **result.provenance()}
    path = write_table_csv(result.dissimilarity, tmp_path / "out" / "dis.csv", provenance)
    text = path.read_text()
    assert text.startswith('# xaicompare method="gradcam"')
    loaded = read_matrix_csv(path)
    assert np.allclose(loaded.to_numpy(), result.dissimilarity.to_numpy())
    assert list(loaded.index) == ["a", "b", "c"] and list(loaded.columns) == ["a", "b", "c"]
    assert loaded.attrs["provenance"]["metric.sigma"] == pytest.approx(result.params["sigma"])
    assert loaded.attrs["provenance"]["n_images"] == 4
    # a plain CSV from elsewhere (no header comments, columns in another order) works too
    plain = tmp_path / "plain.csv"
    loaded[["c", "a", "b"]].to_csv(plain)
    assert np.allclose(read_matrix_csv(plain).to_numpy(), loaded.to_numpy())


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
