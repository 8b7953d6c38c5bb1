"""AUPIMO / AUIMO / PIMO curves against brute-force implementations of the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import pimo

# --------------------------------------------------------------------------------------
# Brute force, written for clarity (DESIGN §1), independent of the engine
# --------------------------------------------------------------------------------------


def count_at_least(image: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """|image >= t| for every t."""
    ordered = np.sort(image.ravel())
    return ordered.size - np.searchsorted(ordered, thresholds, side="left")


def brute_force_exact(maps, masks, fpr_bounds, metric="tpr"):
    """Exact-mode AUPIMO (metric='tpr') or AUIMO (metric='iou') by the definition.

    Every distinct score of every image is a threshold; the curve is the polyline through
    (log F_sh(t), value(t)) in decreasing-threshold order, with points of F_sh = 0 dropped,
    integrated by the trapezoid rule between log L and log U (linear interpolation at the cuts).
    """
    lower, upper = fpr_bounds
    maps = [np.asarray(m, dtype=np.float64) for m in maps]
    masks = [np.asarray(m, dtype=bool) for m in masks]
    thresholds = np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]
    normal = [i for i, mask in enumerate(masks) if not mask.any()]
    shared_fpr = np.mean(
        [count_at_least(maps[j], thresholds) / maps[j].size for j in normal], axis=0
    )
    visible = shared_fpr > 0
    if shared_fpr[visible][0] > lower * (1 + 1e-12):
        return None  # L unreachable
    x = np.log(shared_fpr[visible])
    scores = np.full(len(maps), np.nan)
    for i, (image, mask) in enumerate(zip(maps, masks, strict=True)):
        if not mask.any():
            continue
        tp = count_at_least(image[mask], thresholds)
        if metric == "tpr":
            y = tp / mask.sum()
        else:
            fp = count_at_least(image[~mask], thresholds)
            y = tp / (mask.sum() + fp)
        y = y[visible]
        area = 0.0
        for k in range(len(x) - 1):
            x0, x1, y0, y1 = x[k], x[k + 1], y[k], y[k + 1]
            if x1 <= x0:
                continue
            left, right = max(x0, math.log(lower)), min(x1, math.log(upper))
            if right <= left:
                continue
            at = lambda xv, x0=x0, x1=x1, y0=y0, y1=y1: y0 + (y1 - y0) * (xv - x0) / (x1 - x0)  # noqa: E731
            area += (right - left) * (at(left) + at(right)) / 2
        scores[i] = area / math.log(upper / lower)
    return scores


def brute_force_grid(maps, masks, fpr_bounds, num_thresholds, metric="tpr"):
    """Grid-mode AUPIMO by the official rules (DESIGN §1), with plain numpy."""
    lower, upper = fpr_bounds
    masks = [np.asarray(m, dtype=bool) for m in masks]
    normal = [i for i, mask in enumerate(masks) if not mask.any()]
    dtype = np.asarray(maps[0]).dtype
    normal_scores = np.concatenate([np.asarray(maps[j]).ravel() for j in normal])
    # as the official code: bounds taken as Python floats, linspace cast to the maps' dtype
    thresholds = np.linspace(normal_scores.min().item(), normal_scores.max().item(),
                             num_thresholds, dtype=dtype)
    fprs = np.array([[(np.asarray(maps[j]) >= t).sum() / maps[j].size for t in thresholds]
                     for j in normal])
    shared = fprs.mean(axis=0)
    index_u = int(np.argmin(np.abs(shared - upper)))
    index_l = int(np.argmin(np.abs(shared - lower)))
    x = np.log(shared[index_u : index_l + 1])[::-1]
    keep = np.isfinite(x)
    scores = np.full(len(maps), np.nan)
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        image = np.asarray(maps[i])
        tp = np.array([(image[mask] >= t).sum() for t in thresholds], dtype=np.float64)
        if metric == "tpr":
            y = tp / mask.sum()
        else:
            fp = np.array([(image[~mask] >= t).sum() for t in thresholds])
            y = tp / (mask.sum() + fp)
        y = y[index_u : index_l + 1][::-1][keep]
        xs = x[keep]
        area = float(np.sum((xs[1:] - xs[:-1]) * (y[1:] + y[:-1]) / 2))
        scores[i] = min(max(area / np.log(upper / lower), 0.0), 1.0)
    return scores, (float(thresholds[index_u]), float(thresholds[index_l]))


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------


@st.composite
def image_sets(draw, max_images=4, max_side=9):
    """Small mixed-size sets with ties, constant regions and integer-valued scores."""
    num_normal = draw(st.integers(1, max_images))
    num_anomalous = draw(st.integers(1, max_images))
    style = draw(st.sampled_from(["continuous", "integers", "constant-regions", "mixed"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    same_size = draw(st.booleans())
    side = (draw(st.integers(1, max_side)), draw(st.integers(2, max_side)))
    maps, masks = [], []
    for index in range(num_normal + num_anomalous):
        shape = side if same_size else (int(rng.integers(1, max_side + 1)),
                                        int(rng.integers(2, max_side + 1)))
        if style == "continuous":
            image = rng.normal(size=shape)
        elif style == "integers":
            image = rng.integers(0, 6, size=shape).astype(np.float64)
        elif style == "constant-regions":
            image = np.full(shape, float(rng.integers(0, 3)))
            image[: shape[0] // 2] = rng.normal(size=(shape[0] // 2, shape[1]))
        else:
            image = np.round(rng.normal(size=shape), 1)
        mask = np.zeros(shape, dtype=bool)
        if index >= num_normal:
            mask = rng.random(shape) < rng.uniform(0.1, 0.9)
            mask.flat[int(rng.integers(mask.size))] = True
            image = image + mask * rng.uniform(0, 2)
        maps.append(image)
        masks.append(mask)
    order = rng.permutation(len(maps))
    return [maps[i] for i in order], [masks[i] for i in order]


def reachable_bounds(maps, masks, draw_fraction):
    """FPR bounds inside what the data can reach: L in [smallest, ...], U in (L, 1]."""
    normal = [m for m, k in zip(maps, masks, strict=True) if not k.any()]
    top = max(float(m.max()) for m in normal)
    smallest = np.mean([(m >= top).sum() / m.size for m in normal])
    lower = min(smallest * (1 + 3 * draw_fraction[0]), 0.5)
    upper = lower + (1 - lower) * max(draw_fraction[1], 1e-3)
    return lower, upper


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(image_sets(), st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_exact_mode_matches_brute_force(image_set, fractions):
    maps, masks = image_set
    bounds = reachable_bounds(maps, masks, fractions)
    expected = brute_force_exact(maps, masks, bounds)
    assume(expected is not None)
    result = pimo.aupimo(maps, masks, fpr_bounds=bounds)
    np.testing.assert_allclose(result.aupimos, expected, rtol=0, atol=1e-9)
    assert np.array_equal(np.isnan(result.aupimos), np.isnan(expected))


@SETTINGS
@given(image_sets(), st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_auimo_matches_brute_force(image_set, fractions):
    maps, masks = image_set
    bounds = reachable_bounds(maps, masks, fractions)
    expected = brute_force_exact(maps, masks, bounds, metric="iou")
    assume(expected is not None)
    result = pimo.auimo(maps, masks, fpr_bounds=bounds)
    np.testing.assert_allclose(result.auimos, expected, rtol=0, atol=1e-9)


@pytest.mark.filterwarnings("ignore::pimo.PimoWarning")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_sets(), st.tuples(st.floats(0, 1), st.floats(0, 1)), st.integers(2, 60),
       st.sampled_from([np.float32, np.float64]))
def test_grid_mode_matches_official_rules(image_set, fractions, num_thresholds, dtype):
    maps, masks = image_set
    maps = [m.astype(dtype) for m in maps]
    bounds = reachable_bounds(maps, masks, fractions)
    expected, thresh_bounds = brute_force_grid(maps, masks, bounds, num_thresholds)
    try:
        result = pimo.aupimo(maps, masks, fpr_bounds=bounds, num_thresholds=num_thresholds)
    except pimo.UnreachableFprError:
        normal = [m for m, k in zip(maps, masks, strict=True) if not k.any()]
        thresholds = np.linspace(min(m.min().item() for m in normal),
                                 max(m.max().item() for m in normal), num_thresholds, dtype=dtype)
        top = thresholds[-1]
        assert np.mean([(m >= top).sum() / m.size for m in normal]) > bounds[0]
        return
    except pimo.PimoValueError as error:
        assert "same grid threshold" in str(error) or "constant" in str(error)
        return
    np.testing.assert_allclose(result.aupimos, expected, rtol=0, atol=1e-12)
    assert result.thresh_bounds == thresh_bounds
    assert result.mode == "grid"


@pytest.mark.filterwarnings("ignore::pimo.PimoWarning")
def test_grid_auimo_matches_official_rules():
    maps, masks = pimo.make_example(3, 3, (12, 12), seed=3, dtype=np.float64)
    bounds = (0.01, 0.3)
    expected, _ = brute_force_grid(list(maps), list(masks), bounds, 50, metric="iou")
    result = pimo.auimo(maps, masks, fpr_bounds=bounds, num_thresholds=50)
    np.testing.assert_allclose(result.auimos, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("dtype", "scale"), [(np.float32, 1e-3), (np.float64, 1e-9)])
@pytest.mark.parametrize("refine_above", [64, 1 << 20])
def test_large_images_match_brute_force(dtype, scale, refine_above, monkeypatch):
    """Exercise the radix refinement (dense score bins) and the multi-threaded kernels."""
    monkeypatch.setattr("pimo.pimo._MAX_TAIL_VALUES", refine_above)
    rng = np.random.default_rng(7)
    maps, masks = pimo.make_example(6, 6, (160, 160), seed=11, dtype=np.float64)
    # squeeze scores into a narrow band so that one coarse key bin holds most pixels
    maps = (0.75 + maps * scale).astype(dtype)
    maps[:, 0, 0] = 1 + rng.random(12)  # a few scores far above the band
    bounds = (1e-5, 1e-4)
    expected = brute_force_exact(list(maps), list(masks), bounds)
    result = pimo.aupimo(maps, masks, fpr_bounds=bounds)
    np.testing.assert_allclose(result.aupimos, expected, rtol=0, atol=1e-9)
    assert np.nanmax(expected) > 0.1  # the case is not trivial
    image_set = pimo._validate.as_image_set(maps, masks)
    tail = pimo.pimo._shared_fpr_curve(image_set, bounds[1]).thresholds.size
    assert tail < 2000 if refine_above == 64 else tail > 2000  # refined, or one coarse level


# --------------------------------------------------------------------------------------
# Hand cases with closed-form answers: a normal image whose scores fall by decades
# --------------------------------------------------------------------------------------


def decades_normal_image(size: int = 100_000) -> np.ndarray:
    """1 pixel at 5, 9 at 4, 90 at 3, 900 at 2, the rest at 1: F_sh(5)=1e-5, F_sh(4)=1e-4..."""
    image = np.ones(size)
    image[:1000] = 2
    image[:100] = 3
    image[:10] = 4
    image[:1] = 5
    return image.reshape(100, size // 100)


@pytest.mark.parametrize(
    ("mask_scores", "bounds", "expected"),
    [
        ([5.0] * 4, (1e-5, 1e-4), 1.0),  # always detected
        ([4.0] * 4, (1e-5, 1e-4), 0.5),  # switches on along the whole decade: a diagonal
        ([5.0, 5.0, 4.0, 4.0], (1e-5, 1e-4), 0.75),
        ([4.5] * 4, (1e-5, 1e-4), 1.0),  # above every threshold with F_sh > 1e-5
        ([3.0] * 4, (1e-5, 1e-3), 0.25),  # 0 on the first decade, diagonal on the second
        ([1.5] * 4, (1e-5, 1e-4), 0.0),
        ([5.0, 1.5, 1.5, 1.5], (1e-5, 1e-4), 0.25),
    ],
)
def test_closed_form_cases(mask_scores, bounds, expected):
    normal = decades_normal_image()
    anomalous = np.zeros((2, 2))
    anomalous.flat[:] = mask_scores
    result = pimo.aupimo([normal, anomalous], [np.zeros_like(normal, bool),
                                               np.ones((2, 2), bool)], fpr_bounds=bounds)
    assert result.aupimos[1] == pytest.approx(expected, abs=1e-12)
    assert math.isnan(result.aupimos[0])
    assert result.thresh_bounds == (4.0, 5.0) if bounds == (1e-5, 1e-4) else True


def test_closed_form_interpolated_cut():
    """The cut at L falls inside a segment: linear interpolation in log space."""
    normal = decades_normal_image()
    anomalous = np.full((1, 4), 4.0)
    bounds = (10**-4.5, 1e-4)
    result = pimo.aupimo([normal, anomalous], [np.zeros_like(normal, bool),
                                               np.ones((1, 4), bool)], fpr_bounds=bounds)
    # T rises linearly from 0 at log 1e-5 to 1 at log 1e-4: mean over the upper half = 0.75
    assert result.aupimos[1] == pytest.approx(0.75, abs=1e-12)


# --------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example():
    return pimo.make_example(8, 8, (128, 128), seed=5, dtype=np.float64)


def test_strictly_increasing_transform_changes_nothing(example):
    maps, masks = example
    reference = pimo.aupimo(maps, masks, fpr_bounds=(1e-4, 1e-3)).aupimos
    for transform in (lambda a: 3 * a + 7, np.exp, np.arctan, lambda a: a**3 + a):
        transformed = pimo.aupimo(transform(maps), masks, fpr_bounds=(1e-4, 1e-3)).aupimos
        np.testing.assert_allclose(transformed, reference, rtol=0, atol=1e-12)


def test_permuting_images_permutes_scores(example):
    maps, masks = example
    reference = pimo.aupimo(maps, masks, fpr_bounds=(1e-4, 1e-3)).aupimos
    order = np.random.default_rng(0).permutation(len(maps))
    permuted = pimo.aupimo(maps[order], masks[order], fpr_bounds=(1e-4, 1e-3)).aupimos
    np.testing.assert_allclose(permuted, reference[order], rtol=0, atol=1e-12)


def test_duplicating_the_normal_set_changes_nothing(example):
    maps, masks = example
    reference = pimo.aupimo(maps, masks, fpr_bounds=(1e-4, 1e-3)).aupimos
    normal = ~masks.reshape(len(masks), -1).any(axis=1)
    doubled_maps = np.concatenate([maps, maps[normal]])
    doubled_masks = np.concatenate([masks, masks[normal]])
    doubled = pimo.aupimo(doubled_maps, doubled_masks, fpr_bounds=(1e-4, 1e-3)).aupimos
    np.testing.assert_allclose(doubled[: len(maps)], reference, rtol=0, atol=1e-12)
    assert np.isnan(doubled[len(maps):]).all()


def test_perfect_and_hopeless_images():
    rng = np.random.default_rng(3)
    normal = rng.normal(size=(5, 200, 200))
    perfect = rng.normal(size=(200, 200))
    hopeless = rng.normal(size=(200, 200))
    mask = np.zeros((200, 200), bool)
    mask[10:20, 10:20] = True
    perfect[mask] = normal.max() + 1 + rng.random(mask.sum())
    floor = min(np.percentile(n, 99) for n in normal)
    hopeless[mask] = floor - 1 - rng.random(mask.sum())
    maps = np.concatenate([normal, perfect[None], hopeless[None]])
    masks = np.concatenate([np.zeros((5, 200, 200), bool), mask[None], mask[None]])
    scores = pimo.aupimo(maps, masks, fpr_bounds=(1e-5, 1e-4)).aupimos
    assert scores[5] == 1.0
    assert scores[6] == 0.0


def test_dtypes_and_containers_agree(example):
    maps, masks = example
    reference = pimo.aupimo(maps.astype(np.float32), masks).aupimos
    as_list = pimo.aupimo(list(maps.astype(np.float32)), list(masks.astype(np.uint8))).aupimos
    np.testing.assert_array_equal(as_list, reference)
    integer_maps = np.round(maps * 100).astype(np.int32)
    from_int = pimo.aupimo(integer_maps, masks).aupimos
    from_float = pimo.aupimo(integer_maps.astype(np.float64), masks).aupimos
    np.testing.assert_array_equal(from_int, from_float)


def test_volumes_count_as_images():
    rng = np.random.default_rng(1)
    volumes = [rng.normal(size=(4, 20, 20)) for _ in range(4)]
    masks = [np.zeros((4, 20, 20), bool) for _ in range(4)]
    masks[3][1:3, 5:10, 5:10] = True
    volumes[3][masks[3]] += 3
    bounds = (1e-3, 1e-2)
    result = pimo.aupimo(volumes, masks, fpr_bounds=bounds)
    expected = brute_force_exact(volumes, masks, bounds)
    np.testing.assert_allclose(result.aupimos, expected, atol=1e-9)


def test_exact_result_fields(example):
    maps, masks = example
    result = pimo.aupimo(maps, masks)
    assert result.mode == "exact"
    assert result.fpr_bounds == (1e-5, 1e-4)
    low, high = result.thresh_bounds
    assert low < high
    assert result.num_thresholds >= 2
    np.testing.assert_array_equal(result.image_classes, masks.reshape(16, -1).any(1))
    summary = result.summary()
    assert summary["num_anomalous"] == 8
    assert summary["mean"] == pytest.approx(np.nanmean(result.aupimos))
    assert summary["std"] == pytest.approx(np.nanstd(result.aupimos))


# --------------------------------------------------------------------------------------
# PIMO curves
# --------------------------------------------------------------------------------------


def test_exact_curves_match_definition(example):
    maps, masks = example
    curves = pimo.pimo_curves(maps, masks, fpr_bounds=(1e-4, 1e-3))
    assert np.all(np.diff(curves.thresholds) < 0)
    assert np.all(np.diff(curves.shared_fpr) > 0)
    assert curves.shared_fpr[0] <= 1e-5 or curves.shared_fpr[0] == curves.shared_fpr.min()
    assert curves.shared_fpr[-1] >= 1e-2
    normal = [m for m, k in zip(maps, masks, strict=True) if not k.any()]
    shared = np.mean([count_at_least(m, curves.thresholds) / m.size for m in normal], axis=0)
    np.testing.assert_allclose(curves.shared_fpr, shared, rtol=1e-12)
    for i in curves.anomalous_indices:
        tpr = count_at_least(maps[i][masks[i]], curves.thresholds) / masks[i].sum()
        np.testing.assert_allclose(curves.tprs[i], tpr, rtol=0, atol=1e-15)
    assert np.isnan(curves.tprs[~curves.image_classes.astype(bool)]).all()


@pytest.mark.filterwarnings("ignore::pimo.PimoWarning")
def test_grid_curves_match_definition(example):
    maps, masks = example
    curves = pimo.pimo_curves(maps, masks, num_thresholds=40)
    assert curves.thresholds.shape == (40,)
    normal = [m for m, k in zip(maps, masks, strict=True) if not k.any()]
    shared = np.mean([count_at_least(m, curves.thresholds) / m.size for m in normal], axis=0)
    np.testing.assert_allclose(curves.shared_fpr, shared, rtol=1e-12)
    i = int(curves.anomalous_indices[0])
    tpr = count_at_least(maps[i][masks[i]], curves.thresholds) / masks[i].sum()
    np.testing.assert_allclose(curves.tprs[i], tpr)
