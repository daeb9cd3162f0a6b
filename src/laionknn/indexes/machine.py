"""What a benchmark run must record about the machine: CPU model, vendor and the SIMD features that
change index speed, library versions, and which kernel faiss's bundled OpenBLAS picked.

The project's machines change kind between sessions (Intel Xeon with AMX and AVX512-FP16, AMD EPYC
with AVX-512 but neither), so every run record carries these facts; they are read at run time, never
assumed. Linux only (``/proc/cpuinfo``); elsewhere the fields are empty strings.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
from importlib import metadata

log = logging.getLogger(__name__)

# flags worth recording, in the order they are written (lscpu's names)
RECORDED_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
                  "amx_int8", "amx_tile")
# OpenBLAS kernels without AVX2: on an AVX2/AVX-512 CPU, faiss's sgemm on one of these is several
# times slower (TARGETS.md: "Prescott" on the Intel kind)
SLOW_OPENBLAS_CORES = frozenset({"prescott", "core2", "katmai", "coppermine", "northwood", "banias", "atom",
                                 "penryn", "dunnington", "nehalem", "opteron", "opteron_sse3", "barcelona",
                                 "bobcat", "sandybridge", "bulldozer", "piledriver", "generic"})


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    """``{"cpu_model", "cpu_vendor", "cpu_flags"}`` of this machine; ``cpu_flags`` lists the
    :data:`RECORDED_FLAGS` present, comma-separated (e.g. ``avx2,avx512f,...,amx_int8``)."""
    model = vendor = ""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if model and vendor and flags:
                    break
    except OSError as exc:  # not Linux: record nothing rather than guess
        log.info("cannot read /proc/cpuinfo: %s", exc)
    return {"cpu_model": model, "cpu_vendor": vendor,
            "cpu_flags": ",".join(f for f in RECORDED_FLAGS if f in flags)}


def is_intel() -> bool:
    """True on a GenuineIntel CPU (Intel SVS's LVQ/LeanVec run only there)."""
    return cpu_info()["cpu_vendor"] == "GenuineIntel"


def library_version(distribution: str) -> str:
    """Installed version of a PyPI distribution (``"faiss-cpu"``), or ``""`` when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def faiss_blas() -> dict[str, str]:
    """The OpenBLAS bundled in faiss-cpu, as threadpoolctl sees it once faiss is loaded:
    ``{"faiss_blas": "openblas 0.3.15 core=Zen", "faiss_blas_core": "Zen", "faiss_blas_ok": "yes"|"no"|""}``.

    ``faiss_blas_ok`` is ``no`` when the kernel lacks AVX2 while the CPU has it (the slow case that
    made IVF-PQ fast-scan 1.5-1.7x slower on the Intel kind); empty when faiss is not installed.
    """
    try:
        import faiss
    except Exception:
        return {"faiss_blas": "", "faiss_blas_core": "", "faiss_blas_ok": ""}
    from threadpoolctl import threadpool_info

    base = os.path.dirname(os.path.dirname(faiss.__file__))
    bundled = {os.path.realpath(p) for p in glob.glob(os.path.join(base, "faiss_cpu.libs", "*"))}
    for info in threadpool_info():
        if info.get("internal_api") == "openblas" and os.path.realpath(info.get("filepath", "")) in bundled:
            core = str(info.get("architecture") or "")
            has_avx2 = "avx2" in cpu_info()["cpu_flags"].split(",")
            ok = "no" if has_avx2 and core.lower() in SLOW_OPENBLAS_CORES else "yes"
            return {"faiss_blas": f"openblas {info.get('version')} core={core}", "faiss_blas_core": core,
                    "faiss_blas_ok": ok}
    # faiss linked against a BLAS threadpoolctl cannot see (e.g. MKL or a static build)
    return {"faiss_blas": "not visible to threadpoolctl", "faiss_blas_core": "", "faiss_blas_ok": ""}


def run_facts(library: str, pip_name: str) -> dict[str, str]:
    """The machine and library fields of one run record."""
    facts = {**cpu_info(), "library": library, "library_version": library_version(pip_name)}
    if library == "faiss":
        facts.update(faiss_blas())
    return facts
