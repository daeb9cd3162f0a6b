"""The peer backends' edges: CPU-vendor gating (Intel SVS), bad grid keys and hamming data refused in
one line with exit code 2, the machine facts every run record carries, and faiss's BLAS kernel check.

The CPU is faked through ``machine.cpu_info`` so the gating is tested the same way on Intel and AMD
machines; the LVQ code itself is never called on a non-Intel CPU (it would end the process).
"""

from __future__ import annotations

import json
from importlib import metadata

import numpy as np
import pytest

from laionknn.cli.main import main
from laionknn.errors import UsageError
from laionknn.indexes import machine, registry

AMD = {"cpu_model": "AMD EPYC 9B45", "cpu_vendor": "AuthenticAMD", "cpu_flags": "avx2,avx512f,avx512bw"}
DB = "synthetic-clip768v2-n=2K"
INTEL = {"cpu_model": "Intel(R) Xeon(R) Platinum 8581C", "cpu_vendor": "GenuineIntel",
         "cpu_flags": "avx2,avx512f,avx512bw,avx512_fp16,amx_bf16,amx_int8"}


@pytest.fixture
def fake_cpu(monkeypatch):
    def use(info):
        monkeypatch.setattr(machine, "cpu_info", lambda: dict(info))
    return use


def test_intel_only_backends_unavailable_on_amd(fake_cpu):
    fake_cpu(AMD)
    for name in ("svs-lvq", "svs-leanvec"):
        assert not registry.is_available(name)
        assert name not in registry.available_backends()
        with pytest.raises(UsageError) as exc:
            registry.get_backend(name)
        msg = str(exc.value)
        assert "needs an Intel CPU" in msg and "AMD EPYC 9B45 (AuthenticAMD)" in msg and "svs-vamana" in msg
    assert registry.cpu_error("svs-vamana") is None and registry.cpu_error("hnswlib") is None


def test_why_unavailable_names_the_cpu_the_library_or_the_name(fake_cpu, monkeypatch):
    """The peer benchmark asks this before starting a worker, so a backend this machine cannot run gets
    one line and a note under the table instead of a worker's traceback."""
    fake_cpu(AMD)
    assert "needs an Intel CPU" in registry.why_unavailable("svs-leanvec")
    assert registry.why_unavailable("no-such-index") == "unknown backend 'no-such-index'"
    monkeypatch.setitem(registry.BACKENDS, "hnswlib", (registry.BACKENDS["hnswlib"][0], "no_such_module_xyz"))
    assert registry.why_unavailable("hnswlib").startswith("ModuleNotFoundError")
    fake_cpu(INTEL)
    assert "needs an Intel CPU" not in (registry.why_unavailable("svs-leanvec") or "")  # at most its library


def test_intel_only_backends_pass_the_cpu_check_on_intel(fake_cpu):
    fake_cpu(INTEL)
    assert registry.cpu_error("svs-lvq") is None and registry.cpu_error("svs-leanvec") is None


