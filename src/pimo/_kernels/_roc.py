"""Numba kernels of the set-scoped metrics (AUROC, AUPRO) and of region labelling.

Both metrics only depend on how the anomalous (mask-1) pixels are ordered relative to the
normal (mask-0) pixels. The kernels find that order exactly without sorting every pixel:

1. ``image_runs``: the connected regions of each mask, as runs of mask pixels along the last
   axis, each run carrying the weight ``1 / |region|`` of its pixels (the PRO weighting).
2. ``bucket_counts``: one pass over the pixels; the top 16 bits of every score's sort key
   (``NUM_BUCKETS`` buckets of consecutive float values) get a count of normal pixels, a count
   of anomalous pixels and a sum of anomalous weights. Pixels in different buckets are ordered
   by these histograms alone; NaN and infinities are detected here.
3. ``scatter_low_keys``: every pixel is copied, as the low bits of its key, into a buffer
   grouped by bucket (a counting sort). ``copy_segments`` regroups such buffers;
   ``add_to_dense`` turns a long list of low keys into the bucket's 65,536-bin histogram.
4. The gap summary: every metric only needs, for each distinct anomalous score (ascending
   keys ``keys[j]``), its anomalous count and PRO weight, the normal pixels equal to it, and
   the normal pixels strictly between it and the next lower one (a *gap*: normal pixels
   inside a gap move the curves along a horizontal segment, where they fall in it changes no
   metric). ``slots_of_keys`` ranks any key among ``keys`` as slot ``2 j + equal``: a float32
   bucket holding many anomalous scores has a 65,536-bit row of their low values with the
   rank of each 64-bit word (one word and one popcount per lookup), other buckets are
   searched. ``low_key_slot_counts`` counts the grouped normal low keys by slot, one bucket
   at a time so that its row and slots stay in cache (buckets without anomalous scores fall
   in one gap as a whole; a bucket with many normal keys is counted as a histogram of its
   65,536 low values, then cut at its anomalous values).
5. ``walk_gaps``: one walk down the slots adds the exact AUROC sum, the area under the PRO
   curve up to each FPR limit, the average precision and the F1 maximum and, on demand, the
   vertices of the curves (a gap's vertex at its lowest normal score).

Memory: the histograms (65,536 x 24 bytes per chunk), the low keys (2 bytes per normal and 10
per anomalous pixel for float32 maps, 8 and 16 for float64; see
:class:`pimo.setmetrics.SetMetricsAccumulator`); at compute, per distinct anomalous score
about 40 bytes (its key, counts, weight and two slots) and 16 KiB per bitmap row.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from pimo._kernels._common import is_nonfinite_bits, key_of_bits

__all__ = [
    "BUCKET_BITS",
    "NUM_BUCKETS",
    "RANK_LOW_BITS",
    "RANK_ROW_WORDS",
    "add_to_dense",
    "anomalous_slot_sums",
    "bucket_counts",
    "copy_segments",
    "count_runs",
    "expand_keys",
    "fill_rank_rows",
    "image_runs",
    "label_mask",
    "low_key_slot_counts",
    "rank_bucket_starts",
    "region_runs",
    "scatter_low_keys",
    "slots_of_keys",
    "walk_gaps",
]

BUCKET_BITS = 16
NUM_BUCKETS = 1 << BUCKET_BITS
RANK_LOW_BITS = 16  # float32 keys: 16 low bits below the bucket, one bitmap row per bucket
RANK_LOW_MASK = (1 << RANK_LOW_BITS) - 1
RANK_ROW_WORDS = 1 << (RANK_LOW_BITS - 6)  # 64-bit words of a bitmap row
NUM_LOW_VALUES = 1 << RANK_LOW_BITS
HISTOGRAM_MAX_KEYS = (1 << 32) - 1  # a job's keys counted in a uint32 histogram (at most)
BATCH = 1024  # keys looked up per call of slots_of_keys
MERGE_MIN_SIZE = 64  # normal and anomalous keys of a searched bucket: sort and merge from here
RADIX_MIN_SIZE = 1 << 15  # smaller lists of normal keys are sorted by comparison


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
def scatter_low_keys(bits, offsets, item_image, item_begin, item_end, run_offsets, run_starts,
                     run_lengths, run_weights, shift, sign_bit, all_ones, neg_cursor, pos_cursor,
                     neg_low, pos_low, pos_weight):  # pragma: no cover - compiled
    """Copy the low key bits of every pixel into the buffers, grouped by bucket.

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
                    head = negative_heads[bucket]
                    neg_low[head] = key & low_mask
                    negative_heads[bucket] = head + 1
                for q in range(span_begin, span_end):
                    key = key_of_bits(np.uint64(image[q]), sign_bit, all_ones)
                    bucket = key >> shift
                    head = positive_heads[bucket]
                    pos_low[head] = key & low_mask
                    pos_weight[head] = weight
                    positive_heads[bucket] = head + 1
                p = span_end
                run += 1


