"""The README's quick tour, run literally and in order as a newcomer would: one bash process, a fresh
environment (no LAIONKNN_* variables, a bare PATH, an empty HOME), the block taken from README.md
itself, the database and query counts shrunk (3K rows, 1,000 queries) so it takes about a minute. It must produce one gold standard that every later step
uses."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parents[1]
SMALL = "3K"
SMALL_QUERIES = 1000


def tour_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick tour", 1)[1]
    m = re.search(r"```\n(.*?)```", section, re.S)
    assert m, "README.md has no code block under '## Quick tour'"
    return m.group(1)


def tour_commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines() if line.strip()]


def _shrink(command: str, size: str, n_queries: int) -> str:
    """The same command on SMALL rows and SMALL_QUERIES queries (flag values and catalog names)."""
    from laionknn.catalog.manifest import synthetic_queries_name

    small_q = synthetic_queries_name(SMALL_QUERIES)
    command = command.replace(synthetic_queries_name(n_queries), small_q)
    command = re.sub(rf"--(n-)?queries {n_queries}\b", rf"--\g<1>queries {SMALL_QUERIES}", command)
    return command.replace(size, SMALL)


def _defaults(commands: list[str]) -> tuple[str, int]:
    text = " ".join(commands)
    size, queries = re.search(r"--size (\S+)", text), re.search(r"--queries (\d+)", text)
    assert size and queries, "the tour's synth line gives no --size / --queries"
    return size.group(1), int(queries.group(1))


def test_readme_tour_names_resolve_in_the_catalog():
    from laionknn.catalog import resolve

    commands = tour_commands(tour_block())
    assert commands[0].startswith("source .venv/bin/activate")
    names = {n for c in commands for n in re.findall(r"(synthetic-[\w=.-]+)", c)}
    assert names, "the tour names no dataset"
    for name in names:
        resolve(name)  # raises CatalogError for a name the catalog does not know


def test_quick_tour_runs_literally(tmp_path):
    commands = tour_commands(tour_block())
    size, n_queries = _defaults(commands)
    script = "\n".join(["set -euo pipefail"] + [_shrink(c, size, n_queries) for c in commands]) + "\n"
    # the tour starts at the repository root after `make venv`: give the fresh folder the same venv
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
           "LAIONKNN_PROGRESS_EVERY": "600"}
    (tmp_path / "home").mkdir()
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"quick tour failed:\n{script}\n--- stderr ---\n{proc.stderr[-4000:]}"
    tour = tmp_path / "tour"
    gold = tour / "gold.h5"
    with h5py.File(gold, "r") as f:
        assert f["knns"].shape == (SMALL_QUERIES, 100)
    # the workspace default (nothing set): no second gold standard was computed anywhere
    ws = tmp_path / "home" / ".cache" / "laionknn"
    assert not [p for p in ws.rglob("*gold*.h5")], "a second gold standard was written"
    # search recorded recall against the tour's gold; eval and run scored against it too
    records = [json.loads(line) for line in (tour / "runs" / "runs.jsonl").read_text().splitlines()]
    assert records and all("recall" in r for r in records)
    rows = list(csv.DictReader(open(tour / "eval.csv")))
    assert {r["algo"] for r in rows} == {"hnswlib"} and all(float(r["recall"]) > 0.5 for r in rows)
    by_params = {r["params"]: float(r["recall"]) for r in rows}
    assert all(abs(by_params[r["params"]] - r["recall"]) < 1e-12 for r in records if r["file"])
    assert (tour / "report" / "report.html").is_file()
    run_rows = list(csv.DictReader(open(tour / "run" / "evaluation.csv")))
    assert len({r["algo"] for r in run_rows}) >= 2
    assert not {"exact", "faiss-flat"} & {r["algo"] for r in run_rows}  # brute force only when named
    assert (tour / "run" / "report.html").is_file()
    # the run folder is scorable as a whole (baselines/ holds projected vector files, not results)
    out = subprocess.run([str(tmp_path / ".venv" / "bin" / "laionknn"), "-q", "eval", "--results", str(tour / "run"),
                          "--gold", str(gold)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == len(run_rows) + 1
