"""Code layout and compiled kernels of laionknn's own index (:mod:`laionknn.indexes.ivfgemm_index`).

The head codes (u8 per dimension, 8 or 4 bits) are stored in *panels* of 16 rows, every inverted list
starting on a new panel (native/ivf.h): 8-bit panels are ``[dq/4][16][4]`` bytes (one 64-byte step =
4 dimensions of 16 rows, the operand of one AVX-512 VNNI ``vpdpbusd``), 4-bit panels ``[dq/8][16][4]``
(low nibbles dims ``8s..8s+3``, high nibbles ``8s+4..8s+7``). Four zero panels end the array.

Kernels (``laionknn._native``, native/ivf_*.cpp), chosen by :func:`kernel`:

* ``avx512`` -- fused scan (vpdpbusd over 64 rows x 6 queries in registers, threshold compare and
  compress-store into per-query candidate buffers) and float16 re-rank (vcvtph2ps, prefetch), where
  CPUID and the OS report AVX-512 F/BW/VL/VNNI;
* ``avx2`` -- the same scan on CPUs with AVX2, FMA and F16C but without AVX-512 VNNI (AMD Zen 2/3, Intel
  before Ice Lake): each 16-byte quarter of a panel step widened to int16 (vpmovzxbw) and multiplied
  with up to 3 queries' int16 codes (vpmaddwd, exact int32 pair sums), hits appended in row order (so
  the same candidates as ``portable`` and ``avx512``); the re-rank with vcvtph2ps on 8 lanes;
* ``portable`` -- the same in plain C++ (the reference of the tests; chosen only by name);
* ``numba`` -- no compiled module (or ``LAIONKNN_NATIVE=off``, or a CPU without AVX2): the
  panels of each list are unpacked to float32 and scored by numpy's sgemm, the top-C kept by numba
  heaps (:mod:`laionknn.indexes.ivfgemm_kernels`).

``LAIONKNN_IVF_KERNEL`` (``avx512``, ``avx2``, ``portable`` or ``numba``) forces one where it is available.
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np

from laionknn import native

log = logging.getLogger(__name__)

KERNEL_ENV = "LAIONKNN_IVF_KERNEL"
PANEL_ROWS = 16
END_PANELS = 4


def padded_dims(head: int, bits: int) -> int:
    """Dimensions the codes hold: ``head`` rounded up to 4 (8-bit) or 8 (4-bit)."""
    step = 4 if bits == 8 else 8
    return -(-int(head) // step) * step


def steps(head: int, bits: int) -> int:
    """64-byte steps per panel."""
    return padded_dims(head, bits) // (4 if bits == 8 else 8)


def list_panels(offsets: np.ndarray) -> np.ndarray:
    """(nlist + 1,) int64: first panel of each list (each list rounded up to whole panels), then the total."""
    sizes = np.diff(np.asarray(offsets, dtype=np.int64))
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(-(-sizes // PANEL_ROWS), out=out[1:])
    return out


def pack(codes: np.ndarray, offsets: np.ndarray, bits: int) -> np.ndarray:
    """Row codes (n, head) u8 in index order (lists contiguous, ``offsets``) -> the panel array (1-d u8)."""
    n, head = codes.shape
    dq, st = padded_dims(head, bits), steps(head, bits)
    lp = list_panels(offsets)
    out = np.zeros((int(lp[-1]) + END_PANELS, st, PANEL_ROWS, 4), dtype=np.uint8)
    sizes = np.diff(offsets)
    lists = np.repeat(np.arange(len(sizes)), sizes)
    for lo in range(0, n, 1 << 18):
        hi = min(n, lo + (1 << 18))
        j = np.arange(lo, hi) - offsets[lists[lo:hi]]
        panel = lp[lists[lo:hi]] + j // PANEL_ROWS
        c = np.zeros((hi - lo, dq), dtype=np.uint8)
        c[:, :head] = codes[lo:hi]
        if bits == 8:
            c = c.reshape(hi - lo, st, 4)
        else:
            c = c.reshape(hi - lo, st, 2, 4)
            c = c[:, :, 0, :] | (c[:, :, 1, :] << 4)
        out[panel, :, j % PANEL_ROWS, :] = c
    return out.ravel()


def unpack(panels: np.ndarray, first_panel: int, rows: int, head: int, bits: int) -> np.ndarray:
    """The codes (rows, padded dims) u8 of ``rows`` rows starting at panel ``first_panel``."""
    st = steps(head, bits)
    npan = -(-rows // PANEL_ROWS)
    p = panels.reshape(-1, st, PANEL_ROWS, 4)[first_panel:first_panel + npan].transpose(0, 2, 1, 3)
    if bits == 4:
        p = np.stack([p & 15, p >> 4], axis=3)  # (np, 16, st, 2, 4)
    return p.reshape(npan * PANEL_ROWS, padded_dims(head, bits))[:rows]


@functools.lru_cache(maxsize=None)
def _available() -> tuple[str, ...]:
    mod = native._module()
    if mod is None or not hasattr(mod, "ivf_scan"):
        return ("numba",)
    f = mod.ivf_cpu()
    out = []
    if "avx512" in mod.ivf_kernels() and all(f[x] for x in ("avx512f", "avx512bw", "avx512vl", "avx512vnni",
                                                             "os_avx512")):
        out.append("avx512")
    if "avx2" in mod.ivf_kernels() and all(f.get(x) for x in ("avx2", "fma", "f16c", "os_avx")):
        out.append("avx2")
    return (*out, "portable", "numba")


def available_kernels() -> list[str]:
    return list(_available())


@functools.lru_cache(maxsize=None)
def kernel() -> str:
    """``$LAIONKNN_IVF_KERNEL`` where available, else ``avx512`` or ``avx2`` where available (in that
    order), else ``numba``."""
    avail = _available()
    want = os.environ.get(KERNEL_ENV, "").strip().lower()
    if want:
        if want in avail:
            return want
        log.warning("%s=%s is not available here (available: %s)", KERNEL_ENV, want, ", ".join(avail))
    return next((k for k in ("avx512", "avx2") if k in avail), "numba")


def reset() -> None:
    """Forget the kernel choice (tests that change ``LAIONKNN_NATIVE*`` / ``LAIONKNN_IVF_KERNEL``)."""
    native.reset()
    _available.cache_clear()
    kernel.cache_clear()


def scan(name: str, panels, head: int, bits: int, list_panel, offsets, qcodes, qscale, pair_q, pair_l, pair_base,
         nlist: int, cands: int, threads: int, rank=None) -> tuple[np.ndarray, np.ndarray]:
    """Each query's ``cands`` best estimates over its (query, list) pairs: (positions (nq, C) int64 with -1
    where fewer rows were seen, estimates (nq, C) float32), in no particular order.

    ``rank`` (small int per pair, optional): the pairs are scanned in passes over the lists, pass r
    holding the pairs of rank r (0: each query's nearest list, 1: the next...), so that each query's
    threshold is already high when its farther lists are scanned and few of their rows enter its
    candidate buffer (inserting is what costs, not scoring)."""
    key = pair_l if rank is None else rank.astype(np.int64) * nlist + pair_l
    order = np.argsort(key, kind="stable")  # pairs come sorted by query: queries stay ascending per visit
    key, pl = key[order], pair_l[order]
    pq, pb = pair_q[order].astype(np.int32), pair_base[order].astype(np.float32)
    counts = np.bincount(key)
    visit = np.flatnonzero(counts)
    ptr = np.zeros(len(visit) + 1, dtype=np.int64)
    np.cumsum(counts[visit], out=ptr[1:])
    visit = (visit % nlist).astype(np.int64)
    nq = len(qcodes)
    pos = np.empty((nq, cands), dtype=np.int64)
    est = np.empty((nq, cands), dtype=np.float32)
    native._module().ivf_scan(name, panels, steps(head, bits), bits == 4, np.ascontiguousarray(list_panel[:-1]),
                              np.ascontiguousarray(offsets, dtype=np.int64), qcodes, qscale, visit, ptr, pq, pb,
                              int(cands), pos, est, int(threads))
    return pos, est


def rerank(name: str, orig, inv_norm, queries, cand, k: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact similarities of the candidates on the float16 originals, the top k best first."""
    nq = len(queries)
    pos = np.empty((nq, k), dtype=np.int64)
    sim = np.empty((nq, k), dtype=np.float32)
    native._module().ivf_rerank(name, orig, inv_norm, np.ascontiguousarray(queries, dtype=np.float32), cand, int(k),
                                pos, sim, int(threads))
    return pos, sim
