"""Raw LAION parts -> challenge subsets, and query sets drawn with the organisers' filters.

``prepare_subsets`` streams ``img_emb_XXXX.npy`` + ``metadata_XXXX.parquet`` parts into the official
database files (NSFW rows removed) with id-aligned metadata; ``select_queries`` draws a seeded,
filtered query set (2023 or 2024 rules) and writes it with its exact gold standard.
"""

from laionknn.prepare.metadata import lookup
from laionknn.prepare.parts import nsfw_keep_mask, parse_subsets
from laionknn.prepare.subsets import DEFAULT_SUBSETS, SubsetsReport, metadata_filename, prepare_subsets, subset_filename

__all__ = ["DEFAULT_SUBSETS", "SubsetsReport", "lookup", "metadata_filename", "nsfw_keep_mask", "parse_subsets",
           "prepare_subsets", "select_queries", "subset_filename"]


def __getattr__(name):
    if name == "select_queries":
        from laionknn.prepare.queries import select_queries

        return select_queries
    raise AttributeError(name)
