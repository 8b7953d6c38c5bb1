"""AupimoAccumulator equals the one-shot pimo.aupimo / pimo.auimo, whatever the order,
batching, merge tree and state-dict round trips; its kept tails are verified."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import pimo
from pimo import accumulate

from .test_aupimo import brute_force_exact, image_sets, reachable_bounds

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def one_shot(maps, masks, bounds, *, with_auimo):
    """(AUPIMO result, AUIMO result or None), or the error class pimo.aupimo raises."""
    try:
        result = pimo.aupimo(maps, masks, fpr_bounds=bounds)
        iou = pimo.auimo(maps, masks, fpr_bounds=bounds) if with_auimo else None
    except pimo.PimoError as error:
        return type(error)
    return result, iou


@contextlib.contextmanager
def small_samples(capacity_factor: int) -> Iterator[None]:
    """Estimate the tails' cuts on samples of tiny images too (every 4th pixel), with room for
    ``capacity_factor`` times the budget: both the one-pass path and the exact fallback run."""
    with mock.patch.multiple(accumulate, SAMPLE_SPAN=4, SAMPLE_RUN=1, CAPACITY_SLACK=0,
                             CAPACITY_FACTOR=capacity_factor):
        yield


def split(draw, items: list) -> list[list]:
    """Cut ``items`` into consecutive non-empty batches at drawn places."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(len(items) - 1, 1)), max_size=4))))
    cuts = [c for c in cuts if 0 < c < len(items)]
    edges = [0, *cuts, len(items)]
    return [items[a:b] for a, b in itertools.pairwise(edges)]


def merge_tree(draw, accumulators: list) -> pimo.AupimoAccumulator:
    """Merge adjacent accumulators in a random binary tree (keeps arrival order)."""
    accumulators = list(accumulators)
    while len(accumulators) > 1:
        at = draw(st.integers(0, len(accumulators) - 2))
        accumulators[at : at + 2] = [accumulators[at].merge(accumulators[at + 1])]
    return accumulators[0]


def assert_same(result, expected, order=None):
    expected_scores = expected.scores if order is None else expected.scores[order]
    np.testing.assert_allclose(result.scores, expected_scores, rtol=0, atol=1e-12)
    assert np.array_equal(np.isnan(result.scores), np.isnan(expected_scores))
    assert result.thresh_bounds == expected.thresh_bounds
    assert result.num_thresholds == expected.num_thresholds


@SETTINGS
@given(image_sets(), st.tuples(st.floats(0, 1), st.floats(0, 1)), st.data(),
       st.sampled_from(["batches", "merge-tree", "state-dicts"]), st.booleans())
