"""Numba kernels of the set-scoped metrics (AUROC, AUPRO) and of region labelling.

Both metrics only depend on how the anomalous (mask-1) pixels are ordered relative to the
normal (mask-0) pixels. The kernels find that order exactly without sorting every pixel:

1. ``image_runs``: the connected regions of each mask, as runs of mask pixels along the last
   axis, each run carrying the weight ``1 / |region|`` of its pixels (the PRO weighting).
2. ``bucket_counts``: one pass over the pixels; the top 16 bits of every score's sort key
   (``NUM_BUCKETS`` buckets of consecutive float values) get a count of normal pixels, a count
   of anomalous pixels and a sum of anomalous weights. Pixels in different buckets are ordered
   by these histograms alone; NaN and infinities are detected here.
3. ``scatter_window``: the pixels of the buckets of a window (every bucket, for the
   accumulator) are copied, as the low bits of their keys, into a buffer grouped by bucket
   (a counting sort). ``copy_segments`` regroups such buffers; ``add_to_dense`` turns a long
   list of low keys into the bucket's 65,536-bin histogram.
4. ``resolve_buckets``: each bucket is walked from its highest score to its lowest, in cache (a
   65,536-bin histogram of both classes over the low 16 bits for float32 maps; for float64
   maps a radix sort of the 48 low bits, or a comparison sort for small buckets), adding its
   exact contribution to the AUROC sum, to the area under the PRO curve up to each FPR limit,
   to the average precision and to the F1 maximum, and, on demand, the vertices of the curves.
   Buckets that hold normal pixels only are applied as a single step, from the histograms.

Memory: the histograms (65,536 x 24 bytes per chunk), the low keys (2 bytes per normal and 10
per anomalous pixel for float32 maps, 8 and 16 for float64; see
:class:`pimo.setmetrics.SetMetricsAccumulator`), and per thread one 1 MiB walking histogram.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from pimo._kernels._common import is_nonfinite_bits, key_of_bits

__all__ = [
    "BUCKET_BITS",
    "NUM_BUCKETS",
    "add_to_dense",
    "bucket_counts",
    "copy_segments",
    "count_runs",
    "image_runs",
    "label_mask",
    "region_runs",
    "resolve_buckets",
    "scatter_window",
]

BUCKET_BITS = 16
NUM_BUCKETS = 1 << BUCKET_BITS
HISTOGRAM_LOW_BITS = 16  # float32 keys: 16 low bits left, resolved by a dense histogram
BLOCK_BITS = 6  # the histogram's occupied 64-bin blocks are counted, empty ones skipped
RADIX_MIN_SIZE = 1 << 15  # smaller buckets of float64 scores are sorted by comparison
_PACK_BITS = 32
_PACK = 1 << _PACK_BITS  # anomalous counts are packed above the normal counts


# --------------------------------------------------------------------------------------------
# Connected regions
# --------------------------------------------------------------------------------------------
@nb.njit(cache=True)
def _find_root(parent: np.ndarray, index: int) -> int:  # pragma: no cover - compiled
    while parent[index] != index:
        parent[index] = parent[parent[index]]
        index = parent[index]
    return index


@nb.njit(inline="always", cache=True)
def _next_one(mask, words, p, end):  # pragma: no cover - compiled
    """First index in ``p:end`` where the mask is 1 (``end`` if none), 8 zeros at a time."""
    while p < end:
        if (p & 7) == 0 and p + 8 <= end and words[p >> 3] == 0:
            p += 8
        elif mask[p]:
            return p
        else:
            p += 1
    return end


@nb.njit(cache=True)
def count_runs(mask: np.ndarray, width: int) -> int:  # pragma: no cover - compiled
    """Number of runs of ones along rows of length ``width`` in a flat 0/1 mask."""
    size = mask.shape[0]
    words = mask[: (size >> 3) << 3].view(np.uint64)
    total = 0
    p = 0
    while True:
        p = _next_one(mask, words, p, size)
        if p >= size:
            return total
        total += 1
        row_end = (p // width + 1) * width
        while p < row_end and mask[p]:
            p += 1


@nb.njit(cache=True)
def region_runs(mask, depth, height, width, rank):  # pragma: no cover - compiled
    """Connected regions of a flat 0/1 mask of shape ``(depth, height, width)``, as runs.

    Two pixels are neighbours when their coordinates differ by at most one in each axis and in
    at most ``rank`` axes: rank 1 = 4-connectivity (2-D) / 6 (3-D), rank 2 = 8 / 18,
    rank 3 = 26. Runs of ones along the last axis are merged with union-find.

    Returns
    -------
    starts : int64 (R,)
        Flat index of the first pixel of each run, in raster order.
    lengths : int64 (R,)
        Pixels in each run.
    run_region : int64 (R,)
        Region of each run, numbered 0, 1, ... in raster order of the regions' first pixels.
    region_sizes : int64 (num_regions,)
        Pixels in each region.
    """
    num_rows = depth * height
    size = mask.shape[0]
    words = mask[: (size >> 3) << 3].view(np.uint64)
    num_runs = count_runs(mask, width)
    run_begin = np.empty(num_runs, dtype=np.int64)  # column of the first pixel
    run_end = np.empty(num_runs, dtype=np.int64)  # column after the last pixel
    row_first = np.zeros(num_rows + 1, dtype=np.int64)
    p = 0
    for run in range(num_runs):
        p = _next_one(mask, words, p, size)
        row = p // width
        row_end = (row + 1) * width
        begin = p
        while p < row_end and mask[p]:
            p += 1
        run_begin[run] = begin - row * width
        run_end[run] = p - row * width
        row_first[row + 1] += 1
    for row in range(num_rows):
        row_first[row + 1] += row_first[row]

    parent = np.arange(num_runs)
    for z in range(depth):
        for y in range(height):
            row = z * height + y
            first = row_first[row]
            last = row_first[row + 1]
            if first == last:
                continue
            for case in range(4):  # earlier rows that can touch this one
                if case == 0:
                    dz, dy = 0, -1
                elif case == 1:
                    dz, dy = -1, -1
                elif case == 2:
                    dz, dy = -1, 0
                else:
                    dz, dy = -1, 1
                moved = (1 if dz != 0 else 0) + (1 if dy != 0 else 0)
                if moved > rank:
                    continue
                other_z = z + dz
                other_y = y + dy
                if other_z < 0 or other_y < 0 or other_y >= height:
                    continue
                slack = 1 if moved + 1 <= rank else 0  # diagonal contact allowed
                other_row = other_z * height + other_y
                i = first
                j = row_first[other_row]
                j_end = row_first[other_row + 1]
                while i < last and j < j_end:
                    if run_end[j] + slack <= run_begin[i]:
                        j += 1
                    elif run_end[i] + slack <= run_begin[j]:
                        i += 1
                    else:
                        root_i = _find_root(parent, i)
                        root_j = _find_root(parent, j)
                        if root_i < root_j:
                            parent[root_j] = root_i
                        elif root_j < root_i:
                            parent[root_i] = root_j
                        if run_end[i] <= run_end[j]:
                            i += 1
                        else:
                            j += 1

    label_of_root = np.full(num_runs, -1, dtype=np.int64)
    run_region = np.empty(num_runs, dtype=np.int64)
    num_regions = 0
    for run in range(num_runs):
        root = _find_root(parent, run)
        if label_of_root[root] < 0:
            label_of_root[root] = num_regions
            num_regions += 1
        run_region[run] = label_of_root[root]
    region_sizes = np.zeros(num_regions, dtype=np.int64)
    starts = np.empty(num_runs, dtype=np.int64)
    lengths = np.empty(num_runs, dtype=np.int64)
    for row in range(num_rows):
        for run in range(row_first[row], row_first[row + 1]):
            starts[run] = row * width + run_begin[run]
            lengths[run] = run_end[run] - run_begin[run]
            region_sizes[run_region[run]] += lengths[run]
    return starts, lengths, run_region, region_sizes


@nb.njit(cache=True)
def label_mask(mask, depth, height, width, rank):  # pragma: no cover - compiled
    """Integer labels (int32, 0 = background, regions 1..R in raster order) and R."""
    starts, lengths, run_region, region_sizes = region_runs(mask, depth, height, width, rank)
    labels = np.zeros(mask.shape[0], dtype=np.int32)
    for run in range(starts.shape[0]):
        label = np.int32(run_region[run] + 1)
        for p in range(starts[run], starts[run] + lengths[run]):
            labels[p] = label
    return labels, region_sizes.shape[0]


@nb.njit(parallel=True, cache=True)
def image_runs(masks, offsets, anomalous, dims, ranks):  # pragma: no cover - compiled
    """Runs of mask pixels of the images ``anomalous`` (indices), with their PRO weights.

    The mask of image i is ``masks[offsets[i]:offsets[i + 1]]``, of shape ``dims[i]``.

    Returns
    -------
    run_offsets : int64 (N + 1,)
        Runs of image i are ``run_offsets[i]:run_offsets[i + 1]`` (none for normal images).
    run_starts, run_lengths : int64
        Flat index of the first pixel and length of each run.
    run_weights : float64
        ``1 / |region|`` of the region each run belongs to.
    num_regions : int64 (N,)
        Regions per image.
    """
    num_images = offsets.shape[0] - 1
    counts = np.zeros(num_images, dtype=np.int64)
    for position in prange(anomalous.shape[0]):
        index = anomalous[position]
        counts[index] = count_runs(masks[offsets[index]:offsets[index + 1]], dims[index, 2])
    run_offsets = np.zeros(num_images + 1, dtype=np.int64)
    for index in range(num_images):
        run_offsets[index + 1] = run_offsets[index] + counts[index]
    total = run_offsets[num_images]
    run_starts = np.empty(total, dtype=np.int64)
    run_lengths = np.empty(total, dtype=np.int64)
    run_weights = np.empty(total, dtype=np.float64)
    num_regions = np.zeros(num_images, dtype=np.int64)
    for position in prange(anomalous.shape[0]):
        index = anomalous[position]
        starts, lengths, run_region, sizes = region_runs(
            masks[offsets[index]:offsets[index + 1]], dims[index, 0], dims[index, 1],
            dims[index, 2], ranks[index],
        )
        offset = run_offsets[index]
        for run in range(starts.shape[0]):
            run_starts[offset + run] = starts[run]
            run_lengths[offset + run] = lengths[run]
            run_weights[offset + run] = 1.0 / sizes[run_region[run]]
        num_regions[index] = sizes.shape[0]
    return run_offsets, run_starts, run_lengths, run_weights, num_regions


# --------------------------------------------------------------------------------------------
# Passes over the pixels
# --------------------------------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def _first_run(run_starts, run_lengths, first, last, begin):  # pragma: no cover - compiled
    """Index of the first run in ``first:last`` that ends after pixel ``begin``."""
    low = first
    high = last
    while low < high:
        middle = (low + high) >> 1
        if run_starts[middle] + run_lengths[middle] <= begin:
            low = middle + 1
        else:
            high = middle
    return low


@nb.njit(parallel=True, cache=True)
def bucket_counts(bits, offsets, item_image, item_begin, item_end, run_offsets, run_starts,
                  run_lengths, run_weights, shift, sign_bit, all_ones, exponent_mask, neg_counts,
                  pos_counts, pos_weights, item_first_bad):  # pragma: no cover - compiled
    """Per-bucket class histograms of the pixels of the work items, added to the outputs.

    Work item k is pixels ``item_begin[k]:item_end[k]`` of image ``item_image[k]`` (whose
    sort-key bits are ``bits[offsets[i]:offsets[i + 1]]``); chunk c
    (row c of the outputs) takes the items ``c, c + C, c + 2C, ...``. Bucket of a pixel:
    ``key >> shift``. ``item_first_bad[k]`` receives the first NaN/inf pixel of item k (or
    stays -1); such pixels are not counted.
    """
    num_chunks = neg_counts.shape[0]
    num_items = item_image.shape[0]
    for chunk in prange(num_chunks):
        negatives = neg_counts[chunk]
        positives = pos_counts[chunk]
        weights = pos_weights[chunk]
        for item in range(chunk, num_items, num_chunks):
            index = item_image[item]
            image = bits[offsets[index]:offsets[index + 1]]
            begin = item_begin[item]
            end = item_end[item]
            last_run = run_offsets[index + 1]
            run = _first_run(run_starts, run_lengths, run_offsets[index], last_run, begin)
            bad = -1
            p = begin
            while p < end:
                if run < last_run:
                    span_begin = min(max(run_starts[run], p), end)
                    span_end = max(min(run_starts[run] + run_lengths[run], end), span_begin)
                    weight = run_weights[run]
                else:
                    span_begin = end
                    span_end = end
                    weight = 0.0
                for q in range(p, span_begin):
                    raw = np.uint64(image[q])
                    if is_nonfinite_bits(raw, exponent_mask):
                        if bad < 0:
                            bad = q
                        continue
                    negatives[key_of_bits(raw, sign_bit, all_ones) >> shift] += 1
                for q in range(span_begin, span_end):
                    raw = np.uint64(image[q])
                    if is_nonfinite_bits(raw, exponent_mask):
                        if bad < 0:
                            bad = q
                        continue
                    bucket = key_of_bits(raw, sign_bit, all_ones) >> shift
                    positives[bucket] += 1
                    weights[bucket] += weight
                p = span_end
                run += 1
            item_first_bad[item] = bad


@nb.njit(parallel=True, cache=True)
def scatter_window(bits, offsets, item_image, item_begin, item_end, run_offsets, run_starts,
                   run_lengths, run_weights, shift, sign_bit, all_ones, in_window, neg_cursor,
                   pos_cursor, neg_low, pos_low, pos_weight):  # pragma: no cover - compiled
    """Copy the low key bits of the pixels whose bucket is in the window into the buffers.

    Same work items and chunks as :func:`bucket_counts`; ``neg_cursor[c, b]`` and
    ``pos_cursor[c, b]`` are where chunk c writes its next pixel of bucket b (advanced here).
    Anomalous pixels also get their PRO weight.
    """
    num_chunks = neg_cursor.shape[0]
    num_items = item_image.shape[0]
    low_mask = (np.uint64(1) << np.uint64(shift)) - np.uint64(1)
    for chunk in prange(num_chunks):
        negative_heads = neg_cursor[chunk]
        positive_heads = pos_cursor[chunk]
        for item in range(chunk, num_items, num_chunks):
            index = item_image[item]
            image = bits[offsets[index]:offsets[index + 1]]
            begin = item_begin[item]
            end = item_end[item]
            last_run = run_offsets[index + 1]
            run = _first_run(run_starts, run_lengths, run_offsets[index], last_run, begin)
            p = begin
            while p < end:
                if run < last_run:
                    span_begin = min(max(run_starts[run], p), end)
                    span_end = max(min(run_starts[run] + run_lengths[run], end), span_begin)
                    weight = run_weights[run]
                else:
                    span_begin = end
                    span_end = end
                    weight = 0.0
                for q in range(p, span_begin):
                    key = key_of_bits(np.uint64(image[q]), sign_bit, all_ones)
                    bucket = key >> shift
                    if in_window[bucket]:
                        head = negative_heads[bucket]
                        neg_low[head] = key & low_mask
                        negative_heads[bucket] = head + 1
                for q in range(span_begin, span_end):
                    key = key_of_bits(np.uint64(image[q]), sign_bit, all_ones)
                    bucket = key >> shift
                    if in_window[bucket]:
                        head = positive_heads[bucket]
                        pos_low[head] = key & low_mask
                        pos_weight[head] = weight
                        positive_heads[bucket] = head + 1
                p = span_end
                run += 1


# --------------------------------------------------------------------------------------------
# Walking the curve
# --------------------------------------------------------------------------------------------
@nb.njit(cache=True)
def _sorted_low_keys(values, low_bits):  # pragma: no cover - compiled
    """Sorted copy of unsigned keys below ``2 ** low_bits``: LSD radix, 16-bit digits."""
    size = values.shape[0]
    if size < RADIX_MIN_SIZE:
        return np.sort(values)
    source = values.copy()
    target = np.empty_like(source)
    counts = np.empty(1 << 16, dtype=np.int64)
    digit_mask = np.uint64((1 << 16) - 1)
    for digit in range((low_bits + 15) // 16):
        digit_shift = np.uint64(16 * digit)
        counts[:] = 0
        for q in range(size):
            counts[(np.uint64(source[q]) >> digit_shift) & digit_mask] += 1
        if counts.max() == size:
            continue  # every key has the same digit here
        total = 0
        for d in range(1 << 16):
            count = counts[d]
            counts[d] = total
            total += count
        for q in range(size):
            d = (np.uint64(source[q]) >> digit_shift) & digit_mask
            target[counts[d]] = source[q]
            counts[d] += 1
        source, target = target, source
    return source


@nb.njit(inline="always", cache=True)
def _clipped_trapezoid(x0, x1, y0, y1, limit):  # pragma: no cover - compiled
    """Area under the segment (x0, y0)-(x1, y1) left of ``x = limit`` (needs x0 < limit)."""
    if x1 <= limit:
        return (x1 - x0) * (y0 + y1) * 0.5
    y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
    return (limit - x0) * (y0 + y_limit) * 0.5


@nb.njit(cache=True)
def _step(n, p, w, key, state, num_neg, num_pos, num_regions, limits, areas, slot, auroc_parts,
          ap_parts, f1_best, f1_key, emit, v_key, v_neg, v_pos, v_weight,
          vertex):  # pragma: no cover - compiled
    """Apply one distinct score (n normal, p anomalous pixels, weight w) to the walk.

    ``state`` = [normal pixels above, anomalous pixels above, pending horizontal run,
    key of its lowest score] (int64) and the weight above is kept in ``areas``' last column.
    With ``TP``/``FP`` the anomalous/normal pixels at or above the score, a step with p > 0
    adds ``(p / num_pos) * TP / (TP + FP)`` to the AP sum and offers
    ``F1 = 2 TP / (TP + FP + num_pos)`` to the running maximum (the first, i.e. highest,
    score attaining it is kept). Returns the next free vertex position.
    """
    negatives_above = state[0]
    positives_above = state[1]
    weight_above = areas[slot, limits.shape[0]]
    auroc_parts[slot] += n * (positives_above + 0.5 * p)
    if p > 0:
        true_positives = positives_above + p
        detected = true_positives + negatives_above + n
        ap_parts[slot] += (p / num_pos) * (true_positives / detected)
        f1 = 2.0 * true_positives / (detected + num_pos)
        if f1 > f1_best[slot]:
            f1_best[slot] = f1
            f1_key[slot] = key
    if n > 0:
        x0 = negatives_above / num_neg
        x1 = (negatives_above + n) / num_neg
        y0 = weight_above / num_regions
        y1 = (weight_above + w) / num_regions
        for k in range(limits.shape[0]):
            if x0 < limits[k]:
                areas[slot, k] += _clipped_trapezoid(x0, x1, y0, y1, limits[k])
    if emit:
        if p == 0:
            state[2] = 1
            state[3] = np.int64(key)
        else:
            if state[2]:
                v_key[vertex] = np.uint64(state[3])
                v_neg[vertex] = negatives_above
                v_pos[vertex] = positives_above
                v_weight[vertex] = weight_above
                vertex += 1
                state[2] = 0
            v_key[vertex] = key
            v_neg[vertex] = negatives_above + n
            v_pos[vertex] = positives_above + p
            v_weight[vertex] = weight_above + w
            vertex += 1
    state[0] = negatives_above + n
    state[1] = positives_above + p
    areas[slot, limits.shape[0]] = weight_above + w
    return vertex


@nb.njit(parallel=True, cache=True)
def resolve_buckets(buckets, resolved, neg_total, pos_total, weight_total, neg_above,
                    pos_above, weight_above, neg_begin, neg_end, neg_low, pos_begin, pos_end,
                    pos_low, pos_weight, dense_row, dense, shift, num_neg, num_pos, num_regions,
                    limits, emit, vertex_start, v_key, v_neg, v_pos, v_weight,
                    num_chunks):  # pragma: no cover - compiled
    """Exact contribution of each bucket to the AUROC sum, the PRO areas, AP and F1-max.

    Bucket ``buckets[k]`` starts the walk with ``neg_above[k]`` normal pixels,
    ``pos_above[k]`` anomalous pixels and PRO weight ``weight_above[k]`` above it. A bucket
    that is not ``resolved`` is applied as one group of equal scores (exact when it holds
    normal pixels only, or when it lies beyond every limit and only the AUPRO is wanted); a
    resolved one is walked score by score: its normal low keys are
    ``neg_low[neg_begin[k]:neg_end[k]]`` plus, when ``dense_row[k] >= 0``, the counts of the
    65,536-bin histogram ``dense[dense_row[k]]`` (float32 keys only); its anomalous low keys
    and PRO weights are ``pos_low``/``pos_weight[pos_begin[k]:pos_end[k]]``.

    Returns
    -------
    auroc_parts : float64 (m,)
        ``sum over its normal pixels of (#anomalous pixels above + 0.5 #equal)``.
    areas : float64 (m, L + 1)
        Area under the PRO curve, in (FPR, mean region TPR) units, left of each limit; the last
        column is the weight after the bucket (internal).
    ap_parts : float64 (m,)
        ``sum over its distinct scores s holding anomalous pixels of
        (#anomalous at s / num_pos) * precision(a >= s)``.
    f1_best : float64 (m,)
        Largest F1 over its distinct scores (0 when it holds no anomalous pixel).
    f1_key : uint64 (m,)
        Key of the (highest) score attaining ``f1_best``.
    num_vertices : int64 (m,)
        Curve vertices written from ``vertex_start[k]`` when ``emit``: after each distinct
        anomalous score and at the end of each run of normal-only scores, with the key of the
        lowest score reached, and the cumulative counts and weight.
    """
    num_buckets = buckets.shape[0]
    num_limits = limits.shape[0]
    auroc_parts = np.zeros(num_buckets, dtype=np.float64)
    ap_parts = np.zeros(num_buckets, dtype=np.float64)
    f1_best = np.zeros(num_buckets, dtype=np.float64)
    f1_key = np.zeros(num_buckets, dtype=np.uint64)
    areas = np.zeros((num_buckets, num_limits + 1), dtype=np.float64)
    num_vertices = np.zeros(num_buckets, dtype=np.int64)
    use_histogram = shift == HISTOGRAM_LOW_BITS
    for chunk in prange(num_chunks):
        bins = (1 << HISTOGRAM_LOW_BITS) if use_histogram else 1
        histogram = np.zeros(bins, dtype=np.int64)
        weights = np.zeros(bins, dtype=np.float64)
        blocks = np.zeros(max(bins >> BLOCK_BITS, 1), dtype=np.int64)
        state = np.zeros(4, dtype=np.int64)
        for slot in range(chunk, num_buckets, num_chunks):
            high = np.uint64(buckets[slot]) << np.uint64(shift)
            state[0] = neg_above[slot]
            state[1] = pos_above[slot]
            state[2] = 0
            state[3] = 0
            areas[slot, num_limits] = weight_above[slot]
            vertex = vertex_start[slot] if emit else 0
            first_vertex = vertex
            if not resolved[slot]:
                vertex = _step(neg_total[slot], pos_total[slot], weight_total[slot], high, state,
                               num_neg, num_pos, num_regions, limits, areas, slot, auroc_parts,
                               ap_parts, f1_best, f1_key, emit, v_key, v_neg, v_pos, v_weight,
                               vertex)
            else:
                n_begin = neg_begin[slot]
                n_end = neg_end[slot]
                p_begin = pos_begin[slot]
                p_end = pos_end[slot]
                if use_histogram and neg_total[slot] < _PACK and pos_total[slot] < _PACK:
                    # one histogram: normal count in the low half, anomalous in the high half
                    for q in range(n_begin, n_end):
                        histogram[neg_low[q]] += 1
                        blocks[neg_low[q] >> BLOCK_BITS] += 1
                    row = dense_row[slot]
                    if row >= 0:
                        for low in range(bins):
                            count = dense[row, low]
                            if count:
                                histogram[low] += count
                                blocks[low >> BLOCK_BITS] += 1
                    for q in range(p_begin, p_end):
                        histogram[pos_low[q]] += _PACK
                        weights[pos_low[q]] += pos_weight[q]
                        blocks[pos_low[q] >> BLOCK_BITS] += 1
                    # runs of normal-only scores are applied as one step (a straight segment)
                    run_count = 0
                    run_low = 0
                    block_size = 1 << BLOCK_BITS
                    for block in range(blocks.shape[0] - 1, -1, -1):
                        if blocks[block] == 0:
                            continue  # no pixel in these 64 bins
                        blocks[block] = 0
                        for low in range(block * block_size + block_size - 1,
                                         block * block_size - 1, -1):
                            packed = histogram[low]
                            if packed == 0:
                                continue
                            histogram[low] = 0
                            n = packed & (_PACK - 1)
                            p = packed >> _PACK_BITS
                            if p == 0:
                                run_count += n
                                run_low = low
                                continue
                            if run_count:
                                vertex = _step(run_count, 0, 0.0, high | np.uint64(run_low),
                                               state, num_neg, num_pos, num_regions, limits,
                                               areas, slot, auroc_parts, ap_parts, f1_best,
                                               f1_key, emit, v_key, v_neg, v_pos, v_weight,
                                               vertex)
                                run_count = 0
                            w = weights[low]
                            weights[low] = 0.0
                            vertex = _step(n, p, w, high | np.uint64(low), state, num_neg,
                                           num_pos, num_regions, limits, areas, slot,
                                           auroc_parts, ap_parts, f1_best, f1_key, emit, v_key,
                                           v_neg, v_pos, v_weight, vertex)
                    if run_count:
                        vertex = _step(run_count, 0, 0.0, high | np.uint64(run_low), state,
                                       num_neg, num_pos, num_regions, limits, areas, slot,
                                       auroc_parts, ap_parts, f1_best, f1_key, emit, v_key,
                                       v_neg, v_pos, v_weight, vertex)
                else:
                    order = np.argsort(pos_low[p_begin:p_end])
                    pi = p_end - p_begin - 1
                    normals = _sorted_low_keys(neg_low[n_begin:n_end], shift)
                    ni = n_end - n_begin - 1
                    while ni >= 0 or pi >= 0:
                        # normal-only scores above the next anomalous one: one straight step
                        run_count = 0
                        while ni >= 0 and (pi < 0 or normals[ni] > pos_low[p_begin + order[pi]]):
                            run_count += 1
                            ni -= 1
                        if run_count:
                            vertex = _step(run_count, 0, 0.0, high | np.uint64(normals[ni + 1]),
                                           state, num_neg, num_pos, num_regions, limits, areas,
                                           slot, auroc_parts, ap_parts, f1_best, f1_key, emit,
                                           v_key, v_neg, v_pos, v_weight, vertex)
                        if pi < 0:
                            break
                        value = pos_low[p_begin + order[pi]]
                        n = 0
                        while ni >= 0 and normals[ni] == value:
                            n += 1
                            ni -= 1
                        p = 0
                        w = 0.0
                        while pi >= 0 and pos_low[p_begin + order[pi]] == value:
                            p += 1
                            w += pos_weight[p_begin + order[pi]]
                            pi -= 1
                        vertex = _step(n, p, w, high | np.uint64(value), state, num_neg,
                                       num_pos, num_regions, limits, areas, slot, auroc_parts,
                                       ap_parts, f1_best, f1_key, emit, v_key, v_neg, v_pos,
                                       v_weight, vertex)
            if emit and state[2]:
                v_key[vertex] = np.uint64(state[3])
                v_neg[vertex] = state[0]
                v_pos[vertex] = state[1]
                v_weight[vertex] = areas[slot, num_limits]
                vertex += 1
            num_vertices[slot] = vertex - first_vertex
    return auroc_parts, areas, ap_parts, f1_best, f1_key, num_vertices


# --------------------------------------------------------------------------------------------
# Compacting the accumulated low keys
# --------------------------------------------------------------------------------------------
@nb.njit(parallel=True, cache=True)
def copy_segments(source, source_start, lengths, target_start, target):  # pragma: no cover
    """``target[target_start[k]:+lengths[k]] = source[source_start[k]:+lengths[k]]`` for all k."""
    for k in prange(lengths.shape[0]):
        s = source_start[k]
        t = target_start[k]
        for q in range(lengths[k]):
            target[t + q] = source[s + q]


@nb.njit(parallel=True, cache=True)
def add_to_dense(low, begins, ends, rows, dense):  # pragma: no cover - compiled
    """``dense[rows[k], v] += #{q in begins[k]:ends[k] : low[q] == v}`` for every k.

    The rows must differ (one per bucket).
    """
    for k in prange(rows.shape[0]):
        counts = dense[rows[k]]
        for q in range(begins[k], ends[k]):
            counts[low[q]] += 1
