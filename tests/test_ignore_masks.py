"""Ignore masks: every metric equals the same metric on the images with those pixels removed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

import pimo
from pimo import IgnoreMaskError, MaskValueError, NonFiniteScoreError, ShapeMismatchError

from .test_aupimo import brute_force_exact, image_sets, reachable_bounds
from .test_setmetrics import area_until, brute_force_pro_curve, scipy_labels

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def draw_ignore_masks(maps, masks, seed: int, density: float, keep_every_region: bool = True):
    """Random ignore masks that leave every image, every defect and (optionally) a pixel of
    every region in place."""
    rng = np.random.default_rng(seed)
    ignore_masks = []
    for image, mask in zip(maps, masks, strict=True):
        ignore = rng.random(image.shape) < density
        ignore.flat[int(rng.integers(image.size))] = False
        if mask.any():
            labels, count = scipy_labels(mask)
            regions = range(1, count + 1) if keep_every_region else [1]
            for region in regions:
                pixels = np.flatnonzero(labels.ravel() == region)
                ignore.flat[int(rng.choice(pixels))] = False
        ignore_masks.append(ignore)
    return ignore_masks


def kept(images, ignore_masks):
    """Each image reduced to its kept pixels, as a 1-D array."""
    return [np.asarray(image)[~ignore] for image, ignore in zip(images, ignore_masks, strict=True)]


@st.composite
def sets_with_ignore_masks(draw):
    maps, masks = draw(image_sets())
    ignore_masks = draw_ignore_masks(maps, masks, draw(st.integers(0, 2**32 - 1)),
                                     draw(st.sampled_from([0.0, 0.2, 0.5, 0.8])))
    return maps, masks, ignore_masks


# --------------------------------------------------------------------------------------
# AUPIMO / AUIMO
# --------------------------------------------------------------------------------------
@SETTINGS
@given(sets_with_ignore_masks(), st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_aupimo_equals_the_definition_on_the_kept_pixels(data, fractions):
    maps, masks, ignore_masks = data
    kept_maps, kept_masks = kept(maps, ignore_masks), kept(masks, ignore_masks)
    bounds = reachable_bounds(kept_maps, kept_masks, fractions)
    expected = brute_force_exact(kept_maps, kept_masks, bounds)
    if expected is None:
        with pytest.raises(pimo.UnreachableFprError):
            pimo.aupimo(maps, masks, fpr_bounds=bounds, ignore_masks=ignore_masks)
        return
    result = pimo.aupimo(maps, masks, fpr_bounds=bounds, ignore_masks=ignore_masks)
    np.testing.assert_allclose(result.aupimos, expected, atol=1e-9, equal_nan=True)
    iou = pimo.auimo(maps, masks, fpr_bounds=bounds, ignore_masks=ignore_masks)
    np.testing.assert_allclose(iou.aupimos, brute_force_exact(kept_maps, kept_masks, bounds,
                                                              metric="iou"),
                               atol=1e-9, equal_nan=True)


@SETTINGS
@given(sets_with_ignore_masks(), st.integers(10, 200))
def test_grid_mode_equals_grid_mode_on_the_kept_pixels(data, num_thresholds):
    maps, masks, ignore_masks = data
    kept_maps, kept_masks = kept(maps, ignore_masks), kept(masks, ignore_masks)
    bounds = reachable_bounds(kept_maps, kept_masks, (0.5, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pimo.PimoWarning)  # few grid points: both calls warn
        try:
            expected = pimo.aupimo(kept_maps, kept_masks, fpr_bounds=bounds,
                                   num_thresholds=num_thresholds)
        except pimo.PimoError as error:
            with pytest.raises(type(error)):
                pimo.aupimo(maps, masks, fpr_bounds=bounds, num_thresholds=num_thresholds,
                            ignore_masks=ignore_masks)
            return
        result = pimo.aupimo(maps, masks, fpr_bounds=bounds, num_thresholds=num_thresholds,
                             ignore_masks=ignore_masks)
    np.testing.assert_array_equal(result.aupimos, expected.aupimos)
    assert result.thresh_bounds == expected.thresh_bounds


def test_an_all_zero_ignore_mask_changes_nothing():
    maps, masks = pimo.make_example(4, 4, (48, 48), seed=3)
    nothing = np.zeros(maps.shape, dtype=bool)
    bounds = (1e-3, 1e-2)
    np.testing.assert_array_equal(pimo.aupimo(maps, masks, fpr_bounds=bounds).aupimos,
                                  pimo.aupimo(maps, masks, fpr_bounds=bounds,
                                              ignore_masks=nothing).aupimos)
    assert pimo.set_metrics(maps, masks) == pimo.set_metrics(maps, masks, ignore_masks=nothing)


def test_ignored_scores_do_not_matter_even_when_not_finite():
    maps, masks = pimo.make_example(4, 4, (48, 48), seed=4)
    ignore = np.zeros(maps.shape, dtype=bool)
    ignore[:, :3, :] = True  # a border band
    ignore[:, :, -2:] = True
    ignore &= ~masks.astype(bool)
    changed = maps.copy()
    changed[ignore] = np.where(np.arange(int(ignore.sum())) % 2, np.nan, 1e9)
    bounds = (1e-3, 1e-2)
    np.testing.assert_array_equal(
        pimo.aupimo(maps, masks, fpr_bounds=bounds, ignore_masks=ignore).aupimos,
        pimo.aupimo(changed, masks, fpr_bounds=bounds, ignore_masks=ignore).aupimos)
    assert pimo.set_metrics(maps, masks, ignore_masks=ignore) == pimo.set_metrics(
        changed, masks, ignore_masks=ignore)
    # and the border does change the result when it is not ignored
    assert pimo.set_metrics(maps, masks, ignore_masks=ignore) != pimo.set_metrics(maps, masks)


def test_a_hand_computed_case():
    # normal image: 4 pixels, one ignored (score 9, which would be the top score)
    normal = np.array([[9.0, 1.0], [2.0, 3.0]])
    normal_ignore = np.array([[True, False], [False, False]])
    # anomalous image: mask pixels 5 (kept) and 0 (ignored); normal pixels 1 and 4
    anomalous = np.array([[5.0, 0.0], [1.0, 4.0]])
    mask = np.array([[True, True], [False, False]])
    anomalous_ignore = np.array([[False, True], [False, False]])
    maps, masks = [normal, anomalous], [np.zeros((2, 2), bool), mask]
    ignore_masks = [normal_ignore, anomalous_ignore]
    result = pimo.set_metrics(maps, masks, ignore_masks=ignore_masks, fpr_limits=(1.0,))
    # kept: normal scores 1, 2, 3, 1, 4; the one anomalous pixel (5) is above them all
    assert result.auroc == 1.0
    assert result.ap == 1.0
    assert result.aupro[1.0] == 1.0
    assert result.num_anomalous_pixels == 1 and result.num_normal_pixels == 5
    # the ignored anomalous pixel (score 0) would pull AUROC down
    assert pimo.auroc(maps, masks) < 1.0
    # shared FPR from the normal image's 3 kept pixels: the top kept score 3 gives 1/3
    threshold = pimo.threshold_at(maps, masks, fpr=0.34, ignore_masks=ignore_masks)
    assert threshold.threshold == 3.0 and threshold.shared_fpr == pytest.approx(1 / 3)
    assert threshold.tpr[1] == 1.0 and threshold.fpr[1] == 0.5  # 4 >= 3 of {1, 4}


# --------------------------------------------------------------------------------------
# Set metrics
# --------------------------------------------------------------------------------------
def f1_max_brute_force(labels: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
    return float(f1.max())


@SETTINGS
@given(sets_with_ignore_masks(), st.sampled_from([0.05, 0.3, 1.0]))
def test_set_metrics_equal_references_on_the_kept_pixels(data, fpr_limit):
    maps, masks, ignore_masks = data
    scores = np.concatenate([m.ravel() for m in kept(maps, ignore_masks)])
    labels = np.concatenate([m.ravel() for m in kept(masks, ignore_masks)])
    if labels.all():
        with pytest.raises(pimo.NoNormalImageError):
            pimo.set_metrics(maps, masks, ignore_masks=ignore_masks)
        return
    result = pimo.set_metrics(maps, masks, fpr_limits=(fpr_limit,), ignore_masks=ignore_masks)
    assert result.auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result.ap == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert result.f1_max == pytest.approx(f1_max_brute_force(labels, scores), abs=1e-12)
    # regions labelled on the whole masks, then restricted to the kept pixels
    fprs, pros = brute_force_pro_curve(maps, masks, ignore_masks=ignore_masks)
    assert result.aupro[fpr_limit] == pytest.approx(area_until(fprs, pros, fpr_limit), abs=1e-9)
    assert result.num_regions == sum(scipy_labels(mask)[1] for mask in masks)


@SETTINGS
@given(sets_with_ignore_masks(), st.integers(1, 4), st.integers(0, 2**16))
def test_accumulators_in_batches_equal_one_call(data, batch_size, seed):
    maps, masks, ignore_masks = data
    order = np.random.default_rng(seed).permutation(len(maps))
    set_accumulator = pimo.SetMetricsAccumulator(fpr_limits=(0.3,))
    for start in range(0, len(maps), batch_size):
        batch = order[start:start + batch_size]
        set_accumulator.update([maps[i] for i in batch], [masks[i] for i in batch],
                               ignore_masks=[ignore_masks[i] for i in batch])
    labels = np.concatenate([m.ravel() for m in kept(masks, ignore_masks)])
    if labels.all():
        return
    one_call = pimo.set_metrics(maps, masks, fpr_limits=(0.3,), ignore_masks=ignore_masks)
    accumulated = set_accumulator.compute()
    assert accumulated.auroc == pytest.approx(one_call.auroc, abs=1e-12)
    assert accumulated.aupro[0.3] == pytest.approx(one_call.aupro[0.3], abs=1e-12)
    assert accumulated.ap == pytest.approx(one_call.ap, abs=1e-12)


def test_aupimo_accumulator_and_stream_honour_ignore_masks():
    maps, masks = pimo.make_example(5, 5, (40, 40), seed=6)
    ignore = draw_ignore_masks(list(maps), list(masks.astype(bool)), 1, 0.3)
    bounds = (1e-3, 1e-2)
    expected = pimo.aupimo(maps, masks, fpr_bounds=bounds, ignore_masks=ignore)
    accumulator = pimo.AupimoAccumulator(fpr_bounds=bounds)
    for batch in (slice(7, 10), slice(0, 4), slice(4, 7)):
        accumulator.update(maps[batch], masks[batch], ignore_masks=np.stack(ignore[batch]))
    accumulated = accumulator.compute()
    order = np.r_[7:10, 0:4, 4:7]
    np.testing.assert_allclose(accumulated.aupimos, expected.aupimos[order], atol=1e-12,
                               equal_nan=True)
    stream = pimo.streaming.AupimoStream(5, fpr_bounds=bounds)
    normal = np.flatnonzero(~masks.reshape(10, -1).any(1))
    for index in normal:
        stream.add_normal(int(index), maps[index], ignore_mask=ignore[index])
    for index in np.flatnonzero(masks.reshape(10, -1).any(1)):
        score = stream.add_anomalous(int(index), maps[index], masks[index],
                                     ignore_mask=ignore[index])
        assert score == pytest.approx(expected.aupimos[index], abs=1e-12)


# --------------------------------------------------------------------------------------
# Thresholds and image metrics
# --------------------------------------------------------------------------------------
@SETTINGS
@given(sets_with_ignore_masks(), st.floats(0.01, 1.0))
def test_thresholds_equal_those_of_the_kept_pixels(data, target):
    maps, masks, ignore_masks = data
    kept_maps, kept_masks = kept(maps, ignore_masks), kept(masks, ignore_masks)
    try:
        expected = pimo.threshold_at(kept_maps, kept_masks, fpr=target)
    except pimo.PimoError as error:
        with pytest.raises(type(error)):
            pimo.threshold_at(maps, masks, fpr=target, ignore_masks=ignore_masks)
        return
    result = pimo.threshold_at(maps, masks, fpr=target, ignore_masks=ignore_masks)
    assert result.threshold == expected.threshold
    assert result.shared_fpr == expected.shared_fpr
    for name in ("tpr", "fpr", "iou", "f1"):
        np.testing.assert_array_equal(getattr(result, name), getattr(expected, name))
    # FP regions: labelled on the whole image, ignored pixels never predicted
    for index, (image, mask, ignore) in enumerate(zip(maps, masks, ignore_masks, strict=True)):
        false_positive = (image >= result.threshold) & ~mask & ~ignore
        assert result.fp_regions[index] == scipy_labels(false_positive)[1]


def test_image_scores_are_the_maxima_of_the_kept_pixels():
    maps, masks = pimo.make_example(4, 4, (32, 32), seed=8)
    ignore = np.zeros(maps.shape, dtype=bool)
    ignore[:, 0, 0] = True
    maps = maps.copy()
    maps[:4, 0, 0] = 100.0  # a hot corner on the normal images only
    assert pimo.image_metrics(maps, masks).auroc < 1.0
    result = pimo.image_metrics(maps, masks, ignore_masks=ignore)
    np.testing.assert_array_equal(result.scores, [m[~i].max() for m, i in zip(maps, ignore,
                                                                                strict=True)])
    with pytest.raises(pimo.PimoValueError, match="ignore_masks applies to anomaly maps"):
        pimo.image_metrics(result.scores, result.labels, ignore_masks=ignore)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------
def error_set():
    maps, masks = pimo.make_example(3, 3, (24, 24), seed=5)
    return maps, masks.astype(bool), ["n0.png", "n1.png", "n2.png", "a0.png", "a1.png", "a2.png"]


def test_an_ignore_mask_covering_a_whole_image_names_it():
    maps, masks, paths = error_set()
    ignore = np.zeros(maps.shape, dtype=bool)
    ignore[1] = True
    with pytest.raises(IgnoreMaskError, match=r"image 1 \('n1.png'\) covers all its 576 "
                                              "pixels") as caught:
        pimo.aupimo(maps, masks, ignore_masks=ignore, paths=paths)
    assert caught.value.image_index == 1 and caught.value.path == "n1.png"


def test_an_ignore_mask_covering_every_defect_pixel_names_the_image():
    maps, masks, paths = error_set()
    ignore = np.zeros(maps.shape, dtype=bool)
    ignore[4] = masks[4]
    with pytest.raises(IgnoreMaskError, match=r"image 4 \('a1.png'\) covers all \d+ anomalous "
                                              "pixels.*count as a normal image"):
        pimo.set_metrics(maps, masks, ignore_masks=ignore, paths=paths)


def test_an_ignore_mask_covering_a_region_names_the_image_and_the_region():
    mask = np.zeros((8, 8), dtype=bool)
    mask[1:3, 1:3] = True
    mask[5:7, 5:7] = True
    maps = [np.arange(64.0).reshape(8, 8), np.arange(64.0).reshape(8, 8)[::-1]]
    masks = [np.zeros((8, 8), dtype=bool), mask]
    ignore = [np.zeros((8, 8), dtype=bool), np.zeros((8, 8), dtype=bool)]
    ignore[1][5:7, 5:7] = True
    with pytest.raises(IgnoreMaskError, match=r"image 1 \('b.png'\) covers the whole "
                                              r"anomalous region at pixel \(5, 5\) \(4 pixels\)"):
        pimo.aupro(maps, masks, ignore_masks=ignore, paths=["a.png", "b.png"])
    accumulator = pimo.SetMetricsAccumulator()
    accumulator.update(maps, masks)
    with pytest.raises(IgnoreMaskError, match=r"image 3 covers the whole anomalous region"):
        accumulator.update(maps, masks, ignore_masks=ignore)
    # AUPIMO has no regions: the other defect still defines the image's recall
    pimo.aupimo(maps, masks, ignore_masks=ignore, fpr_bounds=(0.02, 0.5))


def test_bad_ignore_masks_are_named():
    maps, masks, paths = error_set()
    with pytest.raises(ShapeMismatchError, match="Got 5 ignore masks for 6 images"):
        pimo.aupimo(maps, masks, ignore_masks=np.zeros((5, 24, 24), dtype=bool))
    wrong_shape = [np.zeros((24, 24), dtype=bool)] * 5 + [np.zeros((24, 23), dtype=bool)]
    with pytest.raises(ShapeMismatchError, match=r"ignore mask of image 5 \('a2.png'\) has "
                                                 r"shape \(24, 23\)"):
        pimo.auroc(maps, masks, ignore_masks=wrong_shape, paths=paths)
    soft = np.zeros(maps.shape)
    soft[2, 3, 3] = 0.5
    with pytest.raises(MaskValueError, match=r"The ignore mask of image 2 holds values other "
                                             "than 0 and 1"):
        pimo.threshold_at(maps, masks, fpr=0.1, ignore_masks=soft)


def test_a_non_finite_score_is_located_in_the_whole_image():
    maps, masks, _ = error_set()
    maps = maps.copy()
    maps[0, 5, 7] = np.nan
    ignore = np.zeros(maps.shape, dtype=bool)
    ignore[0, :5] = True  # the rows above the NaN are left out
    with pytest.raises(NonFiniteScoreError, match=r"at pixel \(5, 7\)"):
        pimo.aupimo(maps, masks, ignore_masks=ignore)
    with pytest.raises(NonFiniteScoreError, match=r"flat pixel 127\b"):
        pimo.set_metrics(maps, masks, ignore_masks=ignore)