def test_cli_intel_only_backend_on_amd_one_line_exit_2(fake_cpu, capsys):
    fake_cpu(AMD)
    with pytest.raises(SystemExit) as exc:
        main(["search", "--database", "synthetic-clip768v2-n=2K", "--n-queries", "50", "--index", "svs-lvq"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs an Intel CPU" in err and "Traceback" not in err


def _first_available(names):
    for name in names:
        if registry.is_available(name):
            return name
    pytest.skip(f"none of {names} installed")


def _tiny_dataset(n_queries: int = 20) -> str:
    """A 2,000-row LAION-shaped database and its queries at the catalog's local paths (no generator)."""
    from laionknn import catalog
    from laionknn.io import write_vectors

    rng = np.random.default_rng(9)
    spec = catalog.dataset(DB, n_queries=n_queries)
    write_vectors(catalog.local_path(spec.database), rng.standard_normal((2000, 768)), "emb", np.float16)
    write_vectors(catalog.local_path(spec.queries), rng.standard_normal((n_queries, 768)), "emb", np.float32)
    return DB


def test_cli_grid_key_the_library_does_not_accept(home, tmp_path, capsys):
    name = _first_available(["deglib", "voyager-f32", "rabitq-symqg", "faiss-nsg"])
    _tiny_dataset()
    grid = tmp_path / "g.toml"
    grid.write_text("[query]\nef_search_typo = [10, 20]\n")
    with pytest.raises(SystemExit) as exc:
        main(["search", "--database", DB, "--n-queries", "20", "--out", str(tmp_path), "--index", name, "--grid", str(grid)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    accepted = ", ".join(sorted(registry.get_backend(name).query_defaults))
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # progress bars may precede it
    assert len(errors) == 1 and "Traceback" not in err
    assert "ef_search_typo" in errors[0] and f"accepted query keys: {accepted}" in errors[0]


def test_hamming_data_refused_by_every_float_peer(home):
    """A packed-sketch database given to each available float peer: a UsageError naming the binary
    backends, raised before the library sees the data."""
    sketches = np.random.default_rng(0).integers(0, 2**63, (300, 16), dtype=np.uint64)
    peers = [n for n in sorted(registry.PEERS) if registry.is_available(n)]
    if not peers:
        pytest.skip("no peer library installed")
    for name in peers:
        index = registry.create(name, "cosine")
        with pytest.raises(UsageError, match="faiss-binary"):
            index.build(sketches)
        with pytest.raises(UsageError, match="does not support the hamming metric"):
            registry.create(name, "hamming")


def test_bad_build_values_are_usage_errors():
    checks = [("deglib", {"edges_per_vertex": 7}, "even degree"), ("rabitq-symqg", {"max_degree": 48}, "multiple of 32"),
              ("rabitq-ivf", {"nlist": 8, "nbits": 12}, "1 to 9 bits"), ("vsag-hgraph", {"base_quantization_type": "pq9"}, "choose one of"),
              ("faiss-ivfrabitqfs", {"nlist": 8, "nb_bits": 11}, "1 to 9 bits"),
              ("faiss-ivfrabitqfs", {"nlist": 8, "refine": "bf16"}, "refine='bf16'; choose 'flat' or 'fp16'"),
              ("faiss-ivfpqfs", {"nlist": 8, "m": 16, "refine": "sq8"}, "refine='sq8'; choose 'flat' or 'fp16'")]
    db = np.random.default_rng(1).standard_normal((200, 64)).astype(np.float32)
    ran = 0
    for name, params, needle in checks:
        if not registry.is_available(name):
            continue
        with pytest.raises(UsageError, match=needle):
            registry.create(name, "cosine", threads=1, **params).build(db)
        ran += 1
    if not ran:
        pytest.skip("no peer library installed")


@pytest.mark.parametrize("name", ["faiss-ivfpqfs", "faiss-ivfrabitqfs"])
def test_fp16_refine_reranks_from_a_float16_copy(name):
    """``refine="fp16"`` (the 10M grids): the refinement layer is a float16 scalar quantiser of half the
    float32 copy's bytes, and on float16 data a search of every list with many candidates is as exact
    as with the float32 copy."""
    if not registry.is_available(name):
        pytest.skip(f"{name} is not installed")
    import faiss

    rng = np.random.default_rng(3)
    db = rng.standard_normal((3000, 64)).astype(np.float16).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = db[:50] + 0.05 * rng.standard_normal((50, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = np.argsort(-(q.astype(np.float64) @ db.T.astype(np.float64)), axis=1)[:, :10]
    sizes = {}
    for refine in ("flat", "fp16"):
        index = registry.create(name, "dot", threads=1, nlist=8, train_size=3000, refine=refine,
                                **({"m": 16} if name == "faiss-ivfpqfs" else {}))
        index.build(db)
        refine_layer = faiss.downcast_index(index.index.refine_index)
        assert isinstance(refine_layer, faiss.IndexScalarQuantizer if refine == "fp16" else faiss.IndexFlat)
        sizes[refine] = refine_layer.sa_code_size()
        index.set_query_params(nprobe=8, k_factor=150)  # every list, half the rows: the refine decides
        got = index.search(q, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.ids, exact)])
        assert recall >= 0.99, (refine, recall)
    assert sizes == {"flat": 64 * 4, "fp16": 64 * 2}


@pytest.mark.parametrize("refine", ["flat", "fp16"])
def test_refine_copy_is_sized_once_before_the_adds(refine):
    """``reserve_refine``: the refinement layer's buffer gets its room before the block adds, so the
    adds never move it (a move copies the whole buffer: 2x its size at once), and the index answers
    as one built by faiss without the reservation."""
    if not registry.is_available("faiss-ivfpqfs"):
        pytest.skip("faiss is not installed")
    import faiss

    rng = np.random.default_rng(5)
    db = rng.standard_normal((4000, 32)).astype(np.float32)
    index = registry.create("faiss-ivfpqfs", "dot", threads=1, nlist=8, m=8, train_size=4000, refine=refine)
    index.n, index.dim = len(db), db.shape[1]
    index.train_empty(db)
    index.reserve_refine(len(db))
    layer = faiss.downcast_index(index.index.refine_index)
    assert layer.ntotal == 0 and layer.codes.size() == 0
    where = layer.codes.data()
    for lo in range(0, len(db), 500):
        index.index.add(db[lo:lo + 500])
        assert layer.codes.data() == where
    assert layer.codes.size() == len(db) * layer.code_size

    plain = faiss.index_factory(32, f"IVF8,PQ8x4fs,{'RFlat' if refine == 'flat' else 'Refine(SQfp16)'}",
                                faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(plain).cp.seed = 0
    plain.train(db)  # the whole sample: train_size = n, so the same rows in the same order
    plain.add(db)
    for built in (index.index, plain):
        faiss.extract_index_ivf(built).nprobe = 8
        built.k_factor = 8
    assert np.array_equal(index.index.search(db[:20], 5)[1], plain.search(db[:20], 5)[1])


def test_run_records_carry_machine_library_and_search_mode(home, tmp_path):
    from laionknn.indexes.grids import Grid
    from laionknn.indexes.runner import SweepTarget, sweep
    from laionknn.types import Metric

    rng = np.random.default_rng(5)
    db = rng.standard_normal((500, 64)).astype(np.float32)
    q = rng.standard_normal((20, 64)).astype(np.float32)
    target = SweepTarget(db, q, Metric.COSINE, "clip768v2", "500", "test-500")
    cases = [("hnswlib", "hnswlib", "batch", {"M": 8, "ef_construction": 20}, {"ef": 16})]
    if registry.is_available("vsag-hgraph"):
        cases.append(("vsag-hgraph", "pyvsag", "single-query", {"max_degree": 16, "ef_construction": 32},
                      {"ef_search": 16}))
    if registry.is_available("faiss-flat"):
        cases.append(("faiss-flat", "faiss-cpu", "batch", {}, {}))
    info = machine.cpu_info()
    for backend, dist, mode, build, query in cases:
        grid = Grid(backend, build=[build], query=[query])
        rec, = sweep(backend, target, 5, tmp_path / backend, grid=grid, threads=1, use_cache=False)
        assert rec["search_mode"] == mode
        assert rec["library_version"] == metadata.version(dist)
        assert rec["cpu_model"] == info["cpu_model"] and rec["cpu_vendor"] == info["cpu_vendor"]
        assert rec["cpu_flags"] == info["cpu_flags"]
        line = json.loads((tmp_path / backend / "runs.jsonl").read_text().splitlines()[0])
        assert line["search_mode"] == mode
        if backend.startswith("faiss"):
            assert rec["faiss_blas_ok"] in ("yes", "no", "")


def test_cpu_info_reads_vendor_model_and_recorded_flags(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold\n"
                    "flags\t\t: fpu sse2 avx2 avx512f avx512_fp16 amx_int8 amx_bf16 avx512bw\n\n"
                    "processor\t: 1\nvendor_id\t: GenuineIntel\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(fake if p == "/proc/cpuinfo" else p, *a, **k))
    machine.cpu_info.cache_clear()
    try:
        info = machine.cpu_info()
    finally:
        machine.cpu_info.cache_clear()
    assert info == {"cpu_model": "Intel(R) Xeon(R) Gold", "cpu_vendor": "GenuineIntel",
                    "cpu_flags": "avx2,avx512f,avx512bw,avx512_fp16,amx_bf16,amx_int8"}


@pytest.mark.parametrize("core, flags, ok", [("Prescott", "avx2,avx512f", "no"), ("Haswell", "avx2,avx512f", "yes"),
                                             ("SkylakeX", "avx2,avx512f", "yes"), ("Prescott", "", "yes")])
def test_faiss_blas_flags_a_kernel_without_avx2(monkeypatch, fake_cpu, core, flags, ok):
    pytest.importorskip("faiss")
    import glob
    import os

    import faiss
    import threadpoolctl

    libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(faiss.__file__)), "faiss_cpu.libs", "libopenblas*"))
    if not libs:
        pytest.skip("this faiss build bundles no OpenBLAS")
    fake_cpu({**AMD, "cpu_flags": flags})
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: [
        {"internal_api": "openblas", "filepath": libs[0], "version": "0.3.15", "architecture": core}])
    got = machine.faiss_blas()
    assert got["faiss_blas_core"] == core and got["faiss_blas_ok"] == ok and "0.3.15" in got["faiss_blas"]


def test_cli_hamming_dataset_for_a_float_peer_one_line_exit_2(home, tmp_path, capsys):
    from laionknn import catalog
    from laionknn.io import write_vectors

    name = _first_available(["deglib", "rabitq-ivf", "voyager-f32", "svs-vamana", "faiss-nsg"])
    rng = np.random.default_rng(4)
    ham = catalog.dataset("synthetic-hammingv2-n=2K", n_queries=20)
    write_vectors(catalog.local_path(ham.database), rng.integers(0, 2**63, (2000, 16), dtype=np.uint64), "hamming")
    write_vectors(catalog.local_path(ham.queries), rng.integers(0, 2**63, (20, 16), dtype=np.uint64), "hamming")
    with pytest.raises(SystemExit) as exc:
        main(["search", "--database", "synthetic-hammingv2-n=2K", "--n-queries", "20", "--out", str(tmp_path), "--index", name])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert name in errors[0] and "hamming" in errors[0] and "faiss-binary-flat" in errors[0]


def _peers_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"
    spec = importlib.util.spec_from_file_location("peers_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("preset, ok, flags, expected", [
    (None, "no", "avx2,avx512f,avx512bw", "SkylakeX"), (None, "no", "avx2", "Haswell"),
    (None, "yes", "avx2,avx512f", None), ("Haswell", "no", "avx2,avx512f", "Haswell")])
def test_peer_benchmark_puts_faiss_on_an_avx2_kernel(monkeypatch, fake_cpu, preset, ok, flags, expected):
    """A kernel without AVX2 is replaced by SkylakeX on an AVX-512 CPU, by Haswell on an AVX2-only one;
    a kernel the caller chose, or a good one, is left alone."""
    peers = _peers_script()
    fake_cpu({**INTEL, "cpu_flags": flags})
    if preset is None:
        monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_CORETYPE", preset)
    monkeypatch.setattr(machine, "faiss_blas", lambda: {"faiss_blas": "openblas 0.3.15 core=Prescott",
                                                        "faiss_blas_core": "Prescott", "faiss_blas_ok": ok})
    env, note = peers.blas_environment()
    assert env.get("OPENBLAS_CORETYPE") == expected and env["LAIONKNN_QUIET"] == "1"
    assert ("OPENBLAS_CORETYPE" in note) == (expected is not None)


def test_peer_table_marks_single_query_backends_and_names_the_machine():
    peers = _peers_script()
    row = {"kind": "timed", "k": 10, "recall": 0.95, "qps": 100.0, "query": "ef_search=64", "buildtime": 1.0,
           "peak_rss_bytes": 2**30, "index_bytes": 2**20, "threads": 1, "cpu_model": "AMD EPYC",
           "cpu_vendor": "AuthenticAMD", "cpu_flags": "avx2,avx512f", "library": "pyvsag", "library_version": "0.18.5"}
    rows = [{**row, "backend": "vsag-hgraph", "search_mode": "single-query"},
            {**row, "backend": "hnswlib", "search_mode": "batch", "library": "hnswlib", "library_version": "0.8.0"}]
    table = peers.summarise(rows)
    assert [r[0] for r in table] == ["hnswlib", "vsag-hgraph (single-query)"]
    lines = peers.machine_lines(rows, "")
    assert lines[0] == "CPU: AMD EPYC (AuthenticAMD); flags: avx2,avx512f"
    assert "vsag-hgraph = pyvsag 0.18.5" in lines[-1] and "hnswlib = hnswlib 0.8.0" in lines[-1]


def test_peer_table_names_the_best_peer_and_our_ratio_to_it():
    peers = _peers_script()

    def timed(backend, k, threads, qps, recall):
        return {"kind": "timed", "backend": backend, "k": k, "threads": threads, "qps": qps, "recall": recall,
                "query": "q"}

    rows = [timed("scann", 10, 1, 1000.0, 0.91), timed("hnswlib", 10, 1, 3000.0, 0.89),  # below 0.9: not best
            timed("faiss-ivfpqfs", 10, 1, 1500.0, 0.95), timed("laionknn-own", 10, 1, 4500.0, 0.92),
            timed("scann", 30, 1, 800.0, 0.79), {**timed("hnswlib", 30, 1, 9000.0, 0.99), "kind": "probe"}]
    lines = peers.best_peer_lines(rows)
    assert lines[0].startswith("- Best peer at R@10 ≥ 0.9, 1 thread: **faiss-ivfpqfs** 1,500 QPS")
    assert "ours: **laionknn-own** 4,500 QPS" in lines[0] and "**3.00×** the best peer" in lines[0]
    assert lines[1] == "- Best peer at R@30 ≥ 0.8, 1 thread: none reaches it"  # probes are never timed figures


def _float_peers():
    return [n for n in sorted(registry.PEERS) if registry.is_available(n)]


@pytest.mark.parametrize("kind", ["build", "query"])
def test_every_float_peer_refuses_a_grid_key_it_does_not_accept(tmp_path, kind):
    """A build or query key the backend does not know: one UsageError naming the key and the accepted
    keys, for every installed peer (before any library call)."""
    peers = _float_peers()
    if not peers:
        pytest.skip("no peer library installed")
    grid = tmp_path / "g.toml"
    grid.write_text("[[build]]\nnot_a_knob = 3\n" if kind == "build" else "[query]\nnot_a_knob = [1, 2]\n")
    from laionknn.indexes.grids import load_grid

    for name in peers:
        cls = registry.get_backend(name)
        accepted = ", ".join(sorted(cls.build_defaults if kind == "build" else cls.query_defaults)) or "none"
        with pytest.raises(UsageError) as exc:
            load_grid(name, grid, n_rows=2000, dim=768)
        msg = str(exc.value)
        assert "\n" not in msg and "not_a_knob" in msg and name in msg
        assert f"accepted {kind} keys: {accepted}" in msg


def test_list_on_a_non_intel_cpu_marks_the_intel_only_backends_unavailable(fake_cpu, capsys, monkeypatch):
    """`search --list` on a (faked) AMD CPU: svs-lvq and svs-leanvec are listed as unavailable with the
    reason, and svs-vamana stays available."""
    pytest.importorskip("svs")
    fake_cpu(AMD)
    monkeypatch.setenv("COLUMNS", "400")
    try:
        main(["search", "--list"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    for name in ("svs-lvq", "svs-leanvec"):
        assert "no (backend" in rows[name] and "needs an Intel CPU" in rows[name]
    assert "│ yes " in rows["svs-vamana"]


def test_peer_table_of_two_machine_kinds_gets_a_machine_column_and_best_lines_per_kind(tmp_path, capsys,
                                                                                       monkeypatch):
    """Rows measured on two machine kinds (Intel with AMX, Intel without): one table row per backend,
    thread count and kind, a machine column, and best-peer lines per kind (never compared across kinds);
    `--render` prints that table from the raw JSON files without running anything."""
    import sys

    peers = _peers_script()
    amx = {"cpu_model": "Xeon A", "cpu_vendor": "GenuineIntel", "cpu_flags": "avx2,avx512f,amx_bf16,amx_int8,amx_tile"}
    plain = {"cpu_model": "Xeon B", "cpu_vendor": "GenuineIntel", "cpu_flags": "avx2,avx512f"}

    def timed(backend, machine_facts, qps, recall, k=10):
        return {"kind": "timed", "backend": backend, "k": k, "threads": 1, "qps": qps, "recall": recall,
                "query": "q", "buildtime": 2.0, "peak_rss_bytes": 2**30, "index_bytes": 2**20,
                "library": "lib", "library_version": "1", **machine_facts}

    first = [timed("scann", amx, 9000.0, 0.95), timed("hnswlib", amx, 1000.0, 0.93)]
    second = [timed("scann", plain, 3000.0, 0.95), timed("deglib", plain, 4000.0, 0.91)]
    assert peers.machine_kind(first[0]) == "Intel with AMX" and peers.machine_kind(second[0]) == "Intel without AMX"
    assert peers.machine_kind({"cpu_vendor": "AuthenticAMD", "cpu_flags": "avx2"}) == "AMD"
    table = peers.summarise(first + second)
    assert [r[:3] for r in table] == [["deglib", "1", "Intel without AMX"], ["hnswlib", "1", "Intel with AMX"],
                                      ["scann", "1", "Intel with AMX"], ["scann", "1", "Intel without AMX"]]
    lines = peers.best_peer_lines(first + second)
    assert lines[0].startswith("- Best peer (Intel with AMX) at R@10 ≥ 0.9, 1 thread: **scann** 9,000 QPS")
    assert lines[2].startswith("- Best peer (Intel without AMX) at R@10 ≥ 0.9, 1 thread: **deglib** 4,000 QPS")
    assert peers.summarise(second)[0][:3] == ["deglib", "1", "4,000 (0.910; q)"]  # one kind: no machine column
    files = []
    for i, rows in enumerate((first, second)):
        files.append(tmp_path / f"run{i}.json")
        files[-1].write_text(json.dumps(rows))
    monkeypatch.setattr(sys, "argv", ["peers.py", "--render", str(files[0]), "--render", str(files[1]), "--title", "T"])
    peers.main()
    out = capsys.readouterr().out
    assert out.startswith("### T\n") and "| backend | threads | machine |" in out
    assert "CPU (Intel with AMX): Xeon A (GenuineIntel)" in out and "CPU (Intel without AMX): Xeon B" in out
    monkeypatch.setattr(sys, "argv", ["peers.py", "--render", str(tmp_path / "missing.json")])
    with pytest.raises(SystemExit) as exc:
        peers.main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "missing.json" in err
