"""The catalog: built-in records, user catalogs, synthetic entries, `datasets list|info`."""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from laionknn.catalog import all_records, resolve
from laionknn.catalog.manifest import COLUMNS, builtin_records, parse_listed_size, read_catalog_tsv
from laionknn.cli.main import cli
from laionknn.errors import CatalogError

SHARED_TSV = Path(__file__).resolve().parents[1] / "src/laionknn/catalog/data/sisap-laion2b-files.tsv"


def shared_rows() -> list[dict]:
    with open(SHARED_TSV, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_every_official_file_is_a_record():
    rows = shared_rows()
    recs = builtin_records()
    assert [r.filename for r in recs] == [row["file"] for row in rows]
    assert len(recs) == 52  # 52 files; the 1M database has two md5s, so 53 md5s in all
    assert sum(len(r.md5s) for r in recs) == 53
    assert all(r.md5s and r.keys for r in recs)
    # the organisers list no URL for the 3M subset
    assert [r.name for r in recs if not r.urls] == ["laion2B-en-clip768v2-n=3M"]


def test_counts_per_role_and_family():
    roles = Counter(r.role for r in builtin_records())
    assert roles == {"database": 22, "gold-2023-public": 5, "gold-2024-public": 4,
                     "gold-2023-public-F64-IEEE754": 4, "queries-2023-private": 4, "queries-2023-public": 4,
                     "gold-2023-private-F32-IEEE754": 3, "gold-2023-private-F64-IEEE754": 3,
                     "gold-2024-private": 1, "queries-2024-private": 1, "queries-2024-public": 1}
    kinds = Counter(r.kind for r in builtin_records())
    assert kinds == {"database": 22, "gold": 20, "queries": 10}
    fam = Counter(r.family for r in builtin_records() if r.kind == "database")
    assert fam == {"clip768v2": 7, "pca32v2": 5, "pca96v2": 5, "hammingv2": 5}


def test_two_year_md5_row_is_parsed():
    r = resolve("laion2B-en-clip768v2-n=1M.h5")
    assert r.md5s == ("61dea2ae683636a248cb915391156435", "47fe7d2da1644bffee684d3b17b7d404")
    assert r.extra["md5_labels"] == ("2023", "2024")
    assert r.listed_in == "2023,2024"
    assert resolve("laion2B-en-clip768v2-n=300K").md5s == ("d238b4b037c32bae41e497f95dffa895",)


def test_record_geometry():
    r = resolve("laion2B-en-clip768v2-n=10M")
    assert (r.kind, r.keys, r.dim, r.n_rows) == ("database", ("emb",), 768, 10_120_191)
    q = resolve("public-queries-10k-hammingv2")
    assert (q.kind, q.keys, q.dtype_shape) == ("queries", ("hamming",), "uint64 (10000,16)")
    g = resolve("laion2B-en-public-gold-standard-v2-300K")
    assert (g.kind, g.keys) == ("gold", ("knns", "dists"))


def test_listed_sizes():
    assert parse_listed_size("77MB") == 77 * 1024**2
    assert parse_listed_size("1.3G") == int(1.3 * 1024**3)
    assert parse_listed_size("12345") == 12345
    assert parse_listed_size("") is None
    with pytest.raises(CatalogError, match="cannot read listed size 'lots'"):
        parse_listed_size("lots")
    assert resolve("laion2B-en-clip768v2-n=300K").size_is_exact is False


def write_tsv(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    lines = ["\t".join(columns)] + ["\t".join(r.get(c, "") for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


USER_ROW = {"file": "my-pca32v2-n=5K.h5", "role": "database", "family": "pca32v2", "subset": "5K",
            "h5_keys": "pca32", "dtype_shape_as_h5py_sees_it": "float32 (n,32)", "md5": "a" * 32,
            "listed_size": "640000", "listed_in": "mine", "urls": "http://mirror.example/x/my-pca32v2-n=5K.h5"}


def test_user_catalog_adds_and_overrides(tmp_path, monkeypatch):
    override = dict(shared_rows()[0])
    override["urls"] = "http://private.example/a.h5 http://private.example/b.h5"
    cat = write_tsv(tmp_path / "mine.tsv", [USER_ROW, override])
    recs = {r.name: r for r in all_records([str(cat)])}
    assert len(recs) == len(all_records()) + 1
    mine = recs["my-pca32v2-n=5K"]
    assert mine.source == f"user:{cat}" and mine.size_bytes == 640000 and mine.size_is_exact
    first = override["file"][:-3]
    assert recs[first].urls == ("http://private.example/a.h5", "http://private.example/b.h5")
    assert resolve(first).urls != recs[first].urls  # built-in unchanged without the user catalog
    # same through the environment (several files joined by os.pathsep)
    other = write_tsv(tmp_path / "other.tsv", [dict(USER_ROW, file="other.h5")])
    monkeypatch.setenv("LAIONKNN_CATALOG", f"{cat}{os.pathsep}{other}")
    assert resolve("my-pca32v2-n=5K").md5s == ("a" * 32,)
    assert resolve("other").source == f"user:{other}"


def test_bad_user_catalogs(tmp_path):
    cols = tuple(c for c in COLUMNS if c != "md5")
    cat = write_tsv(tmp_path / "bad.tsv", [USER_ROW], columns=cols)
    with pytest.raises(CatalogError, match=rf"catalog {cat}: missing column\(s\) md5; expected the columns"):
        read_catalog_tsv(cat)
    cat = write_tsv(tmp_path / "md5.tsv", [dict(USER_ROW, md5="xyz")])
    with pytest.raises(CatalogError, match=r"my-pca32v2-n=5K.h5: md5 'xyz' is not 32 hex digits"):
        read_catalog_tsv(cat)
    with pytest.raises(CatalogError, match="cannot read catalog file .*nope.tsv"):
        all_records([str(tmp_path / "nope.tsv")])


def test_unknown_name_suggests_close_ones():
    with pytest.raises(CatalogError, match=r"no catalog entry named 'laion2B-en-clip768v2-n=30K'; did you mean"):
        resolve("laion2B-en-clip768v2-n=30K")


def test_synthetic_entries_resolve_by_name():
    r = resolve("synthetic-clip768v2-n=300K-seed=7")
    assert (r.synthetic, r.seed, r.kind, r.n_rows, r.keys) == (True, 7, "database", 300_000, ("emb",))
    q = resolve("synthetic-queries-10k-pca32v2-n=100K")
    assert (q.kind, q.keys, q.dtype_shape) == ("queries", ("pca32",), "float32 (10000,32)")
    v3 = resolve("synthetic-v3-clip768v2-n=300K-seed=7")
    assert (v3.generator, v3.seed, v3.n_rows, r.generator) == ("v3", 7, 300_000, "v2")
    names = {r.name for r in all_records() if r.synthetic}  # the listed ones are of the default generator, v3
    assert {"synthetic-v3-clip768v2-n=100K", "synthetic-v3-queries-10k-clip768v2",
            "synthetic-v3-gold-standard-clip768v2-n=100K-q=10k"} <= names


# --- CLI ---------------------------------------------------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_list_shows_every_file_with_md5_unwrapped():
    res = invoke("datasets", "list")
    assert res.exit_code == 0
    lines = res.output.splitlines()
    for rec in builtin_records():
        line = next(ln for ln in lines if ln.startswith(rec.name + " "))
        for m in rec.md5s:
            assert m in line  # full name and md5 on one line, not folded
    assert "2023:61dea2ae683636a248cb915391156435;2024:47fe7d2da1644bffee684d3b17b7d404" in res.output
    assert "synthetic-v3-clip768v2-n=100K " in res.output
    assert "52 official files (53 md5s)" in res.output


def test_cli_list_tsv_and_filters(tmp_path):
    res = invoke("datasets", "list", "--tsv", "--role", "gold-2024")
    rows = list(csv.DictReader(res.output.splitlines(), delimiter="\t"))
    assert len(rows) == 5 and all(r["role"].startswith("gold-2024") for r in rows)
    assert rows[0]["md5"] == "0086340c91b9414e8e52095e1f41f49c"
    res = invoke("datasets", "list", "--tsv", "--family", "pca96v2", "--official")
    assert len(res.output.splitlines()) == 1 + 7
    cat = write_tsv(tmp_path / "mine.tsv", [USER_ROW])
    res = invoke("--catalog", str(cat), "datasets", "list", "--family", "pca32v2")
    assert "my-pca32v2-n=5K" in res.output and "1 from user catalogs" in res.output


def test_cli_info():
    res = invoke("datasets", "info", "laion2B-en-clip768v2-n=1M.h5")
    assert res.exit_code == 0
    assert "2023:61dea2ae683636a248cb915391156435 or 2024:47fe7d2da1644bffee684d3b17b7d404" in res.output
    assert "https://sisap-23-challenge.s3.amazonaws.com/SISAP23-Challenge/laion2B-en-clip768v2-n=1M.h5" in res.output
    assert "1000000" in res.output


def test_catalog_ensure_stays_a_function_after_submodule_import(tmp_path):
    import importlib

    import laionknn.catalog as catalog

    importlib.import_module("laionknn.catalog.ensure")
    from laionknn.catalog.ensure import verify  # noqa: F401  (a second import path used by the CLI)

    assert callable(catalog.ensure)
    rec = catalog.resolve("laion2B-en-clip768v2-n=3M")
    # the 3M database has no URL: a real call must reach the downloader and fail with our error
    from laionknn.errors import LaionKnnError

    import pytest

    with pytest.raises(LaionKnnError):
        catalog.ensure(rec, dest=tmp_path)
