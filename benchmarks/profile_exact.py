"""Where the exact engine spends its time: cProfile of one ``knn`` call on the v3 twin, top functions.

    PYTHONPATH=src python benchmarks/profile_exact.py --size 300K --nq 10000 --k 1000 --threads 2

A warm-up on the first ``--warm-rows`` rows with the same k, queries and options runs first, so that
numba's compilation (and its cache load) stays out of the profile. Prints the wall time of the profiled
call, the filter and GEMM that ran, and the functions with the largest own time (cProfile's tottime).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import numpy as np  # noqa: E402

from laionknn import progress  # noqa: E402
from laionknn.exact import knn  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="300K")
    ap.add_argument("--nq", type=int, default=10000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blas", default="auto")
    ap.add_argument("--metric", default="cosine")
    ap.add_argument("--memory", default="8G")
    ap.add_argument("--warm-rows", type=int, default=40_000)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=1,
                    help="profile the call this many times; the table shows each function's minimum over them")
    a = ap.parse_args(argv)
    from laionknn.catalog import ensure, resolve
    from laionknn.io import read_vectors

    x = read_vectors(ensure(resolve(f"synthetic-v3-clip768v2-n={a.size}")))
    q = read_vectors(ensure(resolve("synthetic-v3-queries-10k-clip768v2")))[: a.nq].astype(np.float32)
    progress.set_quiet(True)
    kw = dict(metric=a.metric, blas=a.blas, threads=a.threads, memory=a.memory)
    knn(x[: a.warm_rows], q, a.k, **kw)
    walls, tot = [], {}
    for _ in range(a.repeats):
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        res = prof.runcall(knn, x, q, a.k, **kw)
        walls.append(time.perf_counter() - t0)
        for (path, line, name), (_cc, ncalls, tt, _ct, _callers) in pstats.Stats(prof).stats.items():
            key = f"{os.path.basename(path)}:{line}({name})"
            tot.setdefault(key, []).append((tt, ncalls))
    print(f"# {a.size} x {a.nq} queries, k={a.k}, {a.threads} threads, {a.metric}: wall "
          + " / ".join(f"{w:.2f}" for w in walls) + f" s; filter={res.attrs.get('filter')} "
          f"gemm={res.attrs.get('gemm')} rescored={res.attrs.get('n_rescored')} load={os.getloadavg()[0]:.1f}")
    print(f"{'min s':>8} {'calls':>6}  function")
    rows = sorted(((min(t for t, _ in v), v[0][1], k) for k, v in tot.items()), reverse=True)[: a.top]
    for t, n, k in rows:
        print(f"{t:8.3f} {n:6d}  {k}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
