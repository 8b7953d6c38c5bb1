"""The numpy resizes equal torch's ``interpolate`` (bilinear, ``align_corners=False``; nearest)."""

from __future__ import annotations

import numpy as np
import pytest

from pimo.data import resize_bilinear, resize_nearest

SIZES = [((7, 5), (256, 256)), ((64, 64), (256, 256)), ((37, 91), (120, 33)),
         ((256, 256), (900, 1000)), ((10, 10), (10, 23)), ((1, 1), (4, 6)), ((50, 40), (17, 13))]


@pytest.mark.parametrize(("in_size", "out_size"), SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bilinear_matches_torch(in_size, out_size, dtype) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(sum(in_size) + sum(out_size))
    anomaly_map = rng.normal(size=in_size).astype(dtype)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(anomaly_map)[None, None], size=out_size, mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()
    actual = resize_bilinear(anomaly_map, out_size)
    assert actual.shape == out_size
    assert actual.dtype == dtype
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("in_size", "out_size"), SIZES)
def test_nearest_matches_torch(in_size, out_size) -> None:
    torch = pytest.importorskip("torch")
    mask = np.random.default_rng(0).random(in_size) > 0.5
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(mask.astype(np.float32))[None, None], size=out_size, mode="nearest"
    )[0, 0].numpy() > 0.5
    np.testing.assert_array_equal(resize_nearest(mask, out_size), expected)


def test_same_size_and_integer_maps() -> None:
    anomaly_map = np.arange(12, dtype=np.int32).reshape(3, 4)
    resized = resize_bilinear(anomaly_map, (3, 4))
    assert resized.dtype == np.float64
    np.testing.assert_array_equal(resized, anomaly_map)
    # a constant map stays constant
    np.testing.assert_array_equal(resize_bilinear(np.full((3, 5), 2.5), (11, 7)), 2.5)
