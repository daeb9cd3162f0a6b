"""Shared helpers for the evaluation/results/reporting tests: raw result files and CLI runs."""

from __future__ import annotations

import h5py
import numpy as np


def write_raw_result(path, knns_1based, dists, meta=None, *, jld2=False, skip=()):
    """A result file written without laionknn.io: attributes, or (jld2) scalar string datasets."""
    meta = dict(meta or {"algo": "test", "data": "clip768v2", "size": "100K", "buildtime": 1.5,
                          "querytime": 0.25, "params": "x=1"})
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if "knns" not in skip:
            f["knns"] = np.asarray(knns_1based)
        if "dists" not in skip:
            f["dists"] = np.asarray(dists)
        for k, v in meta.items():
            if k in skip:
                continue
            if jld2:
                f[k] = np.bytes_(str(v)) if isinstance(v, str) else v
            else:
                f.attrs[k] = v
    return path


def run_cli(argv, capsys):
    """Run the laionknn CLI in-process; returns (exit code, stdout, stderr)."""
    from laionknn.cli.main import main

    code = 0
    try:
        main(list(map(str, argv)))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def py_recall(ids, gold, k):
    """Recall@k by plain Python sets: sum |set(ids[i][:k]) & set(gold[i][:k])| / (n k)."""
    ids, gold = np.asarray(ids).tolist(), np.asarray(gold).tolist()
    return sum(len(set(a[:k]) & set(g[:k])) for a, g in zip(ids, gold)) / (len(ids) * k)
