"""Synthetic anomaly maps and masks, for examples, tests and benchmarks.

:func:`make_example` imitates an MVTec-AD-like test set: smooth, noisy score maps on every
image, and on anomalous images one to three blob-shaped defects whose scores are raised by a
random strength (some defects are easy, some are nearly invisible to the "model").
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_example"]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], dtype: np.dtype
                  ) -> np.ndarray:
    """Low-frequency noise (block-upsampled) plus fine pixel noise, as float ``dtype``."""
    height, width = shape
    block = max(1, min(height, width) // 32)
    coarse = rng.standard_normal((-(-height // block), -(-width // block))).astype(dtype)
    smooth = np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:height, :width]
    fine = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    return (0.6 * smooth + 0.4 * fine).astype(dtype, copy=False)


def _blobs(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A boolean mask of 1-3 random ellipses and a profile in [0, 1] peaking at their centres."""
    height, width = shape
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    mask = np.zeros(shape, dtype=bool)
    profile = np.zeros(shape, dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        radius_row = float(rng.uniform(0.02, 0.12)) * height + 1.0
        radius_col = float(rng.uniform(0.02, 0.12)) * width + 1.0
        centre_row = float(rng.uniform(0.1, 0.9)) * height
        centre_col = float(rng.uniform(0.1, 0.9)) * width
        distance = ((rows - centre_row) / radius_row) ** 2 + ((cols - centre_col) / radius_col) ** 2
        inside = distance <= 1.0
        mask |= inside
        np.maximum(profile, np.where(inside, 1.0 - distance, 0.0), out=profile)
    return mask, profile


def make_example(
    num_normal: int = 20,
    num_anomalous: int = 20,
    shape: tuple[int, int] = (256, 256),
    *,
    seed: int = 0,
    dtype: np.dtype | type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a deterministic synthetic evaluation set.

    Parameters
    ----------
    num_normal, num_anomalous : int
        Number of normal images (all-zero masks) and anomalous images (blob defects).
    shape : (int, int)
        Height and width of every image.
    seed : int
        Seed of the random generator; the same arguments always give the same arrays.
    dtype : numpy dtype
        Floating dtype of the maps.

    Returns
    -------
    anomaly_maps : ndarray, shape (num_normal + num_anomalous, H, W)
        Normal images first, then anomalous ones.
    masks : ndarray of bool, same shape
    """
    if num_normal < 0 or num_anomalous < 0 or num_normal + num_anomalous == 0:
        raise ValueError("make_example needs at least one image and non-negative counts.")
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    total = num_normal + num_anomalous
    maps = np.empty((total, *shape), dtype=dtype)
    masks = np.zeros((total, *shape), dtype=bool)
    for index in range(total):
        maps[index] = _smooth_noise(rng, shape, dtype)
        if index >= num_normal:
            mask, profile = _blobs(rng, shape)
            strength = float(rng.uniform(0.5, 6.0))
            maps[index] += (strength * (0.5 + 0.5 * profile) * mask).astype(dtype)
            masks[index] = mask
    return maps, masks
