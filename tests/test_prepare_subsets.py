"""`prepare subsets`: fake raw parts -> subsets checked row for row against an independent filter;
kill-and-resume; bad inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from laionknn.cli.main import main
from laionknn.errors import CheckpointError, FormatError, UsageError
from laionknn.prepare import prepare_subsets

NSFW_VALUES = [None, "NSFW", "UNLIKELY", "UNSURE"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_parts(folder: Path, sizes: list[int], seed: int = 0, npz: tuple[int, ...] = (), dim: int = 768) -> dict:
    """Write parts 1..len(sizes); returns {part: (embeddings, nsfw list, captions)} for the oracle."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for number, n in enumerate(sizes, start=1):
        x = rng.standard_normal((n, dim)).astype(np.float16)
        nsfw = [NSFW_VALUES[i] for i in rng.integers(0, 4, n)]
        captions = [f"caption {number}/{j}" for j in range(n)]
        if number in npz:
            np.savez(folder / f"img_emb_{number:04d}.npz", x)
        else:
            np.save(folder / f"img_emb_{number:04d}.npy", x)
        table = pa.table({"caption": captions, "url": [f"https://example.org/{number}/{j}.jpg" for j in range(n)],
                          "LICENSE": ["?"] * n, "NSFW": pa.array(nsfw, pa.string()),
                          "similarity": rng.random(n), "status": ["success"] * n})
        pq.write_table(table, folder / f"metadata_{number:04d}.parquet", row_group_size=700)
        truth[number] = (x, nsfw, captions)
    return truth


def expected(truth: dict, parts: int):
    """The independent filter: keep a row iff its NSFW value is not None and not 'NSFW'."""
    xs, origin = [], []
    for number in range(1, parts + 1):
        x, nsfw, _ = truth[number]
        keep = [j for j, v in enumerate(nsfw) if v is not None and v != "NSFW"]
        xs.append(x[keep])
        origin += [(number, j, nsfw[j]) for j in keep]
    return np.concatenate(xs), origin


def read_subset(out: Path, name: str):
    with h5py.File(out / f"laion2B-en-clip768v2-n={name}.h5", "r") as f:
        assert list(f.keys()) == ["emb"]
        assert f["emb"].dtype == np.float16 and f["emb"].chunks is not None
        x = f["emb"][()]
    meta = pq.read_table(out / f"laion2B-en-clip768v2-n={name}.metadata.parquet").to_pylist()
    return x, meta


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parts")
    return folder, make_parts(folder, [1500, 1200, 1700, 900], seed=7, npz=(2,))


def test_subsets_match_independent_filter(parts, tmp_path):
    folder, truth = parts
    report = prepare_subsets(folder, tmp_path / "out", "small=1,mid=3,all=4", chunk_rows=500)
    for name, count in (("small", 1), ("mid", 3), ("all", 4)):
        x_exp, origin = expected(truth, count)
        x, meta = read_subset(tmp_path / "out", name)
        np.testing.assert_array_equal(x, x_exp)
        assert len(meta) == len(origin) == x.shape[0]
        assert [(m["part"], m["row"], m["NSFW"]) for m in meta] == origin
        assert all(m["caption"] == truth[m["part"]][2][m["row"]] for m in meta)
        assert meta[0]["license"] == "?" and meta[0]["url"].startswith("https://example.org/")
    assert {m["NSFW"] for m in meta} == {"UNLIKELY", "UNSURE"}
    assert [s["rows"] for s in report.subsets] == [len(expected(truth, c)[1]) for c in (1, 3, 4)]
    assert report.rows_read == 1500 + 1200 + 1700 + 900
    n_nsfw = sum(v == "NSFW" for p in truth.values() for v in p[1])
    assert sum(p["nsfw"] for p in report.parts) == n_nsfw
    assert not any(p.name.startswith(".") for p in (tmp_path / "out").iterdir())  # work files cleaned up


