"""Kept metadata: one Parquet row per database vector, row i = database id i (0-based).

Every part's kept rows are staged in their own small Parquet file (written atomically, so a kill
never leaves a half file); a subset's metadata file is the concatenation of its parts' staged files,
streamed one part at a time. The schema is fixed so parts whose columns differ (a column missing, an
all-null column stored as type null) still concatenate: columns absent from a part are null.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from laionknn.errors import FormatError, UsageError, one_line
from laionknn.fsutil import atomic_path, temp_path

# LAION metadata columns kept (name in the output -> accepted names in the raw part, first match wins)
KEPT_COLUMNS: dict[str, tuple[str, ...]] = {
    "caption": ("caption", "TEXT", "text"),
    "url": ("url", "URL"),
    "license": ("LICENSE", "license"),
    "NSFW": ("NSFW",),
    "similarity": ("similarity",),
    "width": ("width", "WIDTH"),
    "height": ("height", "HEIGHT"),
    "key": ("key",),
}


def output_schema():
    import pyarrow as pa

    return pa.schema([
        ("caption", pa.string()), ("url", pa.string()), ("license", pa.string()), ("NSFW", pa.string()),
        ("similarity", pa.float64()), ("width", pa.int64()), ("height", pa.int64()), ("key", pa.string()),
        ("part", pa.int32()), ("row", pa.int64()),
    ])


def source_columns(columns: list[str]) -> dict[str, str]:
    """Output name -> raw column name, for the kept columns this part has."""
    present = set(columns)
    out = {}
    for name, accepted in KEPT_COLUMNS.items():
        for a in accepted:
            if a in present:
                out[name] = a
                break
    return out


def kept_table(batch, mapping: dict[str, str], keep: np.ndarray, part: int, first_row: int, label: str):
    """The kept rows of one metadata batch in the output schema (``part``, ``row`` of origin added)."""
    import pyarrow as pa

    schema = output_schema()
    idx = np.flatnonzero(keep)
    arrays = []
    for field in schema:
        if field.name == "part":
            arrays.append(pa.array(np.full(idx.size, part, dtype=np.int32)))
        elif field.name == "row":
            arrays.append(pa.array(first_row + idx.astype(np.int64)))
        elif field.name in mapping:
            col = batch.column(mapping[field.name]).take(pa.array(idx))
            try:
                arrays.append(col.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise FormatError(f"{label}: metadata column {mapping[field.name]!r} of type {col.type} cannot be "
                                  f"read as {field.type} ({exc})") from None
        else:
            arrays.append(pa.nulls(idx.size, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class StagedPartWriter:
    """Writes one part's kept metadata to ``path`` atomically (temp file, rename in :meth:`finish`)."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(self.path)
        self._w = pq.ParquetWriter(self.tmp, output_schema())
        self.rows = 0

    def write(self, table) -> None:
        if table.num_rows:
            self._w.write_table(table)
            self.rows += table.num_rows

    def finish(self) -> None:
        self._w.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._w.close()
        self.tmp.unlink(missing_ok=True)


def assemble(staged: list[Path], out: Path, expected_rows: int) -> Path:
    """Concatenate staged part files into ``out`` (atomic), one part in memory at a time."""
    import pyarrow.parquet as pq

    rows = 0
    with atomic_path(out) as tmp:
        writer = pq.ParquetWriter(tmp, output_schema())
        try:
            for p in staged:
                pf = pq.ParquetFile(p)
                for i in range(pf.num_row_groups):
                    t = pf.read_row_group(i)
                    writer.write_table(t)
                    rows += t.num_rows
        finally:
            writer.close()
        if rows != expected_rows:
            raise FormatError(f"{out}: assembled {rows} metadata rows but the subset has {expected_rows} vectors; "
                              f"the staged metadata is inconsistent, start over with --restart")
    return out


def lookup(metadata: "str | Path", ids: list[int], columns: list[str] | None = None, *,
           id_base: int = 0) -> list[dict]:
    """Metadata rows of database ``ids`` (0-based), in the order asked, as dicts with an ``id`` key.
    ``id_base`` (0 or 1) is how the caller's user typed the ids, used in messages only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    metadata = Path(metadata)
    if not metadata.is_file():
        raise UsageError(f"{metadata}: no such metadata file; `laionknn prepare subsets` writes "
                         f"laion2B-en-clip768v2-n=NAME.metadata.parquet beside each subset")
    try:
        pf = pq.ParquetFile(metadata)
        names = set(pf.schema_arrow.names)
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(f"{metadata}: not a readable Parquet file ({one_line(exc)}); it may be truncated or "
                          f"of another kind: give the subset's .metadata.parquet written by `prepare subsets`") from None
    missing = [c for c in (columns or []) if c not in names]
    if missing:
        raw = "NSFW" in names and "part" not in names
        raise FormatError(f"{metadata}: has no column(s) {', '.join(missing)}"
                          + ("; it is a raw part's metadata, not a subset's: give the subset's "
                             "laion2B-en-clip768v2-n=NAME.metadata.parquet written by `prepare subsets`" if raw else
                             f"; it holds {', '.join(sorted(names))}"))
    n = pf.metadata.num_rows
    bad = [i for i in ids if i < 0 or i >= n]
    if bad:
        raise UsageError(f"id {bad[0] + id_base} is outside the metadata file's {id_base}..{n - 1 + id_base} "
                         + ("(--one-based: ids count from 1, as in official knns and result files)" if id_base else
                            "(ids are 0-based database rows; official knns and result files hold 1-based ids: "
                            "add --one-based for those)"))
    # row-group offsets, so only the groups holding the ids are read
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    out: dict[int, dict] = {}
    wanted = sorted(set(ids))
    for g in range(pf.num_row_groups):
        inside = [i for i in wanted if starts[g] <= i < starts[g + 1]]
        if not inside:
            continue
        try:
            t = pf.read_row_group(g, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise FormatError(f"{metadata}: row group {g} cannot be read ({one_line(exc)}); the file is damaged "
                              f"(truncated?): run `prepare subsets` again") from None
        rows = t.take(pa.array([i - int(starts[g]) for i in inside])).to_pylist()
        for i, r in zip(inside, rows):
            out[i] = {"id": i, **r}
    return [out[i] for i in ids]
