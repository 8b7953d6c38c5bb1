"""Speed and memory of AupimoAccumulator (not part of the tests).

Modes (``--mode``):

* ``memory`` (default): 160 float32 maps of 1024x1024 (41 normal), fed in a random order in
  batches of 8, then ``compute()``; prints the time as a ratio to one-shot ``pimo.aupimo`` on
  the same maps (measured in the same run, after warm-up; target <= 1.5x) and the peak state
  size as a ratio to one map.
* ``disk``: writes ``--count`` maps of 1024x1024 (and masks) as ``.npy`` files into a temporary
  folder, then streams them through the accumulator from memory-mapped reads, printing the
  resident set size as it goes and its peak (target: flat, < 1 GiB).
* ``cuda``: the ``memory`` set as CUDA tensors (summaries computed on the GPU), as a ratio to
  one-shot ``pimo.aupimo`` on the CPU; skipped when ``torch.cuda.is_available()`` is false.

Usage::

    python benchmarks/bench_accumulator.py [--mode memory|disk|cuda] [--images 160]
        [--size 1024] [--batch 8] [--repeats 3] [--count 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import pimo
from bench_aupimo import best_time, current_rss_bytes, peak_rss_bytes, reset_peak_rss


def accumulate(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[pimo.AupimoResult, int]:
    """Feed the (maps, masks) batches, compute; return the result and the peak state bytes."""
    accumulator = pimo.AupimoAccumulator()
    peak = 0
    for batch_maps, batch_masks in batches:
        accumulator.update(batch_maps, batch_masks)
        peak = max(peak, accumulator.state_bytes)
    return accumulator.compute(), peak


def random_batches(num_images: int, batch: int, seed: int = 0) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(num_images)
    return [order[start : start + batch] for start in range(0, num_images, batch)]


def memory_mode(args: argparse.Namespace) -> None:
    print(f"building {args.images} maps of {args.size}x{args.size} float32 "
          f"({args.normal} normal) ...", flush=True)
    maps, masks = pimo.make_example(args.normal, args.images - args.normal,
                                    (args.size, args.size), seed=0)
    indices = random_batches(len(maps), args.batch)
    order = np.concatenate(indices)
    # the batches a loader would hand over (gathered outside the timing)
    batches = [(maps[batch], masks[batch]) for batch in indices]
    small_maps, small_masks = pimo.make_example(4, 4, (256, 256), seed=1)
    start = time.perf_counter()
    accumulate([(small_maps[b], small_masks[b]) for b in random_batches(8, 3)])
    print(f"JIT compile / cache load (first call, small input): "
          f"{time.perf_counter() - start:.2f} s")
    expected = pimo.aupimo(maps, masks)  # warm-up
    result, peak_state = accumulate(batches)
    error = np.nanmax(np.abs(result.aupimos - expected.aupimos[order]))
    one_shot = best_time(lambda: pimo.aupimo(maps, masks), args.repeats)
    streamed = best_time(lambda: accumulate(batches), args.repeats)
    print(f"one-shot pimo.aupimo: {one_shot * 1e3:.0f} ms")
    print(f"accumulator (batch {args.batch}, random order) + compute: {streamed * 1e3:.0f} ms = "
          f"{streamed / one_shot:.2f}x one-shot (target <= 1.5x)")
    print(f"peak state: {peak_state / 2**20:.1f} MiB = {peak_state / maps[0].nbytes:.2f}x one "
          f"map; max |accumulator - one-shot| = {error:.1e}")


def disk_mode(args: argparse.Namespace) -> None:
    size = (args.size, args.size)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        print(f"writing {args.count} maps of {args.size}x{args.size} float32 to {root} ...",
              flush=True)
        rng = np.random.default_rng(0)
        num_normal = max(1, args.count // 4)
        for index in range(args.count):
            scores = rng.standard_normal(size, dtype=np.float32)
            mask = np.zeros(size, dtype=bool)
            if index >= num_normal:
                row, col = rng.integers(0, args.size - 64, size=2)
                mask[row : row + 64, col : col + 64] = True
                scores[mask] += rng.uniform(0, 4)
            np.save(root / f"map_{index:05d}.npy", scores)
            np.save(root / f"mask_{index:05d}.npy", mask)
        order = np.random.default_rng(1).permutation(args.count)
        accumulator = pimo.AupimoAccumulator()
        reset_peak_rss()
        baseline = current_rss_bytes()
        start = time.perf_counter()
        for position in range(0, args.count, args.batch):
            batch = order[position : position + args.batch]
            maps = np.stack([np.load(root / f"map_{i:05d}.npy", mmap_mode="r") for i in batch])
            masks = np.stack([np.load(root / f"mask_{i:05d}.npy", mmap_mode="r")
                              for i in batch])
            accumulator.update(maps, masks)
            if position % (args.batch * 50) == 0:
                print(f"  {position + len(batch):5d} images: RSS "
                      f"{current_rss_bytes() / 2**20:.0f} MiB, state "
                      f"{accumulator.state_bytes / 2**20:.1f} MiB", flush=True)
        result = accumulator.compute()
        elapsed = time.perf_counter() - start
        print(f"{args.count} images in {elapsed:.1f} s; mean AUPIMO {result.mean():.4f}")
        print(f"peak RSS {peak_rss_bytes() / 2**20:.0f} MiB (baseline before streaming "
              f"{baseline / 2**20:.0f} MiB; target < 1024 MiB, flat); final state "
              f"{accumulator.state_bytes / 2**20:.1f} MiB")


def cuda_mode(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        print("cuda mode: torch.cuda.is_available() is False, skipped")
        return
    maps, masks = pimo.make_example(args.normal, args.images - args.normal,
                                    (args.size, args.size), seed=0)
    maps_gpu = torch.from_numpy(maps).cuda()
    masks_gpu = torch.from_numpy(masks).cuda()
    batches = [torch.from_numpy(b).cuda() for b in random_batches(len(maps), args.batch)]

    def on_gpu() -> pimo.AupimoResult:
        accumulator = pimo.AupimoAccumulator()
        for batch in batches:
            accumulator.update(maps_gpu[batch], masks_gpu[batch])
        return accumulator.compute()

    expected = pimo.aupimo(maps, masks)
    result = on_gpu()
    torch.cuda.synchronize()
    order = torch.cat(batches).cpu().numpy()
    one_shot = best_time(lambda: pimo.aupimo(maps, masks), args.repeats)
    gpu = best_time(on_gpu, args.repeats)
    print(f"one-shot pimo.aupimo (CPU, numpy): {one_shot * 1e3:.0f} ms")
    print(f"accumulator on CUDA batches + compute: {gpu * 1e3:.0f} ms = "
          f"{gpu / one_shot:.2f}x one-shot; max |difference| = "
          f"{np.nanmax(np.abs(result.aupimos - expected.aupimos[order])):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["memory", "disk", "cuda"], default="memory")
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--normal", type=int, default=41)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    {"memory": memory_mode, "disk": disk_mode, "cuda": cuda_mode}[args.mode](args)


if __name__ == "__main__":
    main()
