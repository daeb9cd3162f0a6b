"""An interactive recall-vs-QPS chart as inline SVG for the HTML report: no script, no external file.

Each run is a circle whose ``<title>`` is the browser's tooltip (algorithm, parameters, recall, QPS,
build time, index size), as the ann-benchmarks website shows on hover; each algorithm's Pareto
frontier is a polyline in the style :func:`laionknn.reporting.plots.style_for` gives it (colour and
dash pattern). The SVG scales with its container (``viewBox``), so it never widens the page.
"""

from __future__ import annotations

import html
import math

from laionknn.reporting.context import is_brute_force
from laionknn.reporting.tables import by_algo, fmt_qps, pareto_frontier, thresholds_for

W, H = 960, 470
LEFT, RIGHT, TOP, BOTTOM = 70, 230, 20, 50
DASH = {"-": "", "--": "7 4", "-.": "7 3 2 3", ":": "2 3"}


def _hex(rgb) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb[:3])


def _tooltip(r: dict) -> str:
    parts = [r["algo"], f"params: {r.get('params') or '–'}", f"recall {r['recall']:.4f}", f"QPS {fmt_qps(r['qps'])}"]
    if r.get("buildtime") is not None and not math.isnan(r.get("buildtime", math.nan)):
        parts.append(f"build {r['buildtime']:.1f} s")
    if r.get("index_bytes"):
        parts.append(f"index {int(r['index_bytes']) / 1e6:,.1f} MB")
    if r.get("threads"):
        parts.append(f"{r['threads']} threads")
    return "\n".join(parts)


def svg_chart(rows: list[dict], *, data: str, size: str, k: int) -> str:
    """The chart of one (data, size, k) group as an ``<svg>`` element (a string)."""
    from laionknn.reporting.plots import style_for

    usable = [r for r in rows if not math.isnan(r["qps"]) and r["qps"] > 0 and not math.isnan(r["recall"])]
    algos = sorted(by_algo(usable).items(), key=lambda kv: (is_brute_force(kv[0]), kv[0]))
    if not usable:
        return ""
    thresholds = thresholds_for(k, data)
    x_lo = max(0.0, min([r["recall"] for r in usable] + list(thresholds)) - 0.05)
    q = [math.log10(r["qps"]) for r in usable]
    y_lo, y_hi = math.floor(min(q) * 4) / 4 - 0.1, math.ceil(max(q) * 4) / 4 + 0.1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(recall: float) -> float:
        return LEFT + (recall - x_lo) / (1.005 - x_lo) * pw

    def py(qps: float) -> float:
        return TOP + (y_hi - math.log10(qps)) / (y_hi - y_lo) * ph

    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="recall vs QPS, {html.escape(data)} {html.escape(size)} k={k}">',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#bbb"/>']
    for e in range(math.ceil(y_lo), math.floor(y_hi) + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{10 ** e:,.0f}</text>')
    step = 0.05 if 1 - x_lo <= 0.4 else 0.1
    t = math.ceil(x_lo / step) * step
    while t <= 1.0001:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="#eee"/>'
                   f'<text x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle" font-size="11">{t:.2f}</text>')
        t += step
    for th in thresholds:
        x = px(th)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="#555" stroke-dasharray="5 4"/>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 12}" text-anchor="middle" font-size="12">recall@{k}</text>'
               f'<text x="16" y="{TOP + ph / 2}" font-size="12" transform="rotate(-90 16 {TOP + ph / 2})" '
               f'text-anchor="middle">QPS (log)</text>')
    for i, (algo, runs) in enumerate(algos):
        st = style_for(i)
        color, dash = _hex(st["color"]), DASH.get(st["linestyle"], "")
        front = pareto_frontier(runs)
        if len(front) > 1 and not is_brute_force(algo):
            pts = " ".join(f"{px(r['recall']):.1f},{py(r['qps']):.1f}" for r in front)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.8"'
                       + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        on_front = {id(r) for r in front}
        for r in runs:
            fill = color if id(r) in on_front else "#fff"
            out.append(f'<circle cx="{px(r["recall"]):.1f}" cy="{py(r["qps"]):.1f}" r="4.2" fill="{fill}" '
                       f'stroke="{color}" stroke-width="1.4"><title>{html.escape(_tooltip(r))}</title></circle>')
        ly = TOP + 14 + 18 * i
        out.append(f'<line x1="{W - RIGHT + 14}" x2="{W - RIGHT + 40}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" '
                   f'stroke-width="2"' + (f' stroke-dasharray="{dash}"' if dash else "") + "/>"
                   f'<text x="{W - RIGHT + 46}" y="{ly}" font-size="11">{html.escape(algo)}</text>')
    out.append("</svg>")
    return "".join(out)
