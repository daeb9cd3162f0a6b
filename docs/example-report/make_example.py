"""Make the example result files behind docs/example-report (run from the project root).

    PYTHONPATH=src python docs/example-report/make_example.py /tmp/laionknn-example

Writes, under the given folder: ``db.h5`` / ``queries.h5`` (20,000 and 1,000 unit vectors, 96-d, a
Gaussian mixture with 4% exact duplicate rows,
as LAION has near-duplicates), an exact gold standard named like a 2023 file (``laion2B-en-public-gold-standard-v2-
20K.h5``, 100 neighbours), and official result files from three real index families swept over their
query knob (faiss IVF-Flat nprobe, faiss HNSW efSearch, hnswlib ef) plus brute force, one thread each.
Then score and report with ``laionknn eval`` and ``laionknn report`` (see docs/evaluation.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from laionknn.io import write_gold, write_result, write_vectors
from laionknn.types import KnnResult

K = 30


def data(rng, n, nq, dim=96, centers=64):
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    x = c[rng.integers(0, centers, n)] + 2.0 * rng.standard_normal((n, dim)).astype(np.float32)
    q = c[rng.integers(0, centers, nq)] + 2.0 * rng.standard_normal((nq, dim)).astype(np.float32)
    x[rng.choice(n, n // 25, replace=False)] = x[rng.choice(n, n // 25, replace=False)]  # 4% exact duplicates
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def exact(x, q, k):
    d = 1.0 - q.astype(np.float64) @ x.T.astype(np.float64)
    ids = np.argsort(d, axis=1, kind="stable")[:, :k]
    return KnnResult(ids, np.take_along_axis(d, ids, 1).astype(np.float32))


def timed(fn):
    best = None
    for _ in range(7):  # best of seven: the machine is shared and noisy
        t = time.perf_counter()
        out = fn()
        el = time.perf_counter() - t
        best = el if best is None or el < best else best
    return out, best


def main(out: Path) -> None:
    import faiss
    import hnswlib

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(7)
    x, q = data(rng, 20_000, 1_000)
    write_vectors(out / "db.h5", x, "emb")
    write_vectors(out / "queries.h5", q, "emb")
    write_gold(out / "laion2B-en-public-gold-standard-v2-20K.h5", exact(x, q, 100))
    meta = dict(data="synthetic96", size="20K")

    def save(algo, params, buildtime, res, querytime):
        d, i = res
        write_result(out / "results" / algo / f"{params.replace('=', '_')}.h5", i, 1.0 - d,
                     algo=algo, buildtime=buildtime, querytime=querytime, params=params, **meta)

    t = time.perf_counter()
    flat = faiss.IndexFlatIP(x.shape[1]); flat.add(x)
    res, qt = timed(lambda: flat.search(q, K))
    save("faiss-flat", "exhaustive", time.perf_counter() - t - qt, res, qt)

    t = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], 128, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x); ivf.add(x)
    bt = time.perf_counter() - t
    for nprobe in (2, 3, 4, 6, 8, 12, 16):
        ivf.nprobe = nprobe
        res, qt = timed(lambda: ivf.search(q, K))
        save("faiss-ivf", f"nprobe={nprobe}", bt, res, qt)

    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(x.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 64
    hnsw.add(x)
    bt = time.perf_counter() - t
    for ef in (8, 16, 32, 64, 128):
        hnsw.hnsw.efSearch = ef
        res, qt = timed(lambda: hnsw.search(q, K))
        save("faiss-hnsw", f"efSearch={ef}", bt, res, qt)

    t = time.perf_counter()
    h = hnswlib.Index(space="ip", dim=x.shape[1])
    h.init_index(max_elements=len(x), M=8, ef_construction=40)
    h.set_num_threads(1)
    h.add_items(x)
    bt = time.perf_counter() - t
    for ef in (30, 40, 60, 100, 200):
        h.set_ef(ef)
        (i, d), qt = timed(lambda: h.knn_query(q, k=K))
        save("hnswlib", f"ef={ef}", bt, (1.0 - d, i.astype(np.int64)), qt)
    print(f"wrote {sum(1 for _ in (out / 'results').rglob('*.h5'))} result files under {out / 'results'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/laionknn-example"))
