"""k-NN index backends behind one small protocol.

``create(name, metric, threads=..., **build_params)`` gives an unbuilt :class:`Index`; ``build`` takes
an ndarray or :class:`laionknn.io.VectorFile`; ``set_query_params(**knobs)``; ``search(queries, k)``
returns a :class:`laionknn.types.KnnResult` (0-based int64 ids, ascending float32 distances).
Backends are listed in :mod:`laionknn.indexes.registry` (one line each, lazy imports); their build
and query grids are TOML files in ``grids/``. :mod:`laionknn.indexes.runner` sweeps them.
"""

from laionknn.indexes.base import Index
from laionknn.indexes.grids import Grid, load_grid
from laionknn.indexes.registry import (BACKENDS, available_backends, create, get_backend, is_available,
                                       known_backends)

__all__ = ["BACKENDS", "Grid", "Index", "available_backends", "create", "get_backend", "is_available",
           "known_backends", "load_grid"]
