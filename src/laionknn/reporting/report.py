"""``write_report``: Markdown tables, figures (PNG, SVG, PDF) and one self-contained HTML page.

Figures: per (data, size, k) of index runs, recall vs QPS and recall vs build time / index size; the
projection baselines (``bruteforce-*`` rows) of each (size, k) together in one figure. The HTML page
embeds the PNGs as base64 ``data:`` URIs, draws an interactive chart per group as inline SVG (tooltips
with each run's parameters), carries its own CSS and states the run context (data kind, queries,
threads, CPU, library versions). Tables wrap inside the page width (no sideways scrolling at 1024 px)
and columns whose value is the same on every row are stated once above the table.
"""

from __future__ import annotations

import base64
import html
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from laionknn.fsutil import atomic_path
from laionknn.reporting.context import enrich, load_run_records, run_context
from laionknn.reporting.plots import plot_baselines, plot_costs, plot_group
from laionknn.reporting.svgplot import svg_chart
from laionknn.reporting.tables import (FRONT_COLUMNS, OP_COLUMNS, fmt_bytes, frontier_rows, groups, load_eval_csv,
                                       markdown_report, operating_points, operating_rows)

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1100px;
color:#222;padding:0 1rem;overflow-wrap:anywhere}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.tablewrap{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0 1rem;width:100%;table-layout:auto}
th,td{border:1px solid #ddd;padding:.25rem .45rem;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere;word-break:break-word}
th{background:#f4f4f4}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}tr.missed td{color:#888}
td.params{font-family:ui-monospace,monospace;font-size:.8rem;min-width:12ch}
figure{margin:1rem 0}img,svg.chart{max-width:100%;height:auto;border:1px solid #eee;display:block}
.meta,.const{color:#555;font-size:.85rem}.const b{color:#222}
dl.ctx{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.88rem}
dl.ctx dt{font-weight:600}dl.ctx dd{margin:0}
"""

_NUMERIC = {"k", "recall >", "QPS", "recall", "recall (tie-aware)", "build s", "index", "threads"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", str(text)).strip("_") or "x"


def split_constant(columns, rows, keep=("algo",)):
    """Columns whose value is the same on every row (and not in ``keep``) are taken out of the table:
    returns ``(columns, rows, {column: value})``."""
    columns = list(columns)
    if len(rows) < 2:
        return columns, rows, {}
    const = {c: rows[0][i] for i, c in enumerate(columns)
             if c not in keep and all(r[i] == rows[0][i] for r in rows)}
    idx = [i for i, c in enumerate(columns) if c not in const]
    return [columns[i] for i in idx], [[r[i] for i in idx] for r in rows], const


def _html_table(columns, rows, missed: str | None = None) -> str:
    missed_flags = [r[list(columns).index(missed)] == "no" for r in rows] if missed in columns else [False] * len(rows)
    columns, rows, const = split_constant(columns, rows)
    lead = ""
    if const:
        lead = ("<p class=const>On every row: " + " · ".join(f"<b>{html.escape(c)}</b> {html.escape(str(v))}"
                                                           for c, v in const.items()) + "</p>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row, was_missed in zip(rows, missed_flags):
        cls = ' class="missed"' if was_missed else ""
        cells = "".join(f'<td{" class=num" if c in _NUMERIC else " class=params" if c == "params" else ""}>'
                        f"{html.escape(str(v))}</td>" for c, v in zip(columns, row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"{lead}<div class=tablewrap><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _context_html(ctx: dict) -> str:
    kind = {True: "synthetic (LAION-like, official layout)", False: "real LAION2B", None: "not stated"}[ctx.get("synthetic")]
    items = [("data", kind), ("datasets", ", ".join(ctx.get("datasets") or []) or "–")]
    for key, label in (("n_queries", "queries"), ("threads", "threads")):
        v = ctx.get(key)
        items.append((label, ", ".join(map(str, v)) if isinstance(v, list) else (str(v) if v else "not recorded")))
    items += [("report written on", f"{ctx['cpu']}, {ctx['cores']} cores, Python {ctx['python']} (the main job "
                                    f"writes its report on the machine it ran on)"),
              ("versions", ", ".join(f"{k} {v}" for k, v in ctx["versions"].items()))]
    return "<dl class=ctx>" + "".join(f"<dt>{html.escape(a)}</dt><dd>{html.escape(b)}</dd>" for a, b in items) + "</dl>"


def html_report(rows: list[dict], figures: dict, sources: list[str], context: dict) -> str:
    """The report page; ``figures`` maps a title to a dict of paths (``png`` embedded as base64) and
    optionally ``svg_chart`` (inline interactive SVG markup)."""
    op = operating_rows(operating_points(rows))
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
             "<meta name=viewport content=\"width=device-width, initial-scale=1\">",
             "<title>laionknn report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>k-NN search results</h1>",
             f"<p class=meta>{len(rows)} runs from {html.escape(', '.join(sources))}; generated "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by laionknn report.</p>",
             "<h2>Run context</h2>", _context_html(context),
             "<p>Operating points: per data, size and k, the fastest run of each algorithm with recall above "
             "the threshold (0.9 for k = 10, 0.22 for hammingv2 at k = 10; 0.8 and 0.4 for k = 30); "
             "algorithms that never reach it show their best recall (greyed). QPS = queries / querytime; "
             "build s and index size come from the run records.</p>",
             "<h2>Operating points</h2>", _html_table(OP_COLUMNS, op, missed="reached"), "<h2>Figures</h2>"]
    for title, paths in figures.items():
        if paths.get("svg_chart"):
            parts.append(f"<figure>{paths['svg_chart']}<figcaption>{html.escape(title)} — interactive: hover a "
                         f"point for its parameters</figcaption></figure>")
        if paths.get("png"):
            data64 = base64.b64encode(Path(paths["png"]).read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{data64}\">"
                         f"<figcaption>{html.escape(title)} (also as {', '.join(sorted(k for k in paths if k in ('svg', 'pdf')))}"
                         f")</figcaption></figure>")
    parts += ["<h2>Pareto frontier (recall vs QPS, per algorithm)</h2>",
              _html_table(FRONT_COLUMNS, frontier_rows(rows)), "</body></html>\n"]
    return "".join(parts)


def write_report(csv_paths: "Iterable[str | os.PathLike[str]]", out_dir: "str | os.PathLike[str]",
                 context: dict | None = None) -> dict:
    """Read evaluation CSVs and write the report into ``out_dir``.

    Returns a dict of paths: ``markdown`` (report.md), ``html`` (report.html, self-contained), per
    (data, size, k) of index runs ``plot:<data>:<size>:k<k>`` (recall-qps-….png; ``svg:``/``pdf:`` the
    same figure) and ``costs:<data>:<size>:k<k>`` (recall-costs-….png), and per (size, k) of projection
    baselines ``baselines:<size>:k<k>`` (baselines-….png), and the operating points and Pareto frontiers
    as data (``operating_points:csv``/``:json``, ``pareto_frontier:csv``/``:json``,
    :mod:`laionknn.reporting.points`). ``context`` (dataset names, synthetic,
    n_queries, threads) overrides what the run records beside the CSVs say.
    """
    csv_paths = [Path(p) for p in csv_paths]
    rows = load_eval_csv(csv_paths)
    enrich(rows, load_run_records(csv_paths))
    ctx = run_context(rows, context)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    figures: dict[str, dict] = {}
    md_plots: dict[tuple[str, str, int], str] = {}
    baselines: dict[tuple[str, int], list[dict]] = {}
    for (data, size, k), grp in groups(rows).items():
        if all(r["algo"].startswith("bruteforce") for r in grp):
            baselines.setdefault((size, k), []).extend(grp)
            continue
        stem = out_dir / f"recall-qps-{_slug(data)}-{_slug(size)}-k{k}"
        paths = plot_group(grp, stem, data=data, size=size, k=k, context=ctx)
        result[f"plot:{data}:{size}:k{k}"] = paths["png"]
        result[f"svg:{data}:{size}:k{k}"] = paths["svg"]
        result[f"pdf:{data}:{size}:k{k}"] = paths["pdf"]
        md_plots[(data, size, k)] = paths["png"].name
        figures[f"{data} · {size} · k={k}: recall vs QPS"] = {**paths, "svg_chart": svg_chart(grp, data=data, size=size, k=k)}
        costs = plot_costs(grp, out_dir / f"recall-costs-{_slug(data)}-{_slug(size)}-k{k}", data=data, size=size,
                           k=k, context=ctx)
        if costs:
            result[f"costs:{data}:{size}:k{k}"] = costs["png"]
            figures[f"{data} · {size} · k={k}: recall vs build time and index size"] = costs
    for (size, k), grp in baselines.items():
        paths = plot_baselines(grp, out_dir / f"baselines-{_slug(size)}-k{k}", size=size, k=k, context=ctx)
        result[f"baselines:{size}:k{k}"] = paths["png"]
        md_plots[("projection baselines", size, k)] = paths["png"].name
        figures[f"projection baselines · {size} · k={k}"] = paths
    md = out_dir / "report.md"
    with atomic_path(md) as tmp:
        tmp.write_text(markdown_report(rows, md_plots, ctx), encoding="utf-8")
    page = out_dir / "report.html"
    with atomic_path(page) as tmp:
        tmp.write_text(html_report(rows, figures, [p.name for p in csv_paths], ctx), encoding="utf-8")
    result["markdown"] = md
    result["html"] = page
    from laionknn.reporting.points import write_points

    result.update(write_points(rows, out_dir))
    return result
