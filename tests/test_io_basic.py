import h5py
import numpy as np
import pytest

from laionknn.errors import DataError, FormatError
from laionknn.io import (VectorFile, check_vectors, read_gold, read_result, read_vectors, write_gold,
                         write_result, write_vectors)
from laionknn.types import KnnResult


def test_vector_roundtrip_and_blocks(tmp_path, rng):
    x = rng.standard_normal((1000, 768)).astype(np.float16)
    p = write_vectors(tmp_path / "db.h5", x, "emb")
    with VectorFile(p) as vf:
        assert (vf.n, vf.dim, vf.dtype) == (1000, 768, np.float16)
        starts, parts = zip(*vf.blocks(rows=333))
        assert starts == (0, 333, 666, 999)
        assert all(b.dtype == np.float16 for b in parts)
        np.testing.assert_array_equal(np.concatenate(parts), x)
        budget_rows = sum(1 for _ in vf.blocks(memory=100 * 768 * 2))
        assert budget_rows == 10


def test_vector_file_wrong_dim_and_transposed(tmp_path, rng):
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["pca32"] = rng.standard_normal((32, 500)).astype(np.float32)
    with pytest.raises(FormatError, match="transposed"):
        VectorFile(tmp_path / "t.h5")
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f["hamming"] = np.zeros((5, 16), dtype=np.int64)
    with pytest.raises(FormatError, match="expected uint64"):
        VectorFile(tmp_path / "w.h5")


def test_truncated_file_is_a_format_error(tmp_path, rng):
    p = write_vectors(tmp_path / "db.h5", rng.standard_normal((100, 32)).astype(np.float32), "pca32")
    data = p.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(FormatError, match="truncated|damaged"):
        read_vectors(tmp_path / "cut.h5")


def test_check_vectors_names_row():
    x = np.ones((5, 4), dtype=np.float32)
    x[3, 1] = np.nan
    with pytest.raises(DataError, match="row 13"):
        check_vectors(x, first_row=10)
    y = np.ones((5, 4), dtype=np.float32)
    y[2] = 0
    with pytest.raises(DataError, match="row 2 has zero norm"):
        check_vectors(y, nonzero=True)


def test_gold_roundtrip_is_one_based_on_disk(tmp_path):
    ids = np.array([[0, 4, 2], [1, 3, 0]], dtype=np.int64)
    d = np.array([[0.1, 0.2, 0.3], [0.0, 0.5, 0.5]], dtype=np.float32)
    p = write_gold(tmp_path / "g.h5", KnnResult(ids, d))
    with h5py.File(p) as f:
        assert f["knns"].dtype == np.int32
        np.testing.assert_array_equal(f["knns"][()], ids + 1)
    g = read_gold(p, n_database=5)
    np.testing.assert_array_equal(g.ids, ids)
    with pytest.raises(FormatError, match="beyond the database"):
        read_gold(p, n_database=4)


def test_gold_descending_similarity_is_converted(tmp_path):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["knns"] = np.array([[1, 2]], dtype=np.int32)
        f["dists"] = np.array([[0.9, 0.7]], dtype=np.float32)
    g = read_gold(tmp_path / "g.h5")
    np.testing.assert_allclose(g.dists, [[0.1, 0.3]], atol=1e-6)


def test_gold_zero_based_is_refused(tmp_path):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["knns"] = np.array([[0, 1]], dtype=np.int32)
        f["dists"] = np.array([[0.1, 0.2]], dtype=np.float32)
    with pytest.raises(FormatError, match="0-based"):
        read_gold(tmp_path / "g.h5")


def test_result_file_attrs_and_jld2_style(tmp_path):
    ids = np.array([[2, 0]], dtype=np.int64)
    p = write_result(tmp_path / "r.h5", ids, np.array([[0.1, 0.2]]), algo="x", data="clip768v2", size="100K",
                     buildtime=1.5, querytime=0.25, params="ef=10")
    r = read_result(p)
    np.testing.assert_array_equal(r.ids, ids)
    assert (r.algo, r.querytime, r.meta["params"]) == ("x", 0.25, "ef=10")
    with h5py.File(tmp_path / "j.h5", "w") as f:
        f["knns"] = np.array([[3, 1]], dtype=np.int32)
        f["dists"] = np.array([[0.1, 0.2]], dtype=np.float32)
        for k, v in dict(algo="jl", data="pca32v2", size="300K", params="p").items():
            f[k] = v
        f["buildtime"] = 2.0
        f["querytime"] = 3.0
    r = read_result(tmp_path / "j.h5")
    assert (r.algo, r.buildtime, r.meta["data"]) == ("jl", 2.0, "pca32v2")
    np.testing.assert_array_equal(r.ids, [[2, 0]])


def test_console_script_runs_in_a_fresh_interpreter(tmp_path):
    """The installed entry point must not rely on modules other imports happened to load."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "from laionknn.cli.main import main; main(['datasets', 'info', "
                          "'public-queries-10k-clip768v2'])"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "257b9eb3f7f25776e0d33b22451b7b32" in out.stdout
