"""Audit part 3: full disks, on a real small tmpfs (a private mount namespace; skipped where this
machine cannot mount one). Before: `synth`, `project pca` and `prepare subsets` segfaulted (exit 139),
hnswlib cached a truncated index. Now: a free-space check before long writes, ENOSPC during one
as one line (exit 2), no temporary file left, and a resumable job resumes once there is room."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hardeninghelpers import LIST_FILES, assert_clean_error, listed_files, run_on_small_disk, small_disk_works
from laionknn.io import write_vectors

pytestmark = pytest.mark.skipif(not small_disk_works(), reason="cannot mount a private tmpfs here")


def _stderr_line(r) -> str:
    assert "Traceback" not in r.stderr and "Segmentation" not in r.stderr, r.stderr
    return r.stderr


def test_synth_on_a_full_disk_refuses_before_writing(tmp_path):
    r = run_on_small_disk(tmp_path / "d", 20, f'LAIONKNN_HOME="$D/home" $LK synth --size 20K --queries 100\n'
                                              f'echo "rc=$?"\n{LIST_FILES}')
    assert "rc=2" in r.stdout, r.stderr
    assert_clean_error(2, _stderr_line(r), "needs about 29.3 MiB", "free some space")
    assert listed_files(r.stdout) == {}


def test_write_that_fills_the_disk_midway_is_one_error_and_no_crash(tmp_path):
    """No size known in advance (no pre-check): VectorWriter and the h5py writer behind atomic_path
    hit ENOSPC mid-write. Before, the interpreter then died at exit with a segfault (139)."""
    script = textwrap.dedent('''
        import numpy as np, sys
        from laionknn.errors import DiskFullError
        from laionknn.io import VectorWriter, write_gold
        from laionknn.types import KnnResult
        d = sys.argv[1]
        try:
            w = VectorWriter(d + "/v.h5", "emb", 768, np.float16)
            for _ in range(40):
                w.append(np.zeros((500, 768), np.float16))
            w.close()
        except DiskFullError as exc:
            print("vectors:", exc)
        try:
            ids = np.zeros((20000, 100), np.int64)
            write_gold(d + "/g.h5", KnnResult(ids, np.zeros((20000, 100), np.float32)))
        except DiskFullError as exc:
            print("gold:", exc)
    ''')
    (tmp_path / "w.py").write_text(script)
    r = run_on_small_disk(tmp_path / "d", 8, f'$PY {tmp_path / "w.py"} "$D"\necho "rc=$?"\n{LIST_FILES}')
    assert "rc=0" in r.stdout, (r.stdout, r.stderr)  # not 139
    _stderr_line(r)
    assert "vectors: disk full writing " + str(tmp_path / "d" / "v.h5") in r.stdout
    assert "gold: disk full writing " + str(tmp_path / "d" / "g.h5") in r.stdout
    assert listed_files(r.stdout) == {}  # no temporary file left behind


def test_project_pca_onto_a_full_disk(tmp_path):
    x = np.random.default_rng(0).standard_normal((6000, 768)).astype(np.float16)
    src = write_vectors(tmp_path / "laion2B-en-clip768v2-n=6K.h5", x, "emb")
    r = run_on_small_disk(tmp_path / "d", 0.5, f'LAIONKNN_HOME="$D/home" $LK project pca --dims 32 --fit-on {src} '
                                                f'--apply {src} --out "$D/out"\necho "rc=$?"\n{LIST_FILES}')
    assert "rc=2" in r.stdout, r.stderr
    assert_clean_error(2, _stderr_line(r), "pca32", "free some space")
    files = listed_files(r.stdout)
    assert not [f for f in files if f.endswith(".h5") or "/.tmp-" in f or f.startswith(".tmp-")], files


def _parts(folder, sizes, seed=0):
    """Raw parts whose rows are all kept (NSFW 'UNLIKELY'), so the bytes to write are known."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for number, n in enumerate(sizes, start=1):
        np.save(folder / f"img_emb_{number:04d}.npy", rng.standard_normal((n, 768)).astype(np.float16))
        pq.write_table(pa.table({"caption": [f"c{number}-{i}" for i in range(n)], "url": ["u"] * n,
                                 "LICENSE": ["?"] * n, "NSFW": ["UNLIKELY"] * n}), folder / f"metadata_{number:04d}.parquet")


