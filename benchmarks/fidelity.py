"""Benchmark: the synthetic twin against every public real-LAION difficulty figure, each at its scale.

Streams the twin straight from the generator (the rows `laionknn synth` writes, float16, without
writing a file), so the 10M column needs no 15 GB file:

    PYTHONPATH=src python benchmarks/fidelity.py --seeds 0,1 --max-size 10M --queries 1000 --json out.json

``--graph-proxy faiss[,hnswlib]`` adds one-sided checks of the HNSW rows (published at 10M, where a float32
graph does not fit 24 GB) measured on the largest scale that fits (1M).

Prints, per seed, the sample statistics of 1024 random rows next to the 1024 real vectors, and the
fingerprint table (figure, scale, real, measured, max |delta|, verdict against ±0.03, IVF ±0.05).
The same measurement runs on any file with `laionknn stats FILE --fingerprint`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    from laionknn.progress import progress_bar, set_quiet
    from laionknn.synthetic.fidelity import fingerprint, generator_blocks, generator_queries, markdown
    from laionknn.synthetic.model import load_frame
    from laionknn.synthetic.stats import global_stats
    from laionknn.types import DEFAULT_GENERATOR, parse_size

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--generator", default=DEFAULT_GENERATOR)
    ap.add_argument("--max-size", default="10M", help="largest scale measured (100K, 300K, 1M or 10M)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ivf", action="store_true")
    ap.add_argument("--hnsw-max-rows", default="2M", help="largest database an HNSW row is built on")
    ap.add_argument("--graph-proxy", default="",
                    help="comma list of faiss,hnswlib: where an HNSW row's published scale (10M) is not measured, "
                         "measure it on the largest scale that is, as a one-sided check (real recall only "
                         "falls with size, so a twin below the real figure there is harder than real LAION)")
    ap.add_argument("--json", default=None, help="write every figure here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    set_quiet(args.quiet)
    proxy_names = {"faiss": "faiss_hnsw_r10", "hnswlib": "hnswlib_r10"}
    bad = [p for p in args.graph_proxy.split(",") if p and p not in proxy_names]
    if bad:
        ap.error(f"--graph-proxy: expected a comma list of faiss,hnswlib; found {','.join(bad)}")
    proxies = tuple(proxy_names[p] for p in args.graph_proxy.split(",") if p)
    n = parse_size(args.max_size)
    print(f"generator {args.generator}; CPU {cpu_model()}; {os.cpu_count()} cpus; threads {args.threads}; "
          f"python {sys.version.split()[0]}")
    real = load_frame()["real_stats"]
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.perf_counter()
        blocks = generator_blocks(seed, args.generator)
        q = generator_queries(args.queries, seed, args.generator)
        head = np.concatenate([b for _, b in blocks(min(n, 100_000))])
        sample = head[np.sort(np.random.default_rng(seed).choice(len(head), 1024, replace=False))]
        s = global_stats(sample.astype(np.float64))
        print(f"\nseed {seed}: sample of 1024 of the first {len(head):,} rows vs the 1024 real vectors")
        for key in ("mean_cos", "std_cos", "norm_of_mean", "nn_cos", "lid"):
            print(f"  {key:14s} {s[key]:7.3f}   real {real[key]:7.3f}")
        print("  pca share     " + "  ".join(f"{d}: {s['pca'][d]:.3f}/{real['pca'][d]:.3f}" for d in s["pca"]))
        with progress_bar(f"fingerprint seed {seed}", n) as bar:
            fp = fingerprint(blocks, n, q, ivf=not args.no_ivf, hnsw_max_rows=parse_size(args.hnsw_max_rows),
                             threads=args.threads, seed=seed, progress=bar.update, graph_proxy=proxies)
        wall = time.perf_counter() - t0
        print(markdown(fp, f"\nseed {seed}, {n:,} rows x {len(q)} queries, {wall:.0f} s"))
        results.append({"seed": seed, "generator": args.generator, "n": n, "queries": len(q), "wall_s": wall,
                        "seconds": fp.seconds, "sample": {k: s[k] for k in ("mean_cos", "std_cos", "norm_of_mean",
                                                                           "nn_cos", "lid")},
                        "pca_share": s["pca"], "rows": fp.rows(), "proxies": fp.proxy_rows()})
    if args.json:
        with open(args.json + ".tmp", "w") as fh:
            json.dump({"cpu": cpu_model(), "results": results}, fh, indent=1, default=str)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
