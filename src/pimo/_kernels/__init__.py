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
    sum_rows,
)
from pimo._kernels._roc import (
    BUCKET_BITS,
    NUM_BUCKETS,
    RANK_LOW_BITS,
    RANK_ROW_WORDS,
    add_to_dense,
    anomalous_slot_sums,
    bucket_counts,
    copy_segments,
    count_runs,
    expand_keys,
    fill_rank_rows,
    image_runs,
    label_mask,
    low_key_slot_counts,
    rank_bucket_starts,
    region_runs,
    scatter_low_keys,
    slots_of_keys,
    walk_gaps,
)

__all__ = [
    "BUCKET_BITS",
    "KEY_LAYOUTS",
    "NUM_BUCKETS",
    "RANK_LOW_BITS",
    "RANK_ROW_WORDS",
    "add_to_dense",
    "anomalous_slot_sums",
    "bit_view",
    "bucket_counts",
    "copy_segments",
    "count_runs",
    "expand_keys",
    "fill_rank_rows",
    "float_from_key",
    "image_runs",
    "is_nonfinite_bits",
    "key_of_bits",
    "label_mask",
    "low_key_slot_counts",
    "mask_counts",
    "rank_bucket_starts",
    "region_runs",
    "scatter_low_keys",
    "slots_of_keys",
    "sum_rows",
    "walk_gaps",
]
