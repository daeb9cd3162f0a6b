"""Audit part 2: one validation of every numeric option, shared by all commands; garbage (NaN fit
rows, k = 0, threads = 0, negative repeats or seeds, k = 1001) is refused, never turned into a
default or stored in a run record. Also part 9's one-line rule for click's own usage errors."""

from __future__ import annotations

import numpy as np
import pytest

from hardeninghelpers import assert_clean_error, cli
from laionknn.errors import DataError, UsageError
from laionknn.io import write_vectors
from laionknn.types import Metric
from laionknn.validation import check_float, check_int, check_k, check_memory_size, check_seed, check_threads

D = ["--database", "synthetic-clip768v2-n=1000"]
GOLD = ["--database", "a.h5", "--queries", "b.h5"]
PQ = ["--source", "a.h5", "--database", "b.h5", "--rule", "2023"]

CASES = [
    # (argv, option the message must name, a phrase it must hold)
    (["search", *D, "--index", "exact", "--k", "0"], "--k", "between 1 and 1000"),
    (["search", *D, "--index", "exact", "--k", "-3"], "--k", "between 1 and 1000"),
    (["search", *D, "--index", "exact", "--k", "1001"], "--k", "at most 1000 neighbours"),
    (["search", *D, "--index", "exact", "--k", "1.5"], "--k", "integer"),
    (["search", *D, "--index", "exact", "--threads", "0"], "--threads", "all cores"),
    (["search", *D, "--index", "exact", "--threads", "-2"], "--threads", "at least 1"),
    (["search", *D, "--index", "exact", "--repeats", "-1"], "--repeats", "at least 1"),
    (["search", *D, "--index", "exact", "--repeats", "0"], "--repeats", "at least 1"),
    (["search", *D, "--index", "exact", "--n-queries", "0"], "--n-queries", "at least 1"),
    (["run", "--k", "0"], "--k", "between 1 and 1000"),
    (["run", "--threads", "0"], "--threads", "all cores"),
    (["run", "--threads", "-2"], "--threads", "at least 1"),
    (["run", "--n-queries", "-5"], "--n-queries", "at least 1"),
    (["eval", "--results", "r", "--gold", "g", "--k", "0"], "--k", "between 1 and 1000"),
    (["eval", "--results", "r", "--gold", "g", "--k", "-1"], "--k", "between 1 and 1000"),
    (["results", "check", "f.h5", "--k", "0"], "--k", "between 1 and 1000"),
    (["results", "check", "f.h5", "--n-queries", "0"], "--n-queries", "at least 1"),
    (["gold", *GOLD, "--k", "1001"], "--k", "between 1 and 1000"),
    (["gold", *GOLD, "--k", "0"], "--k", "between 1 and 1000"),
    (["gold", *GOLD, "--threads", "0"], "--threads", "at least 1"),
    (["gold", *GOLD, "--checkpoint-every", "nan"], "--checkpoint-every", "finite"),
    (["gold", *GOLD, "--checkpoint-every", "-1"], "--checkpoint-every", "at least 0"),
    (["gold", *GOLD, "--split-every", "1"], "--split-every", "at least 2"),
    (["prepare", "queries", *PQ, "--seed", "-1"], "--seed", "non-negative"),
    (["prepare", "queries", *PQ, "--n", "0"], "--n", "at least 1"),
    (["prepare", "queries", *PQ, "--k", "0"], "--k", "between 1 and 1000"),
    (["prepare", "queries", *PQ, "--oversample", "0.5"], "--oversample", "at least 1"),
    (["prepare", "queries", *PQ, "--oversample", "inf"], "--oversample", "finite"),
    (["prepare", "subsets", "--parts", "p", "--out", "o", "--chunk-rows", "0"], "--chunk-rows", "at least 1"),
    (["prepare", "subsets", "--parts", "p", "--out", "o", "--first-part", "-1"], "--first-part", "at least 0"),
    (["project", "pca", "--dims", "32", "--seed", "-1"], "--seed", "non-negative"),
    (["project", "pca", "--dims", "32", "--fit-rows", "0"], "--fit-rows", "at least 1"),
    (["project", "pca", "--dims", "0"], "--dims", "between 1 and 768"),
    (["project", "sketch", "--bits", "128", "--seed", "-1"], "--seed", "non-negative"),
    (["project", "sketch", "--bits", "128", "--fit-rows", "0"], "--fit-rows", "at least 1"),
    (["project", "sketch", "--bits", "128", "--k", "0"], "--k", "between 1 and 1000"),
    (["synth", "--seed", "-1"], "--seed", "non-negative"),
    (["stats", "x.h5", "--sample", "0"], "--sample", "at least 2"),
    (["stats", "x.h5", "--n-queries", "0"], "--n-queries", "at least 1"),
    (["datasets", "fetch", "x", "--retries", "-1"], "--retries", "between 0 and 100"),
    # the options of sharded search (issue 17) and memory-capped sweeps, through the same checks
    (["search", *D, "--index", "exact", "--dask", "--workers", "0"], "--workers", "at least 1"),
    (["search", *D, "--index", "exact", "--dask", "--shards", "0"], "--shards", "at least 1"),
    (["search", *D, "--index", "exact", "--dask", "--shards", "2.5"], "--shards", "integer"),
    (["search", *D, "--index", "exact", "--memory-limit", "0"], "--memory-limit", "positive size"),
    (["search", *D, "--index", "exact", "--memory-limit", "-1G"], "--memory-limit", "positive size"),
    (["search", *D, "--index", "exact", "--memory-limit", "infG"], "--memory-limit", "positive size"),
    (["search", *D, "--index", "exact", "--memory-limit", "lots"], "--memory-limit", "positive size"),
    (["run", "--memory-limit", "0"], "--memory-limit", "positive size"),
    (["run", "--memory-limit", "nanG"], "--memory-limit", "positive size"),
    (["gold", *GOLD, "--memory", "-8G"], "--memory", "positive size"),
    (["gold", *GOLD, "--memory", "1e999G"], "--memory", "positive size"),
    (["gold", *GOLD, "--dask", "--workers", "0"], "--workers", "at least 1"),
    (["gold", *GOLD, "--dask", "--shards", "-1"], "--shards", "at least 1"),
]


