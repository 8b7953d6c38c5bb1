"""Benchmark of the set-scoped metrics (AUROC, AUPRO 30 % and 5 %, AP, F1-max) on a synthetic set.

Times are printed as ratios to the one-pass numpy floor ``maps.reshape(n, -1).max(1)``
measured in the same run (the best of ``--repeats`` runs each), JIT compilation excluded and
reported apart. Extra peak memory is measured in a fresh subprocess per function as the growth
of the resident-set high-water mark (``ru_maxrss``) over the loaded input, so numba's
allocations are seen too.

``--stages`` also splits the best ``set_metrics`` call into its kernel stages (labelling
the regions, the bucket histograms, the counting sort of the low keys, ranking the anomalous
keys, counting the normal keys by slot, the walk), each as seconds and x floor, the rest
(validation, numpy glue) as "other".

``accumulator_b8`` feeds the maps to :class:`pimo.SetMetricsAccumulator` in random order, 8
at a time, and computes every figure; its peak state is printed. ``--reference-src DIR``
also times ``set_metrics(maps, masks)`` of another checkout's ``src`` folder (e.g. the main
branch) against this one's, each in fresh processes taking turns, for a ratio measured on the
same machine, data and load.

Usage::

    python benchmarks/bench_setmetrics.py                 # 160 x 1024^2 float32 (41 normal)
    python benchmarks/bench_setmetrics.py --size 256      # a quick run
    python benchmarks/bench_setmetrics.py --reference-src ../main/src
    python benchmarks/bench_setmetrics.py --stages --no-memory   # where the time goes
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import pimo
from pimo import _kernels
from pimo._synthetic import make_example

FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], object]] = {
    "floor": lambda maps, masks: maps.reshape(maps.shape[0], -1).max(1),
    "auroc": lambda maps, masks: pimo.auroc(maps, masks),
    "aupro_30": lambda maps, masks: pimo.aupro(maps, masks, fpr_limit=0.3),
    "aupro_05": lambda maps, masks: pimo.aupro(maps, masks, fpr_limit=0.05),
    "auroc_aupros": lambda maps, masks: pimo.set_metrics(maps, masks, fpr_limits=(0.3, 0.05),
                                                         ap=False, f1_max=False),
    "set_metrics": lambda maps, masks: pimo.set_metrics(maps, masks, fpr_limits=(0.3, 0.05)),
    "accumulator_b8": lambda maps, masks: accumulate(maps, masks, 8)[0],
}


def accumulate(maps: np.ndarray, masks: np.ndarray, batch_size: int
               ) -> tuple[pimo.SetMetricsResult, int]:
    """Every figure from batches of ``batch_size`` maps in random order; the peak state bytes."""
    order = np.random.default_rng(0).permutation(maps.shape[0])
    accumulator = pimo.SetMetricsAccumulator(fpr_limits=(0.3, 0.05))
    peak = 0
    for start in range(0, order.shape[0], batch_size):
        batch = np.sort(order[start:start + batch_size])
        accumulator.update(maps[batch], masks[batch])
        peak = max(peak, accumulator.state_bytes)
    return accumulator.compute(), peak


REFERENCE_SCRIPT = """
import sys, time, gc
import numpy as np
import pimo
maps, masks = np.load(sys.argv[1]), np.load(sys.argv[2])
pimo.set_metrics(*pimo.make_example(2, 2, (32, 32), seed=1))
gc.collect()
start = time.perf_counter()
pimo.set_metrics(maps, masks, fpr_limits=(0.3, 0.05))
print(time.perf_counter() - start)
"""


def paired_seconds(sources: list[str], maps_path: Path, masks_path: Path, repeats: int
                   ) -> list[float]:
    """Best time of ``set_metrics(maps, masks)`` of each pimo source folder, each in a fresh
    process, the folders taking turns (so that a change of machine load hits them alike)."""
    best = [float("inf")] * len(sources)
    for _ in range(repeats):
        for index, src in enumerate(sources):
            child = subprocess.run(
                [sys.executable, "-c", REFERENCE_SCRIPT, str(maps_path), str(masks_path)],
                capture_output=True, text=True, check=True,
                env={**os.environ, "PYTHONPATH": src},
            )
            best[index] = min(best[index], float(child.stdout.strip().splitlines()[-1]))
    return best


STAGES = {
    "regions (image_runs)": ("image_runs",),
    "bucket histograms": ("bucket_counts",),
    "counting sort of low keys": ("scatter_low_keys",),
    "anomalous keys ranked": ("expand_keys", "rank_bucket_starts", "fill_rank_rows",
                              "anomalous_slot_sums"),
    "normal keys by slot": ("low_key_slot_counts",),
    "walk": ("walk_gaps",),
}


def stage_seconds(maps: np.ndarray, masks: np.ndarray, repeats: int) -> dict[str, float]:
    """Seconds of each kernel stage of the fastest of ``repeats`` ``set_metrics`` calls
    (the kernels are wrapped in timers for the duration), the rest as "other"."""
    spent: dict[str, float] = {}
    originals = {name: getattr(_kernels, name) for names in STAGES.values() for name in names}

    def timed(name: str, kernel: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object) -> object:
            start = time.perf_counter()
            try:
                return kernel(*args)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return call

    best: dict[str, float] = {}
    try:
        for name, kernel in originals.items():
            setattr(_kernels, name, timed(name, kernel))
        for _ in range(repeats):
            spent.clear()
            gc.collect()
            start = time.perf_counter()
            pimo.set_metrics(maps, masks, fpr_limits=(0.3, 0.05))
            total = time.perf_counter() - start
            if not best or total < best["total"]:
                best = {stage: sum(spent.get(name, 0.0) for name in names)
                        for stage, names in STAGES.items()}
                best["other"] = total - sum(best.values())
                best["total"] = total
    finally:
        for name, kernel in originals.items():
            setattr(_kernels, name, kernel)
    return best


def data_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """Generate the synthetic set once and keep it as .npy files (reused by later runs)."""
    name = f"pimo-bench-setmetrics-{args.num_normal}-{args.num_anomalous}-{args.size}"
    folder = Path(args.data_dir) if args.data_dir else Path(tempfile.gettempdir()) / name
    folder.mkdir(parents=True, exist_ok=True)
    maps_path, masks_path = folder / "maps.npy", folder / "masks.npy"
    if not (maps_path.exists() and masks_path.exists()):
        start = time.perf_counter()
        maps, masks = make_example(args.num_normal, args.num_anomalous, (args.size, args.size),
                                   seed=0, dtype=np.float32)
        np.save(maps_path, maps)
        np.save(masks_path, masks)
        print(f"generated the set in {time.perf_counter() - start:.1f} s -> {folder}")
    return maps_path, masks_path


def warm_up() -> float:
    """Compile (or load from the cache) every kernel on a tiny set; return the seconds."""
    maps, masks = make_example(2, 2, (32, 32), seed=1)
    start = time.perf_counter()
    pimo.set_metrics(maps, masks)
    pimo.auroc(maps, masks)
    pimo.aupro(maps, masks)
    return time.perf_counter() - start


def best_time(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Resident-set high-water mark: VmHWM (resettable) where readable, else ru_maxrss.

    ru_maxrss alone is not enough in a child process: Linux carries the parent's high-water
    mark across fork and exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def measure_memory(name: str, maps_path: Path, masks_path: Path) -> None:
    """Child process: print the extra peak memory of one function as JSON."""
    warm_up()
    maps = np.load(maps_path)
    masks = np.load(masks_path)
    gc.collect()
    reset_peak_rss()
    before = peak_rss_bytes()
    FUNCTIONS[name](maps, masks)
    after = peak_rss_bytes()
    print(json.dumps({"extra_bytes": after - before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-normal", type=int, default=41)
    parser.add_argument("--num-anomalous", type=int, default=119)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--reference-src", default=None,
                        help="time set_metrics of the pimo sources in this folder too")
    parser.add_argument("--stages", action="store_true",
                        help="split the best set_metrics call into its kernel stages")
    parser.add_argument("--memory", choices=sorted(FUNCTIONS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    maps_path, masks_path = data_paths(args)
    if args.memory:
        measure_memory(args.memory, maps_path, masks_path)
        return

    compile_seconds = warm_up()
    maps = np.load(maps_path)
    masks = np.load(masks_path)
    input_bytes = maps.nbytes + masks.nbytes
    print(f"set: {maps.shape[0]} maps {maps.shape[1]}x{maps.shape[2]} {maps.dtype} "
          f"({args.num_normal} normal), {int(masks.sum()):,} anomalous pixels; "
          f"input {maps.nbytes / 2**20:.0f} MiB maps + {masks.nbytes / 2**20:.0f} MiB masks")
    print(f"first calls (JIT compile or cache load): {compile_seconds:.2f} s")
    result = pimo.set_metrics(maps, masks, fpr_limits=(0.3, 0.05))
    print(f"AUROC {result.auroc:.6f}  AUPRO30 {result.aupro[0.3]:.6f}  "
          f"AUPRO5 {result.aupro[0.05]:.6f}  AP {result.ap:.6f}  F1-max {result.f1_max:.6f}  "
          f"({result.num_regions} regions)")
    accumulated, peak_state = accumulate(maps, masks, 8)
    print(f"accumulator, batches of 8 in random order: peak state {peak_state / 2**20:.0f} MiB "
          f"({peak_state / maps.size:.2f} bytes per pixel); largest difference to one call "
          f"{max(abs(accumulated.auroc - result.auroc), abs(accumulated.ap - result.ap)):.1e}")

    times = {name: best_time(lambda f=f: f(maps, masks), args.repeats)
             for name, f in FUNCTIONS.items()}
    memory: dict[str, int] = {}
    if not args.no_memory:
        for name in FUNCTIONS:
            child = subprocess.run(
                [sys.executable, __file__, "--memory", name, "--data-dir",
                 str(maps_path.parent), "--num-normal", str(args.num_normal),
                 "--num-anomalous", str(args.num_anomalous), "--size", str(args.size)],
                capture_output=True, text=True, check=True,
            )
            memory[name] = json.loads(child.stdout.strip().splitlines()[-1])["extra_bytes"]

    if args.reference_src:
        own_src = str(Path(pimo.__file__).resolve().parents[1])
        own, reference = paired_seconds([own_src, args.reference_src], maps_path, masks_path,
                                        args.repeats)
        times["set_metrics, own process"] = own
        times["reference set_metrics"] = reference
    floor = times["floor"]
    print(f"\n{'':<28}{'seconds':>9}{'x floor':>10}{'extra peak':>13}{'x input':>9}")
    rows = list(times.items())
    rows.append(("auroc + aupro_30 + aupro_05",
                 times["auroc"] + times["aupro_30"] + times["aupro_05"]))
    for name, seconds in rows:
        extra = memory.get(name)
        extra_text = ""
        if extra is not None:
            extra_text = f"{extra / 2**20:>9.0f} MiB{extra / input_bytes:>9.2f}"
        print(f"{name:<28}{seconds:>9.3f}{seconds / floor:>10.1f}{extra_text}")
    print(f"\naccumulator (batches of 8, random order) / one call: "
          f"{times['accumulator_b8'] / times['set_metrics']:.2f}")
    if "reference set_metrics" in times:
        print(f"set_metrics (+ AP, F1-max) / reference set_metrics (AUROC + AUPROs), each in "
              "its own process, taking turns: "
              f"{times['set_metrics, own process'] / times['reference set_metrics']:.2f}")
    if args.stages:
        print("\nset_metrics by stage (the fastest call, kernels timed):")
        for stage, seconds in stage_seconds(maps, masks, args.repeats).items():
            print(f"  {stage:<30}{seconds:>9.3f}{seconds / floor:>10.1f}")
    print("targets: set_metrics with AP and F1-max <= 20x the floor (and <= 1.2x the reference "
          "set_metrics); extra peak <= 1.5x the input")


if __name__ == "__main__":
    main()
