"""The package's own exception types.

Every error a user can cause (missing file, wrong key, bad shape, md5 mismatch, NaN vectors, k larger
than the database, ...) is raised as a subclass of :class:`LaionKnnError` whose message says what was
expected, what was found and what to do. The CLI turns these into one line and exit code 2.
"""

from __future__ import annotations


def one_line(text: object) -> str:
    """A message as one line: libraries (h5py, pyarrow, click, the OS) put newlines in theirs."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class LaionKnnError(Exception):
    """Base class of every error laionknn raises on purpose."""


class UsageError(LaionKnnError):
    """Bad parameters: unknown names, k too large, incompatible options."""


class CatalogError(LaionKnnError):
    """A name that is not in the catalog, or a malformed catalog file."""


class DownloadError(LaionKnnError):
    """A download that could not be completed from any URL."""


class ChecksumError(DownloadError):
    """A downloaded or present file whose size or md5 does not match the catalog."""


class FormatError(LaionKnnError):
    """A file that is not in the expected official layout (keys, dtype, shape, id base...)."""


class DataError(LaionKnnError):
    """Vectors that cannot be used as given (NaN, zero norm, empty database...)."""


class OutputError(LaionKnnError):
    """An output that cannot be written (read-only folder, no permission, disk full)."""


class DiskFullError(OutputError):
    """No space left (before a long write, or ENOSPC during one): which file, how much is free."""


class CheckpointError(LaionKnnError):
    """A checkpoint that belongs to other inputs or parameters, or is damaged."""


class LockedError(UsageError):
    """Another live process is working on the same output (it holds the output's lock)."""
