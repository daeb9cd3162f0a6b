"""Catalog of official and synthetic files, and the one downloader.

``resolve(name)`` returns a :class:`Record` (no I/O); ``dataset(name)`` bundles a database with its
queries and gold standard; ``ensure(record)`` makes the file present locally (download and verify,
or synthesise) and returns its path.
"""

from laionknn.catalog.datasets import DatasetSpec, dataset
from laionknn.catalog.manifest import (Record, all_records, resolve, synthetic_database_name,
                                       synthetic_gold_name, synthetic_queries_name)

__all__ = ["DatasetSpec", "Record", "all_records", "dataset", "resolve", "synthetic_database_name",
           "synthetic_gold_name", "synthetic_queries_name", "ensure", "local_path"]


def local_path(record: Record):
    """Where ``record``'s file lives in the workspace (whether or not it exists yet); always directly
    inside the data folder (:func:`laionknn.fsutil.contained_path`)."""
    from laionknn import workspace
    from laionknn.fsutil import contained_path

    return contained_path(workspace.data_dir(), record.filename, f"{record.name} ({record.source})")


# Imported eagerly and last (it needs ``local_path``): importing the submodule later would rebind the
# package attribute ``ensure`` from this function to the module.
from laionknn.catalog.ensure import ensure  # noqa: E402
