"""A sweep on a two-worker Dask LocalCluster against the same evaluations in one process.

Writes the demo dataset (2 categories) and two detectors' maps to a temporary folder, then
times ``pimo.evaluate_dataset`` on each model x category in this process, and
``pimo.distributed.sweep`` of the same on a ``LocalCluster(n_workers=2, threads_per_worker=1)``
(started beforehand: its start-up is printed apart). Prints the ratio, and checks that both
give the same numbers::

    python benchmarks/bench_distributed.py
    python benchmarks/bench_distributed.py --size 512 --images 40
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

CATEGORIES = ("fabric", "tiles")
DETECTORS = ("local_contrast", "patch_gaussian")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--images", type=int, default=30,
                        help="normal and anomalous test images per category (each)")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from pimo.data.demo import make_demo_dataset, write_detector_maps
    from pimo.distributed import sweep
    from pimo.evaluate import evaluate_dataset

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        started = time.perf_counter()
        dataset = make_demo_dataset(root / "data", size=args.size, num_normal=args.images,
                                    num_anomalous=args.images, num_train=4,
                                    categories=CATEGORIES)
        maps = {name: write_detector_maps(dataset, root / name, name) for name in DETECTORS}
        print(f"data: {len(CATEGORIES)} categories x {2 * args.images} images of "
              f"{args.size}x{args.size}, {len(DETECTORS)} models "
              f"(written in {time.perf_counter() - started:.1f} s)")

        def one_process() -> dict:
            return {
                (model, category): evaluate_dataset(f"mvtec:{dataset}", location,
                                                    category=category)
                for model, location in maps.items() for category in CATEGORIES
            }

        one_process()  # warm-up: JIT compilation and file cache
        started = time.perf_counter()
        single = one_process()
        single_s = time.perf_counter() - started

        started = time.perf_counter()
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            startup_s = time.perf_counter() - started
            sweep(f"mvtec:{dataset}", maps, categories=CATEGORIES, scheduler=client)  # warm-up
            started = time.perf_counter()
            swept = sweep(f"mvtec:{dataset}", maps, categories=CATEGORIES, scheduler=client)
            dask_s = time.perf_counter() - started

    worst = 0.0
    for (model, category), expected in single.items():
        got = swept[model][category]
        assert got.paths == expected.paths
        for a, b in zip(got.aupimo.aupimos, expected.aupimo.aupimos, strict=True):
            assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12, (a, b)
            worst = max(worst, 0.0 if math.isnan(a) else abs(a - b))
        for name, value in (expected.set_metrics or {}).items():
            worst = max(worst, abs(got.set_metrics[name] - value))
    print(f"one process:      {single_s:7.2f} s")
    print(f"dask, {args.workers} workers:  {dask_s:7.2f} s   (cluster start-up "
          f"{startup_s:.1f} s, not counted)")
    print(f"ratio dask / one process: {dask_s / single_s:.2f}x   "
          f"(largest difference in any score: {worst:.1e})")


if __name__ == "__main__":
    main()
