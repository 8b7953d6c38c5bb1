"""Benchmark of the region analyses against scipy.ndimage on the same data.

Prints, for each analysis, its time as a ratio to a reference written with
``scipy.ndimage.label`` measured in the same run (best of ``--repeats``; JIT compilation
excluded by a warm-up call):

- ``region_sizes`` vs ``ndimage.label`` + ``np.bincount`` on every mask;
- ``fp_regions_vs_fpr`` vs the same thresholds with ``ndimage.label`` counting the regions.

Usage::

    python benchmarks/bench_analysis.py                 # 40 x 1024^2 float32 (20 normal)
    python benchmarks/bench_analysis.py --size 256      # a quick run
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from pimo._synthetic import make_example
from pimo.analysis import fp_regions_vs_fpr, region_sizes


def best_of(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def scipy_region_sizes(masks: np.ndarray) -> list[np.ndarray]:
    structure = np.ones((3, 3), dtype=bool)
    sizes = []
    for mask in masks:
        labels, count = ndimage.label(mask, structure)
        sizes.append(np.bincount(labels.ravel(), minlength=count + 1)[1:])
    return sizes


def scipy_fp_counts(maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray) -> list[int]:
    structure = np.ones((3, 3), dtype=bool)
    normal = [k for k in range(len(masks)) if not masks[k].any()]
    per_image = thresholds.reshape(len(normal), -1)
    return [ndimage.label(maps[k] >= t, structure)[1]
            for k, row in zip(normal, per_image, strict=True) for t in row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    half = args.images // 2
    maps, masks = make_example(half, args.images - half, (args.size, args.size), seed=0)
    region_sizes(masks[:2])  # JIT warm-up
    fp_kwargs = {"fpr_range": (1e-5, 1e-3), "num_levels": 11, "seed": 0}
    result = fp_regions_vs_fpr(maps, masks, **fp_kwargs)
    assert scipy_fp_counts(maps, masks, result.threshold) == result.num_regions.tolist()
    ours = best_of(lambda: region_sizes(masks), args.repeats)
    reference = best_of(lambda: scipy_region_sizes(masks), args.repeats)
    print(f"region_sizes      {ours:8.3f} s   scipy reference {reference:8.3f} s   "
          f"ratio {ours / reference:5.2f}")
    ours = best_of(lambda: fp_regions_vs_fpr(maps, masks, **fp_kwargs), args.repeats)
    reference = best_of(lambda: scipy_fp_counts(maps, masks, result.threshold), args.repeats)
    print(f"fp_regions_vs_fpr {ours:8.3f} s   scipy reference {reference:8.3f} s   "
          f"ratio {ours / reference:5.2f}  ({result.num_points} thresholds, reference given "
          "the thresholds)")


if __name__ == "__main__":
    main()
