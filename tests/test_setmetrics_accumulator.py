"""SetMetricsAccumulator: any order, batching and merge tree gives the one-shot figures."""

from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

import pimo
from pimo import setmetrics
from pimo.setmetrics import SetMetricsAccumulator, set_metrics
from tests.test_setmetrics import brute_force_aupro, flat, image_sets

LIMITS = (0.3, 0.05)
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------
def brute_force_f1(maps, masks) -> tuple[float, float]:
    """Largest ``2 TP / (TP + FP + P)`` over the distinct thresholds, and the highest one."""
    scores = flat(maps).astype(np.float64)
    truth = flat(masks).astype(bool)
    best, best_threshold = -1.0, None
    for threshold in np.unique(scores)[::-1]:
        detected = scores >= threshold
        tp = np.count_nonzero(detected & truth)
        fp = np.count_nonzero(detected & ~truth)
        f1 = 2.0 * tp / (tp + fp + np.count_nonzero(truth))
        if f1 > best:
            best, best_threshold = f1, threshold
    return best, float(best_threshold)


def check_against_references(result, maps, masks) -> None:
    truth = flat(masks).astype(int)
    scores = flat(maps).astype(np.float64)
    assert abs(result.auroc - roc_auc_score(truth, scores)) <= 1e-12
    assert abs(result.ap - average_precision_score(truth, scores)) <= 1e-12
    precision, recall, _ = precision_recall_curve(truth, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
    assert abs(result.f1_max - f1.max()) <= 1e-12
    best, threshold = brute_force_f1(maps, masks)
    assert result.f1_max == best
    assert result.f1_max_threshold == threshold
    for limit in LIMITS:
        assert abs(result.aupro[limit] - brute_force_aupro(maps, masks, limit)) <= 1e-9
    assert result.num_normal_pixels == np.count_nonzero(truth == 0)
    assert result.num_anomalous_pixels == np.count_nonzero(truth)


def assert_same(result, reference) -> None:
    for name in ("auroc", "ap", "f1_max", "f1_max_threshold"):
        assert getattr(result, name) == pytest.approx(getattr(reference, name), abs=1e-12)
    for limit in LIMITS:
        assert result.aupro[limit] == pytest.approx(reference.aupro[limit], abs=1e-12)
    for name in ("num_images", "num_normal_pixels", "num_anomalous_pixels", "num_regions"):
        assert getattr(result, name) == getattr(reference, name)


def combine_state_dicts(states):
    """What torchmetrics and Dask do: concatenate the "cat" arrays, add the "sum" arrays."""
    combined = {}
    for name, reduction in SetMetricsAccumulator.STATE_REDUCTIONS.items():
        arrays = [state[name] for state in states]
        combined[name] = np.concatenate(arrays) if reduction == "cat" else np.sum(arrays, axis=0)
    return combined


# ---------------------------------------------------------------------------------------------
# Equivalence, whatever the order, batches and merge tree
# ---------------------------------------------------------------------------------------------
@SLOW
@given(image_sets(), st.integers(0, 2**32 - 1), st.booleans())
def test_one_shot_equals_sklearn_and_brute_force(data, seed, compact_often):
    maps, masks = data
    with small_thresholds(compact_often):
        result = set_metrics(maps, masks, fpr_limits=LIMITS)
    check_against_references(result, maps, masks)


def small_thresholds(active: bool) -> contextlib.AbstractContextManager:
    """Compact after every update and make a dense histogram of any 3+ normal keys."""
    if not active:
        return contextlib.nullcontext()
    return mock.patch.multiple(setmetrics, _COMPACT_MIN_BYTES=0, _DENSE_MIN_PIXELS=2)


@SLOW
@given(image_sets(), st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_order_batches_merge_tree_and_state_dicts(data, seed, compact_often, mix_float64):
    maps, masks = data
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(maps))
    cuts = np.sort(rng.choice(np.arange(1, len(maps)), rng.integers(0, len(maps)),
                              replace=False)) if len(maps) > 1 else []
    batches = np.split(order, cuts)
    reference = set_metrics(maps, masks, fpr_limits=LIMITS)
    with small_thresholds(compact_often):
        # one accumulator, batches in random order; some batches in float64
        single = SetMetricsAccumulator(LIMITS)
        accumulators = []
        for batch in batches:
            batch_maps = [maps[i].astype(np.float64) if mix_float64 and rng.random() < 0.5
                          else maps[i] for i in batch]
            batch_masks = [masks[i] for i in batch]
            single.update(batch_maps, batch_masks)
            accumulator = SetMetricsAccumulator(LIMITS)
            accumulator.update(batch_maps, batch_masks)
            accumulators.append(accumulator)
        assert_same(single.compute(), reference)
        assert single.num_images == len(maps)
        # a random binary merge tree
        tree = list(accumulators)
        while len(tree) > 1:
            k = int(rng.integers(0, len(tree) - 1))
            tree[k] = tree[k].merge(tree.pop(k + 1))
        assert_same(tree[0].compute(), reference)
        # state dicts: round trip, and concatenated/summed == merged (same dtype everywhere)
        round_trip = SetMetricsAccumulator.from_state_dict(single.state_dict(),
                                                           fpr_limits=LIMITS)
        assert_same(round_trip.compute(), reference)
        same_dtype = []
        for batch in batches:
            accumulator = SetMetricsAccumulator(LIMITS, dtype=np.float64 if mix_float64 else None)
            accumulator.update([maps[i] for i in batch], [masks[i] for i in batch])
            same_dtype.append(accumulator.state_dict())
        combined = SetMetricsAccumulator.from_state_dict(combine_state_dicts(same_dtype),
                                                         fpr_limits=LIMITS)
        assert_same(combined.compute(), reference)


@settings(max_examples=20, deadline=None)
@given(image_sets(three_d=True), st.integers(0, 2**32 - 1))
def test_volumes_in_batches(data, seed):
    maps, masks = data
    rng = np.random.default_rng(seed)
    accumulator = SetMetricsAccumulator(LIMITS)
    for index in rng.permutation(len(maps)):
        accumulator.update([maps[index]], [masks[index]])
    result = accumulator.compute()
    check_against_references(result, maps, masks)


def test_dense_buckets_widening_and_compaction_with_many_pixels():
    rng = np.random.default_rng(5)
    # every score in [1, 1 + 1/128): one bucket of ~380,000 pixels, ~800 levels
    levels = rng.integers(0, 600, (12, 160, 200))
    masks = np.zeros(levels.shape, dtype=bool)
    masks[6:, 40:70, 50:90] = True
    masks[7:, 100:104, 10:30] = True
    levels[masks] += rng.integers(0, 200, int(masks.sum()))
    maps = (1.0 + levels * 2.0**-20).astype(np.float32)
    truth, scores = masks.ravel(), maps.ravel().astype(np.float64)
    reference = set_metrics(maps, masks, fpr_limits=LIMITS)
    assert abs(reference.auroc - roc_auc_score(truth, scores)) <= 1e-12
    assert abs(reference.ap - average_precision_score(truth, scores)) <= 1e-12
    order = rng.permutation(12)
    with mock.patch.object(setmetrics, "_COMPACT_MIN_BYTES", 0):
        first = SetMetricsAccumulator(LIMITS)
        for index in order[:9]:
            first.update(maps[index:index + 1], masks[index:index + 1])
        state = first.state_dict()
        assert state["dense_counts"].shape[0] == 1  # the big bucket became a histogram
        assert state["neg_low"].shape[0] == 0  # its normal keys are counted, not listed
        assert first.state_bytes < 3 * 2**20 + 10 * int(masks[order[:9]].sum())
        assert_same(first.compute(), set_metrics(maps[order[:9]], masks[order[:9]],
                                                 fpr_limits=LIMITS))
        second = SetMetricsAccumulator(LIMITS)
        second.update(maps[order[9:11]], masks[order[9:11]])
        second.update(maps[order[11:]].astype(np.float64), masks[order[11:]])
        merged = first.merge(second)  # the float32 state, dense bucket included, is re-keyed
    assert merged.state_dict()["neg_low"].dtype == np.int64
    assert_same(merged.compute(), reference)
    restored = SetMetricsAccumulator.from_state_dict(state, fpr_limits=LIMITS)
    restored.update(maps[order[9:]], masks[order[9:]])
    assert_same(restored.compute(), reference)


def test_float64_batch_after_normal_float32_images():
    rng = np.random.default_rng(2)
    maps = rng.random((4, 9, 7)).astype(np.float32)
    masks = np.zeros(maps.shape, dtype=bool)
    masks[2:, 3:6, 2:5] = True
    accumulator = SetMetricsAccumulator(LIMITS)
    accumulator.update(maps[:2], masks[:2])  # normal images only: no anomalous key yet
    accumulator.update(maps[2:].astype(np.float64), masks[2:])
    check_against_references(accumulator.compute(), maps, masks)


def sorted_keys_by_bucket(state):
    """The multiset of (bucket, low key) of the normal and anomalous pixels of a state."""
    out = []
    for count, low in (("seg_neg", "neg_low"), ("seg_pos", "pos_low")):
        buckets = np.repeat(state["seg_bucket"], state[count])
        if state[low].dtype == np.int64:
            keys = buckets * 2**48 + state[low].astype(np.int64) % 2**48
        else:
            keys = buckets * 2**16 + state[low].view(np.uint16).astype(np.int64)
        out.append(np.sort(keys))
    return out


@settings(max_examples=30, deadline=None)
@given(image_sets(), st.sampled_from(["2d", "channel", "3d"]))
def test_device_summary_equals_the_numba_one(data, layout):
    torch = pytest.importorskip("torch")
    maps, masks = data
    if layout == "3d":  # one volume per image
        maps, masks = [m[None] for m in maps], [y[None] for y in masks]
    shapes = {m.shape for m in maps}
    if len(shapes) > 1:  # a tensor batch holds images of one size: pad to the largest
        target = tuple(max(side) for side in zip(*shapes, strict=True))
        maps = [np.pad(m, [(0, t - s) for s, t in zip(m.shape, target, strict=True)],
                       constant_values=-3.0) for m in maps]
        masks = [np.pad(y, [(0, t - s) for s, t in zip(y.shape, target, strict=True)])
                 for y in masks]
    maps, masks = np.stack(maps), np.stack(masks)
    if layout == "channel":
        maps, masks = maps[:, None], masks[:, None]
    maps[0].flat[0] = -0.0  # negative zero has the key of zero
    host = SetMetricsAccumulator(LIMITS)
    host.update(maps, masks)
    device = SetMetricsAccumulator(LIMITS)
    device._update_on_device(torch.from_numpy(maps), torch.from_numpy(masks), None)
    host_state, device_state = host.state_dict(), device.state_dict()
    for name in ("neg_hist", "pos_hist", "counts", "seg_bucket", "seg_neg", "seg_pos"):
        np.testing.assert_array_equal(host_state[name], device_state[name])
    np.testing.assert_allclose(host_state["pos_weight_hist"], device_state["pos_weight_hist"],
                               rtol=1e-14)
    for host_keys, device_keys in zip(sorted_keys_by_bucket(host_state),
                                      sorted_keys_by_bucket(device_state), strict=True):
        np.testing.assert_array_equal(host_keys, device_keys)
    assert_same(device.compute(), host.compute())


def test_device_path_errors_name_the_image():
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(0).random((3, 5, 5)).astype(np.float32)
    masks = np.zeros(maps.shape, dtype=bool)
    masks[2, 1:3, 1:3] = True
    accumulator = SetMetricsAccumulator()
    accumulator.update(maps, masks)
    maps[1, 2, 2] = np.nan
    with pytest.raises(pimo.NonFiniteScoreError, match=r"image 4 \('b'\).*pixel 12"):
        accumulator._update_on_device(torch.from_numpy(maps), masks, ["a", "b", "c"])
    with pytest.raises(pimo.MaskValueError, match="image 5"):
        accumulator._update_on_device(torch.from_numpy(np.nan_to_num(maps)), masks * 2,
                                      None)
