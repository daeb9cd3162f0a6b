"""Audit part 7: the inputs that gave tracebacks now give one clean line (exit 2) or the package's
own exception: grid TOML with wrong types, negative values or non-UTF-8 bytes; catalog TSVs that
are not UTF-8 or have short/long rows; `prepare show` on non-Parquet, truncated or raw-part files
(and --one-based ids named as typed); `stats` on a sample with a NaN row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hardeninghelpers import assert_clean_error, cli, write_catalog
from laionknn.catalog.manifest import COLUMNS, read_catalog_tsv
from laionknn.errors import CatalogError, FormatError, UsageError
from laionknn.indexes.base import check_params
from laionknn.indexes.grids import load_grid
from laionknn.io import write_vectors

HNSW = {"M": 16, "ef_construction": 100, "seed": 100}


@pytest.mark.parametrize("given,needle", [
    ({"M": -4}, "M must be at least 1, got -4"),
    ({"M": 0}, "M must be at least 1, got 0"),
    ({"M": "sixteen"}, "M must be an integer"),
    ({"M": 2.5}, "M must be an integer"),
    ({"M": True}, "M must be an integer"),
    ({"seed": -1}, "seed must be at least 0"),
])
def test_grid_values_of_wrong_type_or_range_are_refused(given, needle):
    with pytest.raises(UsageError, match=needle):
        check_params("hnswlib", "build", given, HNSW)


def test_grid_values_keep_their_types():
    assert check_params("hnswlib", "build", {"M": 8.0, "seed": 0}, HNSW) == {"M": 8, "ef_construction": 100, "seed": 0}
    with pytest.raises(UsageError, match="true or false"):
        check_params("x", "build", {"flag": "no"}, {"flag": False})
    with pytest.raises(UsageError, match="finite"):
        check_params("x", "build", {"t": float("nan")}, {"t": 0.2})


def test_backend_refuses_negative_parameter_before_the_library_sees_it():
    from laionknn.indexes.registry import create, is_available

    if not is_available("hnswlib"):
        pytest.skip("hnswlib not installed")
    with pytest.raises(UsageError, match="M must be at least 1"):
        create("hnswlib", "cosine", M=-4)


def test_grid_file_not_utf8(tmp_path):
    p = tmp_path / "g.toml"
    p.write_bytes(b"[query]\nef = [1, 2]\n# \xff\xfe\n")
    with pytest.raises(UsageError, match="not a UTF-8 text file"):
        load_grid("exact", p)


def test_grid_override_max_rows_of_wrong_type(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text('[[override]]\nmax_rows = "x"\nbuild = [{}]\n')
    with pytest.raises(UsageError, match="override max_rows must be an integer"):
        load_grid("exact", p, n_rows=10)


def test_catalog_not_utf8_and_short_or_long_rows(tmp_path, capsys):
    header = "\t".join(COLUMNS) + "\n"
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(header.encode() + "fé.h5\tdatabase\tpca96v2\t1000\tpca96\tfloat32 (n,96)\t\t\t\t\n".encode("latin-1"))
    with pytest.raises(CatalogError, match="not UTF-8"):
        read_catalog_tsv(latin)
    short = tmp_path / "short.tsv"
    short.write_text(header + "f.h5\tdatabase\tpca96v2\n")
    with pytest.raises(CatalogError, match="line 2 has 3 tab-separated cells, expected 10"):
        read_catalog_tsv(short)
    long = tmp_path / "long.tsv"
    long.write_text(header + "\t".join(["f.h5", "database", "pca96v2", "1000", "pca96", "float32 (n,96)", "", "", "",
                                        "", "extra"]) + "\n")
    with pytest.raises(CatalogError, match="has 11 tab-separated cells"):
        read_catalog_tsv(long)
    code, _, err = cli(["--quiet", "--catalog", short, "datasets", "list"], capsys)
    assert_clean_error(code, err, "short.tsv", "fix that line")
    # a correct catalog still reads
    ok = write_catalog(tmp_path / "ok.tsv", [{"file": "f.h5"}])
    assert [r.filename for r in read_catalog_tsv(ok)] == ["f.h5"]


@pytest.fixture
def metadata_files(tmp_path):
    raw = tmp_path / "metadata_0001.parquet"
    pq.write_table(pa.table({"caption": ["a"] * 50, "NSFW": ["UNLIKELY"] * 50}), raw)
    data = raw.read_bytes()
    trunc = tmp_path / "trunc.metadata.parquet"
    trunc.write_bytes(data[: len(data) // 2])
    junk = tmp_path / "junk.metadata.parquet"
    junk.write_text("caption,url\nnot,parquet\n")
    subset = tmp_path / "laion2B-en-clip768v2-n=X.metadata.parquet"
    pq.write_table(pa.table({"caption": [f"c{i}" for i in range(5)], "url": ["u"] * 5, "license": ["?"] * 5,
                             "NSFW": ["UNSURE"] * 5, "part": [1] * 5, "row": list(range(5))}), subset)
    return raw, trunc, junk, subset


def test_prepare_show_on_wrong_files(metadata_files, capsys):
    raw, trunc, junk, _ = metadata_files
    for path, needle in ((junk, "not a readable Parquet file"), (trunc, "not a readable Parquet file"),
                         (raw, "raw part's metadata")):
        code, _, err = cli(["prepare", "show", "--metadata", path, "--ids", "1"], capsys)
        assert_clean_error(code, err, path.name, needle)


def test_prepare_show_names_ids_as_typed(metadata_files, capsys):
    *_, subset = metadata_files
    code, _, err = cli(["prepare", "show", "--metadata", subset, "--ids", "0", "--one-based"], capsys)
    line = assert_clean_error(code, err, "id 0 is outside", "1..5", "--one-based")
    assert "id -1" not in line
    code, _, err = cli(["prepare", "show", "--metadata", subset, "--ids", "5"], capsys)
    assert_clean_error(code, err, "id 5 is outside", "0..4", "add --one-based")
    code, out, err = cli(["prepare", "show", "--metadata", subset, "--ids", "5", "--one-based"], capsys)
    assert code == 0 and "c4" in out


def test_prepare_show_lookup_raises_format_error(metadata_files):
    from laionknn.prepare import lookup

    raw, *_ = metadata_files
    with pytest.raises(FormatError, match="raw part's metadata"):
        lookup(raw, [0], ["caption", "part", "row"])


@pytest.mark.parametrize("recall_rows", ["0", "200"])
def test_stats_on_a_nan_row(tmp_path, capsys, recall_rows):
    x = np.random.default_rng(0).standard_normal((300, 768)).astype(np.float16)
    x[10, 3] = np.nan
    p = write_vectors(tmp_path / "nan.h5", x, "emb")
    code, _, err = cli(["--quiet", "stats", p, "--sample", "300", "--recall-rows", recall_rows], capsys)
    assert_clean_error(code, err, "row 10", "NaN")


def test_zero_and_negative_defaults_widen_the_range():
    assert check_params("x", "build", {"rerank": 0}, {"rerank": 0})["rerank"] == 0
    assert check_params("x", "build", {"levels": -1}, {"levels": -1})["levels"] == -1
    with pytest.raises(UsageError, match="at least 0"):
        check_params("x", "build", {"rerank": -1}, {"rerank": 0})


def _backend_class(name: str):
    """The backend's class without its library (the modules import libraries lazily)."""
    import importlib

    from laionknn.indexes.registry import BACKENDS

    module, cls = BACKENDS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)