def test_prepare_subsets_disk_full_midway_then_resume_is_byte_identical(tmp_path):
    parts = tmp_path / "parts"
    _parts(parts, [2500, 2500, 2500])
    ref, got = tmp_path / "ref", tmp_path / "got"
    got.mkdir()
    from laionknn.prepare import prepare_subsets

    prepare_subsets(parts, ref, "a=1,b=3")
    args = f'prepare subsets --parts {parts} --out "$D/out" --subsets a=1,b=3'
    r = run_on_small_disk(tmp_path / "d", 12, f'''
        $LK {args}; echo "rc1=$?"
        {LIST_FILES}
        mount -o remount,size=40m "$D" || exit 98
        $LK {args}; echo "rc2=$?"
        cp "$D"/out/*.h5 {got}/
    ''')
    assert "rc1=2" in r.stdout and "rc2=0" in r.stdout, (r.stdout, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: disk full writing ") and "free some space" in errors[0]
    assert "Traceback" not in r.stderr and "Segmentation" not in r.stderr
    left = listed_files(r.stdout)
    assert "out/laion2B-en-clip768v2-n=b.h5" not in left  # nothing incomplete under a final name
    assert not [f for f in left if "/.tmp-" in f]
    for name in ("a", "b"):
        f = f"laion2B-en-clip768v2-n={name}.h5"
        import h5py

        with h5py.File(ref / f) as a, h5py.File(got / f) as b:
            np.testing.assert_array_equal(a["emb"][()], b["emb"][()])


def test_index_save_on_a_full_disk_is_not_cached(tmp_path):
    """hnswlib truncated its index silently on a full disk and that entry broke later searches."""
    pytest.importorskip("hnswlib")
    script = textwrap.dedent('''
        import json, numpy as np, os
        from laionknn.indexes.runner import SweepTarget, build_or_load
        from laionknn.types import Metric
        x = np.random.default_rng(1).standard_normal((4000, 64)).astype(np.float32)
        t = SweepTarget(database=x, queries=x[:10], metric=Metric.L2, data="pca96v2", size="4000", dataset="t")
        idx, _, cached, _ = build_or_load("hnswlib", t, {"M": 16}, threads=1)
        ok = bool((idx.search(x[:10], 1).ids[:, 0] == np.arange(10)).all())
        cache = os.path.join(os.environ["LAIONKNN_HOME"], "indexes")
        print(json.dumps({"cached": cached, "ok": ok, "entries": sorted(os.listdir(cache))}))
    ''')
    (tmp_path / "s.py").write_text(script)
    r = run_on_small_disk(tmp_path / "d", 4, f'''
        export LAIONKNN_HOME="$D/home"; mkdir -p "$LAIONKNN_HOME/indexes"
        head -c 3300000 /dev/zero > "$D/filler"
        $PY {tmp_path / "s.py"}; echo "rc1=$?"
        rm "$D/filler"
        $PY {tmp_path / "s.py"}; $PY {tmp_path / "s.py"}
    ''')
    assert "rc1=0" in r.stdout, (r.stdout, r.stderr)
    runs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert runs[0] == {"cached": False, "ok": True, "entries": []}  # searched from memory, nothing cached
    assert runs[1]["cached"] is False and len(runs[1]["entries"]) == 1  # room again: built and cached
    assert runs[2]["cached"] is True and runs[2]["ok"]
    assert "index not cached" in r.stderr


def test_gold_into_a_nearly_full_folder_refuses_before_the_pass(tmp_path):
    rng = np.random.default_rng(4)
    db = write_vectors(tmp_path / "db.h5", rng.standard_normal((500, 16)).astype(np.float32), "emb")
    q = write_vectors(tmp_path / "q.h5", rng.standard_normal((3000, 16)).astype(np.float32), "emb")
    r = run_on_small_disk(tmp_path / "d", 2, f'''
        LAIONKNN_HOME="$D/home" $LK gold --database {db} --queries {q} --k 100 --out "$D/gold.h5"; echo "rc=$?"
        {LIST_FILES}''')
    assert "rc=2" in r.stdout, (r.stdout, r.stderr)
    assert_clean_error(2, _stderr_line(r), "writing " + str(tmp_path / "d" / "gold.h5"), "needs about")
    assert not [f for f in listed_files(r.stdout) if f.endswith(".h5") or ".ckpt" in f]
