"""Audit part 1: catalog file names never leave the data folder, redirects go to http(s) only,
and the package loads nothing that can run code (no pickle, eval, exec, shell)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from hardeninghelpers import Listener, Server, assert_clean_error, cli, md5, write_catalog
from laionknn.catalog.download import RetryPolicy, download
from laionknn.catalog.ensure import target_path
from laionknn.catalog.manifest import read_catalog_tsv, resolve
from laionknn.errors import CatalogError, DownloadError
from laionknn.fsutil import contained_path, plain_name_problem

FAST = RetryPolicy(retries=2, backoff=0.001, max_backoff=0.01, timeout=5)


@pytest.mark.parametrize("name", ["../escape.h5", "../../x.h5", "sub/x.h5", "..", ".", "a\\b.h5",
                                  "C:evil.h5", "bad\x01name.h5", ""])
def test_plain_name_problem_refuses_paths(name):
    assert plain_name_problem(name) is not None


@pytest.mark.parametrize("name", ["laion2B-en-clip768v2-n=300K.h5", "x..y.h5", ".hidden.h5", "a b.h5"])
def test_plain_name_problem_accepts_plain_names(name):
    assert plain_name_problem(name) is None


def test_absolute_and_dotdot_catalog_names_are_refused_when_read(tmp_path):
    for bad in ("../escape.h5", str(tmp_path / "abs.h5"), "dir/x.h5"):
        cat = write_catalog(tmp_path / "cat.tsv", [{"file": bad, "urls": "http://127.0.0.1:9/x"}])
        with pytest.raises(CatalogError, match="not a plain file name"):
            read_catalog_tsv(cat)


def test_pth_into_site_packages_is_refused_and_nothing_written(tmp_path, home, capsys):
    """The audit's hole: an absolute `file` pointing into a site folder wrote a .pth whose code ran
    on the next start. Now fetch refuses with one line and no file appears anywhere."""
    site = tmp_path / "site-packages"
    site.mkdir()
    marker = tmp_path / "pwned"
    payload = f"import os; open({str(marker)!r}, 'w')\n".encode()
    with Server() as srv:
        srv.routes["/evil.pth"] = ("file", payload)
        for target in (str(site / "evil.pth"), "../../../" + "evil.pth"):
            cat = write_catalog(tmp_path / "cat.tsv", [{"file": target, "family": "x", "md5": md5(payload),
                                                       "listed_size": str(len(payload)),
                                                       "urls": srv.base + "/evil.pth"}])
            code, _, err = cli(["--quiet", "--catalog", cat, "datasets", "fetch", "evil"], capsys)
            assert_clean_error(code, err, "not a plain file name", "fix the catalog")
        assert srv.requests == []  # refused before any byte was fetched
    assert not (site / "evil.pth").exists() and not marker.exists()
    assert list(Path(home).rglob("*.pth")) == []


def test_record_built_in_code_is_checked_again_at_the_target(tmp_path, home):
    rec = resolve("synthetic-clip768v2-n=100K")
    for bad in ("../x.h5", "/etc/x.h5", "a/../../x.h5"):
        with pytest.raises(CatalogError):
            target_path(replace(rec, filename=bad))
        with pytest.raises(CatalogError):
            target_path(replace(rec, filename=bad), dest=tmp_path)
    assert target_path(rec, dest=tmp_path) == tmp_path / rec.filename


def test_contained_path_resolves_the_folder(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    assert contained_path(tmp_path / "link", "f.h5") == tmp_path / "link" / "f.h5"
    with pytest.raises(CatalogError):
        contained_path(tmp_path / "link", "../f.h5")


def test_redirect_to_ftp_is_refused_without_connecting(tmp_path):
    listener = Listener()
    try:
        with Server() as srv:
            srv.routes["/f"] = ("redirect", f"ftp://127.0.0.1:{listener.port}/f")
            with pytest.raises(DownloadError, match="only http"):
                download([srv.base + "/f"], tmp_path / "f.bin", policy=FAST, progress=False)
            assert srv.requests == ["/f"]  # permanent: not retried
        assert not listener.connected()
        assert not (tmp_path / "f.bin").exists()
    finally:
        listener.close()


def test_redirect_to_file_url_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    with Server() as srv:
        srv.routes["/f"] = ("redirect", secret.as_uri())
        with pytest.raises(DownloadError, match="only http"):
            download([srv.base + "/f"], tmp_path / "f.bin", policy=FAST, progress=False)
    assert not (tmp_path / "f.bin").exists()


def test_redirect_to_http_is_followed(tmp_path):
    data = b"x" * 5000
    with Server() as srv:
        srv.routes["/old"] = ("redirect", srv.base + "/new")
        srv.routes["/new"] = ("file", data)
        out = download([srv.base + "/old"], tmp_path / "f.bin", md5s=[md5(data)], size=len(data),
                       size_exact=True, policy=FAST, progress=False)
    assert out.read_bytes() == data


@pytest.mark.parametrize("url,why", [("127.0.0.1/x.h5", "no scheme"), ("ftp://127.0.0.1/x.h5", "not supported"),
                                     ("gopher://127.0.0.1/x", "not supported"), ("http:///x.h5", "no host")])
def test_unusable_catalog_urls_fail_at_once_with_one_line(tmp_path, capsys, url, why):
    cat = write_catalog(tmp_path / "cat.tsv", [{"file": "f.h5", "urls": url}])
    code, _, err = cli(["--quiet", "--catalog", cat, "datasets", "fetch", "f", "--retries", "5"], capsys)
    line = assert_clean_error(code, err, why)
    assert "gave up" not in line  # permanent: no retries


# --- the audit of code-running loaders --------------------------------------------------------
SRC = Path(__file__).resolve().parents[1] / "src" / "laionknn"
FORBIDDEN = [(r"\bimport pickle\b|\bpickle\.load", "pickle"), (r"(?<![\w.])eval\(", "eval"),
             (r"(?<![\w.])exec\(", "exec"), (r"\bos\.system\(|\bos\.popen\(", "shell"),
             (r"\bsubprocess\b", "subprocess"), (r"shell\s*=\s*True", "shell=True"),
             (r"yaml\.load\(", "yaml.load"), (r"allow_pickle\s*=\s*True", "allow_pickle=True"),
             (r"\bmarshal\.loads?\(|\bshelve\b|\bdill\b|\bcloudpickle\b|torch\.load\(", "code-running loader")]


def test_no_code_running_loaders_in_the_package():
    found = []
    for path in SRC.rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for pattern, what in FORBIDDEN:
                if re.search(pattern, code):
                    found.append(f"{path.relative_to(SRC)}:{i}: {what}: {line.strip()}")
    assert found == []


def test_every_np_load_refuses_pickles():
    calls = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"np\.load\(([^)]*)\)", text):
            calls.append((path.name, m.group(1)))
    assert calls, "the audit found no np.load at all: the pattern is stale"
    assert [c for c in calls if "allow_pickle=False" not in c[1]] == []


def test_checkpoint_cannot_name_files_outside_its_job(tmp_path):
    """prepare's state.json names finished subsets; a tampered name must not become a path."""
    import json

    from laionknn.errors import CheckpointError
    from laionknn.prepare import prepare_subsets
    from test_prepare_subsets import make_parts

    folder = tmp_path / "parts"
    make_parts(folder, [300, 200], seed=1)
    out = tmp_path / "out"
    prepare_subsets(folder, out, "a=1,b=2", keep_work=True)
    state_path = out / ".laionknn-prepare" / "state.json"
    state = json.loads(state_path.read_text())
    state["finished"] = ["../../../escape"]
    state_path.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="damaged checkpoint.*--restart"):
        prepare_subsets(folder, out, "a=1,b=2")
