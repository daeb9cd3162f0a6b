"""A resumable appender for vector files in the official layout.

:class:`~laionknn.io.vectors.VectorWriter` writes a file in one go. Long jobs that must survive a
kill (``laionknn prepare subsets`` over 111 raw parts) need a file that can be reopened, cut back to
the last row count a checkpoint recorded, and appended to again. :class:`AppendableVectorFile`
writes into a hidden ``.partial-*`` file beside the target and renames it onto the target only in
:meth:`finish`, so a file under the final name is always complete.

HDF5 is not journalled: :meth:`flush` pushes data and metadata to disk, and a kill between two
flushes normally leaves the file readable up to the last flush (rows past the checkpoint are cut on
reopen). If the library cannot reopen the file, :class:`~laionknn.errors.CheckpointError` says so
and the job has to restart.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from laionknn.errors import CheckpointError, FormatError
from laionknn.io.vectors import close_abandoned, raise_disk_full


def partial_path(path: "str | os.PathLike[str]") -> Path:
    """The hidden work file used while ``path`` is being written."""
    path = Path(path)
    return path.with_name(f".partial-{path.name}")


class AppendableVectorFile:
    """Append (n, dim) blocks to dataset ``key`` of ``partial_path(path)``; resumable.

    ``rows`` is the row count a checkpoint recorded: 0 starts a new file (an existing partial file is
    replaced); a positive value reopens the partial file and cuts it back to exactly ``rows`` rows.
    """

    def __init__(self, path: "str | os.PathLike[str]", key: str, dim: int, dtype, *, rows: int = 0,
                 chunk_rows: int | None = None, attrs: dict | None = None) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.key = key
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if rows == 0:
            if chunk_rows is None:
                chunk_rows = max(1, min(65536, (1 << 20) // max(1, self.dim * self.dtype.itemsize)))
            self._f = h5py.File(self.partial, "w")
            self._ds = self._f.create_dataset(key, shape=(0, self.dim), maxshape=(None, self.dim),
                                              dtype=self.dtype, chunks=(chunk_rows, self.dim))
            for k, v in (attrs or {}).items():
                self._f.attrs[k] = v
        else:
            self._reopen(rows)
        self.n = int(self._ds.shape[0])

    def _reopen(self, rows: int) -> None:
        if not self.partial.exists():
            raise CheckpointError(f"{self.partial}: the checkpoint says {rows} rows were written but the work file "
                                  f"is missing; start over with --restart")
        try:
            self._f = h5py.File(self.partial, "a")
        except OSError as exc:
            raise CheckpointError(f"{self.partial}: cannot reopen the work file after an interruption ({exc}); "
                                  f"start over with --restart") from None
        ds = self._f.get(self.key)
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 2 or ds.shape[1] != self.dim or ds.dtype != self.dtype:
            self._f.close()
            raise CheckpointError(f"{self.partial}: expected dataset {self.key!r} {self.dtype} (n, {self.dim}), "
                                  f"found {getattr(ds, 'shape', None)} {getattr(ds, 'dtype', None)}; "
                                  f"start over with --restart")
        if ds.shape[0] < rows:
            self._f.close()
            raise CheckpointError(f"{self.partial}: has {ds.shape[0]} rows but the checkpoint recorded {rows}; "
                                  f"the work file does not belong to this checkpoint; start over with --restart")
        ds.resize((rows, self.dim))  # drop rows written after the last checkpoint
        self._ds = ds

    def append(self, block: np.ndarray) -> None:
        """Append rows (converted to the file's dtype; the caller's array is not modified)."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise FormatError(f"{self.path}: block of shape {block.shape} does not fit rows of dimension {self.dim}")
        m = block.shape[0]
        if m == 0:
            return
        try:
            self._ds.resize((self.n + m, self.dim))
            self._ds[self.n:self.n + m] = block.astype(self.dtype, copy=False)
        except (OSError, RuntimeError) as exc:  # h5py reports a failed flush as RuntimeError
            self._give_up(exc)
        self.n += m

    def flush(self) -> None:
        """Make every appended row durable before a checkpoint records :attr:`n`."""
        try:
            self._f.flush()
        except (OSError, RuntimeError) as exc:  # h5py reports a failed flush as RuntimeError
            self._give_up(exc)
        try:
            os.fsync(self._f.id.get_vfd_handle())
        except (AttributeError, OSError, TypeError, ValueError):
            pass  # drivers without a plain file descriptor: h5py's flush is all we can do

    def _give_up(self, exc: Exception) -> None:
        """A write failed (disk full...): close without writing again, keep the partial file as the
        last flush left it (the checkpoint's rows), and raise one clear error."""
        close_abandoned(self._f)
        raise_disk_full(exc, self.partial)
        raise exc

    def finish(self) -> Path:
        """Close the file and move it onto its final name. Returns the final path."""
        try:
            self._f.close()
        except (OSError, RuntimeError) as exc:  # h5py reports a failed flush as RuntimeError
            self._give_up(exc)
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        """Close without finishing (the partial file stays for a later resume)."""
        if self._f.id.valid:
            try:
                self._f.close()
            except (OSError, RuntimeError):
                close_abandoned(self._f)