def test_equals_one_shot_whatever_order_batching_and_merges(image_set, fractions, data, how,
                                                            small_tails):
    """Random order, batch splits, merge trees and concatenated state dicts.

    ``small_tails`` shrinks the tails to the smallest the true number of normal images allows
    (k = expected_num_normal), so that the top-k selection and the verification really run.
    """
    maps, masks = image_set
    bounds = reachable_bounds(maps, masks, fractions)
    order = data.draw(st.permutations(range(len(maps))))
    maps, masks = [maps[i] for i in order], [masks[i] for i in order]
    expected = one_shot(maps, masks, bounds, with_auimo=True)
    num_normal = sum(not m.any() for m in masks)
    settings_ = {"fpr_bounds": bounds, "with_auimo": True,
                 "expected_num_normal": num_normal if small_tails else None}
    factor = 1 if small_tails else accumulate.MIN_NORMAL_FACTOR
    capacity_factor = data.draw(st.sampled_from([1, 2, 4]))  # 1: the estimate often misses
    with mock.patch.object(accumulate, "MIN_NORMAL_FACTOR", factor), \
            mock.patch.object(accumulate, "AUIMO_TAIL_FACTOR", 1 if small_tails else 16), \
            small_samples(capacity_factor):
        batches = split(data.draw, list(range(len(maps))))
        accumulators = []
        for batch in batches:
            accumulator = pimo.AupimoAccumulator(**settings_)
            accumulator.update([maps[i] for i in batch], [masks[i] for i in batch],
                               paths=[f"{i}.png" for i in batch])
            accumulators.append(accumulator)
        if how == "batches":
            accumulator = pimo.AupimoAccumulator(**settings_)
            for batch in batches:
                accumulator.update([maps[i] for i in batch], [masks[i] for i in batch],
                                   paths=[f"{i}.png" for i in batch])
        elif how == "merge-tree":
            accumulator = merge_tree(data.draw, accumulators)
        else:
            states = [a.state_dict() for a in accumulators]
            combined = {
                key: np.concatenate([s[key] for s in states])
                for key, reduction in pimo.AupimoAccumulator.STATE_REDUCTIONS.items()
                if reduction == "cat"
            }
            accumulator = pimo.AupimoAccumulator.from_state_dict(combined, **settings_)
        assert accumulator.num_images == len(maps)
        if isinstance(expected, type):
            with pytest.raises(pimo.PimoError) as error:
                accumulator.compute()
            # the accumulator may find a problem earlier (incomplete AUIMO tails aside)
            assert isinstance(error.value, expected)
            return
        result, iou_expected = expected
        try:
            iou = accumulator.compute_auimo()
        except pimo.IncompleteSummaryError as error:
            assert small_tails and "AUIMO" in str(error)  # the IoU tails are only verified
            iou = None
        assert_same(accumulator.compute(), result)
        if iou is not None:
            assert_same(iou, iou_expected)
    if how != "state-dicts":
        assert accumulator.compute().paths == [f"{i}.png" for i in range(len(maps))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_sets(), st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_equals_the_definition(image_set, fractions):
    """Independently of pimo.aupimo: the brute-force definition."""
    maps, masks = image_set
    bounds = reachable_bounds(maps, masks, fractions)
    expected = brute_force_exact(maps, masks, bounds)
    assume(expected is not None)
    accumulator = pimo.AupimoAccumulator(bounds)
    for index in range(len(maps)):
        accumulator.update([maps[index]], [masks[index]])
    np.testing.assert_allclose(accumulator.compute().aupimos, expected, rtol=0, atol=1e-9)


@SETTINGS
@given(image_sets(), st.tuples(st.floats(0, 1), st.floats(0, 1)), st.data())
def test_unknown_number_of_normal_images_is_exact_or_refused(image_set, fractions, data):
    """Tails sized for fewer normal images than arrive: exact result or a clear error."""
    maps, masks = image_set
    bounds = reachable_bounds(maps, masks, fractions)
    expected = one_shot(maps, masks, bounds, with_auimo=False)
    assume(not isinstance(expected, type))
    with mock.patch.object(accumulate, "MIN_NORMAL_FACTOR", 1), small_samples(2):
        accumulator = pimo.AupimoAccumulator(bounds)
        for batch in split(data.draw, list(range(len(maps)))):
            accumulator.update([maps[i] for i in batch], [masks[i] for i in batch])
        try:
            result = accumulator.compute()
        except pimo.IncompleteSummaryError as error:
            assert "expected_num_normal" in str(error)
            return
    assert_same(result, expected[0])


def late_normal_images(num_late: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A high-scoring normal image first, then many low-scoring ones, then an anomalous one."""
    rng = np.random.default_rng(1)
    maps = [rng.random((100, 100)) + 10.0]
    maps += [rng.random((10, 10)) for _ in range(num_late)]
    anomalous = rng.random((100, 100))
    anomalous[:10] += 10.5
    maps.append(anomalous)
    masks = [np.zeros(m.shape, bool) for m in maps]
    masks[-1][:10] = True
    return maps, masks


def test_tails_too_short_for_late_normal_images_are_detected():
    """k = 64 when the first normal image arrives; 150 more arrive later: refused, with the fix.

    The first image keeps ceil(64 * 0.001 * 10,000) + 2 = 642 scores, whose lowest gives a
    shared FPR of 0.0642 / 151 < U = 0.001 once 150 low-scoring normal images are added.
    """
    maps, masks = late_normal_images(150)
    bounds = (1e-4, 1e-3)
    accumulator = pimo.AupimoAccumulator(bounds)
    accumulator.update(maps[:1], masks[:1])
    accumulator.update(maps[1:], masks[1:])
    with pytest.raises(pimo.IncompleteSummaryError, match=r"expected_num_normal=151"):
        accumulator.compute()
    fixed = pimo.AupimoAccumulator(bounds, expected_num_normal=151)
    fixed.update(maps[:1], masks[:1])
    fixed.update(maps[1:], masks[1:])
    assert fixed.state_dict()["num_kept"][0] < maps[0].size  # the tail was cut, still exact
    assert_same(fixed.compute(), pimo.aupimo(maps, masks, fpr_bounds=bounds))


def test_auimo_tails_too_short_are_detected():
    rng = np.random.default_rng(2)
    normal = rng.random((2, 100, 100))
    anomalous = rng.random((100, 100)) + 5.0  # every non-mask pixel above every normal one
    mask = np.zeros((100, 100), bool)
    mask[:3, :3] = True
    maps = [*normal, anomalous]
    masks = [np.zeros((100, 100), bool)] * 2 + [mask]
    bounds = (1e-4, 5e-4)  # non-mask tail: ceil(16 * 64 * 5e-4 * 10,000) + 2 = 5,122 < 9,991
    accumulator = pimo.AupimoAccumulator(bounds, with_auimo=True)
    accumulator.update(maps, masks)
    assert_same(accumulator.compute(), pimo.aupimo(maps, masks, fpr_bounds=bounds))
    with pytest.raises(pimo.IncompleteSummaryError, match="AUIMO: image 2"):
        accumulator.compute_auimo()


@pytest.fixture(scope="module")
def example():
    return pimo.make_example(5, 6, (240, 200), seed=5)


def test_shapes_channels_volumes_and_lists(example):
    maps, masks = example
    expected = pimo.aupimo(maps, masks)
    channel = pimo.AupimoAccumulator()
    channel.update(maps[:4, None], masks[:4])  # (B, 1, H, W) maps, (B, H, W) masks
    channel.update(maps[4:, None], masks[4:, None])
    assert_same(channel.compute(), expected)
    mixed = pimo.AupimoAccumulator()
    mixed.update([maps[0], maps[1][:50]], [masks[0], masks[1][:50]])
    mixed.update(list(maps[2:]), list(masks[2:]))
    assert_same(mixed.compute(),
                pimo.aupimo([maps[0], maps[1][:50], *maps[2:]],
                            [masks[0], masks[1][:50], *masks[2:]]))
    volumes = maps[:10].reshape(5, 2, 240, 200)  # (B, D, H, W): 2 normal, 3 anomalous volumes
    volume_masks = masks[:10].reshape(5, 2, 240, 200)
    accumulator = pimo.AupimoAccumulator()
    accumulator.update(volumes[:3], volume_masks[:3])
    accumulator.update(volumes[3:], volume_masks[3:])
    assert accumulator.state_dict()["num_pixels"][0] == 2 * 240 * 200
    assert_same(accumulator.compute(), pimo.aupimo(volumes, volume_masks))


def test_float64_after_float32_widens_exactly(example):
    maps, masks = example
    wide = maps.astype(np.float64) * (1 + 1e-12)  # values float32 cannot hold
    accumulator = pimo.AupimoAccumulator()
    accumulator.update(maps[:6], masks[:6])
    assert accumulator.state_dict()["values"].dtype == np.float32
    accumulator.update(wide[6:], masks[6:])
    assert accumulator.state_dict()["values"].dtype == np.float64
    expected = pimo.aupimo([*maps[:6], *wide[6:]], list(masks))
    assert_same(accumulator.compute(), expected)


@pytest.mark.parametrize("dtype_name", ["float32", "float64", "float16"])
def test_torch_batches_summarised_on_device_equal_numpy(example, dtype_name):
    torch = pytest.importorskip("torch", reason="torch batches need torch (pimo[torch])")
    dtype = getattr(torch, dtype_name)
    maps, masks = example
    maps_torch = torch.from_numpy(maps).to(dtype)
    reference, on_device = pimo.AupimoAccumulator(with_auimo=True), pimo.AupimoAccumulator(
        with_auimo=True)
    for batch in (slice(0, 4), slice(4, 7), slice(7, 11)):
        reference.update(maps_torch[batch].numpy(), masks[batch])
        on_device.update(maps_torch[batch], torch.from_numpy(masks[batch]).to(torch.uint8))
    ref_state, dev_state = reference.state_dict(), on_device.state_dict()
    for key in ("num_pixels", "num_positive", "num_kept"):
        assert np.array_equal(ref_state[key], dev_state[key])
    assert ref_state["values"].dtype == dev_state["values"].dtype
    starts = np.concatenate([[0], np.cumsum(ref_state["num_kept"])])
    for a, b in itertools.pairwise(starts):  # same values per image, any order
        assert np.array_equal(np.sort(ref_state["values"][a:b]), np.sort(dev_state["values"][a:b]))
    assert_same(on_device.compute(), reference.compute())
    assert_same(on_device.compute_auimo(), reference.compute_auimo())


def test_torch_batch_with_bad_values_gets_the_numpy_errors(example):
    torch = pytest.importorskip("torch", reason="torch batches need torch (pimo[torch])")
    maps, masks = example
    bad = torch.from_numpy(maps[:3].copy())
    bad[1, 2, 3] = float("nan")
    accumulator = pimo.AupimoAccumulator()
    accumulator.update(maps[:4], masks[:4])
    with pytest.raises(pimo.NonFiniteScoreError, match=r"image 5 \(position 1 of batch 1\)"):
        accumulator.update(bad, torch.from_numpy(masks[:3]))


def test_errors_name_the_global_image(example):
    maps, masks = example
    accumulator = pimo.AupimoAccumulator()
    accumulator.update(maps[:4], masks[:4])
    accumulator.update(maps[4:6], masks[4:6])
    bad_masks = masks[6:9].astype(np.uint8)
    bad_masks[2, 0, 0] = 255
    with pytest.raises(pimo.MaskValueError,
                       match=r"image 8 \('c.png'; position 2 of batch 2\)") as error:
        accumulator.update(maps[6:9], bad_masks, paths=["a.png", "b.png", "c.png"])
    assert error.value.image_index == 8
    assert accumulator.num_images == 6  # the refused batch left nothing behind
    with pytest.raises(pimo.ShapeMismatchError, match=r"image 6 \(position 0 of batch 2\)"):
        accumulator.update([maps[6]], [masks[6][:10]])


def test_one_class_settings_and_state_errors(example):
    maps, masks = example
    normal = np.flatnonzero(~masks.any(axis=(1, 2)))
    anomalous = np.flatnonzero(masks.any(axis=(1, 2)))
    only_normal = pimo.AupimoAccumulator()
    only_normal.update(maps[normal], masks[normal])
    with pytest.raises(pimo.NoAnomalousImageError):
        only_normal.compute()
    only_anomalous = pimo.AupimoAccumulator()
    only_anomalous.update(maps[anomalous], masks[anomalous])
    with pytest.raises(pimo.NoNormalImageError):
        only_anomalous.compute()
    with pytest.raises(pimo.NoNormalImageError):
        pimo.AupimoAccumulator().compute()
    with pytest.raises(pimo.PimoValueError, match=r"fpr_bounds: \(1e-05, 0.0001\) .*"
                                                  r"\(0.001, 0.01\)"):
        pimo.AupimoAccumulator().merge(pimo.AupimoAccumulator((1e-3, 1e-2)))
    with pytest.raises(pimo.PimoValueError, match=r"with_auimo: False .* True"):
        pimo.AupimoAccumulator().merge(pimo.AupimoAccumulator(with_auimo=True))
    with pytest.raises(pimo.PimoValueError, match="with_auimo=True"):
        only_normal.compute_auimo()
    state = only_normal.state_dict()
    state["num_kept"] = state["num_kept"][:-1]
    with pytest.raises(pimo.PimoValueError, match="Inconsistent"):
        pimo.AupimoAccumulator.from_state_dict(state)


def test_constant_normal_maps_and_unreachable_bound():
    accumulator = pimo.AupimoAccumulator()
    mask = np.zeros((10, 10), bool)
    mask[:2] = True
    accumulator.update([np.ones((10, 10)), np.ones((10, 10)), np.arange(100.0).reshape(10, 10)],
                       [np.zeros((10, 10), bool), np.zeros((10, 10), bool), mask])
    with pytest.raises(pimo.ConstantNormalMapsError):
        accumulator.compute()
    accumulator = pimo.AupimoAccumulator()
    accumulator.update([np.arange(100.0).reshape(10, 10)] * 2,
                       [np.zeros((10, 10), bool), mask])
    with pytest.raises(pimo.UnreachableFprError, match="add normal images"):
        accumulator.compute()


def test_empty_state_dict_has_every_key_and_round_trips(example):
    torch = pytest.importorskip("torch", reason="state dicts held as tensors need torch")
    empty = pimo.AupimoAccumulator().state_dict()
    assert set(empty) == set(pimo.AupimoAccumulator.STATE_REDUCTIONS)
    for value in empty.values():
        assert value.shape == (0,)
        assert value.dtype in (np.int64, np.float32)
        torch.from_numpy(value)  # convertible without loss
    maps, masks = example
    accumulator = pimo.AupimoAccumulator.from_state_dict(empty)
    accumulator.update(maps, masks)
    state = {key: torch.from_numpy(value) for key, value in accumulator.state_dict().items()}
    restored = pimo.AupimoAccumulator.from_state_dict(state)
    assert restored.state_bytes == accumulator.state_bytes
    assert_same(restored.compute(), pimo.aupimo(maps, masks))
