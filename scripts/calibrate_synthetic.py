"""Tune the synthetic generator against the real LAION figures (a tuning aid, not a test).

Generates --rows rows and --queries queries with the given parameter overrides (of
laionknn.synthetic.ParamsV3 for --generator v3, of Params for v2), then prints the sample statistics
(1024 random rows of the first 100K) next to the real ones and the fingerprint figures at every scale
<= --rows (pca32/pca96 recall@30 at 100K/300K/10M, IVF-1024 at 1M, BinWalk at 10M with --binwalk);
--ivf-lists L adds an IVF-Flat curve with L lists at --rows (a cheap proxy of the 1M/1024 figure).
--trend measures instead how the figures move with size: pca32/pca96 recall@30 at every scale of
100K/300K/1M/3M/10M <= --rows, BinWalk recall@10 from 300K on, IVF-1024 at 1M (with --ivf-lists 1024)
and faiss HNSW M=32 efC=40 recall@10 at efS 32/64 on --hnsw-at rows (the one-sided graph proxy).

    PYTHONPATH=src python scripts/calibrate_synthetic.py --rows 300000 --ivf-lists 300 rho=0.85 f_tree=0.55
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from laionknn.synthetic.fidelity import (IVF_NPROBES, _normalise, fingerprint, generator_blocks,
                                         generator_queries, recall)
from laionknn.synthetic.model import DEFAULT_PARAMS, load_frame
from laionknn.synthetic.model_v3 import DEFAULT_PARAMS_V3, DEFAULT_PARAMS_V4
from laionknn.synthetic.stats import global_stats


def ivf_proxy(blocks, n: int, q: np.ndarray, nlist: int) -> list[float]:
    import faiss

    xb = np.concatenate([_normalise(b) for _, b in blocks(n)])
    qn = _normalise(q)
    gold = np.argsort(-(qn @ xb.T), axis=1)[:, :100]
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(xb.shape[1]), xb.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(xb[np.random.default_rng(0).choice(n, min(n, 256 * nlist), replace=False)])
    index.add(xb)
    out = []
    for nprobe in IVF_NPROBES:
        index.nprobe = nprobe
        out.append(round(recall(index.search(qn, 100)[1], gold, 100), 3))
    return out


def trend(blocks, args, q: np.ndarray) -> None:
    """The fingerprint figures at every scale <= --rows (the published values are not needed here: the
    table of 'real' figures only tells :func:`fingerprint` what to measure where)."""
    scales = [s for s in (100_000, 300_000, 1_000_000, 3_000_000, 10_000_000) if s <= args.rows]
    want = {"pca32_r30": dict.fromkeys(scales, 0.0), "pca96_r30": dict.fromkeys(scales, 0.0),
            "binwalk_r10": dict.fromkeys([s for s in scales if s >= 300_000], 0.0),
            "ivf1024_r100": {1_000_000: (0.0,) * len(IVF_NPROBES)} if args.ivf_lists == 1024 else {},
            "hnswlib_r10": {}, "faiss_hnsw_r10": {args.hnsw_at: (0.0, 0.0)} if args.hnsw_at else {}}
    fp = fingerprint(blocks, args.rows, q, scales=sorted(set(scales) | ({args.hnsw_at} - {0})), real=want,
                     seed=args.seed, ivf=args.ivf_lists == 1024)
    for name, by_scale in fp.figures.items():
        print(f"  {name:15s} " + "  ".join(f"{sc // 1000}K: " + (f"{v:.3f}" if isinstance(v, float) else
                                                                  "/".join(f"{x:.3f}" for x in v))
                                            for sc, v in sorted(by_scale.items())))
    print("  seconds " + json.dumps({k: round(v) for k, v in fp.seconds.items()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generator", default="v3")
    ap.add_argument("--ivf-lists", type=int, default=0)
    ap.add_argument("--binwalk", action="store_true")
    ap.add_argument("--trend", action="store_true", help="figures at every scale <= --rows (see above)")
    ap.add_argument("--hnsw-at", type=int, default=0, help="with --trend: build the HNSW proxy on this many rows")
    ap.add_argument("overrides", nargs="*", help="name=value parameter overrides")
    args = ap.parse_args()
    base = {"v3": DEFAULT_PARAMS_V3, "v4": DEFAULT_PARAMS_V4}.get(args.generator, DEFAULT_PARAMS)
    types = {f.name: f.type for f in dataclasses.fields(base)}
    kw = {}
    for o in args.overrides:
        k, v = o.split("=", 1)
        kw[k] = (int if types[k] in (int, "int") else float)(v)
    params = dataclasses.replace(base, **kw)
    blocks = generator_blocks(args.seed, args.generator, params)
    q = generator_queries(args.queries, args.seed, args.generator, params)
    t0 = time.perf_counter()
    head = np.concatenate([b for _, b in blocks(min(args.rows, 100_000))]).astype(np.float64)
    s = global_stats(head[np.sort(np.random.default_rng(1).choice(len(head), 1024, replace=False))])
    real = load_frame()["real_stats"]
    print(f"params {kw}")
    for key in ("mean_cos", "std_cos", "norm_of_mean", "nn_cos", "lid"):
        print(f"  {key:14s} synth {s[key]:7.3f}   real {real[key]:7.3f}")
    print("  pca   " + " ".join(f"{d}:{s['pca'][d]:.3f}/{real['pca'][d]:.3f}" for d in s["pca"]))
    if args.trend:
        trend(blocks, args, q)
        print(f"  [{time.perf_counter() - t0:.0f} s]")
        return
    fp = fingerprint(blocks, args.rows, q, binwalk=args.binwalk, seed=args.seed)
    print("  figures " + json.dumps({k: {str(sc): v for sc, v in d.items()} for k, d in fp.figures.items()},
                                    default=lambda v: [round(x, 3) for x in v]))
    if args.ivf_lists:
        print(f"  IVF-Flat {args.ivf_lists} lists at {args.rows:,} rows, recall@100 at nprobe "
              f"{'/'.join(map(str, IVF_NPROBES))}: {ivf_proxy(blocks, args.rows, q, args.ivf_lists)}")
    print(f"  [{time.perf_counter() - t0:.0f} s]")


if __name__ == "__main__":
    main()
