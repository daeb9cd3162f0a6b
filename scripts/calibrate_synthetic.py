"""Tune the synthetic generator against the real LAION figures (a tuning aid, not a test).

Generates a database of --rows rows and --queries queries with the given parameter overrides, then
prints the sample statistics (1024 random rows) and the pca32/pca96 recall@30 next to the targets.

    PYTHONPATH=src python scripts/calibrate_synthetic.py --rows 300000 --queries 1000 beta=0.3 f_point=0.3
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from laionknn.synthetic.model import DEFAULT_PARAMS, Params, iter_chunks, load_frame
from laionknn.synthetic.report import database_neighbours
from laionknn.synthetic.stats import global_stats, normalize_rows, projection_recall


def generate(n: int, seed: int, params: Params, queries: bool = False) -> np.ndarray:
    out = np.empty((n, 768), np.float16 if not queries else np.float32)
    for lo, block in iter_chunks(n, seed, queries=queries, params=params):
        out[lo:lo + len(block)] = block
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-recall", action="store_true")
    ap.add_argument("overrides", nargs="*", help="name=value parameter overrides")
    args = ap.parse_args()
    fields = {f.name: f.type for f in dataclasses.fields(Params)}
    kw = {}
    for o in args.overrides:
        k, v = o.split("=", 1)
        kw[k] = (int if fields[k] in (int, "int") else float)(v)
    params = dataclasses.replace(DEFAULT_PARAMS, **kw)
    t0 = time.perf_counter()
    db = generate(args.rows, args.seed, params)
    t1 = time.perf_counter()
    sample = db[np.sort(np.random.default_rng(1).choice(args.rows, 1024, replace=False))]
    s = global_stats(sample)
    real = load_frame()["real_stats"]
    print(f"params {kw}  (gen {args.rows} rows: {t1 - t0:.1f}s)")
    line = lambda name, a, b: print(f"  {name:14s} synth {a:7.3f}   real {b:7.3f}")
    for key in ("mean_cos", "std_cos", "norm_of_mean", "nn_cos", "near_dup_rate", "lid"):
        line(key, s[key], real[key])
    print("  pca   " + " ".join(f"{d}:{s['pca'][d]:.3f}/{real['pca'][d]:.3f}" for d in s["pca"]))
    ids = np.sort(np.random.default_rng(2).choice(args.rows, 300, replace=False))
    dbn = database_neighbours(db[ids].astype(np.float64), ids, normalize_rows(db))
    print(f"  database-scale: nn_cos {dbn['nn_cos']:.3f}  near_dup_rate {dbn['near_dup_rate']:.4f}  lid {dbn['lid']:.1f}")
    if not args.no_recall:
        q = generate(args.queries, args.seed, params, queries=True)
        r = projection_recall(db, q)
        print(f"  recall@30 pca32 {r[32]:.3f} (0.26)  pca96 {r[96]:.3f} (0.47)   [{time.perf_counter() - t1:.1f}s]")


if __name__ == "__main__":
    main()
