"""Distributed exact k-NN with Dask: a pure shard planner plus a Dask engine that reuses the exact
engine's per-row-range kernel (:func:`laionknn.exact.knn_rows`) and its one associative merge
(:func:`laionknn.exact.merge`); no math of its own. See docs/distributed.md.

* :func:`knn_dask` -- same answer (ids, dists, tie flags) as :func:`laionknn.exact.knn`.
* :func:`gold_standard_dask` -- the same gold-standard file as :func:`laionknn.exact.gold_standard`.
"""

from laionknn.distributed.plan import plan_shards, plan_tree

__all__ = ["gold_standard_dask", "knn_dask", "plan_shards", "plan_tree"]


def __getattr__(name: str):  # dask is imported only when the engine is used
    if name in ("knn_dask", "gold_standard_dask", "local_client"):
        from laionknn.distributed import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
