"""Numba kernels: the only part of pimo that knows numba.

Every kernel takes the pixels of all images as one flat 1-D array (maps, their unsigned bit
view, or uint8 masks) plus an int64 ``offsets`` array of length N + 1, image i being
``flat[offsets[i]:offsets[i + 1]]``, and returns small per-image summaries; the functional
core in :mod:`pimo.pimo` and :mod:`pimo.setmetrics` turns them into results.
"""

from pimo._kernels._common import (
    KEY_LAYOUTS,
    bit_view,
    float_from_key,
    is_nonfinite_bits,
    key_of_bits,
    mask_counts,
)
from pimo._kernels._roc import (
    BUCKET_BITS,
    NUM_BUCKETS,
    add_to_dense,
    bucket_counts,
    copy_segments,
    count_runs,
    image_runs,
    label_mask,
    region_runs,
    resolve_buckets,
    scatter_window,
)

__all__ = [
    "BUCKET_BITS",
    "KEY_LAYOUTS",
    "NUM_BUCKETS",
    "add_to_dense",
    "bit_view",
    "bucket_counts",
    "copy_segments",
    "count_runs",
    "float_from_key",
    "image_runs",
    "is_nonfinite_bits",
    "key_of_bits",
    "label_mask",
    "mask_counts",
    "region_runs",
    "resolve_buckets",
    "scatter_window",
]