# --------------------------------------------------------------------------------------------
# Gap summary: where every normal pixel falls among the distinct anomalous scores
# --------------------------------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def _popcount(word):  # pragma: no cover - compiled
    """Set bits of a uint64 (SWAR; LLVM turns it into one instruction where there is one)."""
    word = word - ((word >> np.uint64(1)) & np.uint64(0x5555555555555555))
    word = (word & np.uint64(0x3333333333333333)) + (
        (word >> np.uint64(2)) & np.uint64(0x3333333333333333))
    word = (word + (word >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((word * np.uint64(0x0101010101010101)) >> np.uint64(56))


@nb.njit(cache=True)
def rank_bucket_starts(keys, shift):  # pragma: no cover - compiled
    """``starts[b]`` = number of ``keys`` (ascending) whose bucket ``key >> shift`` is below b.

    Length ``NUM_BUCKETS + 1``: the keys of bucket b are ``keys[starts[b]:starts[b + 1]]``.
    """
    starts = np.zeros(NUM_BUCKETS + 1, dtype=np.int64)
    for q in range(keys.shape[0]):
        starts[np.int64(keys[q] >> shift) + 1] += 1
    for bucket in range(NUM_BUCKETS):
        starts[bucket + 1] += starts[bucket]
    return starts


@nb.njit(parallel=True, cache=True)
def fill_rank_rows(keys, bucket_start, bucket_row, table):  # pragma: no cover - compiled
    """Bitmap rows of the buckets with ``bucket_row[b] >= 0`` (float32 keys: 16 low bits).

    ``table[row, w, 0]`` holds bits ``64 w .. 64 w + 63`` of the bucket's 65,536-bit set of low
    key values, ``table[row, w, 1]`` the number of keys (all buckets) below bit ``64 w``.
    """
    for bucket in prange(NUM_BUCKETS):
        row = bucket_row[bucket]
        if row < 0:
            continue
        for q in range(bucket_start[bucket], bucket_start[bucket + 1]):
            low = keys[q] & np.uint64(RANK_LOW_MASK)
            table[row, low >> np.uint64(6), 0] |= np.uint64(1) << (low & np.uint64(63))
        below = bucket_start[bucket]
        for word in range(RANK_ROW_WORDS):
            table[row, word, 1] = np.uint64(below)
            below += _popcount(table[row, word, 0])


@nb.njit(inline="always", cache=True)
def _row_slot(word, below, low):  # pragma: no cover - compiled
    """Slot of low value ``low`` in a bitmap row: its word and the keys below the word."""
    bit = low & np.uint64(63)
    rank = np.int64(below) + _popcount(word & ((np.uint64(1) << bit) - np.uint64(1)))
    return 2 * rank + np.int64((word >> bit) & np.uint64(1))


@nb.njit(cache=True)
def slots_of_keys(queries, count, out, shift, keys, bucket_start, bucket_row,
                  table):  # pragma: no cover - compiled
    """``out[i]`` = slot of ``queries[i]`` among the distinct anomalous ``keys`` (ascending).

    The slot of a key is ``2 j + equal``: ``j`` keys are below it and ``equal`` is 1 when
    ``keys[j]`` is the key itself. Slot ``2 j`` is thus the gap strictly between ``keys[j - 1]``
    and ``keys[j]``, slot ``2 j + 1`` the score ``keys[j]``. A bucket holding no key answers
    from ``bucket_start`` (its keys are ``keys[bucket_start[b]:bucket_start[b + 1]]``), a
    bucket with a bitmap row (``bucket_row[b] >= 0``) by one word of ``table`` and its rank,
    the others by binary search.
    """
    for i in range(count):
        key = queries[i]
        bucket = np.int64(key >> shift)
        first = bucket_start[bucket]
        last = bucket_start[bucket + 1]
        if first == last:
            out[i] = 2 * first
            continue
        row = bucket_row[bucket]
        if row >= 0:
            low = key & np.uint64(RANK_LOW_MASK)
            word_index = np.int64(low >> np.uint64(6))
            out[i] = _row_slot(table[row, word_index, 0], table[row, word_index, 1], low)
            continue
        low_index = first
        high_index = last
        while low_index < high_index:
            middle = (low_index + high_index) >> 1
            if keys[middle] < key:
                low_index = middle + 1
            else:
                high_index = middle
        equal = 1 if low_index < last and keys[low_index] == key else 0
        out[i] = 2 * low_index + equal


@nb.njit(cache=True)
def anomalous_slot_sums(anomalous_keys, anomalous_weights, shift, keys, bucket_start,
                        bucket_row, table, pos, weight):  # pragma: no cover - compiled
    """``pos[j]`` += the anomalous pixels scoring ``keys[j]``; ``weight[j]`` += their weights."""
    out = np.empty(BATCH, dtype=np.int64)
    for begin in range(0, anomalous_keys.shape[0], BATCH):
        count = min(BATCH, anomalous_keys.shape[0] - begin)
        slots_of_keys(anomalous_keys[begin:begin + count], count, out, shift, keys,
                      bucket_start, bucket_row, table)
        for i in range(count):
            j = out[i] >> 1
            pos[j] += 1
            weight[j] += anomalous_weights[begin + i]


@nb.njit(parallel=True, cache=True)
def expand_keys(seg_bucket, seg_count, low, shift, out):  # pragma: no cover - compiled
    """``out`` = the full keys ``bucket << shift | low`` of low keys grouped in segments."""
    seg_begin = np.zeros(seg_bucket.shape[0] + 1, dtype=np.int64)
    for seg in range(seg_bucket.shape[0]):
        seg_begin[seg + 1] = seg_begin[seg] + seg_count[seg]
    for seg in prange(seg_bucket.shape[0]):
        high = np.uint64(seg_bucket[seg]) << shift
        for q in range(seg_begin[seg], seg_begin[seg + 1]):
            out[q] = high | np.uint64(low[q])


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
        largest = 0  # a loop, not counts.max(): that one compiles its error path for seconds
        for d in range(1 << 16):
            largest = max(largest, counts[d])
        if largest == size:
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
def _cut_histogram(histogram, value, value_end, keys, first, local, width):  # pragma: no cover
    """Add ``histogram[value:value_end]`` (counts of the low values of one float32 bucket) to
    the bucket's slots: ``local[2 i + 1]`` its value equal to the bucket's i-th anomalous key
    ``keys[first + i]``, ``local[2 i]`` the values strictly below that key and above the one
    before (``local[width - 1]``: above the last)."""
    for k in range(width):
        if k & 1:
            anomalous = np.int64(keys[first + (k >> 1)] & np.uint64(RANK_LOW_MASK))
            if value <= anomalous < value_end:
                local[k] += histogram[anomalous]
            value = max(value, anomalous + 1)
            continue
        stop = value_end
        if k < width - 1:
            stop = min(stop, np.int64(keys[first + (k >> 1)] & np.uint64(RANK_LOW_MASK)))
        total = 0
        for low in range(value, stop):
            total += np.int64(histogram[low])
        local[k] += total
        value = max(value, stop)


@nb.njit(inline="always", cache=True)
def _add_local_slots(local, width, bottom, group, neg, edge_count):  # pragma: no cover
    """Add a bucket's slots counted in ``local`` (slot ``bottom + k`` at ``k``) to ``neg``,
    its two edge slots (shared with other buckets) to ``edge_count[group]``."""
    edge_count[group, 0] += local[0]
    edge_count[group, 1] += local[width - 1]
    for k in range(1, width - 1):
        neg[bottom + k] += local[k]


@nb.njit(parallel=True, cache=True)
def low_key_slot_counts(job_bucket, job_begin, job_end, job_row, group_start, neg_low, dense,
                        whole, shift, keys, bucket_start, bucket_row, table, neg, track,
                        gap_lowest, edge_count, edge_lowest, num_chunks,
                        histogram_min_keys):  # pragma: no cover - compiled
    """Count the normal pixels of an accumulator's state by slot (:func:`slots_of_keys`).

    Job k is bucket ``job_bucket[k]``'s normal low keys ``neg_low[job_begin[k]:job_end[k]]``
    or, when ``job_row[k] >= 0``, the low values ``job_begin[k]:job_end[k]`` of the dense
    histogram row ``dense[job_row[k]]`` (counts). The jobs are sorted by bucket and group g
    (jobs ``group_start[g]:group_start[g + 1]``) holds one bucket's jobs; chunk c takes the
    groups ``c, c + num_chunks, ...`` (in parallel). A bucket's slots lie between the gap
    below and the gap above its anomalous keys; those two, shared with other buckets, are
    counted apart in ``edge_count[g, 0]`` and ``edge_count[g, 1]``, every other slot in
    ``neg``. A bucket without anomalous keys lies inside one gap (edge 0), added as a whole
    when ``whole``. When ``track``, ``gap_lowest[j]`` (``edge_lowest[g, 0 or 1]`` for the
    edges) keeps the lowest normal key of gap j. Unless ``track``, a dense row, or a job of at
    least ``histogram_min_keys`` normal keys in a bucket with a bitmap row, is counted as a
    histogram of its low values cut at the bucket's anomalous values (one increment per key,
    one pass over the 65,536 values), another job of a bucket with a bitmap row key by key
    (one word of its row, in cache), the others through buffers.
    """
    num_groups = group_start.shape[0] - 1
    for chunk in prange(num_chunks):
        queries = np.empty(BATCH, dtype=np.uint64)
        multiplicity = np.empty(BATCH, dtype=np.int64)
        out = np.empty(BATCH, dtype=np.int64)
        local = np.empty(2 * RANK_ROW_WORDS * 64 + 1, dtype=np.int64)
        low_histogram = np.empty(NUM_LOW_VALUES, dtype=np.uint32)  # HISTOGRAM_MAX_KEYS
        for group in range(chunk, num_groups, num_chunks):
            bucket = job_bucket[group_start[group]]
            high = np.uint64(bucket) << shift
            below = np.uint64(bucket_start[bucket])
            bottom = 2 * bucket_start[bucket]
            top = 2 * bucket_start[bucket + 1]
            row = bucket_row[bucket]
            for job in range(group_start[group], group_start[group + 1]):
                begin = job_begin[job]
                end = job_end[job]
                dense_row = job_row[job]
                if whole and bottom == top:
                    total = 0
                    for q in range(begin, end):
                        total += dense[dense_row, q] if dense_row >= 0 else 1
                    edge_count[group, 0] += total
                    continue
                if not track and (dense_row >= 0 or (
                        row >= 0 and histogram_min_keys <= end - begin <= HISTOGRAM_MAX_KEYS)):
                    # the bucket's low values as a histogram (in cache), cut at its anomalous
                    # values into the slots of a bucket-sized array (bottom slot at 0)
                    width = top - bottom + 1
                    local[:width] = 0
                    if dense_row >= 0:
                        _cut_histogram(dense[dense_row], begin, end, keys,
                                       bucket_start[bucket], local, width)
                    else:
                        low_histogram[:] = 0
                        for q in range(begin, end):
                            low_histogram[np.int64(neg_low[q])] += 1
                        _cut_histogram(low_histogram, 0, NUM_LOW_VALUES, keys,
                                       bucket_start[bucket], local, width)
                    _add_local_slots(local, width, bottom, group, neg, edge_count)
                    continue
                if row >= 0 and not track:
                    # counted in a bucket-sized array first (in cache), bottom slot at 0
                    words = table[row]
                    width = top - bottom + 1
                    local[:width] = 0
                    for q in range(begin, end):
                        low = np.uint64(neg_low[q])
                        word_index = np.int64(low >> np.uint64(6))
                        local[_row_slot(words[word_index, 0], words[word_index, 1] - below,
                                        low)] += 1
                    _add_local_slots(local, width, bottom, group, neg, edge_count)
                    continue
                # many normal keys against many searched anomalous keys (float64 scores):
                # sorted, then merged with the anomalous keys instead of searched one by one
                first = bucket_start[bucket]
                last = bucket_start[bucket + 1]
                merge = (dense_row < 0 and row < 0 and last - first >= MERGE_MIN_SIZE
                         and end - begin >= MERGE_MIN_SIZE)
                lows = _sorted_low_keys(neg_low[begin:end], shift) if merge else neg_low[
                    begin:end]
                cursor = first
                filled = 0
                for q in range(begin, end + 1):
                    if q < end:
                        if dense_row >= 0:
                            if dense[dense_row, q] == 0:
                                continue
                            queries[filled] = high | np.uint64(q)
                            multiplicity[filled] = dense[dense_row, q]
                        else:
                            queries[filled] = high | np.uint64(lows[q - begin])
                            multiplicity[filled] = 1
                        filled += 1
                    if filled == BATCH or (q == end and filled):
                        if merge:
                            for i in range(filled):
                                while cursor < last and keys[cursor] < queries[i]:
                                    cursor += 1
                                equal = 1 if cursor < last and keys[cursor] == queries[i] else 0
                                out[i] = 2 * cursor + equal
                        else:
                            slots_of_keys(queries, filled, out, shift, keys, bucket_start,
                                          bucket_row, table)
                        for i in range(filled):
                            slot = out[i]
                            edge = 0 if slot == bottom else (1 if slot == top else -1)
                            if edge >= 0:
                                edge_count[group, edge] += multiplicity[i]
                                if track and queries[i] < edge_lowest[group, edge]:
                                    edge_lowest[group, edge] = queries[i]
                            else:
                                neg[slot] += multiplicity[i]
                                if track and (slot & 1) == 0 and queries[i] < gap_lowest[slot >> 1]:
                                    gap_lowest[slot >> 1] = queries[i]
                        filled = 0


# --------------------------------------------------------------------------------------------
# Walking the curve
# --------------------------------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def _clipped_trapezoid(x0, x1, y0, y1, limit):  # pragma: no cover - compiled
    """Area under the segment (x0, y0)-(x1, y1) left of ``x = limit`` (needs x0 < limit)."""
    if x1 <= limit:
        return (x1 - x0) * (y0 + y1) * 0.5
    y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
    return (limit - x0) * (y0 + y_limit) * 0.5


@nb.njit(cache=True)
def walk_gaps(keys, pos, weight, neg, gap_lowest, num_neg, num_pos, num_regions, limits,
              emit):  # pragma: no cover - compiled
    """Every metric from the gap summary, in one walk down the scores.

    ``keys`` are the distinct anomalous scores' keys (ascending), ``pos[j]``/``weight[j]`` the
    anomalous pixels at ``keys[j]`` and their PRO weight, ``neg[2 j + 1]`` the normal pixels
    at ``keys[j]`` and ``neg[2 j]`` those strictly between ``keys[j - 1]`` and ``keys[j]``
    (``neg[2 D]``: above the highest). A gap's normal pixels make one straight horizontal step
    (where they fall inside it changes no metric); a score ``keys[j]`` one step, diagonal when
    it holds normal pixels too. With ``TP``/``FP`` the anomalous/normal pixels at or above a
    score and ``x``/``y`` the FPR and PRO before/after a step:

    - AUROC sum ``+= n (TP_above + p / 2)`` for a step of n normal and p anomalous pixels;
    - PRO area ``+=`` the trapezoid under the step left of each limit;
    - AP ``+= (p / num_pos) * TP / (TP + FP)`` and ``F1 = 2 TP / (TP + FP + num_pos)`` offered
      to the maximum (the first, highest, score attaining it kept) at each anomalous score.

    When ``emit``, the vertices after each step: the key (a gap's lowest normal key,
    ``gap_lowest[j]``), the normal and anomalous counts and the weight at or above it.

    Returns
    -------
    auroc_sum : float
    areas : float64 (L,)
        Area under the PRO curve, in (FPR, mean region TPR) units, left of each limit.
    ap : float
    f1_best : float
    f1_key : uint64
    v_key, v_neg, v_pos, v_weight : the vertices (empty unless ``emit``).
    """
    num_keys = keys.shape[0]
    num_limits = limits.shape[0]
    areas = np.zeros(num_limits, dtype=np.float64)
    capacity = 2 * num_keys + 1 if emit else 0
    v_key = np.empty(capacity, dtype=np.uint64)
    v_neg = np.empty(capacity, dtype=np.int64)
    v_pos = np.empty(capacity, dtype=np.int64)
    v_weight = np.empty(capacity, dtype=np.float64)
    vertices = 0
    auroc_sum = 0.0
    ap = 0.0
    f1_best = 0.0
    f1_key = np.uint64(0)
    negatives_above = 0
    positives_above = 0
    weight_above = 0.0
    for slot in range(2 * num_keys, -1, -1):
        n = np.int64(neg[slot])
        if slot & 1:
            j = slot >> 1
            p = np.int64(pos[j])
            w = weight[j]
            key = keys[j]
        else:
            if n == 0:
                continue
            p = 0
            w = 0.0
            key = gap_lowest[slot >> 1] if emit else np.uint64(0)
        auroc_sum += n * (positives_above + 0.5 * p)
        if p > 0:
            true_positives = positives_above + p
            detected = true_positives + negatives_above + n
            ap += (p / num_pos) * (true_positives / detected)
            f1 = 2.0 * true_positives / (detected + num_pos)
            if f1 > f1_best:
                f1_best = f1
                f1_key = key
        if n > 0:
            x0 = negatives_above / num_neg
            x1 = (negatives_above + n) / num_neg
            y0 = weight_above / num_regions
            y1 = (weight_above + w) / num_regions
            for k in range(num_limits):
                if x0 < limits[k]:
                    areas[k] += _clipped_trapezoid(x0, x1, y0, y1, limits[k])
        negatives_above += n
        positives_above += p
        weight_above += w
        if emit:
            v_key[vertices] = key
            v_neg[vertices] = negatives_above
            v_pos[vertices] = positives_above
            v_weight[vertices] = weight_above
            vertices += 1
    return (auroc_sum, areas, ap, f1_best, f1_key, v_key[:vertices], v_neg[:vertices],
            v_pos[:vertices], v_weight[:vertices])


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
