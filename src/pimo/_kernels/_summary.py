"""Numba kernels of the per-image summaries kept by :class:`pimo.AupimoAccumulator`.

Images come as one flat array of all pixels plus ``offsets`` (image i is
``flat[offsets[i]:offsets[i+1]]``). For each image the summary is its mask scores (all of them)
followed by its ``budget`` highest non-mask scores, ties completed (every non-mask score ``>=``
the ``budget``-th highest). ``sampled_summaries`` does it in one pass per image (parallel over
images) from a sampled estimate of the cut; the images whose estimate missed take two exact
passes, O(pixels) each:

1. ``tail_cut_bins``: a 65,536-bin histogram of the non-mask scores' sort keys (top 16 bits)
   finds the bin where the ``budget`` highest scores start; NaN/inf pixels are located.
2. ``collect_summaries``: the mask scores and the non-mask scores of that bin and above are
   copied out; a selection (``np.partition``) inside the candidates finds the exact cut.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from pimo._kernels._common import is_nonfinite_bits, key_of_bits

__all__ = [
    "KEEP_ALL",
    "KEEP_NONE",
    "NUM_CUT_BINS",
    "collect_summaries",
    "sampled_summaries",
    "tail_cut_bins",
]

NUM_CUT_BINS = 1 << 16
KEEP_ALL = -1  # cut bin meaning "every non-mask score"
KEEP_NONE = NUM_CUT_BINS  # cut bin meaning "no non-mask score"


@nb.njit(parallel=True, cache=True)
def tail_cut_bins(bits, masks, offsets, budgets, shift, sign_bit, all_ones,
                  exponent_mask):  # pragma: no cover - compiled
    """Locate, per image, the key bin where its ``budget`` highest non-mask scores start.

    Parameters
    ----------
    bits : uint32 or uint64 (P,)
        The flat scores' bit patterns.
    masks : uint8 (P,)
        The flat 0/1 masks.
    offsets : int64 (N+1,)
        Image i is ``[offsets[i], offsets[i+1])``.
    budgets : int64 (N,)
        How many of the highest non-mask scores to keep (0: none).
    shift : uint64
        ``key_bits - 16``: a key's bin is ``key >> shift``.

    Returns
    -------
    cut_bins : int64 (N,)
        The highest bin whose suffix count reaches the budget; ``KEEP_ALL`` when the image
        has at most ``budget`` non-mask pixels, ``KEEP_NONE`` when the budget is 0.
    num_candidates : int64 (N,)
        Non-mask pixels in bins ``>= cut_bin`` (an upper bound of what is kept).
    first_bad : int64 (N,)
        Position in its image of the first NaN/inf pixel, or -1.
    """
    num_images = offsets.shape[0] - 1
    cut_bins = np.empty(num_images, dtype=np.int64)
    num_candidates = np.zeros(num_images, dtype=np.int64)
    first_bad = np.full(num_images, -1, dtype=np.int64)
    for image in prange(num_images):
        start = offsets[image]
        stop = offsets[image + 1]
        budget = budgets[image]
        use_histogram = 0 < budget < stop - start
        histogram = np.zeros(NUM_CUT_BINS if use_histogram else 1, dtype=np.int64)
        bad = -1
        num_negative = 0
        for p in range(start, stop):
            raw = np.uint64(bits[p])
            if is_nonfinite_bits(raw, exponent_mask):
                if bad < 0:
                    bad = p - start
                continue
            if masks[p] == 0:
                num_negative += 1
                if use_histogram:
                    histogram[key_of_bits(raw, sign_bit, all_ones) >> shift] += 1
        first_bad[image] = bad
        if budget == 0:
            cut_bins[image] = KEEP_NONE
        elif num_negative <= budget:
            cut_bins[image] = KEEP_ALL
            num_candidates[image] = num_negative
        else:
            running = 0
            cut = NUM_CUT_BINS - 1
            while True:
                running += histogram[cut]
                if running >= budget:
                    break
                cut -= 1
            cut_bins[image] = cut
            num_candidates[image] = running
    return cut_bins, num_candidates, first_bad


@nb.njit(inline="always", cache=True)
def _keep_top(out, start, end, budget):  # pragma: no cover - compiled
    """Keep the ``budget`` highest values of ``out[start:end]`` (ties at the cut completed)
    at the front of that range; returns the new end."""
    kth = end - start - budget
    cut = np.partition(out[start:end], kth)[kth]
    keep = start
    for q in range(start, end):
        if out[q] >= cut:
            out[keep] = out[q]
            keep += 1
    return keep


@nb.njit(parallel=True, cache=True)
def collect_summaries(maps, bits, masks, offsets, positive_counts, cut_bins, budgets,
                      out_offsets, out, shift, sign_bit, all_ones):  # pragma: no cover
    """Write each image's mask scores, then its highest non-mask scores (ties completed).

    Image i writes into ``out[out_offsets[i]:out_offsets[i+1]]`` (room for its
    ``positive_counts[i]`` mask scores and its candidates from :func:`tail_cut_bins`): first the
    mask scores in pixel order, then the non-mask scores ``>= v``, ``v`` the ``budget``-th
    highest non-mask score, in pixel order.

    Returns
    -------
    kept : int64 (N,)
        How many values image i wrote (mask scores included), from ``out_offsets[i]`` on.
    """
    num_images = offsets.shape[0] - 1
    kept = np.empty(num_images, dtype=np.int64)
    for image in prange(num_images):
        write_positive = out_offsets[image]
        tail_start = write_positive + positive_counts[image]
        write_tail = tail_start
        cut_bin = cut_bins[image]
        for p in range(offsets[image], offsets[image + 1]):
            if masks[p]:
                out[write_positive] = maps[p]
                write_positive += 1
            elif cut_bin == KEEP_ALL or (cut_bin != KEEP_NONE and np.int64(
                    key_of_bits(np.uint64(bits[p]), sign_bit, all_ones) >> shift) >= cut_bin):
                out[write_tail] = maps[p]
                write_tail += 1
        budget = budgets[image]
        num_candidates = write_tail - tail_start
        if cut_bin != KEEP_ALL and cut_bin != KEEP_NONE and num_candidates > budget:
            write_tail = _keep_top(out, tail_start, write_tail, budget)
        kept[image] = write_tail - out_offsets[image]
    return kept


@nb.njit(parallel=True, cache=True)
def sampled_summaries(maps, masks, offsets, positive_counts, budgets, out_offsets, out,
                      sample_span, sample_run):  # pragma: no cover - compiled
    """One pass per image: mask scores, and the top ``budget`` non-mask scores via a sample.

    A sample (the first ``sample_run`` pixels of every ``sample_span``) estimates a score
    ``e`` above which about twice ``budget`` non-mask scores lie; one pass then writes the mask
    scores to ``out[out_offsets[i]:]`` and the non-mask scores ``>= e`` after them (at most
    ``capacity = out_offsets[i+1] - out_offsets[i] - positive_counts[i]`` of them); a selection
    among those finds the exact ``budget``-th highest, and every non-mask score ``>=`` it is
    kept (ties completed). ``budget >= capacity`` (or ``>=`` the non-mask pixels) keeps them all.

    Returns
    -------
    kept : int64 (N,)
        Values written for image i (mask scores included), or -1 when the estimate missed
        (fewer than ``budget`` scores above it, or more than the capacity): that image needs
        :func:`tail_cut_bins` and :func:`collect_summaries`.
    first_bad : int64 (N,)
        Position in its image of the first NaN/inf pixel, or -1.
    """
    num_images = offsets.shape[0] - 1
    kept = np.empty(num_images, dtype=np.int64)
    first_bad = np.full(num_images, -1, dtype=np.int64)
    for image in prange(num_images):
        start = offsets[image]
        stop = offsets[image + 1]
        num_positive = positive_counts[image]
        budget = budgets[image]
        num_negative = stop - start - num_positive
        capacity = out_offsets[image + 1] - out_offsets[image] - num_positive
        estimate = -np.inf
        if 0 < budget < num_negative and capacity < num_negative:
            num_sampled = 0
            for block in range(start, stop, sample_span):
                for p in range(block, min(block + sample_run, stop)):
                    num_sampled += masks[p] == 0
            sample = np.empty(num_sampled, dtype=maps.dtype)
            write = 0
            for block in range(start, stop, sample_span):
                for p in range(block, min(block + sample_run, stop)):
                    if masks[p] == 0:
                        sample[write] = maps[p]
                        write += 1
            rank = int(2.0 * budget * num_sampled / num_negative) + 8
            if rank < num_sampled:
                estimate = np.partition(sample, num_sampled - rank)[num_sampled - rank]
        write_positive = out_offsets[image]
        tail_start = write_positive + num_positive
        write_tail = tail_start
        tail_stop = tail_start + capacity
        num_candidates = 0
        bad = -1
        for p in range(start, stop):
            value = maps[p]
            if not np.isfinite(value):
                if bad < 0:
                    bad = p - start
                continue
            if masks[p]:
                out[write_positive] = value
                write_positive += 1
            elif budget > 0 and value >= estimate:
                if write_tail < tail_stop:
                    out[write_tail] = value
                    write_tail += 1
                num_candidates += 1
        first_bad[image] = bad
        if budget == 0:
            kept[image] = num_positive
        elif num_candidates > capacity or (num_candidates < budget
                                           and num_candidates < num_negative):
            kept[image] = -1
        else:
            if num_candidates > budget:
                write_tail = _keep_top(out, tail_start, write_tail, budget)
            kept[image] = write_tail - out_offsets[image]
    return kept, first_bad