def test_first_part_offset_and_show(parts, tmp_path, capsys):
    folder, truth = parts
    prepare_subsets(folder, tmp_path, "x=2", first_part=2, chunk_rows=4096)
    x, meta = read_subset(tmp_path, "x")
    parts_2_3 = {1: truth[2], 2: truth[3]}
    x_exp, origin = expected(parts_2_3, 2)
    np.testing.assert_array_equal(x, x_exp)
    assert [m["row"] for m in meta] == [j for _, j, _ in origin]
    main(["prepare", "show", "--metadata", str(tmp_path / "laion2B-en-clip768v2-n=x.metadata.parquet"),
          "--ids", f"0,{len(meta) - 1}"])
    out = capsys.readouterr().out
    first_line = next(line for line in out.splitlines() if line.startswith("│ 0 "))
    assert f"│ {meta[0]['part']} " in first_line and f"│ {meta[0]['row']} " in first_line
    assert meta[0]["NSFW"] in first_line
    assert f"│ {len(meta) - 1} " in out


def _run_cli(args: list[str], kill: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, "LAIONKNN_QUIET": "1"}
    env.pop("LAIONKNN_PREPARE_TEST_KILL", None)
    if kill:
        env["LAIONKNN_PREPARE_TEST_KILL"] = kill
    return subprocess.run([sys.executable, "-m", "laionknn", "prepare", "subsets", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kill", ["2", "1:2"])  # after the 2nd part's checkpoint; inside the 2nd part
def test_kill_and_resume_gives_identical_output(parts, tmp_path, kill):
    folder, truth = parts
    args = ["--parts", str(folder), "--subsets", "a=1,b=3,c=4", "--chunk-rows", "400"]
    first = _run_cli(args + ["--out", str(tmp_path / "run")], kill=kill)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert (tmp_path / "run" / ".laionknn-prepare" / "state.json").exists()
    assert (tmp_path / "run" / ".partial-laion2B-en-clip768v2-n=c.h5").exists()
    assert not (tmp_path / "run" / "laion2B-en-clip768v2-n=c.h5").exists()
    # a rerun with other options must not mix two jobs
    other = _run_cli(["--parts", str(folder), "--subsets", "a=1,c=4", "--out", str(tmp_path / "run")])
    assert other.returncode == 2 and "belongs to another job" in other.stderr
    resumed = _run_cli(args + ["--out", str(tmp_path / "run")])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after" in resumed.stdout
    clean = _run_cli(args + ["--out", str(tmp_path / "clean")])
    assert clean.returncode == 0, clean.stderr
    for name, count in (("a", 1), ("b", 3), ("c", 4)):
        x_r, meta_r = read_subset(tmp_path / "run", name)
        x_c, meta_c = read_subset(tmp_path / "clean", name)
        np.testing.assert_array_equal(x_r, x_c)
        np.testing.assert_array_equal(x_r, expected(truth, count)[0])
        assert meta_r == meta_c


def test_existing_output_and_changed_part_are_refused(parts, tmp_path):
    folder, _ = parts
    prepare_subsets(folder, tmp_path, "a=1")
    with pytest.raises(UsageError, match="already holds .*--restart"):
        prepare_subsets(folder, tmp_path, "a=1")
    prepare_subsets(folder, tmp_path, "a=1", restart=True)
    prepare_subsets(folder, tmp_path / "k", "a=1,b=2", keep_work=True)
    state = tmp_path / "k" / ".laionknn-prepare" / "state.json"
    state.write_text(state.read_text().replace('"emb_bytes": ', '"emb_bytes": 1'))
    with pytest.raises(CheckpointError, match="part 1 .*changed since"):
        prepare_subsets(folder, tmp_path / "k", "a=1,b=2")


# --- bad input: each names the part, exit code 2 from the CLI ---------------------------------

def _cli_error(capsys, folder: Path, out: Path, subsets: str = "a=2") -> str:
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "subsets", "--parts", str(folder), "--out", str(out), "--subsets", subsets])
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_row_count_mismatch(tmp_path, capsys):
    make_parts(tmp_path / "p", [300, 200])
    t = pq.read_table(tmp_path / "p" / "metadata_0002.parquet")
    pq.write_table(t.slice(0, 199), tmp_path / "p" / "metadata_0002.parquet")
    err = _cli_error(capsys, tmp_path / "p", tmp_path / "o")
    assert "part 2" in err and "200 embeddings" in err and "199 rows" in err
    with pytest.raises(FormatError, match="part 2"):
        prepare_subsets(tmp_path / "p", tmp_path / "o", "a=2")


