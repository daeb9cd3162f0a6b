"""Learned 1024-bit sketches vs BinWalk: brute-force Hamming recall@10 against the cosine 10-NN.

    PYTHONPATH=src python benchmarks/projections_sketch_ratio.py 300000 500 srp: hiob: cfsrp: cfsrp:gamma=-0.05

Data: ``laionknn.synthetic.generate_database(n, seed=0)`` / ``generate_queries(nq, seed=0)``. Each
further argument is ``method:key=value,...`` (fit parameters of :func:`laionknn.projections.sketches.fit_sketch`).
"""

import sys
import time

import numpy as np

from laionknn.projections import binwalk, kernels, sketches
from laionknn.synthetic import generate_database, generate_queries


def main() -> None:
    n, nq = int(sys.argv[1]), int(sys.argv[2])
    specs = sys.argv[3:] or ["srp:", "hiob:", "cfsrp:"]
    db, q = generate_database(n, seed=0), generate_queries(nq, seed=0)
    dbn = db.astype(np.float32)
    dbn /= np.linalg.norm(dbn, axis=1, keepdims=True)
    gold = np.argsort(-(q / np.linalg.norm(q, axis=1, keepdims=True)) @ dbn.T, axis=1)[:, :10]

    def rec(ids):
        return np.mean([len(set(a[:10]) & set(b)) for a, b in zip(ids, gold)]) / 10

    rb = rec(kernels.hamming_knn(binwalk.encode(db), binwalk.encode(q), 10).ids)
    print(f"| BinWalk 1024 | {rb:.4f} | 1.00 | |", flush=True)
    for spec in specs:
        method, _, rest = spec.partition(":")
        kw = {k: int(v) if v.isdigit() else float(v) for k, v in (p.split("=") for p in rest.split(",") if p)}
        kw.setdefault("fit_rows", 10000)
        t0 = time.perf_counter()
        model = sketches.fit_sketch(db, 1024, method, **kw)
        fit = time.perf_counter() - t0
        r = rec(kernels.hamming_knn(model.encode(db), model.encode(q), 10).ids)
        print(f"| {method} 1024 {rest} | {r:.4f} | {r / rb:.2f} | fit {fit:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
