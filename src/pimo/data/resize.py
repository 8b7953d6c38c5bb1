"""Resizing anomaly maps and masks without torch.

:func:`resize_bilinear` reproduces ``torch.nn.functional.interpolate(x, size=(H, W),
mode="bilinear", align_corners=False)`` (no antialiasing), the resizing the paper prescribes to
bring anomaly maps to the masks' full resolution. For each output row ``i`` (and likewise each
column) torch computes, in the map's own floating dtype::

    scale = in_size / out_size
    src = max(scale * (i + 0.5) - 0.5, 0)
    i0 = min(floor(src), in_size - 1);  i1 = i0 + (i0 < in_size - 1)
    w1 = clip(src - i0, 0, 1);          w0 = 1 - w1

and blends the neighbours along each axis as ``w0*a0 + w1*a1``, columns first, then rows. The
implementation here is separable with precomputed indices and weights. torch's CPU kernels
evaluate ``scale * (i + 0.5) - 0.5`` and ``w0*a0 + (w1*a1)`` as fused multiply-adds (one
rounding); for float32 maps these are reproduced exactly by computing the product in float64
and rounding once, so that float32 results are equal to torch's bit for bit on the sizes
tested, and within one rounding step otherwise (well under 1e-6 for maps of order 1). float64
maps use plain float64 arithmetic (differences of order 1e-15).

:func:`resize_nearest` reproduces torch's ``mode="nearest"`` (``src = floor(i * in / out)``) and
is used for masks only when a fixed evaluation resolution is requested.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["resize_bilinear", "resize_nearest"]


@lru_cache(maxsize=64)
def _linear_table(
    in_size: int, out_size: int, dtype_str: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``(i0, i1)`` and weights ``(w0, w1)`` along one axis (read-only arrays)."""
    dtype = np.dtype(dtype_str)
    one, half = dtype.type(1), dtype.type(0.5)
    scale = dtype.type(in_size) / dtype.type(out_size)
    dst = np.arange(out_size).astype(dtype) + half
    if dtype == np.float32:  # fused multiply-add: exact product in float64, one rounding
        src = (np.float64(scale) * dst.astype(np.float64) - 0.5).astype(np.float32)
    else:
        src = scale * dst - half
    src = np.maximum(src, dtype.type(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    w1 = np.clip(src - i0.astype(dtype), dtype.type(0), one).astype(dtype)
    w0 = (one - w1).astype(dtype)
    i1 = i0 + (i0 < in_size - 1)
    for array in (i0, i1, w0, w1):
        array.setflags(write=False)
    return i0, i1, w0, w1


def _blend(first: np.ndarray, second: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """``w0 * first + w1 * second`` as torch computes it (a fused multiply-add for float32)."""
    if first.dtype == np.float32:
        out = w0.astype(np.float64) * first
        out += w1 * second
        return out.astype(np.float32)
    out = w0 * first
    out += w1 * second
    return out


def _as_float_map(anomaly_map: np.ndarray) -> np.ndarray:
    array = np.asarray(anomaly_map)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {array.shape}")
    if array.dtype == np.float64 or array.dtype == np.float32:
        return array
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        return array.astype(np.float32)
    return array.astype(np.float64)


def resize_bilinear(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map as torch's ``interpolate(mode="bilinear", align_corners=False)``.

    Parameters
    ----------
    anomaly_map : ndarray, shape (h, w)
        The map. float32 and float64 maps keep their dtype (the arithmetic is done in it, as
        torch does); float16 maps are computed in float32 and integer maps in float64.
    size : tuple of int
        ``(H, W)``, the output size.

    Returns
    -------
    ndarray, shape (H, W)
        A new array (the input itself when the size is unchanged).
    """
    array = _as_float_map(anomaly_map)
    out_h, out_w = (int(side) for side in size)
    in_h, in_w = array.shape
    if (in_h, in_w) == (out_h, out_w):
        return array
    if min(out_h, out_w, in_h, in_w) < 1:
        raise ValueError(f"cannot resize a map of shape {array.shape} to {(out_h, out_w)}")
    dtype = array.dtype.str
    if in_w == out_w:
        rows = array
    else:
        c0, c1, cw0, cw1 = _linear_table(in_w, out_w, dtype)
        rows = _blend(array[:, c0], array[:, c1], cw0, cw1)
    if in_h == out_h:
        return np.ascontiguousarray(rows)
    r0, r1, rw0, rw1 = _linear_table(in_h, out_h, dtype)
    return _blend(rows[r0], rows[r1], rw0[:, None], rw1[:, None])


def resize_nearest(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D array as torch's ``interpolate(mode="nearest")`` (any dtype, e.g. masks)."""
    array = np.asarray(image)
    out_h, out_w = (int(side) for side in size)
    in_h, in_w = array.shape
    if (in_h, in_w) == (out_h, out_w):
        return array
    rows = _nearest_indices(in_h, out_h)
    cols = _nearest_indices(in_w, out_w)
    return array[rows[:, None], cols[None, :]]


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)
