"""Derive the synthetic generator's real-data frame from the organisers' 1024 real LAION vectors.

Reads ../shared/data/binwalk-model-nrefs=1024-permsize=64.jld2 (refs = 1024 L2-normalised CLIP
ViT-L/14 vectors) and writes src/laionknn/synthetic/data/laion1024-frame.npz with small derived
parameters only: the mean vector, the leading principal directions, the sample spectrum and the
global statistics of the real vectors (the "real" column of `laionknn stats`).

    PYTHONPATH=src python scripts/build_synthetic_frame.py [--jld2 PATH] [--top 128]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

from laionknn.synthetic.stats import global_stats

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jld2", default=str(ROOT.parent.parent / "shared/data/binwalk-model-nrefs=1024-permsize=64.jld2"))
    ap.add_argument("--top", type=int, default=128, help="real principal directions to ship")
    ap.add_argument("--out", default=str(ROOT / "src/laionknn/synthetic/data/laion1024-frame.npz"))
    args = ap.parse_args()
    with h5py.File(args.jld2, "r") as f:
        model = f["model"][()]
        refs = f[model["refs"]["matrix"]][()].astype(np.float64)
    mean = refs.mean(axis=0)
    _, s, vt = np.linalg.svd(refs - mean, full_matrices=False)
    spectrum = s**2 / (s**2).sum()
    stats = global_stats(refs)
    stats["pca"] = {str(k): v for k, v in stats["pca"].items()}
    np.savez_compressed(args.out, mean=mean.astype(np.float32), directions=vt[:args.top].astype(np.float32),
                        spectrum=spectrum.astype(np.float32), real_stats=json.dumps(stats))
    print(f"wrote {args.out}: mean norm {np.linalg.norm(mean):.4f}, {args.top} directions")
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
