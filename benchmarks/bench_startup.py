"""Start-up cost of pimo in fresh processes (not part of the tests).

Every measurement is a new Python process, timed from the outside, and compared with the
reference measured in the same run: a process that only runs ``import numpy``.

- (a) warm: ``pimo aupimo --example`` with numba's on-disk cache already filled;
- (b) first call: a fresh process that imports pimo and scores small maps with ``pimo.aupimo``
  (warm cache);
- (c) cold: ``pimo aupimo --example`` with an empty numba cache (``NUMBA_CACHE_DIR`` pointing
  at a new temporary folder), i.e. the very first run after installing.

Each is printed as the median wall time over the repetitions, in seconds over the reference
and as a ratio to it, next to the targets (a), (b) <= 1.5 s and (c) <= 15 s over the
reference. The CPU time (user + system) of the process is printed too: on a loaded machine it
is steadier than the wall time.

Usage::

    python benchmarks/bench_startup.py [--repeats 5] [--cold-repeats 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = [sys.executable, "-c", "import numpy"]
EXAMPLE_RUN = [sys.executable, "-m", "pimo", "aupimo", "--example"]
FIRST_CALL = [
    sys.executable,
    "-c",
    "import pimo\n"
    "maps, masks = pimo.make_example(4, 4, (128, 128), seed=1)\n"
    "pimo.aupimo(maps, masks, fpr_bounds=(1e-4, 1e-3))\n",
]


def timed_run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of ``command`` in a new process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def medians(command: list[str], env: dict[str, str], repeats: int) -> tuple[float, float]:
    runs = [timed_run(command, env) for _ in range(repeats)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of the reference, (a), (b)")
    parser.add_argument("--cold-repeats", type=int, default=2,
                        help="runs of (c), each with a new empty cache")
    args = parser.parse_args()

    source = Path(__file__).resolve().parents[1] / "src"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="pimo-bench-startup-") as scratch:
        cold_walls, cold_cpus = [], []
        for repetition in range(max(args.cold_repeats, 1)):
            cold_env = {**env, "NUMBA_CACHE_DIR": str(Path(scratch) / f"cache{repetition}")}
            wall, cpu = timed_run(EXAMPLE_RUN, cold_env)
            cold_walls.append(wall)
            cold_cpus.append(cpu)
        warm_env = {**env, "NUMBA_CACHE_DIR": str(Path(scratch) / "cache0")}
        timed_run(FIRST_CALL, warm_env)  # fills the cache for the small maps' types too
        reference = medians(REFERENCE, env, args.repeats)
        rows = [
            ("(a) warm `pimo aupimo --example`", medians(EXAMPLE_RUN, warm_env, args.repeats),
             1.5),
            ("(b) first pimo.aupimo call", medians(FIRST_CALL, warm_env, args.repeats), 1.5),
            ("(c) cold `pimo aupimo --example`",
             (statistics.median(cold_walls), statistics.median(cold_cpus)), 15.0),
        ]
    print(f"reference `python -c 'import numpy'`: {reference[0]:.3f} s wall, "
          f"{reference[1]:.3f} s CPU (median of {args.repeats})")
    print(f"{'':36s} {'wall - ref':>10s} {'ratio':>7s} {'CPU - ref':>10s} {'ratio':>7s}"
          f"  target")
    for name, (wall, cpu), target in rows:
        over = wall - reference[0]
        verdict = "ok" if over <= target else "OVER"
        print(f"{name:36s} {over:9.2f}s {wall / reference[0]:6.1f}x "
              f"{cpu - reference[1]:9.2f}s {cpu / reference[1]:6.1f}x"
              f"  <= {target:g} s over: {verdict}")


if __name__ == "__main__":
    main()
