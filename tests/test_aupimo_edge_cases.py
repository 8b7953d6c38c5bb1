"""Edge cases of the AUPIMO engine: signed zeros, subnormals, dtypes, layouts, threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import pimo

from .test_aupimo import brute_force_exact, brute_force_grid


@pytest.fixture(scope="module")
def example():
    return pimo.make_example(5, 5, (120, 120), seed=3)


BOUNDS = (1e-4, 1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_signed_zeros_negatives_and_subnormals(dtype):
    rng = np.random.default_rng(0)
    values = [-0.0, 0.0, -1.0, 1e-40, 2.0, -3.5, 1e-44]
    maps = rng.choice(values, size=(6, 30, 30)).astype(dtype)
    masks = np.zeros(maps.shape, bool)
    masks[3:, 10:20, 10:20] = True
    maps[3:, 10:20, 10:20] += rng.random((3, 10, 10)).astype(dtype)
    bounds = (0.2, 0.6)
    expected = brute_force_exact(list(maps), list(masks), bounds)
    result = pimo.aupimo(maps, masks, fpr_bounds=bounds)
    np.testing.assert_allclose(result.aupimos, expected, atol=1e-9)


def test_memory_layouts_and_containers(example):
    maps, masks = example
    reference = pimo.aupimo(maps, masks, fpr_bounds=BOUNDS).aupimos
    fortran = pimo.aupimo(np.asfortranarray(maps), masks, fpr_bounds=BOUNDS).aupimos
    np.testing.assert_array_equal(fortran, reference)
    mixed = [m.astype(np.float32) if i % 2 else m.astype(np.float64) for i, m in enumerate(maps)]
    np.testing.assert_array_equal(pimo.aupimo(mixed, list(masks), fpr_bounds=BOUNDS).aupimos,
                                  reference)
    padded = np.zeros((len(maps), 130, 125), np.float32)
    padded[:, 5:125, :120] = maps
    sliced = pimo.aupimo(padded[:, 5:125, :120], masks, fpr_bounds=BOUNDS).aupimos
    np.testing.assert_array_equal(sliced, reference)


def test_float16_maps_are_widened_exactly(example):
    maps, masks = example
    half = maps.astype(np.float16)
    expected = brute_force_exact(list(half.astype(np.float32)), list(masks), BOUNDS)
    np.testing.assert_allclose(pimo.aupimo(half, masks, fpr_bounds=BOUNDS).aupimos, expected,
                               atol=1e-9)


def test_thread_count_does_not_change_results(example):
    maps, masks = example
    reference = pimo.aupimo(maps, masks, fpr_bounds=BOUNDS).aupimos
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = pimo.aupimo(maps, masks, fpr_bounds=BOUNDS).aupimos
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(single, reference)


def test_upper_bound_one_and_single_normal_image(example):
    maps, masks = example
    bounds = (1e-4, 1.0)
    expected = brute_force_exact(list(maps[4:]), list(masks[4:]), bounds)
    result = pimo.aupimo(maps[4:], masks[4:], fpr_bounds=bounds)
    np.testing.assert_allclose(result.aupimos, expected, atol=1e-9)


def test_torch_tensors(example):
    torch = pytest.importorskip("torch")
    maps, masks = example
    reference = pimo.aupimo(maps, masks, fpr_bounds=BOUNDS).aupimos
    from_torch = pimo.aupimo(torch.from_numpy(maps), torch.from_numpy(masks), fpr_bounds=BOUNDS)
    np.testing.assert_array_equal(from_torch.aupimos, reference)


def test_many_tiny_images():
    maps, masks = pimo.make_example(300, 300, (8, 8), seed=1)
    expected = brute_force_exact(list(maps), list(masks), BOUNDS)
    np.testing.assert_allclose(pimo.aupimo(maps, masks, fpr_bounds=BOUNDS).aupimos, expected,
                               atol=1e-9)


@pytest.mark.filterwarnings("ignore::pimo.PimoWarning")
def test_grid_with_duplicate_float32_thresholds():
    rng = np.random.default_rng(2)
    maps = (1 + rng.random((6, 60, 60)) * 1e-3).astype(np.float32)
    masks = np.zeros(maps.shape, bool)
    masks[3:, :20, :20] = True
    maps[3:, :20, :20] += np.float32(2e-4)
    bounds = (1e-3, 1e-2)
    expected, thresh_bounds = brute_force_grid(list(maps), list(masks), bounds, 50_000)
    result = pimo.aupimo(maps, masks, fpr_bounds=bounds, num_thresholds=50_000)
    np.testing.assert_allclose(result.aupimos, expected, atol=1e-12)
    assert result.thresh_bounds == thresh_bounds


def test_bounds_falling_exactly_on_curve_points():
    """F_sh = count / (n0 * M) exactly: U = 1e-4 falls on the 75th highest normal score.

    With 3 normal images of 500x500 pixels, F_sh at the 75th highest normal score is
    75 / 750,000 = 1e-4 (a float sum of 1/M steps gives 9.999999999999984e-05 and moves the
    bound one point too far out).
    """
    side, num_normal = 500, 3
    num_pixels = side * side
    scores = np.random.default_rng(0).permutation(num_normal * num_pixels).astype(np.float64)
    normal = scores.reshape(num_normal, side, side)
    anomalous = np.arange(num_pixels, dtype=np.float64).reshape(1, side, side)
    masks = np.zeros((num_normal + 1, side, side), bool)
    masks[-1, :5] = True
    result = pimo.aupimo(np.concatenate([normal, anomalous]), masks)
    top = num_normal * num_pixels - 1
    # F_sh(top - 74) = 75 / 750,000 = U; F_sh(top - 6) = 7 / 750,000 <= L < F_sh(top - 7)
    assert result.thresh_bounds == (float(top - 74), float(top - 6))
    assert result.num_thresholds == 69
