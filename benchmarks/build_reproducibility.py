"""Are two builds of one configuration the same index? Build each backend twice with the same
parameters and seed, with 1 and with 2 threads, and compare the answers of the two builds:

    PYTHONPATH=src python benchmarks/build_reproducibility.py --rows 20000 --dim 64 --queries 500

Prints, per backend and thread count, the share of top-10 ids found by one build and not the other
(set difference, so a mere reordering does not count) and the recall@10 of each build against the
exact answer. 0.00% means bit-reproducible answers here; anything else means a rebuilt cached
index (e.g. after a damaged cache entry was removed) may answer differently from the one before.
"""

from __future__ import annotations

import argparse

import numpy as np

from laionknn.exact import knn
from laionknn.indexes.registry import create, is_available

CONFIGS = [("hnswlib", {"M": 16, "ef_construction": 100}, {"ef": 64}),
           ("faiss-hnsw", {"M": 16, "ef_construction": 100}, {"ef_search": 64}),
           ("usearch-f32", {"connectivity": 16, "expansion_add": 128}, {"expansion_search": 64}),
           ("faiss-ivfflat", {"nlist": 64, "train_size": 20000}, {"nprobe": 4})]


def set_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) - set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist())]))


def recall(ids: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(ids.tolist(), gold.tolist())]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=500)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    q = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    gold = knn(x, q, 10, "l2").ids
    for backend, params, knobs in CONFIGS:
        if not is_available(backend):
            print(f"{backend}: not installed")
            continue
        for threads in (1, 2):
            ids = []
            for _ in range(2):
                index = create(backend, "l2", threads=threads, **params)
                index.build(x)
                index.set_query_params(**knobs)
                ids.append(index.search(q, 10).ids)
            print(f"{backend:14s} threads={threads}: {100 * set_difference(ids[0], ids[1]):5.2f}% of top-10 ids differ "
                  f"between two builds; recall@10 {recall(ids[0], gold):.4f} / {recall(ids[1], gold):.4f}", flush=True)


if __name__ == "__main__":
    main()