def test_missing_part_in_sequence(tmp_path, capsys):
    make_parts(tmp_path / "p", [100, 100, 100])
    (tmp_path / "p" / "img_emb_0002.npy").unlink()
    err = _cli_error(capsys, tmp_path / "p", tmp_path / "o", "a=3")
    assert "part 2 is missing" in err and "img_emb_0002" in err and "present: 1, 3" in err


def test_metadata_without_nsfw_column(tmp_path, capsys):
    make_parts(tmp_path / "p", [100, 100])
    t = pq.read_table(tmp_path / "p" / "metadata_0001.parquet").drop(["NSFW"])
    pq.write_table(t, tmp_path / "p" / "metadata_0001.parquet")
    err = _cli_error(capsys, tmp_path / "p", tmp_path / "o")
    assert "part 1" in err and "no 'NSFW' column" in err


def test_part_of_another_dimension(tmp_path, capsys):
    make_parts(tmp_path / "p", [100, 100])
    np.save(tmp_path / "p" / "img_emb_0002.npy", np.zeros((100, 512), dtype=np.float16))
    err = _cli_error(capsys, tmp_path / "p", tmp_path / "o")
    assert "part 2" in err and "(100, 512)" in err and "768" in err
    assert not (tmp_path / "o" / "laion2B-en-clip768v2-n=a.h5").exists()


def test_bad_subsets_spec(tmp_path):
    for spec in ("10M", "a=0", "a=1,a=2", "a=1,b=1", "a=x"):
        with pytest.raises(UsageError, match="--subsets"):
            prepare_subsets(tmp_path, tmp_path / "o", spec)


def test_parts_with_differing_columns_concatenate(tmp_path):
    truth = make_parts(tmp_path / "p", [200, 150, 100], seed=3)
    # part 2: NSFW all missing (stored as type null), no url; part 3: lower-case license, no caption
    pq.write_table(pa.table({"NSFW": pa.nulls(150), "caption": ["x"] * 150}), tmp_path / "p" / "metadata_0002.parquet")
    t3 = pq.read_table(tmp_path / "p" / "metadata_0003.parquet").drop(["caption"]).rename_columns(
        ["url", "license", "NSFW", "similarity", "status"])
    pq.write_table(t3, tmp_path / "p" / "metadata_0003.parquet")
    prepare_subsets(tmp_path / "p", tmp_path / "o", "a=3")
    x, meta = read_subset(tmp_path / "o", "a")
    truth[2] = (truth[2][0], [None] * 150, truth[2][2])
    x_exp, origin = expected(truth, 3)
    np.testing.assert_array_equal(x, x_exp)
    assert [(m["part"], m["row"], m["NSFW"]) for m in meta] == origin
    assert {m["part"] for m in meta} == {1, 3}
    assert all(m["caption"] is None and m["license"] == "?" for m in meta if m["part"] == 3)


def test_appendable_file_cuts_back_to_checkpoint(tmp_path, rng):
    from laionknn.io.appendable import AppendableVectorFile

    x = rng.standard_normal((50, 768)).astype(np.float16)
    w = AppendableVectorFile(tmp_path / "v.h5", "emb", 768, np.float16)
    w.append(x[:30])
    w.flush()
    w.append(x[30:])  # written after the "checkpoint" at 30 rows
    w.close()
    w = AppendableVectorFile(tmp_path / "v.h5", "emb", 768, np.float16, rows=30)
    assert w.n == 30
    w.append(x[40:])
    w.finish()
    with h5py.File(tmp_path / "v.h5", "r") as f:
        np.testing.assert_array_equal(f["emb"][()], np.concatenate([x[:30], x[40:]]))
    with pytest.raises(CheckpointError, match="work file is missing"):
        AppendableVectorFile(tmp_path / "w.h5", "emb", 768, np.float16, rows=5)


def test_show_rejects_ids_outside(parts, tmp_path, capsys):
    folder, _ = parts
    prepare_subsets(folder, tmp_path, "a=1")
    meta = tmp_path / "laion2B-en-clip768v2-n=a.metadata.parquet"
    n = pq.ParquetFile(meta).metadata.num_rows
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "show", "--metadata", str(meta), "--ids", f"{n}"])
    assert exc.value.code == 2 and f"0..{n - 1}" in capsys.readouterr().err
    main(["prepare", "show", "--metadata", str(meta), "--ids", f"{n}", "--one-based"])
    assert f"│ {n - 1} " in capsys.readouterr().out
