"""Recall-vs-QPS plots (PNG, matplotlib Agg): one figure per (data, size, k).

Recall on x, QPS on a log y axis; per algorithm the Pareto frontier as a line with markers and the
runs off it as hollow markers; the challenge thresholds as dashed vertical lines.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from laionknn.fsutil import atomic_path
from laionknn.reporting.tables import by_algo, pareto_frontier, thresholds_for

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">", "*")


def plot_group(rows: list[dict], out: "str | os.PathLike[str]", *, data: str, size: str, k: int) -> Path:
    """Write the recall-vs-QPS plot of one (data, size, k) group to ``out`` (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    out = Path(out)
    usable = [r for r in rows if not math.isnan(r["qps"]) and r["qps"] > 0 and not math.isnan(r["recall"])]
    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=120)
    try:
        colors = plt.get_cmap("tab10").colors
        thresholds = thresholds_for(k)
        handles = []
        for i, (algo, runs) in enumerate(sorted(by_algo(usable).items())):
            color = colors[i % len(colors)]
            marker = _MARKERS[i % len(_MARKERS)]
            front = pareto_frontier(runs)
            on_front = {id(r) for r in front}
            off = [r for r in runs if id(r) not in on_front]
            ax.scatter([r["recall"] for r in off], [r["qps"] for r in off], s=26, marker=marker,
                       facecolors="none", edgecolors=color, alpha=0.7, linewidths=1.0, zorder=2)
            line, = ax.plot([r["recall"] for r in front], [r["qps"] for r in front], marker=marker, markersize=6,
                            linewidth=1.8, color=color, zorder=3,
                            label=f"{algo} ({len(runs)} run{'s' if len(runs) != 1 else ''})")
            handles.append(line)
        if any(len(pareto_frontier(r)) < len(r) for r in by_algo(usable).values()):
            handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="none",
                                  markeredgecolor="0.4", label="run off the frontier"))
        lo = min([r["recall"] for r in usable] + list(thresholds))
        ax.set_xlim(max(0.0, lo - 0.05), 1.005)
        for t in thresholds:
            ax.axvline(t, color="0.35", linestyle="--", linewidth=1.1, zorder=1)
            ax.annotate(f"recall {t:g}", xy=(t, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=8.5, color="0.3")
        ax.set_yscale("log")
        label = FuncFormatter(lambda y, _: f"{y:,.0f}" if y >= 1 else f"{y:g}")
        ax.yaxis.set_major_formatter(label)
        qps = [r["qps"] for r in usable]
        # label some minor ticks when the plot spans few decades (more would crowd)
        span = max(qps) / min(qps) if qps else 1e9
        digits = "235" if span < 20 else "25" if span < 100 else ""
        minor = FuncFormatter(lambda y, _: label(y, _) if f"{y:.0e}"[0] in digits else "")
        ax.yaxis.set_minor_formatter(minor if digits else NullFormatter())
        ax.set_xlabel(f"recall@{k}")
        ax.set_ylabel("queries per second (log scale)")
        ax.set_title(f"{data} · {size} · k={k}: recall vs QPS (lines: Pareto frontier per algorithm)", fontsize=11)
        ax.grid(True, which="major", alpha=0.45)
        ax.grid(True, which="minor", axis="y", alpha=0.15)
        if usable:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9,
                      title="algorithm")
        else:
            ax.text(0.5, 0.5, "no runs with a query time", transform=ax.transAxes, ha="center")
        fig.tight_layout()
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return out
