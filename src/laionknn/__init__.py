"""laionknn: k-NN search on the LAION2B CLIP embeddings of the SISAP indexing challenges.

The Python API (docs/api.md), imported on first use so that ``import laionknn`` stays fast:

* ``open_dataset(database, queries=None, gold=None, metric=None)`` -> Dataset: a catalog name or a file
  (official HDF5, ann-benchmarks HDF5, FILE#KEY, .npy, .fbin) with its queries ``(n_queries, dim)``.
* ``gold(dataset, k)`` -> KnnResult: exact neighbours, ids int64 ``(n_queries, k)`` 0-based, dists float32
  ascending.
* ``search(index, dataset, k, build=..., query=...)`` -> KnnResult; ``sweep(index, dataset, k, out)`` ->
  run records (one official result file per grid point; ``index`` a backend name, ``module:Class`` or an
  Index subclass).
* ``evaluate(results, gold, k)`` -> rows of the evaluation CSV; ``report(evaluations, out)`` -> paths.
* ``recall(ids, gold, k)`` -> float.

One vector per row everywhere; ids handed to or returned by the API are 0-based (the official files
on disk are 1-based, converted on reading and writing).
"""

__version__ = "0.1.0"

_API = ("Dataset", "open_dataset", "gold", "search", "sweep", "evaluate", "report", "recall")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from laionknn import api

        return getattr(api, name)
    raise AttributeError(f"module 'laionknn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
