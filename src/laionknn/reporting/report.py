"""``write_report``: Markdown tables, one PNG per (data, size, k), and one self-contained HTML page.

The HTML page embeds the plots as base64 ``data:`` URIs and carries its own CSS, so it opens from disk
with no other file beside it.
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
from laionknn.reporting.plots import plot_group
from laionknn.reporting.tables import (FRONT_COLUMNS, OP_COLUMNS, frontier_rows, groups, load_eval_csv,
                                       markdown_report, operating_points, operating_rows)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0 1rem}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:left}
th{background:#f4f4f4}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.missed td{color:#888}
figure{margin:1rem 0}img{max-width:100%;border:1px solid #eee}.meta{color:#666;font-size:.85rem}
"""

_NUMERIC = {"k", "recall >", "QPS", "recall", "recall (tie-aware)"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", str(text)).strip("_") or "x"


def _html_table(columns, rows, missed_col: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cls = ' class="missed"' if missed_col is not None and row[missed_col] == "no" else ""
        cells = "".join(f'<td{" class=num" if c in _NUMERIC else ""}>{html.escape(str(v))}</td>'
                        for c, v in zip(columns, row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_report(rows: list[dict], plots: dict, sources: list[str]) -> str:
    """The report page; ``plots`` maps (data, size, k) to PNG paths, embedded as base64."""
    op = operating_rows(operating_points(rows))
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
             "<title>laionknn report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>k-NN search results</h1>",
             f"<p class=meta>{len(rows)} runs from {html.escape(', '.join(sources))}; generated "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by laionknn report.</p>",
             "<p>Operating points: per data, size and k, the fastest run of each algorithm with recall above "
             "the threshold (0.9 for k = 10; 0.8 and 0.4 for k = 30); algorithms that never reach it show "
             "their best recall (greyed). QPS = queries / querytime.</p>",
             "<h2>Operating points</h2>", _html_table(OP_COLUMNS, op, missed_col=OP_COLUMNS.index("reached")),
             "<h2>Plots</h2>"]
    for (data, size, k), png in plots.items():
        data64 = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        title = f"{data} · {size} · k={k}"
        parts.append(f"<figure><img alt=\"recall vs QPS, {html.escape(title)}\" "
                     f"src=\"data:image/png;base64,{data64}\"><figcaption>{html.escape(title)}</figcaption></figure>")
    parts += ["<h2>Pareto frontier (recall vs QPS, per algorithm)</h2>",
              _html_table(FRONT_COLUMNS, frontier_rows(rows)), "</body></html>\n"]
    return "".join(parts)


def write_report(csv_paths: "Iterable[str | os.PathLike[str]]", out_dir: "str | os.PathLike[str]") -> dict:
    """Read evaluation CSVs and write the report into ``out_dir``.

    Returns a dict of paths: ``markdown`` (report.md), ``html`` (report.html, self-contained), and one
    ``plot:<data>:<size>:k<k>`` entry per PNG (``recall-qps-<data>-<size>-k<k>.png``).
    """
    csv_paths = [Path(p) for p in csv_paths]
    rows = load_eval_csv(csv_paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    plots: dict[tuple[str, str, int], Path] = {}
    for (data, size, k), grp in groups(rows).items():
        png = out_dir / f"recall-qps-{_slug(data)}-{_slug(size)}-k{k}.png"
        plots[(data, size, k)] = plot_group(grp, png, data=data, size=size, k=k)
        result[f"plot:{data}:{size}:k{k}"] = png
    md = out_dir / "report.md"
    with atomic_path(md) as tmp:
        tmp.write_text(markdown_report(rows, {key: p.name for key, p in plots.items()}), encoding="utf-8")
    page = out_dir / "report.html"
    with atomic_path(page) as tmp:
        tmp.write_text(html_report(rows, plots, [p.name for p in csv_paths]), encoding="utf-8")
    result["markdown"] = md
    result["html"] = page
    return result
