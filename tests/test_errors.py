"""Bad input: every problem gets a PimoError naming the image and the fix."""

from __future__ import annotations

import numpy as np
import pytest

import pimo


@pytest.fixture(scope="module")
def example():
    return pimo.make_example(4, 4, (200, 200), seed=9)


def test_errors_are_value_or_type_errors():
    for error in (pimo.ShapeMismatchError, pimo.MaskValueError, pimo.NonFiniteScoreError,
                  pimo.NoNormalImageError, pimo.NoAnomalousImageError, pimo.FprBoundsError,
                  pimo.UnreachableFprError, pimo.ConstantNormalMapsError,
                  pimo.EmptyInputError):
        assert issubclass(error, pimo.PimoError)
        assert issubclass(error, ValueError)
    assert issubclass(pimo.PimoTypeError, TypeError)


def test_shape_mismatch_names_the_image(example):
    maps, masks = example
    masks = list(masks)
    masks[2] = masks[2][:, :100]
    with pytest.raises(pimo.ShapeMismatchError, match=r"image 2 \('c.png'\).*Resize") as info:
        pimo.aupimo(list(maps), masks, paths=[f"{c}.png" for c in "abcdefgh"])
    assert info.value.image_index == 2
    assert info.value.path == "c.png"


def test_count_mismatch(example):
    maps, masks = example
    with pytest.raises(pimo.ShapeMismatchError, match="8 anomaly maps but 7 masks"):
        pimo.aupimo(maps, masks[:7])


@pytest.mark.parametrize(("values", "hint"), [((0, 255), "0/255"), ((0, 1, 7), "binarise")])
def test_mask_values(example, values, hint):
    maps, masks = example
    bad = masks.astype(np.uint8)
    bad[5, 0, : len(values)] = values
    with pytest.raises(pimo.MaskValueError, match=rf"image 5 .*{hint}") as info:
        pimo.aupimo(maps, bad)
    assert info.value.image_index == 5


@pytest.mark.filterwarnings("ignore::pimo.PimoWarning")
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("image", [1, 6])  # a normal and an anomalous image
def test_non_finite_scores(example, value, image):
    maps, masks = example
    bad = maps.copy()
    bad[image, 10, 20] = value
    with pytest.raises(pimo.NonFiniteScoreError, match=rf"image {image} .*\(10, 20\)"):
        pimo.aupimo(bad, masks)
    with pytest.raises(pimo.NonFiniteScoreError):
        pimo.aupimo(bad, masks, num_thresholds=1000)


def test_no_normal_image(example):
    maps, masks = example
    with pytest.raises(pimo.NoNormalImageError, match="add images whose mask is all zeros"):
        pimo.aupimo(maps[4:], masks[4:])


def test_no_anomalous_image(example):
    maps, masks = example
    with pytest.raises(pimo.NoAnomalousImageError, match="nothing to score"):
        pimo.aupimo(maps[:4], masks[:4])


@pytest.mark.parametrize("bounds", [(0, 1e-4), (1e-4, 1e-5), (1e-4, 1e-4), (1e-5, 1.5),
                                    (-1, 0.5), (float("nan"), 0.1), (1e-5,), "ab"])
def test_bad_fpr_bounds(example, bounds):
    maps, masks = example
    with pytest.raises(pimo.FprBoundsError, match="0 < L < U <= 1"):
        pimo.aupimo(maps, masks, fpr_bounds=bounds)


def test_unreachable_lower_bound_says_what_to_do(example):
    maps, masks = example
    small_maps, small_masks = maps[:, :20, :20], masks[:, :20, :20].copy()
    small_masks[4:, 5:10, 5:10] = True
    with pytest.raises(pimo.UnreachableFprError) as info:
        pimo.aupimo(small_maps, small_masks)
    message = str(info.value)
    assert "0.000625" in message  # 1 / (4 normal images * 400 pixels)
    assert "add normal images" in message and "higher resolution" in message
    assert "raise L" in message
    with pytest.raises(pimo.UnreachableFprError, match=r"0\.000625"):
        pimo.aupimo(small_maps, small_masks, num_thresholds=1000)


def test_constant_normal_maps(example):
    maps, masks = example
    constant = maps.copy()
    constant[:4] = 0.5
    with pytest.raises(pimo.ConstantNormalMapsError, match="constant"):
        pimo.aupimo(constant, masks)
    with pytest.raises(pimo.ConstantNormalMapsError, match="constant"):
        pimo.aupimo(constant, masks, num_thresholds=100)


def test_empty_input():
    with pytest.raises(pimo.EmptyInputError, match="empty"):
        pimo.aupimo([], [])
    with pytest.raises(pimo.EmptyInputError, match="no pixel"):
        pimo.aupimo([np.zeros((0, 5))], [np.zeros((0, 5), bool)])


def test_wrong_types(example):
    maps, masks = example
    with pytest.raises(pimo.PimoTypeError, match="complex"):
        pimo.aupimo(maps.astype(np.complex64), masks)
    with pytest.raises(pimo.PimoTypeError):
        pimo.aupimo(maps, masks.astype(str))
    with pytest.raises(pimo.PimoTypeError, match="num_thresholds"):
        pimo.aupimo(maps, masks, num_thresholds=10.5)
    with pytest.raises(pimo.PimoValueError, match="num_thresholds"):
        pimo.aupimo(maps, masks, num_thresholds=1)
    with pytest.raises(pimo.ShapeMismatchError, match="shape"):
        pimo.aupimo(maps[0, 0], masks[0, 0])


def test_integer_maps_are_accepted(example):
    maps, masks = example
    integer_maps = np.round(maps * 1000).astype(np.int64)
    result = pimo.aupimo(integer_maps, masks)
    assert np.isfinite(result.anomalous_scores).all()
