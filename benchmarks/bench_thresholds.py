"""Speed of ``pimo.threshold_at`` on an MVTec-like synthetic set (not part of the tests).

Builds float32 maps (a quarter normal) and prints the time of ``threshold_at`` (both kinds, which
also label the false-positive regions of every image at the threshold) as a ratio to two
references measured in the same run after warm-up: the floor, one numpy pass over the maps
(``maps.reshape(n, -1).max(1)``), and the obvious exact method for the shared kind, a full sort
of the normal scores with per-image counts at each distinct score.

Usage::

    python benchmarks/bench_thresholds.py [--images 80] [--size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

import pimo


def best_time(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up (JIT, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def full_sort_shared_threshold(maps: np.ndarray, normal: np.ndarray, fpr: float) -> float:
    """Lowest normal score with shared FPR <= fpr, by sorting every normal score."""
    values = maps[normal].reshape(normal.shape[0], -1)
    pixels = values.shape[1]
    ordered = np.sort(values, axis=1)
    candidates = np.unique(values)[::-1]  # descending
    counts = np.stack([pixels - np.searchsorted(row, candidates, side="left") for row in ordered])
    shared = counts.mean(axis=0) / pixels
    return float(candidates[np.flatnonzero(shared <= fpr)[-1]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=80)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    num_normal = args.images // 4
    maps, masks = pimo.make_example(num_normal, args.images - num_normal,
                                    (args.size, args.size), seed=0)
    maps = maps.astype(np.float32)
    normal = np.flatnonzero(~masks.any(axis=(1, 2)))
    floor = best_time(lambda: maps.reshape(len(maps), -1).max(1), args.repeats)
    reference = best_time(lambda: full_sort_shared_threshold(maps, normal, 1e-4), args.repeats)
    shared = best_time(lambda: pimo.threshold_at(maps, masks, fpr=1e-4), args.repeats)
    per_image = best_time(
        lambda: pimo.threshold_at(maps, masks, fpr=1e-3, kind="per-image", share=0.95),
        args.repeats,
    )
    expected = full_sort_shared_threshold(maps, normal, 1e-4)
    assert pimo.threshold_at(maps, masks, fpr=1e-4).threshold == expected
    print(f"{args.images} maps of {args.size}x{args.size} float32 ({num_normal} normal)")
    print(f"floor (one numpy pass)         {floor * 1e3:9.1f} ms")
    print(f"full-sort shared threshold     {reference * 1e3:9.1f} ms  "
          f"= {reference / floor:6.1f} x floor")
    print(f"threshold_at kind=shared       {shared * 1e3:9.1f} ms  = {shared / floor:6.1f} x floor"
          f", {reference / shared:5.1f} x faster than the full sort")
    print(f"threshold_at kind=per-image    {per_image * 1e3:9.1f} ms  "
          f"= {per_image / floor:6.1f} x floor")


if __name__ == "__main__":
    main()