def test_every_backend_grid_passes_the_parameter_rule():
    """Every shipped grid point of every backend (the peer backends of issue 14 included, installed or
    not, every override) passes the typed, range-checked parameter rule, so a default sweep never
    trips over it; and every integer default is itself in range."""
    import tomllib

    from laionknn.indexes.base import ZERO_ALLOWED
    from laionknn.indexes.grids import _expand, default_grid_path
    from laionknn.indexes.registry import BACKENDS

    for name in BACKENDS:
        cls = _backend_class(name)
        for kind, defaults in (("build", cls.build_defaults), ("query", cls.query_defaults)):
            for key, value in defaults.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    assert value >= (0 if key in ZERO_ALLOWED or value <= 0 else 1), (name, key)
        path = default_grid_path(name)
        if path is None:
            continue
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        builds = [raw.get("build", [{}])] + [ov["build"] for ov in raw.get("override", []) if "build" in ov]
        queries = [raw.get("query", {})] + [ov["query"] for ov in raw.get("override", []) if "query" in ov]
        for tables in builds:
            for table in [tables] if isinstance(tables, dict) else tables:
                for cfg in _expand(table):
                    check_params(name, "build", cfg, cls.build_defaults)
        for table in queries:
            for cfg in _expand(table):
                check_params(name, "query", cfg, cls.query_defaults)


def test_peer_backend_zero_knobs():
    """SVS LVQ4x0/LVQ8x0 (no residual) are valid; SymphonyQG's quantization_bits 0 (float32) too; a
    negative value of either and a zero degree are refused before the library sees them."""
    lvq, symqg = _backend_class("svs-lvq"), _backend_class("rabitq-symqg")
    assert check_params("svs-lvq", "build", {"residual_bits": 0}, lvq.build_defaults)["residual_bits"] == 0
    assert check_params("rabitq-symqg", "build", {"quantization_bits": 0}, symqg.build_defaults)["quantization_bits"] == 0
    for name, cls, key, value, needle in (("svs-lvq", lvq, "residual_bits", -1, "at least 0"),
                                          ("svs-lvq", lvq, "graph_max_degree", 0, "at least 1"),
                                          ("rabitq-symqg", symqg, "quantization_bits", -4, "at least 0"),
                                          ("rabitq-symqg", symqg, "max_degree", 0, "at least 1")):
        with pytest.raises(UsageError, match=f"{key} {needle}".replace(" at", " must be at")):
            check_params(name, "build", {key: value}, cls.build_defaults)
