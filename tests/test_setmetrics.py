"""Set-scoped metrics: AUROC against scikit-learn, AUPRO against a brute-force definition."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

import pimo
from pimo.setmetrics import SetMetricsAccumulator, label_regions, set_metrics

# ---------------------------------------------------------------------------------------------
# Reference implementations, written for clarity
# ---------------------------------------------------------------------------------------------
SCIPY_STRUCTURE_RANK = {4: 1, 8: 2, 6: 1, 18: 2, 26: 3}


def scipy_labels(mask: np.ndarray, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    rank = mask.ndim if connectivity is None else SCIPY_STRUCTURE_RANK[connectivity]
    structure = ndi.generate_binary_structure(mask.ndim, rank)
    return ndi.label(mask, structure)


def brute_force_pro_curve(maps, masks, connectivity=None, ignore_masks=None):
    """Points (FPR, mean region TPR) at every distinct score, from the highest down.

    With ``ignore_masks``, only the kept pixels count; regions are labelled on the whole masks.
    """
    if ignore_masks is None:
        ignore_masks = [np.zeros(np.shape(m), dtype=bool) for m in maps]
    kept = [~np.asarray(ignore, dtype=bool) for ignore in ignore_masks]
    scores = np.concatenate([np.asarray(m, dtype=np.float64)[k] for m, k in
                             zip(maps, kept, strict=True)])
    normal = np.concatenate([~np.asarray(y, dtype=bool)[k] for y, k in
                             zip(masks, kept, strict=True)])
    regions = []
    offset = 0
    for mask, keep in zip(masks, kept, strict=True):
        labels, count = scipy_labels(np.asarray(mask, dtype=bool), connectivity)
        labels = labels[keep]
        regions.extend(np.flatnonzero(labels == r) + offset for r in range(1, count + 1))
        offset += labels.size
    fprs, pros = [0.0], [0.0]
    for threshold in np.unique(scores)[::-1]:
        detected = scores >= threshold
        fprs.append(np.count_nonzero(detected & normal) / np.count_nonzero(normal))
        pros.append(np.mean([np.mean(detected[region]) for region in regions]))
    return np.array(fprs), np.array(pros)


def brute_force_aupro(maps, masks, fpr_limit, connectivity=None):
    """Trapezoids up to the limit, the crossing segment interpolated, divided by the limit."""
    return area_until(*brute_force_pro_curve(maps, masks, connectivity), fpr_limit)


def area_until(fprs, pros, fpr_limit):
    """Area under the polyline (fprs, pros) for FPR in [0, fpr_limit], over the limit."""
    area = 0.0
    for k in range(1, fprs.size):
        x0, x1, y0, y1 = fprs[k - 1], fprs[k], pros[k - 1], pros[k]
        if x0 >= fpr_limit:
            break
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_limit) / 2
    return area / fpr_limit


def flat(images):
    return np.concatenate([np.asarray(image).ravel() for image in images])


# ---------------------------------------------------------------------------------------------
# Random sets with many ties
# ---------------------------------------------------------------------------------------------
@st.composite
def image_sets(draw, three_d=False):
    num_images = draw(st.integers(1, 5))
    levels = draw(st.integers(1, 12))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.floats(0.02, 0.9))
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for _ in range(num_images):
        shape = tuple(int(side) for side in rng.integers(1, 5 if three_d else 12, 3 if three_d
                                                          else 2))
        mask = rng.random(shape) < density * rng.integers(0, 2)
        score = rng.integers(0, levels + 1, shape) * 0.25 + mask * rng.integers(0, 3) * 0.25
        maps.append((score - 1.0).astype(dtype))
        masks.append(mask)
    if not any(mask.any() for mask in masks):
        masks[0].flat[0] = True
    if all(mask.all() for mask in masks):  # add one normal pixel
        maps.append(np.zeros((1, 1, 1) if three_d else (1, 1), dtype=dtype))
        masks.append(np.zeros(maps[-1].shape, dtype=bool))
    return maps, masks


FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(image_sets())
def test_auroc_equals_sklearn_with_ties(data):
    maps, masks = data
    expected = roc_auc_score(flat(masks).astype(int), flat(maps).astype(np.float64))
    assert abs(pimo.auroc(maps, masks) - expected) <= 1e-12


@FAST
@given(image_sets(), st.sampled_from([0.3, 0.05, 1.0, 0.62]))
def test_aupro_equals_brute_force(data, fpr_limit):
    maps, masks = data
    expected = brute_force_aupro(maps, masks, fpr_limit)
    assert abs(pimo.aupro(maps, masks, fpr_limit=fpr_limit) - expected) <= 1e-9


@settings(max_examples=25, deadline=None)
@given(image_sets(three_d=True), st.sampled_from([None, 6, 18]))
def test_aupro_volumes_and_connectivity(data, connectivity):
    maps, masks = data
    expected = brute_force_aupro(maps, masks, 0.3, connectivity)
    got = pimo.aupro(maps, masks, fpr_limit=0.3, connectivity=connectivity)
    assert abs(got - expected) <= 1e-9


# ---------------------------------------------------------------------------------------------
# Large buckets (dense histogram path), float32 and float64
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_buckets_match_references(dtype):
    rng = np.random.default_rng(7)
    # every score in [1, 1 + 1/128): one histogram bucket holding ~40,000 pixels, 600 levels
    levels = rng.integers(0, 600, (2, 100, 200))
    masks = np.zeros((2, 100, 200), dtype=bool)
    masks[1, 20:60, 30:90] = True
    masks[1, 70:74, 150:160] = True
    levels[masks] += rng.integers(0, 200, int(masks.sum()))
    maps = (1.0 + levels * 2.0**-20).astype(dtype)
    result = set_metrics(maps, masks, fpr_limits=(0.3, 0.05))
    expected_auroc = roc_auc_score(masks.ravel(), maps.ravel().astype(np.float64))
    assert abs(result.auroc - expected_auroc) <= 1e-12
    for limit in (0.3, 0.05):
        assert abs(result.aupro[limit] - brute_force_aupro(maps, masks, limit)) <= 1e-9


# ---------------------------------------------------------------------------------------------
# Hand cases with known areas
# ---------------------------------------------------------------------------------------------
def test_stripe_on_a_linear_ramp():
    height, width, stripe = 10, 50, 4
    ramp = np.tile(np.arange(width, dtype=np.float32), (height, 1))
    anomalous_map = np.full((height, width), -1.0, dtype=np.float32)
    anomalous_map[3:3 + stripe] = ramp[3:3 + stripe]
    mask = np.zeros((height, width), dtype=bool)
    mask[3:3 + stripe] = True
    maps, masks = np.stack([ramp, anomalous_map]), np.stack([np.zeros_like(mask), mask])
    # PRO = TPR = slope * FPR with slope = (normal pixels) / (normal-image pixels) = 1.6
    result = set_metrics(maps, masks, fpr_limits=(0.3, 0.05, 1.0))
    assert result.aupro[0.3] == pytest.approx(1.6 * 0.3 / 2, abs=1e-12)
    assert result.aupro[0.05] == pytest.approx(1.6 * 0.05 / 2, abs=1e-12)
    assert result.auroc == pytest.approx(0.625 / 2 + 0.375, abs=1e-12)
    assert result.aupro[1.0] == pytest.approx(result.auroc, abs=1e-12)  # one region
    assert result.num_regions == 1


def test_one_region_covering_a_whole_image_on_a_diagonal():
    ramp = np.tile(np.arange(20, dtype=np.float64), (5, 1))
    maps = np.stack([ramp, ramp])
    masks = np.stack([np.zeros((5, 20), bool), np.ones((5, 20), bool)])
    result = set_metrics(maps, masks, fpr_limits=(0.3, 0.05))
    assert result.auroc == pytest.approx(0.5, abs=1e-12)
    assert result.aupro[0.3] == pytest.approx(0.15, abs=1e-12)
    assert result.aupro[0.05] == pytest.approx(0.025, abs=1e-12)
    assert result.num_regions == 1


def test_regions_weigh_the_same_whatever_their_size():
    normal = np.linspace(0.0, 1.0, 400, dtype=np.float32).reshape(20, 20)
    anomalous = np.full((20, 20), 0.5, dtype=np.float32)
    mask = np.zeros((20, 20), dtype=bool)
    mask[0:10, 0:10] = True  # 100 pixels, always detected first
    anomalous[0:10, 0:10] = 10.0
    mask[15:17, 15:17] = True  # 4 pixels, detected last
    anomalous[15:17, 15:17] = -10.0
    result = set_metrics(np.stack([normal, anomalous]), np.stack([np.zeros_like(mask), mask]),
                         fpr_limits=(0.3, 0.05))
    assert result.aupro[0.3] == pytest.approx(0.5, abs=1e-12)
    assert result.aupro[0.05] == pytest.approx(0.5, abs=1e-12)
    assert result.auroc == pytest.approx(100 / 104, abs=1e-12)


def test_limit_inside_a_tie_segment():
    # 10 % of the normal pixels score 1; the others tie at 0 with half of the region
    normal = np.zeros(100)
    normal[:10] = 1.0
    anomalous = np.array([2.0, 2.0, 0.0, 0.0])
    maps = [normal.reshape(10, 10), anomalous.reshape(2, 2)]
    masks = [np.zeros((10, 10), bool), np.ones((2, 2), bool)]
    # PRO: (0, 0) -> (0, 0.5) -> (0.1, 0.5) -> (1, 1), crossing FPR 0.3 on the diagonal
    y_limit = 0.5 + 0.5 * (0.3 - 0.1) / 0.9
    expected = (0.1 * 0.5 + 0.2 * (0.5 + y_limit) / 2) / 0.3
    assert pimo.aupro(maps, masks, fpr_limit=0.3) == pytest.approx(expected, abs=1e-12)
    assert pimo.aupro(maps, masks, fpr_limit=0.05) == pytest.approx(0.5, abs=1e-12)
    assert brute_force_aupro(maps, masks, 0.3) == pytest.approx(expected, abs=1e-12)


def test_constant_maps_give_the_diagonal():
    maps = np.zeros((3, 8, 8), dtype=np.float32)
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[1, 2:5, 2:5] = True
    result = set_metrics(maps, masks, fpr_limits=(0.3, 0.05))
    assert result.auroc == 0.5
    assert result.aupro[0.3] == pytest.approx(0.15, abs=1e-12)
    assert result.aupro[0.05] == pytest.approx(0.025, abs=1e-12)


def test_perfect_and_inverted_maps():
    masks = np.zeros((2, 16, 16), dtype=bool)
    masks[1, 4:9, 4:9] = True
    masks[1, 12:14, 1:3] = True
    maps = masks.astype(np.float32) + 0.001 * np.arange(256, dtype=np.float32).reshape(16, 16)
    perfect = set_metrics(maps, masks)
    assert perfect.auroc == 1.0
    assert perfect.aupro == {0.3: 1.0, 0.05: 1.0}
    inverted = set_metrics(-maps, masks)
    assert inverted.auroc == 0.0
    assert inverted.aupro == {0.3: 0.0, 0.05: 0.0}


def test_diagonal_contact_joins_regions_in_8_connectivity():
    mask = np.zeros((6, 6), dtype=bool)
    mask[1, 1] = mask[2, 2] = True  # touch by a corner
    mask[4, 4] = True
    assert label_regions(mask)[1] == 2
    assert label_regions(mask, connectivity=4)[1] == 3
    normal = np.arange(36, dtype=np.float64).reshape(6, 6)
    anomalous = np.zeros((6, 6))
    anomalous[1, 1], anomalous[2, 2], anomalous[4, 4] = 40.0, 10.0, 20.0
    maps, masks = [normal, anomalous], [np.zeros_like(mask), mask]
    for connectivity in (None, 8, 4):
        got = pimo.aupro(maps, masks, fpr_limit=0.3, connectivity=connectivity)
        assert got == pytest.approx(brute_force_aupro(maps, masks, 0.3, connectivity), abs=1e-12)
    assert pimo.aupro(maps, masks) != pimo.aupro(maps, masks, connectivity=4)
    assert set_metrics(maps, masks).num_regions == 2


# ---------------------------------------------------------------------------------------------
# Region labelling
# ---------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([2, 3]), st.floats(0.05, 0.8))
def test_label_regions_equals_scipy(seed, ndim, density):
    rng = np.random.default_rng(seed)
    shape = tuple(int(side) for side in rng.integers(1, 9 if ndim == 3 else 24, ndim))
    mask = rng.random(shape) < density
    for connectivity in ((None, 4, 8) if ndim == 2 else (None, 6, 18, 26)):
        labels, count = label_regions(mask, connectivity=connectivity)
        expected, expected_count = scipy_labels(mask, connectivity)
        assert count == expected_count
        np.testing.assert_array_equal(labels, expected)
        assert labels.dtype == np.int32


def test_label_regions_rejects_bad_connectivity_and_values():
    with pytest.raises(pimo.PimoValueError, match="connectivity"):
        label_regions(np.zeros((3, 3), bool), connectivity=6)
    with pytest.raises(pimo.PimoValueError, match="connectivity"):
        label_regions(np.zeros((3, 3, 3), bool), connectivity=8)
    with pytest.raises(pimo.MaskValueError):
        label_regions(np.full((3, 3), 255, np.uint8))


# ---------------------------------------------------------------------------------------------
# Curves and files
# ---------------------------------------------------------------------------------------------
def test_curves_areas_and_thresholds():
    rng = np.random.default_rng(3)
    maps = rng.integers(0, 30, (4, 12, 12)).astype(np.float32) / 7
    masks = np.zeros((4, 12, 12), dtype=bool)
    masks[2, 3:7, 3:8] = True
    masks[3, 8:11, 0:4] = True
    maps[masks] += 1.5
    result = set_metrics(maps, masks, curves=True)
    curves = result.curves
    assert curves is not None
    assert np.all(np.diff(curves.fpr) >= 0) and np.all(np.diff(curves.thresholds) < 0)
    assert (curves.fpr[0], curves.tpr[0], curves.pro[0]) == (0.0, 0.0, 0.0)
    assert (curves.fpr[-1], curves.tpr[-1]) == (1.0, 1.0)
    assert np.trapezoid(curves.tpr, curves.fpr) == pytest.approx(result.auroc, abs=1e-12)
    for limit in (0.3, 0.05):
        fpr, pro = curves.pro_until(limit)
        assert fpr[-1] == limit
        assert np.trapezoid(pro, fpr) / limit == pytest.approx(result.aupro[limit], abs=1e-12)
    scores, truth = maps.ravel(), masks.ravel()
    for threshold, fpr, tpr in zip(curves.thresholds[1:], curves.fpr[1:], curves.tpr[1:],
                                   strict=True):
        detected = scores >= threshold
        assert fpr == np.count_nonzero(detected & ~truth) / np.count_nonzero(~truth)
        assert tpr == np.count_nonzero(detected & truth) / np.count_nonzero(truth)
    regions = []
    for index, mask in enumerate(masks):
        labels, count = scipy_labels(mask)
        regions.extend(np.flatnonzero(labels.ravel() == r) + index * mask.size
                       for r in range(1, count + 1))
    for threshold, pro in zip(curves.thresholds[1:], curves.pro[1:], strict=True):
        detected = scores >= threshold
        region_tprs = [np.mean(detected[region]) for region in regions]
        assert pro == pytest.approx(np.mean(region_tprs), abs=1e-12)


def test_save_writes_published_value_files(tmp_path):
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[1, 2:4, 2:4] = True
    maps = np.arange(128, dtype=np.float32).reshape(2, 8, 8)
    result = set_metrics(maps, masks)
    paths = result.save(tmp_path)
    assert sorted(path.name for path in paths) == ["aupr.json", "aupro.json", "aupro_05.json",
                                                   "auroc.json", "f1max.json"]
    assert pimo.load_value(tmp_path / "aupr.json") == result.ap
    f1_file = json.loads((tmp_path / "f1max.json").read_text())
    assert f1_file == {"value": result.f1_max, "threshold": result.f1_max_threshold}
    assert pimo.load_value(tmp_path / "auroc.json") == result.auroc
    assert pimo.load_value(tmp_path / "aupro.json") == result.aupro[0.3]
    assert json.loads((tmp_path / "aupro_05.json").read_text())["fpr_limit"] == 0.05


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def small_set():
    maps = np.random.default_rng(0).integers(0, 4, (3, 6, 6)).astype(np.float32) / 4
    masks = np.zeros((3, 6, 6), dtype=bool)
    masks[2, 1:3, 1:3] = True
    return maps, masks


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_name_the_image(bad):
    maps, masks = small_set()
    maps[1, 4, 2] = bad
    with pytest.raises(pimo.NonFiniteScoreError, match=r"image 1 \('b.png'\).*nan_to_num") as info:
        set_metrics(maps, masks, paths=["a.png", "b.png", "c.png"])
    assert info.value.image_index == 1 and info.value.path == "b.png"
    with pytest.raises(pimo.NonFiniteScoreError, match="image 1"):
        pimo.auroc(maps, masks)
    accumulator = SetMetricsAccumulator()
    accumulator.update(maps[:1], masks[:1])
    with pytest.raises(pimo.NonFiniteScoreError, match=r"image 1 \('x.png'\)") as info:
        accumulator.update(maps[1:], masks[1:], paths=["x.png", "y.png"])
    assert info.value.image_index == 1


def test_no_anomalous_or_no_normal_pixel_is_an_error():
    maps, masks = small_set()
    with pytest.raises(pimo.NoAnomalousImageError, match="undefined"):
        pimo.aupro(maps, np.zeros_like(masks))
    with pytest.raises(pimo.NoAnomalousImageError):
        pimo.auroc(maps, np.zeros_like(masks))
    with pytest.raises(pimo.NoNormalImageError, match="no mask has a 0"):
        pimo.aupro(maps, np.ones_like(masks))
    with pytest.raises(pimo.NoNormalImageError):
        pimo.auroc(maps, np.ones_like(masks))


@pytest.mark.parametrize("limit", [0.0, -0.1, 1.5, np.nan, "a"])
def test_bad_fpr_limit(limit):
    maps, masks = small_set()
    with pytest.raises(pimo.FprBoundsError):
        pimo.aupro(maps, masks, fpr_limit=limit)


def test_bad_shapes_masks_and_connectivity():
    maps, masks = small_set()
    with pytest.raises(pimo.ShapeMismatchError):
        pimo.auroc(maps, masks[:, :5])
    with pytest.raises(pimo.MaskValueError):
        pimo.auroc(maps, masks.astype(np.uint8) * 255)
    with pytest.raises(pimo.EmptyInputError):
        pimo.auroc([], [])
    with pytest.raises(pimo.PimoValueError, match="connectivity"):
        pimo.aupro(maps, masks, connectivity=26)
    with pytest.raises(pimo.PimoValueError, match="Nothing to compute"):
        set_metrics(maps, masks, fpr_limits=(), auroc=False, ap=False, f1_max=False)


def test_accumulator_misuse_is_reported():
    maps, masks = small_set()
    with pytest.raises(pimo.EmptyInputError, match="update"):
        SetMetricsAccumulator().compute()
    normal_only = SetMetricsAccumulator()
    normal_only.update(maps[:2], masks[:2])
    with pytest.raises(pimo.NoAnomalousImageError, match="undefined"):
        normal_only.compute()
    anomalous_only = SetMetricsAccumulator()
    anomalous_only.update(maps[2:], np.ones_like(masks[2:]))
    with pytest.raises(pimo.NoNormalImageError, match="no mask has a 0"):
        anomalous_only.compute()
    # a wrong mask in the second batch is named by its number in the accumulator
    accumulator = SetMetricsAccumulator()
    accumulator.update(maps[:2], masks[:2])
    with pytest.raises(pimo.MaskValueError, match=r"image 4 \('m.png'\)") as info:
        accumulator.update(maps, masks.astype(np.uint8) * 2, paths=["k.png", "l.png", "m.png"])
    assert info.value.image_index == 4
    # different settings are refused, both values named
    with pytest.raises(pimo.PimoValueError, match=r"fpr_limits: \(0\.3, 0\.05\) here, \(0\.3,\)"):
        SetMetricsAccumulator().merge(SetMetricsAccumulator((0.3,)))
    with pytest.raises(pimo.PimoValueError, match="connectivity: None here, 4 in the other"):
        SetMetricsAccumulator().merge(SetMetricsAccumulator(connectivity=4))
    with pytest.raises(pimo.PimoValueError, match="connectivity"):
        SetMetricsAccumulator(connectivity=5)
    # a fixed float32 state refuses float64 scores, saying what to do
    narrow = SetMetricsAccumulator(dtype=np.float32)
    narrow.update(maps[:1], masks[:1])
    with pytest.raises(pimo.PimoTypeError, match=r"dtype=np\.float64"):
        narrow.update(maps[1:].astype(np.float64), masks[1:])
    # the state budget
    small = SetMetricsAccumulator(max_state_bytes=2 * 2**20)
    small.update(maps, masks)  # the histograms alone take 1.5 MiB
    big = np.random.default_rng(1).random((2, 400, 400)).astype(np.float32)
    with pytest.raises(pimo.PimoValueError, match=r"max_state_bytes=2097152.*larger max_state"):
        small.update(big, np.zeros(big.shape, dtype=bool))


def test_torch_batches_with_a_channel_axis():
    torch = pytest.importorskip("torch")
    maps, masks = small_set()
    reference = set_metrics(maps, masks)
    accumulator = SetMetricsAccumulator()
    accumulator.update(torch.from_numpy(maps[:2, None]), torch.from_numpy(masks[:2, None]))
    accumulator.update(maps[2:, None], masks[2:, None])
    result = accumulator.compute()
    assert (result.auroc, result.aupro, result.ap) == (reference.auroc, reference.aupro,
                                                       reference.ap)
    state = {name: torch.from_numpy(array) for name, array in accumulator.state_dict().items()}
    restored = SetMetricsAccumulator.from_state_dict(state)
    assert restored.compute().auroc == reference.auroc


def test_empty_state_dict_has_every_key_with_its_final_shape():
    state = SetMetricsAccumulator().state_dict()
    assert set(state) == set(SetMetricsAccumulator.STATE_REDUCTIONS)
    for name, reduction in SetMetricsAccumulator.STATE_REDUCTIONS.items():
        assert state[name].dtype.kind in "if"
        if reduction == "cat":
            assert state[name].shape[0] == 0
    assert state["neg_hist"].shape == (65536,) and state["dense_counts"].shape == (0, 65536)
    assert state["neg_low"].dtype == np.int16
    assert SetMetricsAccumulator(dtype=np.float64).state_dict()["neg_low"].dtype == np.int64


@pytest.mark.parametrize(
    ("limit", "name"),
    [(0.3, "aupro.json"), (0.05, "aupro_05.json"), (0.1, "aupro_10.json"),
     (0.01, "aupro_01.json"), (0.005, "aupro_0.5.json"), (1.0, "aupro_100.json")],
)
def test_aupro_filenames_follow_the_published_layout(limit: float, name: str) -> None:
    assert pimo.setmetrics.aupro_filename(limit) == name
