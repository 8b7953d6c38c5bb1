"""The gap summary behind every set metric: ranking scores among the anomalous ones, exactly.

Every metric is computed from, per distinct anomalous score, its anomalous count, PRO weight
and equal normal pixels, and the normal pixels strictly between consecutive anomalous scores.
The rank of a score is read from a bitmap row (float32 buckets holding many anomalous
scores) or by binary search; both are checked against ``np.searchsorted`` and, through the
metrics, against scikit-learn and the brute-force definitions, on scores dense enough for
the bitmap rows to be used.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimo import _kernels, setmetrics
from pimo.setmetrics import set_metrics
from tests.test_setmetrics import brute_force_pro_curve, flat
from tests.test_setmetrics_accumulator import (
    assert_same,
    check_against_references,
    small_thresholds,
)

SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def brute_force_slots(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``2 j + equal``: j keys below the query, equal = the query is ``keys[j]``."""
    below = np.searchsorted(keys, queries, side="left")
    equal = np.isin(queries, keys)
    return 2 * below.astype(np.int64) + equal


def slots(rank: setmetrics._Rank, queries: np.ndarray) -> np.ndarray:
    out = np.empty(queries.shape[0], dtype=np.int64)
    _kernels.slots_of_keys(queries, queries.shape[0], out, *rank.arrays)
    return out


def rank_paths(path: str) -> contextlib.AbstractContextManager:
    """Force the bitmap rows, one lookup per normal key ("bitmap") or the normal keys of each
    bucket counted as a histogram of their low values ("histogram"), binary search
    ("search") or a row budget of one bitmap row ("capped", the other buckets searched)."""
    values = {"bitmap": {"_RANK_MIN_KEYS": 1, "_HISTOGRAM_MIN_KEYS": 2**40},
              "histogram": {"_RANK_MIN_KEYS": 1, "_HISTOGRAM_MIN_KEYS": 1},
              "search": {"_RANK_MIN_KEYS": 2**40},
              "capped": {"_RANK_MIN_KEYS": 1, "_RANK_MAX_BYTES": 1}}[path]
    return mock.patch.multiple(setmetrics, **values)


# ---------------------------------------------------------------------------------------------
# The rank of a key
# ---------------------------------------------------------------------------------------------
@SLOW
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]),
       st.sampled_from(["bitmap", "search", "capped"]))
def test_slots_equal_searchsorted(seed, dtype, path):
    rng = np.random.default_rng(seed)
    shift = int(setmetrics._key_shift(np.dtype(dtype)))
    buckets = rng.choice(np.arange(100, 110), size=rng.integers(1, 5), replace=False)
    spread = rng.choice([40, 2**12, 2**16]) if dtype == np.float32 else 2**20
    lows = rng.integers(0, min(spread, 1 << shift), 400)
    keys = np.unique((rng.choice(buckets, 400).astype(np.uint64) << np.uint64(shift))
                     + lows.astype(np.uint64))
    near = keys[rng.integers(0, keys.shape[0], 300)].astype(np.int64) + rng.integers(-2, 3, 300)
    others = (rng.integers(99, 112, 300).astype(np.uint64) << np.uint64(shift)) + rng.integers(
        0, 1 << min(shift, 20), 300).astype(np.uint64)
    largest = (1 << (shift + _kernels.BUCKET_BITS)) - 1  # the highest key of the dtype
    queries = np.concatenate((keys, near.astype(np.uint64), others,
                              np.array([0, largest], dtype=np.uint64)))
    with rank_paths(path):
        rank = setmetrics._Rank.of(keys, np.dtype(dtype))
    if path == "search" or dtype == np.float64:
        assert rank.table.shape[0] == 0
    elif path == "bitmap":
        assert rank.table.shape[0] == np.unique(keys >> np.uint64(shift)).shape[0]
    np.testing.assert_array_equal(slots(rank, queries), brute_force_slots(keys, queries))