@pytest.mark.parametrize("argv,option,phrase", CASES, ids=[" ".join(c[0][:2] + c[0][-2:]) for c in CASES])
def test_every_numeric_option_is_refused_in_one_line_before_any_work(argv, option, phrase, capsys, home):
    code, out, err = cli(["--quiet", *argv], capsys)
    line = assert_clean_error(code, err, option, phrase)
    assert f"got " in line  # says what was found
    assert [p for p in home.rglob("*") if p.is_file()] == []  # nothing computed or written


@pytest.mark.parametrize("value,expected", [("7", 7), (" 12 ", 12), ("1_000", 1000), (3, 3), (4.0, 4)])
def test_check_int_parses_strictly(value, expected):
    assert check_int(value, "n", min=0) == expected


@pytest.mark.parametrize("value", ["1.5", "1e3", "ten", "", "٣", True, 2.5, None])
def test_check_int_refuses_non_integers(value):
    with pytest.raises(UsageError, match="--n must be an integer"):
        check_int(value, "n")


def test_shared_checks_say_what_to_do():
    with pytest.raises(UsageError, match=r"--k must be between 1 and 1000, got 1001; official gold"):
        check_k(1001)
    with pytest.raises(UsageError, match="leave it out to use all cores"):
        check_threads(0)
    with pytest.raises(UsageError, match="non-negative"):
        check_seed(-1)
    with pytest.raises(UsageError, match="finite"):
        check_float("nan", "x")
    assert check_k("1000") == 1000 and check_seed(2**70) == 2**70


