"""Speed and memory of exact AUPIMO on an MVTec-like synthetic set (not part of the tests).

Builds 160 maps of 1024x1024 float32 (41 normal, 119 anomalous with blob defects), then prints
each timing as a ratio to the floor: one numpy pass over the same maps
(``maps.reshape(n, -1).max(1)``), measured in the same run after warm-up. JIT compile time is
reported separately. Extra peak memory is the growth of the peak resident set size during the
call (the peak is reset just before it), as a fraction of the input size.

Usage::

    python benchmarks/bench_aupimo.py [--images 160] [--size 1024] [--repeats 5] [--grid 300000]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

import pimo


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def current_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def best_time(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--normal", type=int, default=41)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--grid", type=int, default=300_000,
                        help="thresholds of the grid-mode comparison (0 to skip)")
    args = parser.parse_args()

    print(f"building {args.images} maps of {args.size}x{args.size} float32 "
          f"({args.normal} normal) ...", flush=True)
    maps, masks = pimo.make_example(args.normal, args.images - args.normal,
                                    (args.size, args.size), seed=0)
    input_bytes = maps.nbytes + masks.nbytes
    print(f"input: {maps.nbytes / 2**20:.0f} MiB of maps + {masks.nbytes / 2**20:.0f} MiB "
          "of masks")

    start = time.perf_counter()
    small_maps, small_masks = pimo.make_example(4, 4, (256, 256), seed=1)
    pimo.aupimo(small_maps, small_masks)
    print(f"JIT compile / cache load (first call, small input): "
          f"{time.perf_counter() - start:.2f} s")

    floor = best_time(lambda: maps.reshape(len(maps), -1).max(1), args.repeats)
    print(f"floor (numpy max over the maps): {floor * 1e3:.1f} ms")

    pimo.aupimo(maps, masks)  # warm-up on the real data (page faults, thread pool)
    exact = best_time(lambda: pimo.aupimo(maps, masks), args.repeats)
    print(f"exact AUPIMO: {exact * 1e3:.1f} ms = {exact / floor:.1f}x the floor "
          "(target: within 10x)")

    baseline_rss = current_rss_bytes()
    if reset_peak_rss():
        result = pimo.aupimo(maps, masks)
        extra = max(peak_rss_bytes() - baseline_rss, 0)
        print(f"exact AUPIMO extra peak memory: {extra / 2**20:.1f} MiB = "
              f"{100 * extra / input_bytes:.1f} % of the input (target: <= 10 %)")
    else:
        result = pimo.aupimo(maps, masks)
        print("extra peak memory: not measurable here (no /proc/self/clear_refs)")
    print(f"mean AUPIMO {result.mean():.4f}, {result.num_thresholds} curve points in range")

    if args.grid:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pimo.PimoWarning)
            pimo.aupimo(small_maps, small_masks, num_thresholds=1000, fpr_bounds=(1e-3, 1e-2))
            start = time.perf_counter()
            grid = pimo.aupimo(maps, masks, num_thresholds=args.grid)
            grid_time = time.perf_counter() - start
        print(f"grid AUPIMO (K={args.grid}): {grid_time * 1e3:.1f} ms = "
              f"{grid_time / floor:.1f}x the floor; mean {grid.mean():.4f}, "
              f"max |grid - exact| = {np.nanmax(np.abs(grid.aupimos - result.aupimos)):.4f}")


if __name__ == "__main__":
    main()
