"""Peak memory of ``pimo evaluate``: it must not grow with the number of images.

Writes N anomaly maps of 512x512 (float32 .npy) with their images and masks (folder layout,
half of them anomalous) to a temporary folder, runs the evaluation (AUPIMO, AUROC, AUPRO) and
prints the peak resident memory, and its growth during the evaluation as a multiple of one map
plus one mask. Run it with two N to see that the growth does not depend on N::

    python benchmarks/bench_evaluate_memory.py --num-images 300
    python benchmarks/bench_evaluate_memory.py            # 2000 images
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 512


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def write_dataset(root: Path, num_images: int, seed: int = 0) -> None:
    """Images, masks and maps, one file each, written one at a time."""
    rng = np.random.default_rng(seed)
    blank = np.zeros((SIDE, SIDE), dtype=np.uint8)
    for folder in ("images", "masks", "maps/images"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(num_images):
        name = f"{index:05d}"
        Image.fromarray(blank).save(root / "images" / f"{name}.png")
        anomaly_map = rng.normal(size=(SIDE, SIDE)).astype(np.float32)
        if index % 2:
            mask = np.zeros((SIDE, SIDE), dtype=np.uint8)
            top, left = rng.integers(0, SIDE - 64, size=2)
            mask[top : top + 48, left : left + 48] = 255
            anomaly_map[mask > 0] += 2.0
            Image.fromarray(mask).save(root / "masks" / f"{name}.png")
        np.save(root / "maps" / "images" / f"{name}.npy", anomaly_map)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--no-set-metrics", action="store_true", help="AUPIMO only.")
    args = parser.parse_args()

    from pimo.evaluate import evaluate_dataset

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        started = time.perf_counter()
        write_dataset(root / "data", args.num_images)
        print(f"wrote {args.num_images} maps of {SIDE}x{SIDE} in "
              f"{time.perf_counter() - started:.1f} s")
        baseline = _peak_rss_bytes()
        started = time.perf_counter()
        result = evaluate_dataset(f"folder:{root / 'data'}", root / "data" / "maps",
                                  set_metrics=not args.no_set_metrics,
                                  workers=args.workers)
        elapsed = time.perf_counter() - started
        peak = _peak_rss_bytes()
    one_image = SIDE * SIDE * (4 + 1)  # one float32 map and one boolean mask
    auroc = (result.set_metrics or {}).get("auroc", float("nan"))
    print(f"evaluated {len(result.paths)} images in {elapsed:.1f} s "
          f"(AUPIMO mean {result.aupimo.mean():.4f}, AUROC {auroc:.4f})")
    print(f"peak RSS {peak / 2**20:.0f} MiB = {peak / one_image:.0f} x (one map + one mask); "
          f"growth during the evaluation {(peak - baseline) / 2**20:.0f} MiB = "
          f"{(peak - baseline) / one_image:.0f} x (one map + one mask); the whole set would be "
          f"{args.num_images * one_image / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