@pytest.mark.parametrize("value,expected", [("512M", 512 * 1024**2), ("2G", 2 * 1024**3), ("1.5GiB", 3 * 1024**3 // 2),
                                            ("4096", 4096), (" 8 gb ", 8 * 1024**3), (1024, 1024)])
def test_memory_sizes_parse(value, expected):
    assert check_memory_size(value) == expected


@pytest.mark.parametrize("value", ["0", "-1G", "nanG", "infG", "1e999G", "0.0001K", "ten", "", 0, -5, float("nan"), True])
def test_memory_sizes_refused(value):
    with pytest.raises(UsageError, match="--memory-limit must be a positive size"):
        check_memory_size(value)


def test_library_entry_points_of_the_new_options_refuse_bad_values(tmp_path, home):
    """run_pipeline / sweep / sweep_dask / check_shards / connect: the checks the CLI types make, before
    any data is synthesised or a cluster is started."""
    from laionknn.distributed.engine import connect
    from laionknn.distributed.search import check_shards
    from laionknn.distributed.sweep import sweep_dask
    from laionknn.indexes.mainjob import run_pipeline
    from laionknn.indexes.runner import SweepTarget, sweep

    with pytest.raises(UsageError, match="--memory-limit must be a positive size"):
        run_pipeline(size="1000", memory_limit="0")
    with pytest.raises(UsageError, match="unknown task"):
        run_pipeline(size="1000", task="2024-9")
    assert [p for p in home.rglob("*") if p.is_file()] == []
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    target = SweepTarget(database=x, queries=x[:5], metric=Metric.L2, data="pca32v2", size="50", dataset="t")
    with pytest.raises(UsageError, match="--memory-limit must be a positive size"):
        sweep("exact", target, 5, tmp_path, memory_limit=-1)
    for kwargs, needle in (({"k": 0}, "between 1 and 1000"), ({"k": 5, "threads": 0}, "--threads"),
                           ({"k": 5, "repeats": 0}, "--repeats"), ({"k": 5, "shards": 0}, "--shards")):
        with pytest.raises(UsageError, match=needle):
            sweep_dask("exact", target, out_dir=tmp_path, client=None, **{"shards": 2, **kwargs})
    with pytest.raises(UsageError, match="--shards must be an integer"):
        check_shards("x", 10, "t")
    with pytest.raises(UsageError, match="--workers must be at least 1"):
        with connect(None, 0):
            pass
    assert not (tmp_path / "runs.jsonl").exists()


def test_library_sweep_refuses_what_the_cli_refuses(tmp_path):
    """The runner no longer turns threads=0 into all cores, stores threads=-2 or repeats=-1, or calls a
    negative k 'larger than the database'."""
    from laionknn.indexes.runner import SweepTarget, sweep

    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    target = SweepTarget(database=x, queries=x[:5], metric=Metric.L2, data="pca32v2", size="50", dataset="t")
    for kwargs, needle in (({"k": -1}, "between 1 and 1000"), ({"k": 0}, "between 1 and 1000"),
                           ({"k": 5, "threads": 0}, "--threads"), ({"k": 5, "threads": -2}, "--threads"),
                           ({"k": 5, "repeats": -1}, "--repeats")):
        with pytest.raises(UsageError, match=needle):
            sweep("exact", target, out_dir=tmp_path, **kwargs)
    assert not (tmp_path / "runs.jsonl").exists()
    with pytest.raises(UsageError, match="larger than the database"):
        sweep("exact", target, 51, tmp_path)


@pytest.mark.parametrize("method", ["cfsrp", "itq"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_sketch_fit_on_nan_or_inf_rows_is_refused(tmp_path, capsys, method, bad):
    x = np.random.default_rng(1).standard_normal((300, 768)).astype(np.float32)
    x[123, 5] = bad
    src = write_vectors(tmp_path / "fit.h5", x, "emb")
    out = tmp_path / "out"
    code, _, err = cli(["--quiet", "project", "sketch", "--bits", "64", "--method", method, "--fit-on", src,
                        "--out", out], capsys)
    assert_clean_error(code, err, "row 123", "NaN or infinite")
    assert not out.exists() or list(out.iterdir()) == []  # no all-NaN model written


def test_sketch_fit_refuses_zero_rows_in_the_library():
    from laionknn.projections.sketches import fit_sketch

    x = np.random.default_rng(2).standard_normal((200, 64)).astype(np.float32)
    x[7] = 0
    with pytest.raises(DataError, match="row 7 has zero norm"):
        fit_sketch(x, 64, "cfsrp")


@pytest.mark.parametrize("argv,needle", [
    (["search", "--kk", "3"], "No such option '--kk'"),
    (["serch"], "No such command 'serch'"),
    (["gold", "--database", "a"], "Missing option '--queries'"),
    (["gold", *GOLD, "--metric", "foo"], "'foo' is not one of"),
])
def test_click_usage_errors_are_one_line(argv, needle, capsys):
    code, _, err = cli(argv, capsys)
    line = assert_clean_error(code, err, needle, "--help")
    assert "Usage:" not in err


@pytest.mark.parametrize("argv", [["run", "--size", "1K"], ["search", *D, "--index", "exact"]])
@pytest.mark.parametrize("gold", ["nope.h5", "."])
def test_gold_file_is_checked_before_any_work(argv, gold, capsys, home):
    """`--gold FILE` of run and search (issue 19) goes through options.GOLD_FILE: a missing file or a
    folder is one line, exit 2, before any data is synthesised; run_pipeline checks it first too."""
    code, _, err = cli(["--quiet", *argv, "--gold", gold], capsys)
    assert_clean_error(code, err, "--gold", "no such file" if gold == "nope.h5" else "is a folder", "laionknn gold")
    assert [p for p in home.rglob("*") if p.is_file()] == []
    from laionknn.indexes.mainjob import run_pipeline

    with pytest.raises(UsageError, match="--gold"):
        run_pipeline(size="1K", n_queries=10, gold=gold, baselines=False)
    assert [p for p in home.rglob("*") if p.is_file()] == []
