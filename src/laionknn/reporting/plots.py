"""Report figures (matplotlib, Agg), each written as PNG (150 dpi), SVG and PDF.

- :func:`plot_group`: recall@k (x) vs QPS (log y) for one (data, size, k); per algorithm the Pareto
  frontier as a line, each frontier point labelled with its query knob (as the organisers' ``plot.py``
  annotates its points), runs off it hollow; brute-force runs as horizontal reference lines that do
  not set the axes; the challenge thresholds as dashed vertical lines.
- :func:`plot_costs`: recall vs build time and recall vs index size for the same group.
- :func:`plot_baselines`: every projection baseline of one (size, k) in one figure.

Styles never repeat: algorithm i gets colour i mod 10 (tab10), marker i mod 11 and line style
(i div 10) mod 4, so the (colour, marker) pair alone is unique for 110 algorithms. The run context
(data kind, queries, threads, CPU, library versions) is printed at the foot of every figure.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path

from laionknn.fsutil import atomic_path
from laionknn.reporting.context import context_line, is_brute_force
from laionknn.reporting.tables import by_algo, pareto_frontier, thresholds_for

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">", "*")
LINESTYLES = ("-", "--", "-.", ":")
FORMATS = ("png", "svg", "pdf")
DPI = 150


def style_for(i: int) -> dict:
    """Colour, marker and line style of the i-th algorithm (distinct triples, see module doc)."""
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    return {"color": colors[i % len(colors)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[(i // len(colors)) % len(LINESTYLES)]}


def _pairs(params: str) -> list[tuple[str, str]]:
    out = []
    for part in str(params).split(","):
        key, sep, value = part.partition("=")
        out.append((key.strip(), value.strip()) if sep else (part.strip(), ""))
    return out


def knob_labels(runs: list[dict]) -> dict[int, str]:
    """Per run (by ``id``), the ``key=value`` pairs of its params that vary among ``runs`` (the query
    knob, and the build parameter when several builds were swept); empty when nothing varies."""
    parsed = {id(r): dict(_pairs(r.get("params", ""))) for r in runs}
    keys: list[str] = []
    for d in parsed.values():
        keys += [k for k in d if k not in keys]
    varying = [k for k in keys if len({d.get(k) for d in parsed.values()}) > 1]
    return {rid: ",".join(f"{k}={d[k]}" if d.get(k) else k for k in varying if k in d) for rid, d in parsed.items()}


def _usable(rows: list[dict]) -> list[dict]:
    return [r for r in rows if not math.isnan(r["qps"]) and r["qps"] > 0 and not math.isnan(r["recall"])]


def _save(fig, stem: Path) -> dict[str, Path]:
    out = {}
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI)
        out[fmt] = path
    return out


def _foot(fig, ctx: dict | None) -> None:
    if ctx:
        fig.text(0.01, 0.005, "\n".join(textwrap.wrap(context_line(ctx), 150)), fontsize=6.5, color="0.35",
                 ha="left", va="bottom")


def _title(data: str, size: str, k: int, ctx: dict | None, what: str) -> str:
    kind = {True: "synthetic ", False: "real LAION "}.get((ctx or {}).get("synthetic"), "")
    return f"{kind}{data} · {size} · k={k}: {what}"


def _log_axis(ax, values: list[float], axis: str = "y") -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    label = FuncFormatter(lambda y, _: f"{y:,.0f}" if y >= 1 else f"{y:g}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(label)
    span = max(values) / min(values) if values else 1e9
    digits = "235" if span < 20 else "25" if span < 100 else ""  # label minor ticks only on short axes
    minor = FuncFormatter(lambda y, _: label(y, _) if f"{y:.0e}"[0] in digits else "")
    target.set_minor_formatter(minor if digits else NullFormatter())


def plot_group(rows: list[dict], stem: "str | os.PathLike[str]", *, data: str, size: str, k: int,
               context: dict | None = None) -> dict[str, Path]:
    """Recall-vs-QPS figure of one (data, size, k) group at ``stem``.{png,svg,pdf}; returns the paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    usable = _usable(rows)
    curves = {a: r for a, r in sorted(by_algo(usable).items()) if not is_brute_force(a)}
    brute = {a: r for a, r in sorted(by_algo(usable).items()) if is_brute_force(a)}
    fig, ax = plt.subplots(figsize=(10, 6.2))
    try:
        thresholds = thresholds_for(k, data)
        handles = []
        for i, (algo, runs) in enumerate(curves.items()):
            st = style_for(i)
            front = pareto_frontier(runs)
            on_front = {id(r) for r in front}
            off = [r for r in runs if id(r) not in on_front]
            ax.scatter([r["recall"] for r in off], [r["qps"] for r in off], s=24, marker=st["marker"],
                       facecolors="none", edgecolors=st["color"], alpha=0.7, linewidths=1.0, zorder=2)
            line, = ax.plot([r["recall"] for r in front], [r["qps"] for r in front], marker=st["marker"],
                            markersize=6, linewidth=1.7, color=st["color"], linestyle=st["linestyle"], zorder=3,
                            label=f"{algo} ({len(runs)} run{'s' if len(runs) != 1 else ''})")
            handles.append(line)
            labels = knob_labels(runs)
            for r in front:
                if labels.get(id(r)):
                    ax.annotate(labels[id(r)], (r["recall"], r["qps"]), xytext=(4, 4), textcoords="offset points",
                                fontsize=6.5, color=st["color"], zorder=4)
        shown = [r for runs in curves.values() for r in runs] or usable
        qps = [r["qps"] for r in shown]
        if qps:
            lo_q, hi_q = min(qps), max(qps)
            ax.set_ylim(lo_q / 1.6, hi_q * 1.6)
        for j, (algo, runs) in enumerate(brute.items()):
            best = max(runs, key=lambda r: r["qps"])
            inside = not qps or lo_q / 1.6 <= best["qps"] <= hi_q * 1.6
            st = style_for(len(curves) + j)
            label = f"{algo}: {best['qps']:,.0f} QPS at recall {best['recall']:.3f}" + ("" if inside else " (off the axis)")
            if inside:
                ax.axhline(best["qps"], color=st["color"], linestyle=":", linewidth=1.2, zorder=1)
            handles.append(Line2D([], [], color=st["color"], linestyle=":", label=label))
        if any(len(pareto_frontier(r)) < len(r) for r in curves.values()):
            handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="none",
                                  markeredgecolor="0.4", label="run off the frontier"))
        recalls = [r["recall"] for r in shown]
        lo = min(recalls + list(thresholds)) if recalls else min(thresholds)
        ax.set_xlim(max(0.0, lo - 0.05), 1.005)
        for t in thresholds:
            ax.axvline(t, color="0.35", linestyle="--", linewidth=1.1, zorder=1)
            ax.annotate(f"recall {t:g}", xy=(t, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=8.5, color="0.3")
        _log_axis(ax, qps)
        ax.set_xlabel(f"recall@{k}")
        ax.set_ylabel("queries per second (log scale)")
        ax.set_title(_title(data, size, k, context, "recall vs QPS (lines: Pareto frontier, labels: knob)"),
                     fontsize=10.5)
        ax.grid(True, which="major", alpha=0.45)
        ax.grid(True, which="minor", axis="y", alpha=0.15)
        if handles:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8.5,
                      title="algorithm")
        else:
            ax.text(0.5, 0.5, "no runs with a query time", transform=ax.transAxes, ha="center")
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        _foot(fig, context)
        return _save(fig, Path(stem))
    finally:
        plt.close(fig)


