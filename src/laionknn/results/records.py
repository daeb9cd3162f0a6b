"""Run records: one record per run, appended to a CSV or JSONL file.

A record is a dict of scalars, plus the fields of :data:`NESTED`: ``build_params`` and
``query_params`` are objects (``{"M": 16}``), ``querytimes`` a list of seconds. The format follows the
file's suffix: ``.jsonl`` (or ``.json``) writes one JSON object per line, nested fields as real JSON
objects and lists; anything else is CSV with a header, nested fields as JSON text. Readers give the
nested fields back as objects, also from older files that held them as JSON text inside JSON. A CSV whose header lacks a key of new records is rewritten
atomically with the union of the columns (old rows get empty fields), so no field is ever lost.
Reading gives back dicts; CSV fields are turned into int/float where they parse, empty fields into None.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Iterable

from laionknn.errors import FormatError
from laionknn.fsutil import atomic_path


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".json", ".ndjson")


#: fields that hold objects or lists (older files: JSON text)
NESTED = ("build_params", "query_params", "querytimes")


def _plain(value):
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (list, tuple, dict)):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _nested(record: dict) -> dict:
    """``record`` with the :data:`NESTED` fields as objects/lists (decoding an older file's JSON text)."""
    for key in NESTED:
        value = record.get(key)
        if isinstance(value, str) and value[:1] in ("{", "["):
            try:
                record[key] = json.loads(value)
            except json.JSONDecodeError:
                pass
    return record


def _cell(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def _parse(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _csv_text(columns: list[str], rows: Iterable[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({c: "" if row.get(c) is None else _cell(row.get(c)) for c in columns})
    return buf.getvalue()


def append_run_records(path: "str | os.PathLike[str]", records: "dict | Iterable[dict]") -> Path:
    """Append ``records`` (a dict or dicts of scalars) to the CSV or JSONL file at ``path``."""
    path = Path(path)
    records = [records] if isinstance(records, dict) else list(records)
    clean = [{str(k): _plain(v) for k, v in r.items()} for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_jsonl(path):
        text = "".join(json.dumps(r, sort_keys=False) + "\n" for r in clean)
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
        return path
    keys: list[str] = []
    for r in clean:
        keys += [k for k in r if k not in keys]
    if not path.exists() or path.stat().st_size == 0:
        with atomic_path(path) as tmp:
            tmp.write_text(_csv_text(keys, clean), encoding="utf-8")
        return path
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    new = [k for k in keys if k not in header]
    if new:
        old = _read_csv(path, parse=False)
        with atomic_path(path) as tmp:
            tmp.write_text(_csv_text(header + new, old + clean), encoding="utf-8")
        return path
    body = _csv_text(header, clean).split("\n", 1)[1]
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(body)
    return path


def _read_csv(path: Path, *, parse: bool = True) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [{k: (_parse(v) if parse else v) for k, v in row.items()} for row in csv.DictReader(f)]
    return [_nested(r) for r in rows] if parse else rows


def read_run_records(path: "str | os.PathLike[str]") -> list[dict]:
    """All records of a CSV or JSONL run-record file (missing file: empty list)."""
    path = Path(path)
    if not path.exists():
        return []
    if not _is_jsonl(path):
        return _read_csv(path)
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(_nested(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise FormatError(f"{path}: line {i} is not JSON ({exc.msg}); a JSONL record file holds one "
                                  f"object per line") from None
    return out


#: what makes two run records the same measurement point (a rerun replaces, never duplicates, it)
RUN_KEY = ("dataset", "data", "size", "algo", "params", "k", "threads", "n_queries")


def replace_run_records(path: "str | os.PathLike[str]", records: "dict | Iterable[dict]",
                        key: tuple[str, ...] = RUN_KEY) -> Path:
    """Add ``records`` to the file at ``path``, first dropping the records already there with the
    same ``key`` fields: re-running `run` or `search` after a kill (or on purpose) leaves one record
    per point, the newest. The file is rewritten atomically when something is dropped; otherwise
    the new records are appended."""
    path = Path(path)
    records = [records] if isinstance(records, dict) else list(records)
    clean = [{str(k): _plain(v) for k, v in r.items()} for r in records]
    old = read_run_records(path)

    def ident(r: dict) -> tuple:
        return tuple(str(r.get(k)) for k in key)

    new_keys = {ident(r) for r in clean}
    kept = [r for r in old if ident(r) not in new_keys]
    if len(kept) == len(old):
        return append_run_records(path, clean)
    with atomic_path(path) as tmp:  # same suffix, so the same format
        append_run_records(tmp, kept + clean)
    return path
