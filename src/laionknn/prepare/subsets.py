"""Raw LAION parts -> the challenge subsets (10M = parts 1-11, 30M = 1-33, 100M = 1-111), streaming.

One pass over the parts feeds every subset that is still open: each kept block is appended to all
open ``.partial-*.h5`` files (official layout, ``emb`` float16 (n, 768), chunked), and a subset's
file is renamed into place as soon as its last part is written. Writing the open subsets side by
side costs the sum of the subset sizes in writes (10M + 30M + 100M rows) but never reads a written
file back and needs no more disk than the outputs themselves; growing one file and copying its
prefix at each boundary writes the same amount *plus* reads it back.

Memory is one chunk of one part (``chunk_rows`` rows of embeddings and metadata). After every part
the HDF5 files are flushed, the part's kept metadata is staged in its own Parquet file, and a small
JSON checkpoint records the parts done and the row counts; a rerun resumes from there, cutting any
rows written after the checkpoint. The checkpoint names its inputs and options, so a rerun with other
parts or other subsets is refused instead of mixing two jobs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from laionknn.errors import CheckpointError, DiskFullError, FormatError, UsageError
from laionknn.fsutil import atomic_path, exclusive_lock
from laionknn.io.appendable import AppendableVectorFile, partial_path
from laionknn.io.vectors import check_vectors
from laionknn.prepare.metadata import StagedPartWriter, assemble, kept_table, source_columns
from laionknn.prepare.parts import (DIM, NSFW_COLUMN, Part, PartEmbeddings, check_part, find_parts,
                                    nsfw_keep_mask, parse_subsets)
from laionknn.progress import progress_bar

log = logging.getLogger(__name__)

DEFAULT_SUBSETS = "10M=11,30M=33,100M=111"
STATE_VERSION = 1
WORK_DIR = ".laionknn-prepare"
# test hook: "P" kills this process (SIGKILL) once P parts are checkpointed; "P:C" kills it after C
# chunks of the part that follows the P-th
KILL_HOOK_ENV = "LAIONKNN_PREPARE_TEST_KILL"


#: held (flock) by the one job writing into an output folder
LOCK_NAME = ".laionknn-prepare.lock"


def subset_filename(name: str) -> str:
    return f"laion2B-en-clip768v2-n={name}.h5"


def metadata_filename(name: str) -> str:
    return f"laion2B-en-clip768v2-n={name}.metadata.parquet"


@dataclass
class SubsetsReport:
    """What :func:`prepare_subsets` did. ``subsets``: one dict per subset (name, parts, rows, path,
    metadata); ``parts``: one dict per part (number, rows, kept, nsfw, missing)."""

    subsets: list[dict] = field(default_factory=list)
    parts: list[dict] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def rows_read(self) -> int:
        return sum(p["rows"] for p in self.parts)

    @property
    def rows_kept(self) -> int:
        return sum(p["kept"] for p in self.parts)


def _fingerprint(part: Part) -> dict:
    return {"number": part.number, "embeddings": part.embeddings.name, "emb_bytes": part.embeddings.stat().st_size,
            "metadata": part.metadata.name, "meta_bytes": part.metadata.stat().st_size}


def _kill_hook() -> tuple[int, int | None] | None:
    text = os.environ.get(KILL_HOOK_ENV, "")
    if not text:
        return None
    p, _, c = text.partition(":")
    return int(p), (int(c) if c else None)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Job:
    """The state of one run: options, checkpoint, open writers."""

    def __init__(self, parts_dir: Path, out_dir: Path, subsets: list[tuple[str, int]], first_part: int) -> None:
        self.parts_dir = parts_dir
        self.out_dir = out_dir
        self.subsets = subsets
        self.first_part = first_part
        self.work = out_dir / WORK_DIR
        self.state_path = self.work / "state.json"
        self.options = {"parts_dir": str(parts_dir.resolve()), "subsets": [list(s) for s in subsets],
                        "first_part": first_part, "dim": DIM}
        self.done: list[dict] = []
        self.finished: list[str] = []

    def staged(self, number: int) -> Path:
        return self.work / "metadata" / f"part_{number:04d}.parquet"

    def rows_after(self, n_parts: int) -> int:
        return sum(p["kept"] for p in self.done[:n_parts])

    def save(self) -> None:
        state = {"version": STATE_VERSION, "options": self.options, "parts": self.done, "finished": self.finished}
        with atomic_path(self.state_path) as tmp:
            tmp.write_text(json.dumps(state, indent=1))

    def load(self, parts: list[Part]) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.state_path}: damaged checkpoint ({exc}); start over with --restart") from None
        if state.get("version") != STATE_VERSION or state.get("options") != self.options:
            raise CheckpointError(f"{self.state_path}: the checkpoint in {self.out_dir} belongs to another job "
                                  f"({state.get('options')}), not to this one ({self.options}); rerun with the "
                                  f"same --parts/--subsets/--first-part, another --out, or --restart to discard it")
        for rec, part in zip(state["parts"], parts):
            now = _fingerprint(part)
            if any(rec.get(k) != v for k, v in now.items()):
                raise CheckpointError(f"{part.label}: changed since it was processed (checkpoint {rec}, now {now}); "
                                      f"rerun with --restart")
        names = {name for name, _ in self.subsets}
        if not isinstance(state.get("finished"), list) or not set(state["finished"]) <= names:
            # the names become file names: only the job's own subset names may come back from the file
            raise CheckpointError(f"{self.state_path}: damaged checkpoint (finished subsets "
                                  f"{state.get('finished')!r} are not among {sorted(names)}); rerun with --restart")
        self.done, self.finished = state["parts"], state["finished"]
        for name in self.finished:
            if not (self.out_dir / subset_filename(name)).exists():
                raise CheckpointError(f"{self.out_dir / subset_filename(name)}: finished according to the "
                                      f"checkpoint but missing; rerun with --restart")

    def clear(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        for name, _ in self.subsets:
            partial_path(self.out_dir / subset_filename(name)).unlink(missing_ok=True)


def prepare_subsets(parts_dir: "str | os.PathLike[str]", out_dir: "str | os.PathLike[str]",
                    subsets: str = DEFAULT_SUBSETS, first_part: int = 1, *, chunk_rows: int = 65536,
                    restart: bool = False, keep_work: bool = False) -> SubsetsReport:
    """Build the subset files (and their metadata Parquet files) from raw parts; resumable.

    Subset ``NAME=P`` holds the kept rows of parts ``first_part .. first_part + P - 1`` in part and row
    order, in ``out_dir/laion2B-en-clip768v2-n=NAME.h5`` (``emb`` float16 (n, 768); database id i is
    row i, 0-based) with ``...n=NAME.metadata.parquet`` (row i describes id i). A row is kept iff its
    NSFW value is present and not "NSFW".
    """
    parts_dir, out_dir = Path(parts_dir), Path(out_dir)
    spec = parse_subsets(subsets)
    if first_part < 0:
        raise UsageError(f"--first-part {first_part}: part numbers start at 0")
    if chunk_rows < 1:
        raise UsageError(f"chunk_rows must be positive, got {chunk_rows}")
    numbers = list(range(first_part, first_part + spec[-1][1]))
    parts = find_parts(parts_dir, numbers)
    n_rows = [check_part(p) for p in parts]  # headers only: fail before hours of work, naming the part
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK_NAME
    with exclusive_lock(lock, f"another `laionknn prepare subsets` is writing into {out_dir} now ({lock} is held"
                              f"{{holder}}); wait for it to finish or use another --out (do not pass --restart: "
                              f"it would wreck the running job)"):
        return _prepare_locked(parts_dir, out_dir, spec, first_part, parts, n_rows, chunk_rows, restart, keep_work)


def _prepare_locked(parts_dir: Path, out_dir: Path, spec: list[tuple[str, int]], first_part: int, parts: list,
                    n_rows: list[int], chunk_rows: int, restart: bool, keep_work: bool) -> SubsetsReport:
    job = _Job(parts_dir, out_dir, spec, first_part)
    if restart:
        job.clear()
    if job.state_path.exists():
        job.load(parts)
    else:
        existing = [subset_filename(n) for n, _ in spec if (out_dir / subset_filename(n)).exists()]
        if existing and not restart:
            raise UsageError(f"{out_dir} already holds {', '.join(existing)} and no checkpoint; remove them, choose "
                             f"another --out, or pass --restart to rebuild them")
        job.clear()
    report = SubsetsReport(resumed_from=len(job.done))
    _warn_disk(out_dir, spec, n_rows, len(job.done))
    hook = _kill_hook()
    writers: dict[str, AppendableVectorFile] = {}
    try:
        _finish_reached(job, writers)  # a kill between a part's checkpoint and its subset's rename
        rows = job.rows_after(len(job.done))
        for name, count in spec:
            if name not in job.finished:
                writers[name] = AppendableVectorFile(out_dir / subset_filename(name), "emb", DIM, np.float16,
                                                     rows=rows if job.done else 0,
                                                     attrs={"source": "LAION2B-en img_emb parts",
                                                            "parts": f"{first_part}..{first_part + count - 1}",
                                                            "filter": "NSFW present and != 'NSFW'"})
        with progress_bar("prepare subsets", total=len(parts), unit="parts") as bar:
            bar.update(len(job.done))
            for i in range(len(job.done), len(parts)):
                part = parts[i]
                kill_chunk = hook[1] if hook and hook[0] == len(job.done) else None
                stats = _process_part(part, n_rows[i], list(writers.values()), job.staged(part.number), chunk_rows,
                                      kill_chunk)
                for w in writers.values():
                    w.flush()
                job.done.append({**_fingerprint(part), **stats})
                job.save()
                log.info("%s: %d of %d rows kept", part.label, stats["kept"], stats["rows"])
                if hook and hook[1] is None and hook[0] == len(job.done):
                    _die()
                _finish_reached(job, writers)
                bar.advance(1)
    finally:
        for w in writers.values():
            w.close()
    report.parts = list(job.done)
    for name, count in spec:
        report.subsets.append({"name": name, "parts": count, "rows": job.rows_after(count),
                               "path": str(out_dir / subset_filename(name)),
                               "metadata": str(out_dir / metadata_filename(name))})
    if not keep_work:
        shutil.rmtree(job.work, ignore_errors=True)
    return report


def _warn_disk(out_dir: Path, spec: list[tuple[str, int]], n_rows: list[int], done: int) -> None:
    """Log a warning when the free disk is below the (upper-bound) size of what is left to write;
    raise :class:`DiskFullError` when even half of it would not fit."""
    row_bytes = DIM * 2
    need = sum(sum(n_rows[done:count]) * row_bytes for _, count in spec if count > done)
    free = shutil.disk_usage(out_dir).free
    if need > 2 * free:  # even if half the rows were NSFW it could not fit: refuse before the work
        raise DiskFullError(f"{out_dir}: {free / 1e9:.2f} GB free, {need / 1e9:.2f} GB to write before NSFW removal "
                            f"(it drops a few percent); free some space or choose another --out")
    if need > free:
        log.warning("%s: %.1f GB free, up to %.1f GB still to write (before NSFW removal); the run may fail "
                    "for lack of space", out_dir, free / 1e9, need / 1e9)


def _finish_reached(job: _Job, writers: dict[str, AppendableVectorFile]) -> None:
    """Finish every subset whose last part is checkpointed: rename its file, assemble its metadata."""
    for name, count in job.subsets:
        if name in job.finished or count > len(job.done):
            continue
        target = job.out_dir / subset_filename(name)
        rows = job.rows_after(count)
        w = writers.pop(name, None)
        if w is None and partial_path(target).exists():  # resumed right after the checkpoint
            w = AppendableVectorFile(target, "emb", DIM, np.float16, rows=rows)
        if w is not None:
            if w.n != rows:
                raise CheckpointError(f"{w.partial}: holds {w.n} rows, the checkpoint says {rows}; rerun with --restart")
            w.finish()
        elif not target.exists():
            raise CheckpointError(f"{target}: neither the subset nor its work file exists; rerun with --restart")
        assemble([job.staged(p["number"]) for p in job.done[:count]], job.out_dir / metadata_filename(name), rows)
        job.finished.append(name)
        job.save()
        log.info("subset %s finished: %d rows in %s", name, rows, target)


def _process_part(part: Part, n_rows: int, writers: list[AppendableVectorFile], staged: Path, chunk_rows: int,
                  kill_chunk: int | None) -> dict:
    """Stream one part chunk by chunk into every open writer; stage its kept metadata. Returns counts."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(part.metadata)
    mapping = source_columns(pf.schema_arrow.names)
    columns = sorted(set(mapping.values()) | {NSFW_COLUMN})
    emb = PartEmbeddings(part.embeddings, part.label)
    stage = StagedPartWriter(staged)
    lo = kept = missing = 0
    try:
        with emb.reader() as reader:
            for chunk, batch in enumerate(pf.iter_batches(batch_size=chunk_rows, columns=columns)):
                m = batch.num_rows
                x = reader.take(m)
                nsfw = batch.column(NSFW_COLUMN)
                keep = nsfw_keep_mask(nsfw)
                block = x[keep]
                check_vectors(block, what=f"{part.label} (kept row)")
                for w in writers:
                    w.append(block)
                stage.write(kept_table(batch, mapping, keep, part.number, lo, part.label))
                lo += m
                kept += int(keep.sum())
                missing += int(nsfw.null_count)
                if kill_chunk is not None and chunk + 1 >= kill_chunk:
                    for w in writers:
                        w.flush()
                    _die()
        if lo != n_rows:
            raise FormatError(f"{part.label}: read {lo} metadata rows, expected {n_rows}")
        stage.finish()
    except BaseException:
        stage.abort()
        raise
    return {"rows": n_rows, "kept": kept, "missing": missing, "nsfw": n_rows - kept - missing}
