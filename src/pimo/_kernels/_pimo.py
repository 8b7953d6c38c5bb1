"""Numba kernels of the per-image metrics (PIMO / AUPIMO / AUIMO).

Exact mode, in three kinds of passes over the data (DESIGN §2):

1. ``tail_key_histogram`` (normal images): a 65,536-bin histogram of the sort keys of the
   scores, each pixel weighted by ``1 / |image|``; its suffix sums are the shared FPR at the bin
   edges, which locates the score below which nothing matters for an FPR up to ``U``.
2. ``count_at_least`` / ``collect_at_least`` (normal images): the scores above that cut.
3. ``segment_integrals`` (anomalous images): each pixel is placed on the segment of the shared
   FPR curve where it switches on; per-image counts are turned into the area under the curve.

Grid mode (compatibility) has its own two kernels, ``grid_normal_fpr_sum`` and
``grid_counts``, which reproduce the ``a >= t`` counts on K given thresholds without (N, K)
arrays.

Every kernel reads image ``j`` as ``maps[offsets[j]:offsets[j + 1]]`` of the flat arrays of all
pixels (``bits``: their unsigned view; ``masks``: uint8) and works on the images ``indices``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import prange

from pimo._kernels._common import is_nonfinite_bits, key_of_bits

__all__ = [
    "NUM_KEY_BINS",
    "collect_at_least",
    "count_at_least",
    "grid_counts",
    "grid_normal_fpr_sum",
    "normal_min_max",
    "segment_integrals",
    "tail_key_histogram",
]

NUM_KEY_BINS = 1 << 16


@nb.njit(parallel=True, cache=True)
def tail_key_histogram(bits, offsets, indices, lo_key, shift, sign_bit, all_ones, exponent_mask,
                       num_chunks):  # pragma: no cover - compiled
    """Weighted histogram of sort keys ``>= lo_key`` over the images ``indices``.

    Bin of a pixel: ``min((key - lo_key) >> shift, NUM_KEY_BINS - 1)``; keys below ``lo_key``
    are ignored. Each pixel of image j weighs ``1 / M_j``.

    Returns
    -------
    weighted : float64 (NUM_KEY_BINS,)
        Sum of ``1 / M_j`` per bin.
    counts : int64 (NUM_KEY_BINS,)
        Number of pixels per bin.
    first_bad : int64 (len(indices),)
        Position of the first NaN/inf pixel of each image, or -1.
    """
    num_images = indices.shape[0]
    weighted = np.zeros((num_chunks, NUM_KEY_BINS), dtype=np.float64)
    counts = np.zeros((num_chunks, NUM_KEY_BINS), dtype=np.int64)
    first_bad = np.full(num_images, -1, dtype=np.int64)
    top_bin = np.uint64(NUM_KEY_BINS - 1)
    for chunk in prange(num_chunks):
        local = np.zeros(NUM_KEY_BINS, dtype=np.int64)
        for position in range(chunk, num_images, num_chunks):
            index = indices[position]
            image = bits[offsets[index]:offsets[index + 1]]
            size = image.shape[0]
            bad = -1
            for p in range(size):
                raw = np.uint64(image[p])
                if is_nonfinite_bits(raw, exponent_mask):
                    if bad < 0:
                        bad = p
                    continue
                key = key_of_bits(raw, sign_bit, all_ones)
                if key >= lo_key:
                    bin_index = (key - lo_key) >> shift
                    if bin_index > top_bin:
                        bin_index = top_bin
                    local[bin_index] += 1
            first_bad[position] = bad
            weight = 1.0 / size
            for b in range(NUM_KEY_BINS):
                if local[b] != 0:
                    weighted[chunk, b] += local[b] * weight
                    counts[chunk, b] += local[b]
                    local[b] = 0
    return weighted.sum(axis=0), counts.sum(axis=0), first_bad


@nb.njit(parallel=True, cache=True)
def count_at_least(maps, offsets, indices, cut):  # pragma: no cover - compiled
    """Number of pixels with score ``>= cut`` in each image of ``indices``."""
    num_images = indices.shape[0]
    counts = np.zeros(num_images, dtype=np.int64)
    for position in prange(num_images):
        index = indices[position]
        image = maps[offsets[index]:offsets[index + 1]]
        total = 0
        for p in range(image.shape[0]):
            total += image[p] >= cut
        counts[position] = total
    return counts


@nb.njit(parallel=True, cache=True)
def collect_at_least(maps, offsets, indices, cut, out_offsets, out):  # pragma: no cover
    """Copy the scores ``>= cut`` of image ``indices[i]`` into ``out[out_offsets[i]:...[i+1]]``."""
    for position in prange(indices.shape[0]):
        index = indices[position]
        image = maps[offsets[index]:offsets[index + 1]]
        write = out_offsets[position]
        for p in range(image.shape[0]):
            value = image[p]
            if value >= cut:
                out[write] = value
                write += 1


@nb.njit(inline="always", cache=True)
def _segment_area(x_start, y_start, x_end, y_end, lower, upper):  # pragma: no cover
    """Area under the straight segment (x_start, y_start)-(x_end, y_end) within [lower, upper]."""
    if x_end <= x_start:
        return 0.0
    left = max(x_start, lower)
    right = min(x_end, upper)
    if right <= left:
        return 0.0
    slope = (y_end - y_start) / (x_end - x_start)
    y_left = y_start + slope * (left - x_start)
    y_right = y_start + slope * (right - x_start)
    return 0.5 * (right - left) * (y_left + y_right)


@nb.njit(cache=True)
def _polyline_area(log_fpr, at_numerator, after_numerator, denominator_at,
                   denominator_after, lower, upper):  # pragma: no cover - compiled
    """Area of the exact-mode polyline between ``lower`` and ``upper`` (log shared FPR).

    Vertex k of the curve sits at ``x_k = log_fpr[k]`` with value ``at[k]`` (threshold equal to
    breakpoint k); the segment k -> k+1 starts from ``after[k]`` (threshold just above
    breakpoint k+1) at ``x_k`` and ends at ``at[k+1]`` at ``x_{k+1}``: ``at[k] -> after[k]`` is
    vertical and adds no area.
    """
    area = 0.0
    for k in range(log_fpr.shape[0] - 1):
        area += _segment_area(
            log_fpr[k], after_numerator[k] / denominator_after[k],
            log_fpr[k + 1], at_numerator[k + 1] / denominator_at[k + 1],
            lower, upper,
        )
    return area


@nb.njit(parallel=True, cache=True)
def segment_integrals(maps, masks, offsets, indices, positive_counts, breakpoints, log_fpr,
                      log_lower, log_upper, with_iou, curves):  # pragma: no cover - compiled
    """Exact AUPIMO (and AUIMO) integrals of the images ``indices``.

    Parameters
    ----------
    positive_counts : int64 (len(indices),)
        ``|y_i|``, the number of mask pixels of each image.
    breakpoints : float64 (m+1,)
        Distinct normal scores bracketing the integration range, descending; ``log_fpr`` their
        log shared FPR, ascending.
    log_lower, log_upper : float
        ``log L`` and ``log U``.
    with_iou : bool
        Also integrate the IoU curve ``TP / (|y| + FP)``.
    curves : float64 (len(indices), m+1) or (0, 0)
        When not empty, receives ``T_i`` at each breakpoint.

    Returns
    -------
    tpr_areas, iou_areas : float64 (len(indices),)
        Un-normalised areas over ``[log L, log U]``.
    first_bad : int64 (len(indices),)
        Position of the first NaN/inf pixel of each image, or -1.
    """
    num_images = indices.shape[0]
    num_points = breakpoints.shape[0]
    tpr_areas = np.zeros(num_images, dtype=np.float64)
    iou_areas = np.full(num_images, np.nan, dtype=np.float64)
    first_bad = np.full(num_images, -1, dtype=np.int64)
    top = breakpoints[0]
    bottom = breakpoints[num_points - 1]
    want_curves = curves.shape[0] > 0
    for position in prange(num_images):
        index = indices[position]
        image = maps[offsets[index]:offsets[index + 1]]
        mask = masks[offsets[index]:offsets[index + 1]]
        # per-breakpoint counts: equal to breakpoint k / strictly between k and k+1
        tp_equal = np.zeros(num_points, dtype=np.int64)
        tp_between = np.zeros(num_points, dtype=np.int64)
        fp_equal = np.zeros(num_points, dtype=np.int64)
        fp_between = np.zeros(num_points, dtype=np.int64)
        tp_above = 0
        fp_above = 0
        bad = -1
        for p in range(image.shape[0]):
            score = image[p]
            positive = mask[p]
            if score > top:
                if score == np.inf:
                    if bad < 0:
                        bad = p
                    continue
                if positive:
                    tp_above += 1
                else:
                    fp_above += 1
            elif score >= bottom:
                low = 0
                high = num_points - 1
                while high - low > 1:  # invariant: breakpoints[low] >= score >= breakpoints[high]
                    middle = (low + high) >> 1
                    if breakpoints[middle] >= score:
                        low = middle
                    else:
                        high = middle
                if score == breakpoints[high]:
                    if positive:
                        tp_equal[high] += 1
                    else:
                        fp_equal[high] += 1
                elif score == breakpoints[low]:
                    if positive:
                        tp_equal[low] += 1
                    else:
                        fp_equal[low] += 1
                elif positive:
                    tp_between[low] += 1
                else:
                    fp_between[low] += 1
            elif (not (score < bottom) or score == -np.inf) and bad < 0:  # NaN or -inf
                bad = p
        first_bad[position] = bad
        num_positive = positive_counts[position]
        # cumulative counts at each vertex: "at" = threshold equal to breakpoint k,
        # "after" = threshold just above breakpoint k+1
        tp_at = np.empty(num_points, dtype=np.float64)
        tp_after = np.empty(num_points, dtype=np.float64)
        fp_at = np.empty(num_points, dtype=np.float64)
        fp_after = np.empty(num_points, dtype=np.float64)
        running_tp = tp_above
        running_fp = fp_above
        for k in range(num_points):
            running_tp += tp_equal[k]
            running_fp += fp_equal[k]
            tp_at[k] = running_tp
            fp_at[k] = running_fp
            running_tp += tp_between[k]
            running_fp += fp_between[k]
            tp_after[k] = running_tp
            fp_after[k] = running_fp
        positives = np.full(num_points, float(num_positive))
        tpr_areas[position] = _polyline_area(
            log_fpr, tp_at, tp_after, positives, positives, log_lower, log_upper
        )
        if with_iou:
            union_at = positives + fp_at
            union_after = positives + fp_after
            iou_areas[position] = _polyline_area(
                log_fpr, tp_at, tp_after, union_at, union_after, log_lower, log_upper
            )
        if want_curves:
            for k in range(num_points):
                curves[position, k] = tp_at[k] / num_positive
    return tpr_areas, iou_areas, first_bad


@nb.njit(parallel=True, cache=True)
def normal_min_max(maps, offsets, indices):  # pragma: no cover - compiled
    """Per-image min and max score, and the position of the first NaN/inf (or -1)."""
    num_images = indices.shape[0]
    minima = np.empty(num_images, dtype=np.float64)
    maxima = np.empty(num_images, dtype=np.float64)
    first_bad = np.full(num_images, -1, dtype=np.int64)
    for position in prange(num_images):
        index = indices[position]
        image = maps[offsets[index]:offsets[index + 1]]
        low = np.inf
        high = -np.inf
        bad = -1
        for p in range(image.shape[0]):
            value = image[p]
            if not math.isfinite(value):
                if bad < 0:
                    bad = p
                continue
            low = min(low, value)
            high = max(high, value)
        minima[position] = low
        maxima[position] = high
        first_bad[position] = bad
    return minima, maxima, first_bad


@nb.njit(inline="always", cache=True)
def _num_thresholds_at_most(score, thresholds, first, step):  # pragma: no cover - compiled
    """``searchsorted(thresholds, score, side="right")`` for linearly spaced thresholds.

    A first guess from the spacing, corrected against the stored (rounded) thresholds.
    """
    size = thresholds.shape[0]
    if step > 0:
        guess_float = (score - first) / step + 1.0
        if guess_float < 0.0:
            guess = 0
        elif guess_float > size:
            guess = size
        else:
            guess = int(guess_float)
    else:
        guess = 0
    while guess < size and thresholds[guess] <= score:
        guess += 1
    while guess > 0 and thresholds[guess - 1] > score:
        guess -= 1
    return guess


@nb.njit(parallel=True, cache=True)
def grid_normal_fpr_sum(maps, offsets, indices, thresholds, num_chunks):  # pragma: no cover
    """Sum over the normal images ``indices`` of the per-image FPR at each threshold.

    ``FPR_j(t_k) = |a_j >= t_k| / M_j`` (the masks of normal images are empty).
    """
    num_thresholds = thresholds.shape[0]
    num_images = indices.shape[0]
    first = thresholds[0]
    step = (thresholds[num_thresholds - 1] - first) / max(num_thresholds - 1, 1)
    sums = np.zeros((num_chunks, num_thresholds), dtype=np.float64)
    for chunk in prange(num_chunks):
        histogram = np.zeros(num_thresholds + 1, dtype=np.int64)
        for position in range(chunk, num_images, num_chunks):
            index = indices[position]
            image = maps[offsets[index]:offsets[index + 1]]
            for p in range(image.shape[0]):
                histogram[_num_thresholds_at_most(image[p], thresholds, first, step)] += 1
            # pixels counted at threshold k: those with more than k thresholds below them
            running = 0
            size = image.shape[0]
            for k in range(num_thresholds - 1, -1, -1):
                running += histogram[k + 1]
                sums[chunk, k] += running / size
            histogram[:] = 0
    return sums.sum(axis=0)


@nb.njit(parallel=True, cache=True)
def grid_counts(maps, masks, offsets, indices, thresholds, first_index,
                last_index):  # pragma: no cover - compiled
    """TP and FP counts at thresholds ``first_index..last_index`` of each image ``indices``.

    Returns int64 arrays of shape (len(indices), last_index - first_index + 1), and the
    position of the first NaN/inf pixel of each image (or -1).
    """
    num_thresholds = thresholds.shape[0]
    first = thresholds[0]
    step = (thresholds[num_thresholds - 1] - first) / max(num_thresholds - 1, 1)
    width = last_index - first_index + 1
    tp = np.zeros((indices.shape[0], width), dtype=np.int64)
    fp = np.zeros((indices.shape[0], width), dtype=np.int64)
    first_bad = np.full(indices.shape[0], -1, dtype=np.int64)
    for position in prange(indices.shape[0]):
        index = indices[position]
        image = maps[offsets[index]:offsets[index + 1]]
        mask = masks[offsets[index]:offsets[index + 1]]
        tp_histogram = np.zeros(width + 1, dtype=np.int64)
        fp_histogram = np.zeros(width + 1, dtype=np.int64)
        bad = -1
        for p in range(image.shape[0]):
            if not math.isfinite(image[p]):
                if bad < 0:
                    bad = p
                continue
            below = _num_thresholds_at_most(image[p], thresholds, first, step)
            # the pixel is counted at thresholds k < below; clamp to the window
            slot = below - first_index
            if slot <= 0:
                continue
            if slot > width:
                slot = width
            if mask[p]:
                tp_histogram[slot] += 1
            else:
                fp_histogram[slot] += 1
        running_tp = 0
        running_fp = 0
        for k in range(width - 1, -1, -1):
            running_tp += tp_histogram[k + 1]
            running_fp += fp_histogram[k + 1]
            tp[position, k] = running_tp
            fp[position, k] = running_fp
        first_bad[position] = bad
    return tp, fp, first_bad
