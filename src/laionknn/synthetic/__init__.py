"""LAION-like synthetic data in the official file layout, calibrated on 1024 real LAION vectors.

``generate_database(n, seed)`` -> float16 (n, 768); ``generate_queries(nq, seed)`` -> float32 (nq, 768);
``materialize(record)`` writes a synthetic catalog entry's file into the workspace; ``dataset_stats``
and friends (in :mod:`laionknn.synthetic.stats` and :mod:`laionknn.synthetic.report`) describe any
file, real or synthetic, next to the real figures. See docs/synthetic.md.
"""

from laionknn.synthetic.model import CHUNK_ROWS, DEFAULT_PARAMS, Params, iter_chunks, load_frame
from laionknn.synthetic.writer import generate_database, generate_queries, materialize, write_synthetic

__all__ = ["CHUNK_ROWS", "DEFAULT_PARAMS", "Params", "generate_database", "generate_queries", "iter_chunks",
           "load_frame", "materialize", "write_synthetic"]
