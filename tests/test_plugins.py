"""Plug-in backends (issue 18, part 3): the 30-line example index of docs/plugins.md, run as written,
through `search` and `run` (CLI, `--index module:Class`) and the API; an installed entry point in
`search --list`; a class's own grid file; the one-line refusals of a class that is no Index or has no
grid. Expected neighbours are computed here with numpy."""

from __future__ import annotations

import csv
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import laionknn
from laionknn.indexes import registry

from evalhelpers import run_cli
from hardeninghelpers import assert_clean_error

ROOT = Path(__file__).resolve().parents[1]


def example_code() -> str:
    text = (ROOT / "docs" / "plugins.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text.split("## A 30-line example", 1)[1], flags=re.S)
    return code


@pytest.fixture(autouse=True)
def clean_registry():
    saved, plugins, entries = dict(registry.BACKENDS), dict(registry.PLUGINS), set(registry.ENTRY_NAMES)
    yield
    for store, old in ((registry.BACKENDS, saved), (registry.PLUGINS, plugins)):
        store.clear()
        store.update(old)
    registry.ENTRY_NAMES.clear()
    registry.ENTRY_NAMES.update(entries)


@pytest.fixture
def user(tmp_path, rng, monkeypatch):
    """A folder on sys.path holding the docs' example as ``mod`` (a fresh module name per test), a
    database file with its queries beside it, and the true cosine neighbours."""
    monkeypatch.syspath_prepend(str(tmp_path))
    db = rng.standard_normal((240, 12)).astype(np.float32)
    q = rng.standard_normal((15, 12)).astype(np.float32)
    np.save(tmp_path / "mine.npy", db)
    np.save(tmp_path / "mine.queries.npy", q)
    dn, qn = db / np.linalg.norm(db, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    truth = np.argsort(-(qn.astype(np.float64) @ dn.T.astype(np.float64)), axis=1, kind="stable")
    mod = f"coarse_{Path(tmp_path).name.replace('-', '_')}"
    (tmp_path / f"{mod}.py").write_text(example_code())
    return tmp_path, mod, truth


def test_example_code_is_about_thirty_lines():
    lines = [line for line in example_code().splitlines() if line.strip()]
    assert 25 <= len(lines) <= 36


def test_example_index_through_the_cli_search_and_run(user, capsys):
    folder, mod, truth = user
    code, _, err = run_cli(["search", "--database", folder / "mine.npy", "--index", f"{mod}:CoarseIndex", "--k", 5,
                            "--out", folder / "s"], capsys)
    assert code == 0, err
    recs = [json.loads(line) for line in (folder / "s" / "runs.jsonl").read_text().splitlines()]
    assert [r["algo"] for r in recs] == ["coarse"] * 3
    assert [r["params"] for r in recs] == ["nlist=4,seed=0,nprobe=1", "nlist=4,seed=0,nprobe=2",
                                           "nlist=4,seed=0,nprobe=4"]
    assert recs[-1]["recall"] == 1.0 and recs[0]["recall"] < 1.0  # all lists scanned: exact
    from laionknn.io import read_result

    assert np.array_equal(read_result(recs[-1]["file"]).ids, truth[:, :5])
    assert Path(recs[-1]["file"]).parent == folder / "s" / "results" / "coarse"
    code, _, err = run_cli(["run", "--database", folder / "mine.npy", "--index", f"{mod}:CoarseIndex", "--k", 5,
                            "--no-baselines", "--out", folder / "r", "-q"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(open(folder / "r" / "evaluation.csv")))
    assert sorted(float(r["recall"]) for r in rows)[-1] == 1.0 and {r["algo"] for r in rows} == {"coarse"}
    assert "coarse" in (folder / "r" / "report.md").read_text()


def test_example_index_through_the_api(user):
    folder, mod, truth = user
    import importlib

    cls = importlib.import_module(mod).CoarseIndex
    with laionknn.open_dataset(folder / "mine.npy") as ds:
        found = laionknn.search(cls, ds, k=5, query={"nprobe": 4})
        assert np.array_equal(found.ids, truth[:, :5])
        one = laionknn.search(f"{mod}:CoarseIndex", ds, k=5, query={"nprobe": 1})
        assert laionknn.recall(one.ids, truth[:, :5], 5) < 1.0
        records = laionknn.sweep(cls, ds, k=5, out=folder / "api")
    assert [r["algo"] for r in records] == ["coarse"] * 3 and records[-1]["recall"] == 1.0


def test_grid_file_beside_the_module_and_entry_points_in_list(user, capsys):
    folder, mod, _ = user
    (folder / "few.toml").write_text("[[build]]\nnlist = 2\n[query]\nnprobe = [2]\n")
    (folder / f"{mod}_file.py").write_text(f"from {mod} import CoarseIndex\n\n\nclass FromFile(CoarseIndex):\n"
                                          f"    name = 'coarse-file'\n    grid = None\n    grid_file = 'few.toml'\n")
    code, _, err = run_cli(["search", "--database", folder / "mine.npy", "--index", f"{mod}_file:FromFile",
                            "--k", 5, "--out", folder / "g"], capsys)
    assert code == 0, err
    recs = [json.loads(line) for line in (folder / "g" / "runs.jsonl").read_text().splitlines()]
    assert [(r["algo"], r["params"]) for r in recs] == [("coarse-file", "nlist=2,seed=0,nprobe=2")]
    dist = folder / "myplugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [laionknn.backends]
        coarse-ep = {mod}:CoarseIndex
        broken-ep = no_such_module_here:Index
        """))
    code, out, err = run_cli(["search", "--list"], capsys)
    assert code == 0, err
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "entry point" in lines["coarse-ep"] and "yes" in lines["coarse-ep"]
    assert "no (ModuleNotFoundError" in lines["broken-ep"]
    assert "built-in" in lines["hnswlib"]
    # the last column says how the main job sweeps a backend: peers with --peers, second variants with --all
    assert lines["faiss-hnsw"].rstrip("│ ").endswith("with --all") and "with --all" not in lines["hnswlib"]
    code, _, err = run_cli(["search", "--database", folder / "mine.npy", "--index", "coarse-ep", "--k", 5,
                            "--out", folder / "ep"], capsys)
    assert code == 0, err
    assert {json.loads(line)["algo"] for line in (folder / "ep" / "runs.jsonl").read_text().splitlines()} == {"coarse-ep"}


def test_plugins_that_are_no_index_or_have_no_grid(user, capsys):
    folder, mod, _ = user
    (folder / f"{mod}_bad.py").write_text(f"from {mod} import CoarseIndex\n\n\nclass NotIndex:\n    grid = {{}}\n\n\n"
                                         f"class NoGrid(CoarseIndex):\n    grid = None\n")
    code, _, err = run_cli(["search", "--database", folder / "mine.npy", "--index", f"{mod}_bad:NotIndex"], capsys)
    assert_clean_error(code, err, "is not a subclass of laionknn.indexes.base.Index")
    code, _, err = run_cli(["search", "--database", folder / "mine.npy", "--index", f"{mod}_bad:NoGrid"], capsys)
    assert_clean_error(code, err, "has no grid", "grid_file")
    code, _, err = run_cli(["run", "--database", folder / "mine.npy", "--index", f"{mod}_bad:Missing"], capsys)
    assert_clean_error(code, err, "has no attribute 'Missing'")
