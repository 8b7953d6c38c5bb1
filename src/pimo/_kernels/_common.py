"""Shared numba building blocks: order-preserving integer keys of floats, mask counting.

Images reach the kernels as one flat 1-D array of all pixels plus an int64 ``offsets`` array of
length N + 1: image i is ``flat[offsets[i]:offsets[i + 1]]`` (a contiguous slice, no copy).

A float's *sort key* is an unsigned integer whose order is the float order: for a
non-negative float the bits with the sign bit set, for a negative float all bits flipped
(``-0.0`` is first mapped to ``+0.0`` so that equal values share a key). The high bits of the
key index a histogram whose bins are contiguous, ordered ranges of values: the building block
of the radix selections that find, in one pass, where a rate crosses a level.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

__all__ = [
    "KEY_LAYOUTS",
    "bit_view",
    "float_from_key",
    "is_nonfinite_bits",
    "key_of_bits",
    "mask_counts",
]

# dtype -> (unsigned view dtype, key bits, sign bit, exponent mask, all ones)
KEY_LAYOUTS = {
    np.dtype(np.float32): (np.uint32, 32, np.uint64(1 << 31), np.uint64(0x7F800000),
                           np.uint64(0xFFFFFFFF)),
    np.dtype(np.float64): (np.uint64, 64, np.uint64(1 << 63), np.uint64(0x7FF0000000000000),
                           np.uint64(0xFFFFFFFFFFFFFFFF)),
}


def bit_view(maps_flat: np.ndarray) -> np.ndarray:
    """Zero-copy unsigned-integer view (uint32 or uint64) of a flat float32/float64 array."""
    return maps_flat.view(KEY_LAYOUTS[np.dtype(maps_flat.dtype)][0])


def float_from_key(key: int, dtype: np.dtype) -> float:
    """The float (as Python float) whose sort key is ``key``."""
    view_dtype, _, sign_bit, _, all_ones = KEY_LAYOUTS[np.dtype(dtype)]
    key = int(key)
    bits = key ^ int(sign_bit) if key & int(sign_bit) else key ^ int(all_ones)
    return float(np.array([bits], dtype=view_dtype).view(dtype)[0])


@nb.njit(inline="always", cache=True)
def key_of_bits(bits: np.uint64, sign_bit: np.uint64, all_ones: np.uint64) -> np.uint64:
    """Order-preserving key of a float given its bits (as uint64)."""
    if bits == sign_bit:  # -0.0 -> +0.0
        bits = np.uint64(0)
    if bits & sign_bit:
        return bits ^ all_ones
    return bits | sign_bit


@nb.njit(inline="always", cache=True)
def is_nonfinite_bits(bits: np.uint64, exponent_mask: np.uint64) -> bool:
    """True for NaN and +-inf (exponent bits all set)."""
    return (bits & exponent_mask) == exponent_mask


@nb.njit(parallel=True, cache=True)
def mask_counts(masks_flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Number of ones in each image's uint8 mask ``masks_flat[offsets[i]:offsets[i + 1]]``.

    The masks are already checked to be 0/1.
    """
    counts = np.zeros(offsets.shape[0] - 1, dtype=np.int64)
    for index in prange(counts.shape[0]):
        mask = masks_flat[offsets[index]:offsets[index + 1]]
        total = 0
        for p in range(mask.shape[0]):
            total += mask[p]
        counts[index] = total
    return counts
