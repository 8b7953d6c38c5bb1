"""Numba kernels: the only part of pimo that knows numba.

Every kernel takes flat arrays (typed lists of 1-D per-image arrays) and returns small
per-image summaries; the functional core in :mod:`pimo.pimo` and :mod:`pimo.setmetrics` turns
them into results.
"""

from pimo._kernels._common import (
    KEY_LAYOUTS,
    bit_views,
    float_from_key,
    is_nonfinite_bits,
    key_of_bits,
    mask_counts,
)

__all__ = [
    "KEY_LAYOUTS",
    "bit_views",
    "float_from_key",
    "is_nonfinite_bits",
    "key_of_bits",
    "mask_counts",
]
