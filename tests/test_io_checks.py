"""Every bad input the readers must refuse, each with the message it must give."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from laionknn.catalog import resolve
from laionknn.errors import DataError, FormatError
from laionknn.io import (VectorFile, check_against_record, expected_layout, read_gold, read_result,
                         read_vectors, write_gold, write_result, write_vectors)
from laionknn.types import KnnResult

PCA32_DB = "laion2B-en-pca32v2-n=100K"  # float32 (n,32), exactly 100000 rows


def h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return path


def test_expected_layout_from_records():
    db = expected_layout(resolve(PCA32_DB))
    assert (db.keys, db.dtypes, db.rows, db.cols) == (("pca32",), (np.dtype("float32"),), 100_000, 32)
    g = expected_layout(resolve("laion2B-en-public-gold-standard-v2-300K"))
    assert (g.keys, g.dtypes, g.rows, g.cols) == (("knns", "dists"), (np.dtype("int32"), np.dtype("float32")),
                                                  10_000, None)
    q = expected_layout(resolve("public-queries-10k-clip768v2"))
    assert (q.dtypes[0], q.rows, q.cols) == (np.dtype("float32"), 10_000, 768)


# --- vector files against their record ---------------------------------------------------------
@pytest.fixture
def pca32_record(tmp_path):
    """A 5-row pca32 'subset' record from a user catalog (rows fixed by the subset)."""
    from laionknn.catalog.manifest import COLUMNS

    row = {"file": "tiny-pca32v2-n=5.h5", "role": "database", "family": "pca32v2", "subset": "5",
           "h5_keys": "pca32", "dtype_shape_as_h5py_sees_it": "float32 (n,32)", "md5": "", "listed_size": "",
           "listed_in": "test", "urls": ""}
    cat = tmp_path / "c.tsv"
    cat.write_text("\t".join(COLUMNS) + "\n" + "\t".join(row[c] for c in COLUMNS) + "\n")
    return resolve("tiny-pca32v2-n=5", [str(cat)])


def test_check_against_record_accepts_the_right_file(tmp_path, rng, pca32_record):
    p = write_vectors(tmp_path / "ok.h5", rng.standard_normal((5, 32)).astype(np.float32), "pca32")
    layout = check_against_record(p, pca32_record)
    assert (layout.rows, layout.cols) == (5, 32)
    with VectorFile(p, record=pca32_record) as vf:
        assert (vf.key, vf.n, vf.dim) == ("pca32", 5, 32)


def test_missing_key(tmp_path, pca32_record):
    p = h5(tmp_path / "k.h5", emb=np.zeros((5, 32), np.float32))
    with pytest.raises(FormatError, match=r"k\.h5: missing dataset\(s\) pca32 \(found: emb\); the catalog entry"):
        check_against_record(p, pca32_record)
    with pytest.raises(FormatError, match=r"k\.h5: no dataset 'pca32' \(found: emb\)"):
        VectorFile(p, record=pca32_record)
    with pytest.raises(FormatError, match="none of the official vector keys emb, pca32, pca96, hamming is present"):
        read_vectors(h5(tmp_path / "none.h5", data=np.zeros((2, 2))))


def test_wrong_dtype(tmp_path, pca32_record):
    p = h5(tmp_path / "d.h5", pca32=np.zeros((5, 32), np.float64))
    with pytest.raises(FormatError, match=r"d\.h5: 'pca32' is float64, expected float32 \(tiny-pca32v2-n=5: float32 \(n,32\)\)"):
        check_against_record(p, pca32_record)
    with pytest.raises(FormatError, match=r"'pca32' is float64, expected float32"):
        VectorFile(p, record=pca32_record)
    db = h5(tmp_path / "emb.h5", emb=np.zeros((100_000, 1), np.int8))
    with pytest.raises(FormatError, match=r"'emb' is int8, expected float16"):
        check_against_record(db, resolve("laion2B-en-clip768v2-n=100K"))


def test_wrong_dimension_and_transposed(tmp_path, pca32_record):
    p = h5(tmp_path / "w.h5", pca32=np.zeros((5, 31), np.float32))
    with pytest.raises(FormatError, match=r"w\.h5: 'pca32' has 31 columns, expected 32"):
        check_against_record(p, pca32_record)
    q = h5(tmp_path / "q.h5", emb=np.zeros((10_000, 512), np.float32))
    with pytest.raises(FormatError, match=r"'emb' has 512 columns, expected 768 \(public-queries-10k-clip768v2"):
        check_against_record(q, resolve("public-queries-10k-clip768v2"))
    with pytest.raises(FormatError, match="has 512 columns, expected dimension 768"):
        VectorFile(q, record=resolve("public-queries-10k-clip768v2"))
    t = h5(tmp_path / "t.h5", pca32=np.zeros((32, 5), np.float32))
    with pytest.raises(FormatError, match="looks transposed"):
        check_against_record(t, pca32_record)


def test_official_subset_rows_are_advisory(tmp_path, caplog):
    # built-in records state no row count; the subset name suggests one, the md5 is what decides
    rec = resolve("laion2B-en-hammingv2-n=100K")
    p = h5(tmp_path / "h.h5", hamming=np.zeros((99_999, 16), np.uint64))
    assert check_against_record(p, rec).rows == 99_999
    assert "suggests 100000" in caplog.text
    assert not expected_layout(rec).rows_strict and expected_layout(resolve("public-queries-10k-pca32v2")).rows_strict


def test_wrong_row_count(tmp_path, pca32_record):
    p = h5(tmp_path / "r.h5", pca32=np.zeros((6, 32), np.float32))
    with pytest.raises(FormatError, match=r"r\.h5: 'pca32' has 6 rows, expected 5 \(tiny-pca32v2-n=5\); is this file for another subset"):
        check_against_record(p, pca32_record)
    with pytest.raises(FormatError, match="has 6 rows, expected 5"):
        VectorFile(p, record=pca32_record)


def test_truncated_files(tmp_path, rng, pca32_record):
    p = write_vectors(tmp_path / "full.h5", rng.standard_normal((5, 32)).astype(np.float32), "pca32")
    data = p.read_bytes()
    head = tmp_path / "head.h5"
    head.write_bytes(data[:1000])  # the header is cut: not even readable as HDF5
    with pytest.raises(FormatError, match=r"head\.h5: not a readable HDF5 file \(truncated or damaged\?\)"):
        check_against_record(head, pca32_record)
    # a contiguous dataset whose data is cut off: the header opens, the last row does not
    c = tmp_path / "contig.h5"
    with h5py.File(c, "w") as f:
        f.create_dataset("pca32", data=rng.standard_normal((2000, 32)).astype(np.float32))
    raw = c.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(raw[: len(raw) // 2])
    rec = dataclasses.replace(pca32_record, subset="2000", name="x")
    with pytest.raises(FormatError, match=r"cut\.h5: .*(truncated|damaged)"):
        check_against_record(cut, rec)
    with pytest.raises(FormatError, match=r"cut\.h5: .*(truncated|damaged)"):
        with VectorFile(cut) as vf:
            list(vf.blocks(rows=500))


def test_nan_and_zero_norm_vectors(tmp_path, rng):
    x = rng.standard_normal((50, 32)).astype(np.float32)
    x[37, 3] = np.nan
    p = write_vectors(tmp_path / "nan.h5", x, "pca32")
    with pytest.raises(DataError, match=r"nan\.h5 \('pca32'\): row 37 contains NaN or infinite values"):
        read_vectors(p, check=True)
    with VectorFile(p) as vf:
        with pytest.raises(DataError, match="row 37 contains NaN"):
            for _ in vf.blocks(rows=16, check=True):
                pass
    assert read_vectors(p).shape == (50, 32)  # unchecked reads still work
    y = rng.standard_normal((20, 768)).astype(np.float16)
    y[11] = 0
    z = write_vectors(tmp_path / "zero.h5", y, "emb")
    with pytest.raises(DataError, match=r"zero\.h5 \('emb'\): row 11 has zero norm and cannot be L2-normalised"):
        read_vectors(z, nonzero=True)
    with VectorFile(z) as vf:
        with pytest.raises(DataError, match="row 11 has zero norm"):
            list(vf.blocks(rows=4, nonzero=True))


# --- gold standards ----------------------------------------------------------------------------
def gold_file(path, knns, dists=None):
    knns = np.asarray(knns)
    if dists is None:
        dists = np.sort(np.linspace(0.1, 0.9, knns.size).reshape(knns.shape), axis=1).astype(np.float32)
    return h5(path, knns=knns, dists=dists)


def test_gold_missing_key_and_wrong_dtypes(tmp_path):
    p = h5(tmp_path / "g.h5", knns=np.ones((3, 2), np.int32))
    with pytest.raises(FormatError, match=r"g\.h5: missing dataset\(s\) dists \(found: knns\)"):
        read_gold(p)
    p = gold_file(tmp_path / "f.h5", np.ones((3, 2), np.float32))
    with pytest.raises(FormatError, match=r"f\.h5: knns is float32, expected integer ids \(int32, 1-based\)"):
        read_gold(p)
    p = h5(tmp_path / "s.h5", knns=np.ones((3, 2), np.int32), dists=np.array([[b"a", b"b"]] * 3))
    with pytest.raises(FormatError, match=r"s\.h5: dists is \|S1, expected floating-point distances"):
        read_gold(p)
    p = h5(tmp_path / "shape.h5", knns=np.ones((3, 2), np.int32), dists=np.ones((3, 3), np.float32))
    with pytest.raises(FormatError, match=r"knns \(3, 2\) and dists \(3, 3\) have different shapes"):
        read_gold(p)


def test_gold_against_record(tmp_path):
    rec = resolve("laion2B-en-public-gold-standard-v2-100K")  # int32/float32 (10000,k)
    p = gold_file(tmp_path / "g.h5", np.ones((9_999, 10), np.int32))
    with pytest.raises(FormatError, match=r"'knns' has 9999 rows, expected 10000"):
        read_gold(p, record=rec)
    p = gold_file(tmp_path / "i64.h5", np.ones((10_000, 10), np.int64))
    with pytest.raises(FormatError, match=r"'knns' is int64, expected int32"):
        read_gold(p, record=rec)


def test_gold_ids_zero_based_negative_and_out_of_range(tmp_path):
    p = gold_file(tmp_path / "z.h5", np.array([[1, 2], [0, 3]], np.int32))
    with pytest.raises(FormatError, match=r"z\.h5: knns contains 0-based ids; official files hold 1-based row numbers"):
        read_gold(p)
    p = gold_file(tmp_path / "n.h5", np.array([[1, -4]], np.int32))
    with pytest.raises(FormatError, match=r"knns contains negative ids \(-4\)"):
        read_gold(p)
    p = gold_file(tmp_path / "o.h5", np.array([[1, 2], [3, 101]], np.int32))
    with pytest.raises(FormatError, match=r"o\.h5: knns contains id 101, beyond the database's 100 rows"):
        read_gold(p, n_database=100)
    assert read_gold(p, n_database=101).ids.max() == 100  # 0-based inside


def test_gold_nan_and_truncated(tmp_path):
    d = np.array([[0.1, np.nan], [0.2, 0.3]], np.float32)
    p = gold_file(tmp_path / "nan.h5", np.array([[1, 2], [3, 4]], np.int32), d)
    with pytest.raises(FormatError, match=r"nan\.h5: dists contains NaN values \(first in row 0\)"):
        read_gold(p)
    ids = np.arange(20_000, dtype=np.int64).reshape(1000, 20)
    full = write_gold(tmp_path / "full.h5", KnnResult(ids, np.tile(np.linspace(0, 1, 20, dtype=np.float32), (1000, 1))))
    raw = full.read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(FormatError, match=r"cut\.h5: .*truncated"):
        read_gold(tmp_path / "cut.h5")


def test_gold_transposed(tmp_path):
    p = gold_file(tmp_path / "t.h5", np.ones((10, 3), np.int32))
    with pytest.raises(FormatError, match="looks transposed"):
        read_gold(p, n_queries=3)


# --- result files ------------------------------------------------------------------------------
def result(tmp_path, name, ids, **over):
    meta = dict(algo="x", data="clip768v2", size="100K", buildtime=1.0, querytime=2.0, params="p")
    meta.update(over)
    return write_result(tmp_path / name, ids, np.zeros(np.shape(ids), np.float32), **meta)


def test_result_roundtrip_and_jld2_style(tmp_path):
    ids = np.array([[4, 0], [1, 2]])
    p = result(tmp_path, "r.h5", ids)
    r = read_result(p, n_database=5, n_queries=2)
    np.testing.assert_array_equal(r.ids, ids)
    assert (r.algo, r.querytime) == ("x", 2.0)
    j = h5(tmp_path / "j.h5", knns=(ids + 1).astype(np.int32), dists=np.zeros((2, 2), np.float32),
           algo=np.bytes_("jl"), data=np.bytes_("clip768v2"), size=np.bytes_("100K"), buildtime=np.float64(1),
           querytime=np.float64(3), params=np.bytes_("k=2"))
    assert read_result(j).algo == "jl" and read_result(j).querytime == 3.0


def test_result_bad_inputs(tmp_path):
    z = h5(tmp_path / "z.h5", knns=np.array([[0, 1]], np.int32), dists=np.zeros((1, 2), np.float32), algo="a",
           data="d", size="s", buildtime=1.0, querytime=1.0, params="p")
    with pytest.raises(FormatError, match=r"z\.h5: knns contains 0-based ids"):
        read_result(z)
    p = result(tmp_path, "o.h5", np.array([[0, 9]]))
    with pytest.raises(FormatError, match=r"o\.h5: knns contains id 10, beyond the database's 5 rows"):
        read_result(p, n_database=5)
    m = h5(tmp_path / "m.h5", knns=np.ones((1, 2), np.int32), dists=np.zeros((1, 2), np.float32), algo="a")
    with pytest.raises(FormatError, match=r"m\.h5: missing metadata data, size, buildtime, querytime, params"):
        read_result(m)
    k = h5(tmp_path / "k.h5", dists=np.zeros((1, 2), np.float32))
    with pytest.raises(FormatError, match=r"k\.h5: missing dataset\(s\) knns"):
        read_result(k)
    with pytest.raises(FormatError, match=r"ids contain -1"):
        result(tmp_path, "neg.h5", np.array([[0, -1]]))
    with pytest.raises(FormatError, match=r"q\.h5: knns has 1 rows but there are 4 queries"):
        read_result(result(tmp_path, "q.h5", np.array([[0, 1]])), n_queries=4)


def test_missing_file_message(tmp_path):
    with pytest.raises(FormatError, match=r"nothere\.h5: no such file; fetch it with `laionknn datasets fetch`"):
        read_vectors(tmp_path / "nothere.h5")