def plot_costs(rows: list[dict], stem: "str | os.PathLike[str]", *, data: str, size: str, k: int,
               context: dict | None = None) -> dict[str, Path] | None:
    """Recall vs build time (and vs index size when the run records give it) for one group; None when
    no run has a build time."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    algos = sorted(a for a in by_algo(rows) if not is_brute_force(a))
    runs = {a: [r for r in by_algo(rows)[a] if not math.isnan(r["recall"])] for a in algos}
    has_build = any(r.get("buildtime", math.nan) > 0 for rs in runs.values() for r in rs)
    has_size = any((r.get("index_bytes") or 0) > 0 for rs in runs.values() for r in rs)
    if not has_build:
        return None
    panels = [("buildtime", "build time (s, log scale)", 1.0)] + ([("index_bytes", "index size (MB, log scale)", 1e-6)]
                                                                  if has_size else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels) + 2.5, 5.2), squeeze=False)
    try:
        for ax, (key, label, scale) in zip(axes[0], panels):
            values = []
            for i, algo in enumerate(algos):
                st = style_for(i)
                pts = [(r["recall"], float(r[key]) * scale) for r in runs[algo] if (r.get(key) or 0) > 0]
                if pts:
                    values += [y for _, y in pts]
                    ax.scatter(*zip(*pts), marker=st["marker"], color=st["color"], s=28, label=algo)
            if values:
                _log_axis(ax, values)
            ax.set_xlabel(f"recall@{k}")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.4)
        axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8.5, title="algorithm")
        fig.suptitle(_title(data, size, k, context, "what the recall costs to build and to store"), fontsize=10.5)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        _foot(fig, context)
        return _save(fig, Path(stem))
    finally:
        plt.close(fig)


def plot_baselines(rows: list[dict], stem: "str | os.PathLike[str]", *, size: str, k: int,
                   context: dict | None = None) -> dict[str, Path]:
    """All projection baselines (brute force over pca32/pca96/BinWalk/learned sketches) of one
    (size, k) in one figure: recall vs QPS, each point named by its projection."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    usable = sorted(_usable(rows), key=lambda r: r["data"])
    fig, ax = plt.subplots(figsize=(9, 5.6))
    try:
        for i, r in enumerate(usable):
            st = style_for(i)
            ax.scatter([r["recall"]], [r["qps"]], marker=st["marker"], color=st["color"], s=40, zorder=3,
                       label=f"{r['data']} ({r['algo'].removeprefix('bruteforce-')})")
            ax.annotate(r["data"], (r["recall"], r["qps"]), xytext=(5, 3), textcoords="offset points", fontsize=7.5)
        if usable:
            _log_axis(ax, [r["qps"] for r in usable])
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8.5, title="projection")
        ax.set_xlabel(f"recall@{k} against the exact 768-d gold")
        ax.set_ylabel("queries per second, brute force (log scale)")
        kind = {True: "synthetic ", False: "real LAION "}.get((context or {}).get("synthetic"), "")
        ax.set_title(f"{kind}{size} · k={k}: projection baselines (brute force in the projected space)", fontsize=10.5)
        ax.grid(True, alpha=0.4)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        _foot(fig, context)
        return _save(fig, Path(stem))
    finally:
        plt.close(fig)
