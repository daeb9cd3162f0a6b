"""Round-4 sketch variants against ``cfsrp``: brute-force Hamming recall@10 of 1024-bit codes.

    PYTHONPATH=src python benchmarks/sketch_variants.py \
        --database $LAIONKNN_HOME/data/synthetic-clip768v2-n=300K.h5 \
        --queries $LAIONKNN_HOME/data/synthetic-queries-10k-clip768v2.h5 \
        --gold $LAIONKNN_HOME/data/synthetic-gold-standard-clip768v2-n=300K-q=10k.h5 --nq 2000

Without ``--database`` the data is ``laionknn.synthetic`` (``--n`` rows, ``--nq`` queries, exact
gold computed here). Every variant is fitted on the first ``--fit-rows`` database rows and scored
against the gold 10-NN; the table prints recall@10 and the ratio to ``cfsrp`` (γ = −0.1, 1024 bits)
on the same queries. These are the variants docs/BENCHMARKS.md lists as "round 4"; none of them is a
``fit_sketch`` method, because none beat ``cfsrp``.

Variants (``--variants``, comma-separated; default all):

* ``bits:N`` — ``cfsrp`` with N bits (how many cfsrp bits a given recall needs);
* ``xor:M:P`` — P plain cfsrp bits, the other 1024 − P bits each the XOR of M tight-frame bits;
* ``offsets:G:S`` — hyperplanes of a tight frame coloured by the *covariance* (γ = G) with offsets
  through random fit rows, pulled towards the mean by the factor S;
* ``uoffsets:G:R`` — the same frame with offsets drawn uniformly over mean ± R standard deviations of
  each projection (an even cut density across the data instead of the data's own);
* ``subset:KIND`` — 1024 of 1536 cfsrp hyperplanes: the most ``balanced``, the most ``unbalanced``
  (bit frequency over the fit rows) or ``random``;
* ``quad:L:M`` — L cfsrp bits plus 1024 − L random quadratic-form bits ``sign(Σ_j S_bj (u_j·x)²)``
  (u_j: M tight-frame directions, S: orthonormal zero-sum rows), hyperplanes in the tensor space;
* ``perp:S:T`` — the top eigen-direction (≈ the mean) of the cfsrp frame scaled by S (0: every
  hyperplane contains it), plus T thermometer bits along it (offsets at its fit-row quantiles).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from laionknn.evaluation import recall
from laionknn.io import read_gold, read_vectors
from laionknn.projections.kernels import hamming_knn
from laionknn.projections.sketches import _tight_frame, pack_bits

DEFAULT = ("bits:768,bits:1152,bits:1280,bits:1536,xor:2:0,xor:2:512,xor:2:768,xor:3:0,"
           "offsets:0:0.8,offsets:-0.2:0.9,offsets:0.3:0.6,uoffsets:0:1,uoffsets:-0.2:1,uoffsets:-0.2:2,subset:balanced,subset:unbalanced,subset:random,"
           "quad:0:2048,quad:0:4096,quad:768:2048,quad:512:2048,perp:0:0,perp:0:32,perp:0:128,perp:0.5:32")
BITS = 1024


def _unit(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _eigen(F: np.ndarray, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    x = F.astype(np.float64)
    m = np.cov(x.T) if centred else x.T @ x / x.shape[0]
    evals, evecs = np.linalg.eigh(m)
    order = np.argsort(evals)[::-1]
    return np.clip(evals[order], evals.max() * 1e-9, None), evecs[:, order]


def _coloured(n: int, evals, evecs, gamma: float, seed: int) -> np.ndarray:
    W = (_tight_frame(n, evecs.shape[0], np.random.default_rng(seed)) * evals ** (gamma / 2)) @ evecs.T
    return _unit(W)


def _encoder(kind: str, args: list[str], F: np.ndarray):
    """A function rows -> bool codes (rows, 1024 or N bits)."""
    ev2, vec2 = _eigen(F, centred=False)
    if kind == "bits":
        W = _coloured(int(args[0]), ev2, vec2, -0.1, 0)
        return lambda a: a @ W.T > 0
    if kind == "xor":
        m, plain = int(args[0]), int(args[1])
        W = _coloured(plain + (BITS - plain) * m, ev2, vec2, -0.1, 0)

        def enc(a):
            s = a @ W.T > 0
            x = np.bitwise_xor.reduce(s[:, plain:].reshape(len(a), -1, m), axis=2)
            return np.concatenate([s[:, :plain], x], axis=1)
        return enc
    if kind == "offsets":
        gamma, pull = float(args[0]), float(args[1])
        evc, vecc = _eigen(F, centred=True)
        W = _coloured(BITS, evc, vecc, gamma, 0)
        mu = F.mean(0)
        P = F[np.random.default_rng(1).choice(len(F), BITS, replace=False)]
        m = W @ mu
        t = (m + pull * (np.einsum("bd,bd->b", W, P) - m)).astype(np.float32)
        return lambda a: a @ W.T > t
    if kind == "uoffsets":
        gamma, reach = float(args[0]), float(args[1])
        evc, vecc = _eigen(F, centred=True)
        W = _coloured(BITS, evc, vecc, gamma, 0)
        Z = F[:20000] @ W.T
        u = np.random.default_rng(5).uniform(-1, 1, BITS)  # offsets uniform over mean ± reach·sd
        t = (Z.mean(0) + reach * Z.std(0) * u).astype(np.float32)
        return lambda a: a @ W.T > t
    if kind == "subset":
        W = _coloured(1536, ev2, vec2, -0.1, 0)
        bal = np.abs((F[:50000] @ W.T > 0).mean(0) - 0.5)
        idx = {"balanced": np.argsort(bal)[:BITS], "unbalanced": np.argsort(-bal)[:BITS],
               "random": np.random.default_rng(0).choice(1536, BITS, replace=False)}[args[0]]
        Ws = W[idx]
        return lambda a: a @ Ws.T > 0
    if kind == "quad":
        lin, m = int(args[0]), int(args[1])
        Wl = _coloured(lin, ev2, vec2, -0.1, 0) if lin else None
        U = _coloured(m, ev2, vec2, -0.1, 7)
        G = np.random.default_rng(11).standard_normal((m, BITS - lin))
        G -= G.mean(0, keepdims=True)                      # zero-sum rows: drop the trace (|x|²) part
        S = np.linalg.qr(G)[0].T.astype(np.float32)

        def enc(a):
            parts = [a @ Wl.T > 0] if lin else []
            parts.append(((a @ U.T) ** 2) @ S.T > 0)
            return np.concatenate(parts, axis=1)
        return enc
    if kind == "perp":
        scale, therm = float(args[0]), int(args[1])
        sc = ev2 ** -0.05
        sc[0] *= scale                                     # the top eigen-direction (≈ the mean)
        W = _unit((_tight_frame(BITS - therm, F.shape[1], np.random.default_rng(0)) * sc) @ vec2.T)
        top = vec2[:, 0].astype(np.float32)
        t = np.quantile(F @ top, np.linspace(0, 1, therm + 2)[1:-1]).astype(np.float32)

        def enc(a):
            return np.concatenate([a @ W.T > 0, (a @ top)[:, None] > t[None, :]], axis=1)
        return enc
    raise SystemExit(f"unknown variant kind {kind!r}; expected bits, xor, offsets, subset, quad or perp")


def _codes(enc, rows: np.ndarray, block: int = 16384) -> np.ndarray:
    return np.concatenate([pack_bits(enc(rows[lo:lo + block])) for lo in range(0, len(rows), block)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--database")
    p.add_argument("--queries")
    p.add_argument("--gold")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--nq", type=int, default=2000)
    p.add_argument("--fit-rows", type=int, default=50_000)
    p.add_argument("--variants", default=DEFAULT)
    a = p.parse_args()
    if a.database:
        X = _unit(read_vectors(a.database)[:])
        Q = _unit(read_vectors(a.queries)[:a.nq])
        gold = read_gold(a.gold).ids[:a.nq, :10] if a.gold else np.argsort(-(Q @ X.T), axis=1)[:, :10]
        label = f"{a.database} ({len(X)} rows), {len(Q)} queries"
    else:
        from laionknn.synthetic import generate_database, generate_queries
        X, Q = _unit(generate_database(a.n, seed=0)), _unit(generate_queries(a.nq, seed=0))
        gold = np.argsort(-(Q @ X.T), axis=1)[:, :10]
        label = f"laionknn.synthetic n={a.n}, {a.nq} queries"
    F = X[:a.fit_rows]
    print(f"# {label}; fit on the first {len(F)} rows")

    def score(enc):
        return recall(hamming_knn(_codes(enc, X), _codes(enc, Q), 10).ids, gold, 10)

    base = score(_encoder("bits", ["1024"], F))
    print("| variant | bits | recall@10 | × cfsrp-1024 | seconds |\n|---|---|---|---|---|")
    print(f"| cfsrp γ=−0.1 | 1024 | {base:.4f} | 1.000 | |", flush=True)
    for spec in a.variants.split(","):
        kind, *args = spec.split(":")
        t0 = time.perf_counter()
        enc = _encoder(kind, args, F)
        r = score(enc)
        nbits = int(args[0]) if kind == "bits" else BITS
        print(f"| {spec} | {nbits} | {r:.4f} | {r / base:.3f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
