"""Benchmark: write N synthetic database rows to disk (official layout, float16) and report time and memory.

Each repeat runs in a fresh subprocess (so peak RSS is per run and the seed's universe is rebuilt):

    PYTHONPATH=src python benchmarks/synthetic.py --rows 1M --repeats 3

Prints one line per run (wall seconds, CPU seconds, rows/s, peak RSS) and the medians. The machine
is shared: quote medians and the load average printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, resource, sys, time
from laionknn.progress import set_quiet
from laionknn.synthetic import write_synthetic
set_quiet(True)
n, path = int(sys.argv[1]), sys.argv[2]
t0, c0 = time.perf_counter(), time.process_time()
write_synthetic(path, n, 0)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"wall": wall, "cpu": cpu, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "bytes": os.path.getsize(path)}))
"""


def main() -> None:
    from laionknn.types import parse_size

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1M")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp folder, removed after)")
    args = ap.parse_args()
    n = parse_size(args.rows)
    runs = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "bench.h5")
        print(f"rows={n:,}  load average before: {os.getloadavg()[0]:.2f}  cpus={os.cpu_count()}")
        print(f"{'run':>3} {'wall s':>8} {'cpu s':>8} {'rows/s':>10} {'peak RSS MiB':>13} {'file GB':>8}")
        for i in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", CHILD, str(n), path], check=True, capture_output=True,
                                 text=True, env=os.environ.copy())
            r = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append(r)
            print(f"{i + 1:>3} {r['wall']:8.1f} {r['cpu']:8.1f} {n / r['wall']:10,.0f} {r['rss_mib']:13.0f} "
                  f"{r['bytes'] / 1e9:8.2f}")
            os.remove(path)
    med = lambda k: statistics.median(r[k] for r in runs)
    print(f"median: wall {med('wall'):.1f} s, cpu {med('cpu'):.1f} s, {n / med('wall'):,.0f} rows/s, "
          f"peak RSS {med('rss_mib'):.0f} MiB; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
