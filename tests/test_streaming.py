"""The streaming accumulator gives the in-memory results, with bounded summaries."""

from __future__ import annotations

import numpy as np
import pytest

import pimo
from pimo.streaming import AupimoStream


def feed(maps, masks, **kwargs) -> AupimoStream:
    normal = [i for i in range(len(maps)) if not masks[i].any()]
    stream = AupimoStream(len(normal), **kwargs)
    for i in normal:
        stream.add_normal(i, maps[i], path=f"img/{i}.png")
    for i in range(len(maps)):
        if masks[i].any():
            stream.add_anomalous(i, maps[i], masks[i], path=f"img/{i}.png")
    return stream


@pytest.mark.parametrize("bounds", [(1e-5, 1e-4), (1e-4, 1e-2), (1e-3, 1.0)])
def test_stream_equals_in_memory(bounds):
    maps, masks = pimo.make_example(6, 7, (150, 130), seed=2)
    order = np.random.default_rng(0).permutation(len(maps))
    maps, masks = maps[order], masks[order]
    expected = pimo.aupimo(maps, masks, fpr_bounds=bounds)
    expected_iou = pimo.auimo(maps, masks, fpr_bounds=bounds)
    stream = feed(maps, masks, fpr_bounds=bounds, with_auimo=True)
    result = stream.result()
    np.testing.assert_allclose(result.aupimos, expected.aupimos, rtol=0, atol=1e-12)
    np.testing.assert_allclose(stream.auimo_result().auimos, expected_iou.auimos, atol=1e-12)
    assert result.thresh_bounds == expected.thresh_bounds
    assert result.num_thresholds == expected.num_thresholds
    assert result.paths == [f"img/{i}.png" for i in range(len(maps))]


def test_stream_with_ties_and_cut_tails():
    """Integer-valued (tied) scores, tails cut below the image size: still exact, small."""
    rng = np.random.default_rng(4)
    maps = rng.integers(0, 5000, size=(12, 60, 60)).astype(np.float32)
    masks = np.zeros(maps.shape, bool)
    masks[6:, 20:40, 20:40] = True
    maps[6:, 20:40, 20:40] += rng.integers(0, 3000, size=(6, 20, 20))
    bounds = (1e-3, 2e-3)
    expected = pimo.aupimo(maps, masks, fpr_bounds=bounds).aupimos
    stream = feed(maps, masks, fpr_bounds=bounds)
    np.testing.assert_allclose(stream.result().aupimos, expected, atol=1e-12)
    # each normal image keeps about 64 * U * M scores (ties completed), not its 3600 pixels
    assert stream._normal.state_dict()["values"].size < 6 * (64 * 2e-3 * 3600 + 50)


def test_stream_refuses_a_normal_mask_of_another_shape():
    maps, _ = pimo.make_example(2, 2, (64, 64), seed=0)
    stream = AupimoStream(2)
    with pytest.raises(pimo.ShapeMismatchError, match=r"image 7 .*\(64, 64\).*\(64, 60\)"):
        stream.add_normal(7, maps[0], np.zeros((64, 60), bool), path="good/007.png")
    with pytest.raises(pimo.PimoValueError, match="add it with add_anomalous"):
        stream.add_normal(8, maps[0], np.ones((64, 64), bool))


def test_stream_errors():
    maps, masks = pimo.make_example(2, 2, (64, 64), seed=0)
    stream = AupimoStream(2)
    stream.add_normal(0, maps[0])
    with pytest.raises(pimo.PimoValueError, match="add every normal image"):
        stream.add_anomalous(2, maps[2], masks[2])
    stream.add_normal(1, maps[1])
    with pytest.raises(pimo.PimoValueError, match="added twice"):
        stream.add_normal(1, maps[1])
    bad = maps[0].copy()
    bad[3, 4] = np.nan
    with pytest.raises(pimo.NonFiniteScoreError, match=r"image 5 .*\(3, 4\)"):
        AupimoStream(1).add_normal(5, bad)
    with pytest.raises(pimo.NoNormalImageError):
        AupimoStream(0)
    constant = AupimoStream(2)
    constant.add_normal(0, np.ones((10, 10)))
    constant.add_normal(1, np.ones((10, 10)))
    with pytest.raises(pimo.ConstantNormalMapsError):
        constant.add_anomalous(2, maps[2][:10, :10], np.ones((10, 10), bool))
