"""Peer benchmark: every available index backend on synthetic LAION-like data.

For each size and backend, one fresh subprocess builds the index once (with the largest thread
count asked for). For k=10 and k=30 it then walks the backend's default query grid in order (grids
ascend in effort) with one search per point using every thread, and stops at the first point that
reaches the threshold (recall@10 >= 0.9, recall@30 >= 0.8; official id-only recall against the exact
gold standard): the later points only cost more time. That point (or, if none reaches the threshold,
the last one) is then timed with each thread count: the median of 3 timed searches of all queries
(brute-force grids say ``repeats = 1``); the probe serves as the warm-up. Reported per backend and
thread count: its QPS and recall, build seconds, peak RSS of that subprocess and the size of the
saved index. Every probe and timed point is kept in the JSON written beside ``--markdown``.

Honest comparisons: every backend gets the same float32 normalised vectors (the protocol's block
conversion), the same thread count, and its library's batch call where it has one; a library that
can only search one query per call is marked ``single-query`` in its rows and in the table. Every row
carries the CPU model, vendor and SIMD flags (AVX-512, AVX512-FP16, AMX), the library version and, for
faiss, the kernel its bundled OpenBLAS picked (threadpoolctl). When that kernel lacks AVX2 on an AVX2
CPU (the Intel kind picks "Prescott", which made IVF-PQ fast-scan 1.5-1.7x slower) and
``OPENBLAS_CORETYPE`` is not set, the workers run with ``OPENBLAS_CORETYPE=SkylakeX`` (AVX-512 CPUs) or
``Haswell`` (AVX2 only) and the table says so; a kernel that is still slow is reported, not hidden.

A named backend this machine cannot run (an Intel-only library on an AMD CPU, a library that does not
import) starts no worker: one line on stderr and the reason under the table ("Not measured").

Brute force (``faiss-flat``) is skipped above ``--brute-max-rows`` (default 300K): at 1M rows one
pass of 10k queries takes minutes, and its speed against our exact engine is measured by
``benchmarks/exact.py``. The exact engine is left out for the same reason unless named.

    PYTHONPATH=src python benchmarks/peers.py --size 300K --size 1M --queries 10000 --threads 1 --threads 2

Prints a Markdown table; ``--markdown FILE`` also writes it (with the command) to FILE, and the raw points
to ``FILE-<size>.json`` after every backend (``--resume`` keeps those and runs the rest). ``--lock FILE``
holds an exclusive flock while each backend runs, so benchmarks sharing a machine take turns;
``--timeout S`` gives up on a backend that takes longer (named under the table).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

THRESHOLDS = {10: 0.9, 30: 0.8}
BRUTE_FORCE = {"faiss-flat"}  # exact is never in the default list


def worker(args) -> None:
    """Run in a subprocess: build one backend once, then for k=10 and k=30 find the cheapest grid point
    that reaches the recall threshold and time it with each thread count."""
    from laionknn.indexes.datasets import gold_for, open_target
    from laionknn.indexes.grids import load_grid
    from laionknn.indexes.runner import (backend_facts, build_or_load, peak_rss_bytes, recall_at, set_knobs_for_k,
                                         timed_search)

    backend = args.backend[0]
    spec, target, database = open_target(args.data, n_queries=args.queries)
    _, gold = gold_for(spec)
    grid = load_grid(backend, dataset=spec.name, n_rows=database.n, dim=database.dim)
    repeats = args.repeats or grid.repeats or 3
    top_threads = max(args.threads)
    out = []
    for build_params in grid.build:
        index, buildtime, _, index_bytes = build_or_load(backend, target, build_params,
                                                         threads=top_threads, use_cache=False)
        common = {"backend": backend, "buildtime": buildtime, "build_threads": top_threads,
                  "index_bytes": index_bytes, **backend_facts(backend)}
        for k, threshold in THRESHOLDS.items():
            # probe: one search per grid point with every thread, in grid order (grids ascend in
            # effort), stopping at the first point that reaches the threshold: later points are slower
            index.set_threads(top_threads)
            chosen = None
            # query grids are rules of k (ef >= k...): load them for this k; knobs as really run
            for query_params in load_grid(backend, dataset=spec.name, n_rows=database.n, k=k, dim=database.dim).query:
                set_knobs_for_k(index, query_params, k)
                t0 = time.perf_counter()
                res = index.search(target.queries, k)
                seconds = time.perf_counter() - t0
                rec = recall_at(res.ids, gold.ids, k)
                out.append({**common, "kind": "probe", "threads": top_threads, "k": k,
                            "params": index.params_string(), "query": index.query_string(), "recall": rec,
                            "qps": len(target.queries) / seconds, "peak_rss_bytes": peak_rss_bytes()})
                chosen = dict(index.query_params)
                if rec >= threshold:
                    break
            # time the chosen point (or the most accurate one when none reaches the threshold)
            index.set_query_params(**chosen)
            # the probe just searched every query, so the data and the index are warm: no warm-up
            for threads in args.threads:
                index.set_threads(threads)
                res, times = timed_search(index, target.queries, k, repeats, warmup=False)
                out.append({**common, "kind": "timed", "threads": threads, "k": k,
                            "params": index.params_string(), "query": index.query_string(),
                            "recall": recall_at(res.ids, gold.ids, k),
                            "qps": len(target.queries) / statistics.median(times), "repeats": len(times),
                            "peak_rss_bytes": peak_rss_bytes()})
        del index
    database.close()
    print("RESULT " + json.dumps(out))


OWN_PREFIX = "laionknn-"  # our own indexes: compared with the peers, never counted as one


def best_at(rows: list[dict], k: int, threads: int, own: bool) -> dict | None:
    """The fastest timed row at ``k`` and ``threads`` that reaches the threshold, among our own
    backends (``own``) or among the peers."""
    ok = [r for r in rows if r["kind"] == "timed" and r["k"] == k and r["threads"] == threads
          and r["recall"] >= THRESHOLDS[k] and r["backend"].startswith(OWN_PREFIX) == own]
    return max(ok, key=lambda r: r["qps"]) if ok else None


def machine_kind(row: dict) -> str:
    """The kind of machine a row was measured on, as the tables name it: the CPU vendor, and for Intel
    whether AMX is exposed (the project's machines change kind between sessions)."""
    vendor = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(row.get("cpu_vendor", ""),
                                                                 row.get("cpu_vendor") or "unknown CPU")
    if vendor != "Intel":
        return vendor
    return "Intel with AMX" if "amx_tile" in (row.get("cpu_flags") or "").split(",") else "Intel without AMX"


def kinds_of(rows: list[dict]) -> list[str]:
    return sorted({machine_kind(r) for r in rows})


def best_peer_lines(rows: list[dict]) -> list[str]:
    """One line per threshold and thread count naming the best peer (and, when one of our own indexes ran,
    its QPS and the ratio to that peer); rows from several machine kinds are never compared: one set of
    lines per kind, each naming it."""
    kinds = kinds_of(rows)
    if len(kinds) > 1:
        return [line for kind in kinds
                for line in _best_lines([r for r in rows if machine_kind(r) == kind], f" ({kind})")]
    return _best_lines(rows, "")


def _best_lines(rows: list[dict], where: str) -> list[str]:
    lines = []
    for k, threshold in THRESHOLDS.items():
        for threads in sorted({r["threads"] for r in rows if r["kind"] == "timed"}):
            peer, own = best_at(rows, k, threads, False), best_at(rows, k, threads, True)
            text = (f"Best peer{where} at R@{k} ≥ {threshold}, {threads} thread{'s' if threads > 1 else ''}: "
                    + (f"**{peer['backend']}** {peer['qps']:,.0f} QPS ({peer['recall']:.3f}; {peer['query']})"
                       if peer else "none reaches it"))
            if own:
                text += (f"; ours: **{own['backend']}** {own['qps']:,.0f} QPS ({own['recall']:.3f}; {own['query']})"
                         + (f", **{own['qps'] / peer['qps']:.2f}×** the best peer" if peer else ""))
            lines.append(f"- {text}")
    return lines


def summarise(rows: list[dict]) -> list[list[str]]:
    """One table row per backend and thread count (and machine kind, a column of its own when the rows
    come from more than one)."""
    table = []
    mixed = len(kinds_of(rows)) > 1
    keys = sorted({(r["backend"], r["threads"], machine_kind(r)) for r in rows}, key=lambda x: (x[0], x[2], x[1]))
    for backend, threads, kind in keys:
        mine = [r for r in rows if r["backend"] == backend and r["threads"] == threads and r["kind"] == "timed"
                and machine_kind(r) == kind]
        if not mine:
            continue
        single = mine[0].get("search_mode") == "single-query"
        cells = [f"{backend} (single-query)" if single else backend, str(threads)] + ([kind] if mixed else [])
        for k, thr in THRESHOLDS.items():
            ok = [r for r in mine if r["k"] == k and r["recall"] >= thr]
            best = max(ok, key=lambda r: r["qps"]) if ok else None
            top = max((r["recall"] for r in mine if r["k"] == k), default=float("nan"))
            cells.append(f"{best['qps']:,.0f} ({best['recall']:.3f}; {best['query'] or 'no knobs'})" if best
                         else f"— (max {top:.3f})")
        cells += [f"{mine[0]['buildtime']:.1f}", f"{max(r['peak_rss_bytes'] for r in mine) / 2**30:.2f}",
                  f"{mine[0]['index_bytes'] / 2**20:,.0f}" if mine[0]["index_bytes"] else "— (not saved)"]
        table.append(cells)
    return table


def machine_lines(rows: list[dict], coretype_note: str) -> list[str]:
    """The machines and versions the table was measured with (from the rows themselves)."""
    if not rows:
        return []
    versions = sorted({(r["backend"], r.get("library", ""), r.get("library_version", "")) for r in rows})
    mixed = len(kinds_of(rows)) > 1
    cpus = sorted({(machine_kind(r), r.get("cpu_model"), r.get("cpu_vendor"), r.get("cpu_flags")) for r in rows})
    lines = [f"CPU{f' ({kind})' if mixed else ''}: {model} ({vendor}); flags: {flags or 'none of note'}"
             for kind, model, vendor, flags in cpus]
    blas = sorted({r["faiss_blas"] + ("" if r.get("faiss_blas_ok") != "no" else " (no AVX2: slow kernel)")
                   for r in rows if r.get("faiss_blas")})
    if blas:
        lines.append(f"faiss BLAS: {'; '.join(blas)}{coretype_note}")
    lines.append("Versions: " + ", ".join(f"{b} = {lib} {v}" for b, lib, v in versions))
    return lines


def blas_environment() -> tuple[dict[str, str], str]:
    """The environment for the workers, and a note for the table: when faiss's bundled OpenBLAS picked a
    kernel without AVX2 on an AVX2 CPU and ``OPENBLAS_CORETYPE`` is unset, the workers get
    ``OPENBLAS_CORETYPE=SkylakeX`` on an AVX-512 CPU and ``Haswell`` on an AVX2-only one. (On the Intel
    kind without AMX, family 6 model 207, OpenBLAS 0.3.15 picks Prescott: faiss IndexFlatIP searched
    100K x 4,000 queries at 36 GFLOP/s on it, 97 on Haswell and 186 on SkylakeX, 2 threads.)"""
    from laionknn.indexes.machine import cpu_info, faiss_blas

    env = {**os.environ, "LAIONKNN_QUIET": "1"}
    if "OPENBLAS_CORETYPE" in os.environ:
        return env, f" (OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} set by the caller)"
    blas = faiss_blas()
    if blas["faiss_blas_ok"] == "no":
        core = "SkylakeX" if "avx512f" in cpu_info()["cpu_flags"].split(",") else "Haswell"
        env["OPENBLAS_CORETYPE"] = core
        return env, f" (picked {blas['faiss_blas_core']} on its own; workers ran with OPENBLAS_CORETYPE={core})"
    return env, ""


@contextlib.contextmanager
def machine_lock(path: Path | None):
    """Hold an exclusive ``flock`` on ``path`` (nothing when None): benchmarks that share a machine take turns."""
    if path is None:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


HEADER = ["backend", "threads", "QPS @ R@10 ≥ 0.9 (recall)", "QPS @ R@30 ≥ 0.8 (recall)", "build s",
          "peak RSS GiB", "index MiB"]


def section(title: str, rows: list[dict], coretype_note: str, notes: list[str]) -> str:
    """One Markdown table with its best-peer lines, machines and versions, and ``notes`` below."""
    header = HEADER[:2] + (["machine"] if len(kinds_of(rows)) > 1 else []) + HEADER[2:]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in summarise(rows)]
    lines += [""] + best_peer_lines(rows)
    lines += [""] + machine_lines(rows, coretype_note)
    for note in notes:
        lines += ["", note]
    return "\n".join(lines)


