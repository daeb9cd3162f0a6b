"""Progress when stderr is not a terminal: plain lines, numbers never cut, a summary at the end."""

import io
import logging

from laionknn import progress
from laionknn.progress import PlainBar


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_plain_bar_lines_show_done_total_rate_elapsed_eta():
    clock = Clock()
    bar = PlainBar("exact cosine (float32 filter)", 1_000_000_000, unit="row·query", stream=io.StringIO(), clock=clock)
    assert bar.start_line() == "exact cosine (float32 filter): started, 1,000,000,000 row·query"
    clock.t += 40
    bar.advance(250_000_000)
    assert bar.line() == ("exact cosine (float32 filter): 250,000,000/1,000,000,000 row·query (25.0 %), "
                          "6,250,000 row·query/s, elapsed 0:00:40, ETA 0:02:00")
    bar.describe("block 2")
    assert bar.stream.getvalue().startswith("exact cosine (float32 filter): block 2: 250,000,000/1,000,000,000")
    clock.t += 120
    bar.update(1_000_000_000)
    assert bar.summary() == ("exact cosine (float32 filter): done, 1,000,000,000/1,000,000,000 row·query in "
                             "0:02:40 (6,250,000 row·query/s)")


def test_progress_bar_without_a_terminal_prints_plain_lines(monkeypatch, capsys):
    monkeypatch.setattr(progress, "_QUIET", False)
    monkeypatch.setenv("LAIONKNN_PROGRESS_EVERY", "600")
    with progress.progress_bar("hnswlib", 3, unit="points") as bar:
        bar.describe("building M=16")
        bar.advance(3)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "hnswlib: started, 3 points"
    assert err[1].startswith("hnswlib: building M=16: 0/3 points (0.0 %)")
    assert err[-1].startswith("hnswlib: done, 3/3 points in 0:00:0")
    assert not any("…" in line for line in err)


def test_progress_bar_quiet_prints_nothing(monkeypatch, capsys):
    monkeypatch.setattr(progress, "_QUIET", True)
    with progress.progress_bar("x", 10) as bar:
        bar.advance(10)
        bar.describe("y")
    assert capsys.readouterr().err == ""


def test_verbose_raises_laionknn_logging_only():
    from laionknn.cli.main import configure_logging

    pkg, root = logging.getLogger("laionknn"), logging.getLogger()
    before = (pkg.level, root.level)
    try:
        root.setLevel(logging.WARNING)
        configure_logging(1, False)
        assert pkg.getEffectiveLevel() == logging.INFO
        assert logging.getLogger("faiss.loader").getEffectiveLevel() == logging.WARNING
        configure_logging(0, False)
        assert pkg.level == logging.NOTSET
    finally:
        pkg.setLevel(before[0])
        root.setLevel(before[1])


def test_native_stderr_of_scann_goes_to_the_debug_log(capfd, caplog):
    import os

    from laionknn.indexes.scann_index import native_stderr_to_log

    with caplog.at_level(logging.DEBUG, logger="laionknn.indexes.scann_index"):
        with native_stderr_to_log():
            os.write(2, b"I0000 00:00:1.2 123 partitioner_factory_base.cc:58] Size of sampled dataset\n")
    assert "partitioner_factory_base" not in capfd.readouterr().err
    assert any("partitioner_factory_base" in r.getMessage() for r in caplog.records)
