"""A run folder scores as a whole: `eval` passes over the projected vector files that `run` leaves in
baselines/, while `results check` still reports a result file that lost its knns."""

import numpy as np

from laionknn.evaluation import evaluate
from laionknn.io import write_gold, write_result, write_vectors
from laionknn.types import KnnResult

from evalhelpers import run_cli, write_raw_result

G23 = "laion2B-en-public-gold-standard-v2-100K.h5"


def test_eval_passes_over_vector_files_and_check_does_not(tmp_path, rng, capsys):
    n = 30
    gold = np.stack([rng.choice(500, 100, replace=False) for _ in range(n)]).astype(np.int64)
    write_gold(tmp_path / G23, KnnResult(gold, np.sort(rng.random((n, 100)), axis=1).astype(np.float32)))
    run = tmp_path / "run"
    write_result(run / "results" / "hnswlib" / "a.h5", gold[:, :10], np.zeros((n, 10)), algo="hnswlib",
                 data="clip768v2", size="100K", buildtime=1.0, querytime=1.0, params="ef=16")
    write_vectors(run / "baselines" / "pca32-db.h5", rng.random((50, 32)).astype(np.float32), key="pca32")
    rows = evaluate([run], tmp_path / G23)
    assert [r["algo"] for r in rows] == ["hnswlib"] and rows[0]["recall"] == 1.0
    code, _, err = run_cli(["eval", "--results", run, "--gold", tmp_path / G23], capsys)
    assert code == 0, err
    broken = write_raw_result(run / "results" / "x" / "b.h5", gold[:, :10] + 1, np.zeros((n, 10)), skip=("knns",))
    code, out, _ = run_cli(["results", "check", run / "results"], capsys)
    assert code == 1 and f"{broken}: missing dataset(s) knns" in out
