"""The report as a reader sees it: distinct plot styles for many algorithms, and the HTML page rendered
in a real headless browser (Debian's chromium, installed by `make test`'s set-up)."""

import csv
import re
import shutil
import subprocess

import pytest

from laionknn.evaluation import EVAL_COLUMNS
from laionknn.reporting import write_report
from laionknn.reporting.plots import knob_labels, style_for

ALGOS = [f"algo-{i:02d}" for i in range(15)]


def _csv(path, n_algos=15, long_params=False):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(EVAL_COLUMNS))
        w.writeheader()
        for i, algo in enumerate(ALGOS[:n_algos]):
            for j, ef in enumerate((16, 32, 64, 128)):
                params = f"M=16,ef_construction=200,ef={ef}"
                if long_params:  # a library that dumps its whole configuration as one token
                    params += ",config=" + "x" * 300
                w.writerow({c: "" for c in EVAL_COLUMNS} | {
                    "data": "clip768v2", "size": "100K", "algo": algo, "k": 10, "params": params,
                    "recall": 0.80 + 0.04 * j + 0.001 * i, "qps": 20000 / (j + 1) / (1 + 0.1 * i),
                    "querytime": 1.0, "buildtime": 5.0 + i, "recall_tie_aware": 0.81 + 0.04 * j,
                    "file": f"r/{algo}/{ef}.h5"})
    return path


def test_fifteen_algorithms_get_distinct_styles():
    styles = [style_for(i) for i in range(15)]
    triples = {(s["color"], s["marker"], s["linestyle"]) for s in styles}
    assert len(triples) == 15
    # no two algorithms share both colour and marker (the line style alone is hard to tell apart)
    assert len({(s["color"], s["marker"]) for s in styles}) == 15
    # the first and the eleventh algorithm (same tab10 colour) differ in marker and line style
    assert styles[0]["color"] == styles[10]["color"]
    assert styles[0]["marker"] != styles[10]["marker"] and styles[0]["linestyle"] != styles[10]["linestyle"]


def test_knob_labels_name_what_varies():
    runs = [{"params": f"M=16,ef_construction=200,ef={ef}"} for ef in (16, 64)]
    assert sorted(knob_labels(runs).values()) == ["ef=16", "ef=64"]
    assert list(knob_labels([{"params": "exhaustive"}]).values()) == [""]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report of 15 algorithms (with very long params) shared by the tests below: figures are slow."""
    tmp = tmp_path_factory.mktemp("report")
    return write_report([_csv(tmp / "e.csv", long_params=True)], tmp / "rep",
                        context={"synthetic": True, "n_queries": 10_000, "threads": 2, "datasets": ["x"]})


def test_report_figures_formats_and_context(report):
    paths = report
    key = "clip768v2:100K:k10"
    assert paths[f"plot:{key}"].read_bytes().startswith(b"\x89PNG")
    assert paths[f"svg:{key}"].read_text().lstrip().startswith(("<?xml", "<svg"))
    assert paths[f"pdf:{key}"].read_bytes().startswith(b"%PDF")
    assert paths[f"costs:{key}"].exists()
    svg = paths[f"svg:{key}"].read_text()
    assert "ef=128" in svg and "synthetic" in svg  # knob labels and the data kind are on the figure
    page = paths["html"].read_text()
    assert page.count("<circle") == 60 and "<title>algo-03\nparams: M=16,ef_construction=200,ef=32,config=" in page
    assert "2 threads" in svg and "cores" in page and "10000" in page
    md = paths["markdown"].read_text()
    assert "synthetic data" in md and "10,000 queries" in md


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


MEASURE = ("<script>window.addEventListener('load',function(){var p=document.createElement('pre');"
           "p.id='measure';p.textContent='scrollWidth='+document.documentElement.scrollWidth+"
           "' clientWidth='+document.documentElement.clientWidth;document.body.appendChild(p)});</script>")


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH: `make test` installs Debian's chromium "
                                                "package with apt-get when it can (root or sudo -n)")
def test_html_report_in_headless_chromium_fits_1024px(report, tmp_path):
    paths = report
    page = paths["html"].read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", MEASURE + "</body>"))
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--window-size=1024,800", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--virtual-time-budget=3000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"scrollWidth=(\d+) clientWidth=(\d+)", dom)
    assert m, "the page did not load in chromium"
    scroll, client = int(m.group(1)), int(m.group(2))
    assert client <= 1024 and scroll <= client, f"page overflows sideways: {scroll} px wide in {client} px"
    shot = tmp_path / "shot.png"
    subprocess.run(base + [f"--screenshot={shot}", paths["html"].as_uri()], capture_output=True, timeout=120)
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1024, 800)