def render(args) -> None:
    """``--render``: one table of the rows of earlier runs' raw JSON files (nothing is run)."""
    rows = []
    for path in args.render:
        try:
            rows += json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"error: --render {path}: cannot read it as a raw JSON file of this script ({exc})", file=sys.stderr)
            sys.exit(2)
    text = section(args.title or ", ".join(p.name for p in args.render), rows, "", [])
    print(text)
    if args.markdown:
        cmd = "PYTHONPATH=src python benchmarks/peers.py " + " ".join(sys.argv[1:])
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"Command: `{cmd}`\n\n{text}\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", action="append", help="synthetic subset size (repeatable; default 300K and 1M)")
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--threads", type=int, action="append", help="thread counts (repeatable; default 1 and 2)")
    p.add_argument("--backend", action="append",
                   help="only these backends (repeatable; default every available float backend but exact)")
    p.add_argument("--repeats", type=int, help="timed searches after the warm-up (default: the grid's, else 3)")
    p.add_argument("--brute-max-rows", type=int, default=300_000,
                   help="skip brute-force backends (faiss-flat) on larger databases unless named (default 300000)")
    p.add_argument("--markdown", type=Path, help="also write the table to this file")
    p.add_argument("--resume", action="store_true",
                   help="with --markdown: keep the backends already in its JSON files and run only the others "
                        "(the JSON is rewritten after every backend, so an interrupted run loses at most one)")
    p.add_argument("--lock", type=Path,
                   help="hold an exclusive lock on this file while each backend runs (so that other benchmarks "
                        "sharing the machine wait instead of spoiling the figures)")
    p.add_argument("--timeout", type=float, help="give up on a backend after this many seconds (reported)")
    p.add_argument("--exclude", action="append", default=[], help="leave this backend out (repeatable)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--render", type=Path, action="append",
                   help="run nothing: print (and with --markdown write) the table of these raw JSON files of earlier "
                        "runs, one table (repeatable; rows from several machine kinds get a machine column)")
    p.add_argument("--title", help="with --render: the table's heading (default: the files' names)")
    args = p.parse_args()
    args.threads = args.threads or [1, 2]
    if args.worker:
        worker(args)
        return
    if args.render:
        render(args)
        return

    from laionknn.catalog.manifest import synthetic_database_name
    from laionknn.indexes.datasets import gold_for, open_target
    from laionknn.indexes.registry import available_backends, why_unavailable

    env, coretype_note = blas_environment()
    sections = []
    for size in args.size or ["300K", "1M"]:
        name = synthetic_database_name(size)
        spec, _, db = open_target(name, n_queries=args.queries)  # materialise data before timing anything
        n_rows = db.n
        db.close()
        gold_for(spec)
        rows = []
        raw = args.markdown.with_name(f"{args.markdown.stem}-{size}.json") if args.markdown else None
        if args.resume and raw is not None and raw.is_file():
            rows = json.loads(raw.read_text())
            print(f"{size}: resuming, kept {', '.join(sorted({r['backend'] for r in rows}))}", file=sys.stderr)
        done = {r["backend"] for r in rows}
        # the exact engine has its own benchmark (benchmarks/ of the exact area); name it to include it
        skipped, failed = [], []
        for backend in args.backend or [b for b in available_backends("cosine") if b != "exact"]:
            if backend in done or backend in args.exclude:
                continue
            if not args.backend and backend in BRUTE_FORCE and n_rows > args.brute_max_rows:
                skipped.append(backend)
                continue
            # a named backend this machine cannot run: one line and a note under the table, no worker
            why = why_unavailable(backend)
            if why:
                print(f"{size} {backend}: not run here: {why}", file=sys.stderr)
                failed.append(f"{backend} (not available here: {why[:160]})")
                continue
            cmd = [sys.executable, __file__, "--worker", "--data", name, "--backend", backend,
                   "--queries", str(args.queries)] + [x for t in args.threads for x in ("--threads", str(t))]
            if args.repeats:
                cmd += ["--repeats", str(args.repeats)]
            with machine_lock(args.lock):
                t0 = time.time()
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    print(f"{size} {backend}: gave up after {args.timeout:.0f} s (--timeout)", file=sys.stderr)
                    failed.append(f"{backend} (over {args.timeout:.0f} s)")
                    continue
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(f"{backend}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                failed.append(f"{backend} (failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1][:160]})")
                continue
            rows += json.loads(line[7:])
            if raw is not None:  # checkpoint: every finished backend is kept
                raw.parent.mkdir(parents=True, exist_ok=True)
                tmp = raw.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(rows, indent=1))
                tmp.replace(raw)
            print(f"{size} {backend}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        notes = []
        if skipped:
            notes.append(f"Skipped (brute force above {args.brute_max_rows:,} rows; see the exact engine's "
                         f"benchmark): {', '.join(skipped)}")
        if failed:
            notes.append(f"Not measured: {'; '.join(failed)}")
        sections.append(section(f"{name}, {args.queries} queries", rows, coretype_note, notes))
    text = "\n\n".join(sections)
    print(text)
    if args.markdown:
        cmd = "PYTHONPATH=src python benchmarks/peers.py " + " ".join(sys.argv[1:])
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"Command: `{cmd}`\n\n{text}\n")


if __name__ == "__main__":
    main()
