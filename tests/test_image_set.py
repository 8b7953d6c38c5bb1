"""The flat layout the kernels read: all pixels back to back, image i at offsets[i]:offsets[i+1]."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pimo
from pimo._validate import as_image_set


def assert_identical(left, right) -> None:
    """Every field of two result dataclasses is equal, bit for bit (NaN where NaN)."""
    for field in dataclasses.fields(left):
        a, b = getattr(left, field.name), getattr(right, field.name)
        if dataclasses.is_dataclass(a):
            assert_identical(a, b)
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype, field.name
            np.testing.assert_array_equal(a, b, err_msg=field.name, strict=True)
        else:
            assert a == b or (a != a and b != b), field.name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stacked_input_is_used_without_a_copy(dtype):
    maps, masks = pimo.make_example(3, 3, (20, 24), seed=2, dtype=dtype)
    image_set = as_image_set(maps, masks)
    assert image_set.maps_flat.shape == (maps.size,)
    assert np.shares_memory(image_set.maps_flat, maps)
    assert np.shares_memory(image_set.masks_flat, masks)  # bool masks: a uint8 view
    assert image_set.masks_flat.dtype == np.uint8
    uint8_masks = masks.astype(np.uint8)
    assert np.shares_memory(as_image_set(maps, uint8_masks).masks_flat, uint8_masks)
    np.testing.assert_array_equal(image_set.offsets, np.arange(7) * 20 * 24)


def test_layout_of_a_list_of_mixed_sizes():
    rng = np.random.default_rng(0)
    shapes = [(5, 7), (3, 4, 6), (1, 1), (9, 2)]
    maps = [rng.random(shape).astype(np.float32) for shape in shapes]
    masks = [rng.random(shape) > 0.5 for shape in shapes]
    image_set = as_image_set(maps, [m.astype(np.int64) for m in masks])
    np.testing.assert_array_equal(image_set.offsets, np.cumsum([0, 35, 72, 1, 18]))
    assert image_set.shapes == shapes
    for index, (image, mask) in enumerate(zip(maps, masks, strict=True)):
        np.testing.assert_array_equal(image_set.map_of(index), image.ravel(), strict=True)
        np.testing.assert_array_equal(image_set.mask_of(index), mask.ravel().astype(np.uint8))
        assert image_set.mask_counts[index] == mask.sum()
    assert image_set.maps_flat.flags.c_contiguous
    assert not any(np.shares_memory(image_set.maps_flat, image) for image in maps)


def test_non_contiguous_and_widened_inputs_are_copied_in_order():
    maps, masks = pimo.make_example(3, 3, (20, 24), seed=4, dtype=np.float32)
    strided = maps[:, ::2, ::3]
    image_set = as_image_set(strided.astype(np.float16), masks[:, ::2, ::3])
    assert image_set.map_dtype == np.float32
    for index in range(6):
        np.testing.assert_array_equal(
            image_set.map_of(index), strided[index].astype(np.float16).astype(np.float32).ravel()
        )
    integers = as_image_set((maps * 100).astype(np.int16), masks)
    assert integers.map_dtype == np.float64
    np.testing.assert_array_equal(integers.maps_flat, (maps * 100).astype(np.int16).ravel())


def test_bad_stacked_mask_names_its_image():
    maps, masks = pimo.make_example(3, 3, (10, 10), seed=1)
    bad = masks.astype(np.uint8)
    bad[4, 2, 3] = 255
    with pytest.raises(pimo.MaskValueError, match=r"image 4\b.*0/255") as caught:
        as_image_set(maps, bad, paths=[f"p{i}.png" for i in range(6)])
    assert caught.value.image_index == 4
    assert caught.value.path == "p4.png"


@pytest.mark.filterwarnings("ignore::pimo.PimoWarning")  # coarse grids are fine here
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float32, np.float64]))
def test_stacked_and_list_inputs_give_identical_results(seed, dtype):
    rng = np.random.default_rng(seed)
    maps, masks = pimo.make_example(4, 4, (18, 22), seed=int(rng.integers(1000)), dtype=dtype)
    maps = maps + rng.integers(0, 3, maps.shape).astype(dtype)  # ties across images
    as_list = ([m.copy() for m in maps], [m.copy() for m in masks])
    bounds = (1e-2, 2e-1)
    assert_identical(pimo.aupimo(maps, masks, fpr_bounds=bounds),
                     pimo.aupimo(*as_list, fpr_bounds=bounds))
    assert_identical(pimo.auimo(maps, masks, fpr_bounds=bounds),
                     pimo.auimo(*as_list, fpr_bounds=bounds))
    assert_identical(pimo.aupimo(maps, masks, fpr_bounds=bounds, num_thresholds=400),
                     pimo.aupimo(*as_list, fpr_bounds=bounds, num_thresholds=400))
    assert_identical(pimo.set_metrics(maps, masks, curves=True),
                     pimo.set_metrics(*as_list, curves=True))
