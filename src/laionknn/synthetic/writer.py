"""Synthetic data in memory and on disk, in exactly the official layout.

* database: key ``emb``, float16, (n, 768), rows L2-normalised before the cast (norms 1 up to float16
  rounding), like ``laion2B-en-clip768v2-n=SIZE.h5``;
* queries: key ``emb``, float32, (nq, 768), L2-normalised, like ``public-queries-10k-clip768v2.h5``.

Files are written chunk by chunk through :class:`laionknn.io.VectorWriter` (temp file, then atomic
rename), so 10M rows need only one chunk (16384 rows) in memory besides the seed's fixed universe.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from laionknn.errors import FormatError, UsageError
from laionknn.synthetic.model import DIM, iter_chunks
from laionknn.types import parse_size

log = logging.getLogger(__name__)

FAMILY = "clip768v2"


def generate_database(n: "int | str", seed: int = 0, *, generator: str | None = None) -> np.ndarray:
    """The first ``n`` synthetic database rows of ``seed``: float16 (n, 768), one vector per row.

    Row i is the same for every n > i (the prefix property of the official subsets). ``generator``:
    'v3' (default), 'v2' (the earlier generator, to reproduce earlier figures) or 'v4' (candidate)."""
    n = parse_size(n)
    out = np.empty((n, DIM), np.float16)
    for lo, block in iter_chunks(n, seed, generator=generator):
        out[lo:lo + len(block)] = block
    return out


def generate_queries(n_queries: "int | str", seed: int = 0, *, generator: str | None = None) -> np.ndarray:
    """``n_queries`` synthetic queries of ``seed``: float32 (nq, 768), unit rows, from the database's
    distribution (same clusters) but drawn from their own random stream, so not database members."""
    n_queries = parse_size(n_queries)
    out = np.empty((n_queries, DIM), np.float32)
    for lo, block in iter_chunks(n_queries, seed, queries=True, generator=generator):
        out[lo:lo + len(block)] = block
    return out


def write_synthetic(path: "str | Path", n: "int | str", seed: int = 0, *, queries: bool = False,
                    description: str | None = None, generator: str | None = None) -> Path:
    """Stream ``n`` rows of the database (or query) stream of ``seed`` into ``path`` (atomic), with a
    progress bar. Database: ``emb`` float16; queries: ``emb`` float32. The file's ``generator``
    attribute stamps the generator version. Returns the final path."""
    from laionknn.catalog.manifest import check_generator
    from laionknn.types import DEFAULT_GENERATOR

    from laionknn.io import VectorWriter
    from laionknn.progress import progress_bar

    n = parse_size(n)
    generator = check_generator(generator or DEFAULT_GENERATOR)
    dtype = np.float32 if queries else np.float16
    attrs = {"synthetic": "laionknn", "seed": int(seed), "kind": "queries" if queries else "database",
             "family": FAMILY, "generator": generator}
    desc = description or f"synthesising {Path(path).name}"
    with VectorWriter(path, "emb", DIM, dtype, expected_rows=n, attrs=attrs) as writer, \
            progress_bar(desc, n) as bar:
        for _, block in iter_chunks(n, seed, queries=queries, generator=generator):
            writer.append(block)
            bar.advance(len(block))
    log.info("wrote %s (%d rows, %s)", path, n, np.dtype(dtype).name)
    return Path(path)


def materialize(record, *, force: bool = False) -> Path:
    """Write the file of a synthetic catalog ``record`` (database or queries, family clip768v2) to
    ``laionknn.catalog.local_path(record)`` and return that path; an existing file is kept unless
    ``force``. Other synthetic records (projections, gold) are derived elsewhere and raise."""
    from laionknn.catalog import local_path

    if not getattr(record, "synthetic", False):
        raise UsageError(f"{record.name} is not a synthetic catalog entry; fetch it with "
                         f"`laionknn datasets fetch {record.name}`")
    if record.family != FAMILY or record.kind not in ("database", "queries"):
        raise UsageError(f"{record.name}: only synthetic {FAMILY} database and query files are generated "
                         f"directly; {record.kind} files of family {record.family} are derived from them "
                         f"(projections with `laionknn project`, gold standards with `laionknn gold`)")
    n = record.n_rows
    if not n:
        raise UsageError(f"{record.name}: cannot tell the number of rows from subset {record.subset!r}")
    path = Path(local_path(record))
    if path.exists() and not force:
        check_stamp(path, record)
        log.info("%s already present at %s", record.name, path)
        return path
    return write_synthetic(path, n, record.seed or 0, queries=record.kind == "queries",
                           description=f"synthesising {record.name}", generator=record.generator or "v2")


def file_generator(path: "str | Path") -> str | None:
    """The generator version stamped in a synthetic file: its ``generator`` attribute, 'v2' for a
    laionknn synthetic file written before versions were stamped, None for other files."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
    except OSError:
        return None
    value = attrs.get("generator")
    if isinstance(value, bytes):
        value = value.decode()
    if value:
        return str(value)
    synthetic = attrs.get("synthetic")
    return "v2" if (synthetic.decode() if isinstance(synthetic, bytes) else synthetic) == "laionknn" else None


def check_stamp(path: "str | Path", record) -> None:
    """Refuse a present file whose stamped generator version is not the record's (a cached v2 file
    under a v3 name, say): FormatError naming both versions and how to regenerate."""
    want = record.generator or "v2"
    have = file_generator(path)
    if have is None or have == want:
        return
    n = f"{record.n_rows}" if record.n_rows else record.subset
    what = f"--size {n}" if record.kind == "database" else f"--queries {n}"
    raise FormatError(f"{path} holds data of synthetic generator {have}, but {record.name} names generator "
                      f"{want} data; delete the file, or rewrite it with `laionknn synth {what} "
                      f"--generator {want} --force`")