def test_slots_of_an_empty_key_set_are_the_single_gap():
    rank = setmetrics._Rank.of(np.zeros(0, dtype=np.uint64), np.dtype(np.float32))
    queries = np.array([0, 5, 2**31, 2**32 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(slots(rank, queries), np.zeros(4, dtype=np.int64))


def test_bitmap_row_at_the_word_edges():
    """Low values 0, 63, 64, 65535 of one bucket: the first and last bits of their words."""
    high = np.uint64(7) << np.uint64(16)
    keys = high + np.array([0, 63, 64, 65535], dtype=np.uint64)
    queries = high + np.arange(0, 65536, dtype=np.uint64)
    with rank_paths("bitmap"):
        rank = setmetrics._Rank.of(keys, np.dtype(np.float32))
    assert rank.table.shape[0] == 1
    expected = brute_force_slots(keys, queries)
    assert expected[0] == 1 and expected[1] == 2 and expected[63] == 3 and expected[64] == 5
    np.testing.assert_array_equal(slots(rank, queries), expected)


# ---------------------------------------------------------------------------------------------
# The metrics on scores dense enough for bitmap rows
# ---------------------------------------------------------------------------------------------
@st.composite
def dense_score_sets(draw):
    """Scores a few ulps apart around a few centres (many distinct anomalous scores per
    bucket: bitmap rows for float32, sorted and merged lists for float64), ties included,
    several images, normal and anomalous ones."""
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    bits_dtype = np.int32 if dtype == np.float32 else np.int64
    rng = np.random.default_rng(seed)
    num_images = draw(st.integers(1, 4))
    ulps = draw(st.sampled_from([3, 60, 3000]))
    centres = np.array([0.5, 1.0, -2.0, 3.0], dtype=dtype)[: draw(st.integers(1, 4))]
    maps, masks = [], []
    for _ in range(num_images):
        shape = (int(rng.integers(4, 24)), int(rng.integers(4, 24)))
        mask = rng.random(shape) < draw(st.floats(0.0, 0.6))
        centre = rng.choice(centres, shape)
        steps = rng.integers(-ulps, ulps + 1, shape) + mask * rng.integers(0, ulps + 1, shape)
        bits = centre.view(bits_dtype) + steps.astype(bits_dtype)
        maps.append(bits.view(dtype))
        masks.append(mask)
    if not any(mask.any() for mask in masks):
        masks[0].flat[0] = True
    if all(mask.all() for mask in masks):
        maps.append(np.zeros((1, 1), dtype=dtype))
        masks.append(np.zeros((1, 1), dtype=bool))
    return maps, masks


@SLOW
@given(dense_score_sets(), st.sampled_from(["bitmap", "histogram", "search", "capped"]))
def test_dense_scores_equal_sklearn_and_brute_force(data, path):
    maps, masks = data
    with rank_paths(path):
        result = set_metrics(maps, masks, fpr_limits=(0.3, 0.05, 1.0))
    check_against_references(result, maps, masks)
    fprs, pros = brute_force_pro_curve(maps, masks)
    inside = fprs <= 1.0
    area = np.trapezoid(pros[inside], fprs[inside])
    assert result.aupro[1.0] == pytest.approx(area, abs=1e-9)


@SLOW
@given(dense_score_sets(), st.integers(1, 3),
       st.sampled_from(["bitmap", "histogram", "search"]))
def test_dense_histograms_and_batches(data, batch_size, path):
    """Compacted states (dense histograms of the normal keys, several pieces) rank the same."""
    maps, masks = data
    accumulator = setmetrics.SetMetricsAccumulator((0.3, 0.05))
    with small_thresholds(True), rank_paths(path):
        for start in range(0, len(maps), batch_size):
            accumulator.update(maps[start:start + batch_size], masks[start:start + batch_size])
        result = accumulator.compute()
    check_against_references(result, maps, masks)


@SLOW
@given(dense_score_sets(), st.integers(0, 2**32 - 1))
def test_curves_follow_the_same_walk(data, seed):
    """With curves (each gap's lowest score kept), in batches: the same metrics, and every
    vertex is exactly what thresholding at its score gives."""
    maps, masks = data
    reference = set_metrics(maps, masks, fpr_limits=(0.3, 0.05))
    order = np.random.default_rng(seed).permutation(len(maps))
    accumulator = setmetrics.SetMetricsAccumulator((0.3, 0.05), curves=True)
    for index in order:
        accumulator.update([maps[index]], [masks[index]])
    result = accumulator.compute()
    assert_same(result, reference)
    curves = result.curves
    assert curves is not None
    scores = flat([maps[index] for index in order]).astype(np.float64)
    truth = flat([masks[index] for index in order]).astype(bool)
    assert np.all(np.diff(curves.thresholds) < 0)
    for threshold, fpr, tpr in zip(curves.thresholds[1:], curves.fpr[1:], curves.tpr[1:],
                                   strict=True):
        detected = scores >= threshold
        assert np.any(scores == threshold)
        assert fpr == np.count_nonzero(detected & ~truth) / np.count_nonzero(~truth)
        assert tpr == np.count_nonzero(detected & truth) / np.count_nonzero(truth)
    assert np.trapezoid(curves.tpr, curves.fpr) == pytest.approx(result.auroc, abs=1e-12)


@pytest.mark.parametrize("path", ["bitmap", "histogram"])
def test_a_crowded_bucket_counted_either_way(path):
    """One float32 bucket holding 40,000 normal and 2,000 anomalous scores (past the default
    size at which its normal keys are counted as a histogram), ties at both ends of the
    bucket's low values: both ways give scikit-learn's figures."""
    rng = np.random.default_rng(5)
    base = np.float32(1.0).view(np.int32)
    low = rng.integers(0, 2**16, (2, 210, 100)).astype(np.int32)
    low[0, 0, :5] = 0
    low[0, 1, :5] = 2**16 - 1
    maps = (base + low).view(np.float32)
    masks = np.zeros(maps.shape, dtype=bool)
    masks[1, 100:120] = True
    masks[1, 150, :5] = True
    maps[1, 150, :5] = maps[0, 0, :5]
    masks[0, 5, :3] = True
    maps[0, 5, :3] = maps[0, 1, 0]
    assert np.unique(maps.view(np.int32) >> 16).shape[0] == 1
    assert np.count_nonzero(~masks) >= setmetrics._HISTOGRAM_MIN_KEYS
    with rank_paths(path):
        result = set_metrics(maps, masks, fpr_limits=(0.3, 0.05))
    check_against_references(result, list(maps), list(masks))
