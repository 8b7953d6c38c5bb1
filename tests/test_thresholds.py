"""Operating thresholds from normal images against brute-force implementations of the rules."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

import pimo


# --------------------------------------------------------------------------------------
# brute force
# --------------------------------------------------------------------------------------
def image_fpr(image: np.ndarray, t: float) -> Fraction:
    return Fraction(int(np.count_nonzero(image >= t)), image.size)


def brute_shared(maps, masks, target: Fraction) -> float | None:
    normal = [m for m, y in zip(maps, masks, strict=True) if not y.any()]
    for t in np.unique(np.concatenate([m.ravel() for m in normal])):  # ascending
        if sum(image_fpr(m, t) for m in normal) / len(normal) <= target:
            return float(t)
    return None


def brute_per_image(maps, masks, target: Fraction, share: Fraction) -> float | None:
    normal = [m for m, y in zip(maps, masks, strict=True) if not y.any()]
    for t in np.unique(np.concatenate([m.ravel() for m in normal])):
        meeting = sum(image_fpr(m, t) <= target for m in normal)
        if Fraction(meeting, len(normal)) >= share:
            return float(t)
    return None


def brute_rates(image: np.ndarray, mask: np.ndarray, t: float) -> dict[str, float]:
    predicted = image >= t
    tp = np.count_nonzero(predicted & mask)
    fp = np.count_nonzero(predicted & ~mask)
    fn = np.count_nonzero(~predicted & mask)
    structure = np.ones((3,) * image.ndim)
    regions = ndimage.label(predicted & ~mask, structure=structure)[1]
    negatives = np.count_nonzero(~mask)
    rates = {"fpr": fp / negatives if negatives else math.nan, "fp_regions": regions}
    if mask.any():
        rates |= {"tpr": tp / (tp + fn), "iou": tp / (tp + fp + fn),
                  "f1": 2 * tp / (2 * tp + fp + fn)}
    return rates


@st.composite
def small_sets(draw):
    num_normal = draw(st.integers(1, 4))
    num_anomalous = draw(st.integers(0, 3))
    height, width = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    levels = draw(st.integers(2, 12))  # few levels: many ties
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    maps, masks = [], []
    for index in range(num_normal + num_anomalous):
        shape = (height, width) if draw(st.booleans()) else (height + 1, width)
        maps.append(rng.integers(0, levels, size=shape).astype(np.float64) / levels)
        mask = np.zeros(shape, dtype=bool)
        if index >= num_normal:
            mask = rng.random(shape) < 0.4
            mask.flat[0] = True
        masks.append(mask)
    return maps, masks


targets = st.sampled_from([0.01, 0.05, 0.1, 0.125, 0.2, 0.25, 1 / 3, 0.5, 0.75, 1.0])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=small_sets(), target=targets)
def test_shared_matches_brute_force(data, target):
    maps, masks = data
    expected = brute_shared(maps, masks, Fraction(repr(target)))
    if expected is None:
        with pytest.raises(pimo.UnreachableFprError, match="reachable"):
            pimo.threshold_at(maps, masks, fpr=target)
        return
    result = pimo.threshold_at(maps, masks, fpr=target)
    assert result.threshold == expected
    normal = [m for m, y in zip(maps, masks, strict=True) if not y.any()]
    shared = sum(image_fpr(m, expected) for m in normal) / len(normal)
    assert result.shared_fpr == float(shared)
    check_rates(result, maps, masks)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=small_sets(), target=targets,
       share=st.sampled_from([None, 0.1, 0.5, 0.6, 0.75, 0.95, 1.0]))
def test_per_image_matches_brute_force(data, target, share):
    maps, masks = data
    exact_share = Fraction(1) if share is None else Fraction(repr(share))
    expected = brute_per_image(maps, masks, Fraction(repr(target)), exact_share)
    if expected is None:
        with pytest.raises(pimo.UnreachableFprError, match="normal"):
            pimo.threshold_at(maps, masks, fpr=target, kind="per-image", share=share)
        return
    result = pimo.threshold_at(maps, masks, fpr=target, kind="per-image", share=share)
    assert result.threshold == expected
    assert result.normal_share >= float(exact_share) - 1e-12
    check_rates(result, maps, masks)


def check_rates(result, maps, masks):
    for index, (image, mask) in enumerate(zip(maps, masks, strict=True)):
        expected = brute_rates(image, mask, result.threshold)
        assert result.fp_regions[index] == expected["fp_regions"]
        assert result.fpr[index] == pytest.approx(expected["fpr"], abs=1e-15, nan_ok=True)
        for name in ("tpr", "iou", "f1"):
            value = getattr(result, name)[index]
            if name in expected:
                assert value == pytest.approx(expected[name], abs=1e-15)
            else:
                assert math.isnan(value)


# --------------------------------------------------------------------------------------
# hand-computed cases
# --------------------------------------------------------------------------------------
def test_hand_computed_shared_and_ties():
    # two normal 2x5 images; scores 0..9 and a tie at 8 in the second image
    normal_a = np.arange(10, dtype=np.float64).reshape(2, 5)
    normal_b = np.array([[0, 1, 2, 3, 4], [5, 6, 8, 8, 9]], dtype=np.float64)
    anomalous = np.array([[9, 9, 0, 0, 0], [0, 0, 0, 0, 8.5]], dtype=np.float64)
    mask = np.zeros((2, 5), dtype=bool)
    mask[0, :3] = True
    maps, masks = [normal_a, normal_b, anomalous], [np.zeros_like(mask)] * 2 + [mask]
    # t = 9: F = (1/10 + 1/10)/2 = 0.1; t = 8: F = (2/10 + 3/10)/2 = 0.25 (ties count)
    result = pimo.threshold_at(maps, masks, fpr=0.1)
    assert result.threshold == 9.0 and result.shared_fpr == 0.1
    result = pimo.threshold_at(maps, masks, fpr=0.2)  # 8 gives 0.25 > 0.2
    assert result.threshold == 9.0
    result = pimo.threshold_at(maps, masks, fpr=0.25)  # reached exactly
    assert result.threshold == 8.0 and result.shared_fpr == 0.25
    # anomalous image at t=8: P = {9, 9, 8.5}; TP = 2 of 3; FP = 1 pixel, 1 region
    assert result.tpr[2] == pytest.approx(2 / 3)
    assert result.iou[2] == pytest.approx(2 / 4)
    assert result.f1[2] == pytest.approx(4 / 6)
    assert result.fpr[2] == pytest.approx(1 / 7)
    assert list(result.fp_regions) == [1, 1, 1]  # 8,9 adjacent; 8,8,9 adjacent; 8.5 alone
    assert math.isnan(result.tpr[0]) and result.fpr[0] == pytest.approx(0.2)
    # per-image: image FPR <= 0.1 needs t = 9 in both (b has 8 tied twice at t=8)
    result = pimo.threshold_at(maps, masks, fpr=0.1, kind="per-image")
    assert result.threshold == 9.0 and result.normal_share == 1.0
    result = pimo.threshold_at(maps, masks, fpr=0.2, kind="per-image", share=0.5)
    assert result.threshold == 8.0  # a: 2/10 ok, b: 3/10 not: half of them
    summary = result.summary()
    assert summary["normal"]["num_images"] == 2
    assert summary["normal"]["mean_fp_regions"] == 1.0
    assert summary["normal"]["share_fp_regions_le_1"] == 1.0


def test_diagonal_fp_pixels_are_one_region_with_8_connectivity():
    normal = np.zeros((4, 4))
    normal[0, 0] = normal[1, 1] = normal[3, 3] = 1.0
    maps, masks = [normal], [np.zeros((4, 4), dtype=bool)]
    result = pimo.threshold_at(maps, masks, fpr=3 / 16)
    assert result.threshold == 1.0 and result.fp_regions[0] == 2
    result = pimo.threshold_at(maps, masks, fpr=3 / 16, connectivity=4)
    assert result.fp_regions[0] == 3


def test_float32_maps_threshold_is_a_map_value():
    maps, masks = pimo.make_example(6, 4, (64, 64), seed=3)
    result = pimo.threshold_at(maps.astype(np.float32), masks, fpr=1e-3)
    normal_scores = maps.astype(np.float32)[~masks.any(axis=(1, 2))]
    assert np.float32(result.threshold) == result.threshold
    assert np.any(normal_scores == np.float32(result.threshold))
    assert result.shared_fpr <= 1e-3


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fpr", [0.0, -1e-4, 1.5, math.nan, "x"])
def test_target_outside_unit_interval(fpr):
    maps, masks = pimo.make_example(2, 2, (16, 16), seed=0)
    with pytest.raises(pimo.PimoValueError, match=r"fpr must be"):
        pimo.threshold_at(maps, masks, fpr=fpr)


def test_unreachable_target_names_reachable_values():
    maps, masks = pimo.make_example(2, 2, (16, 16), seed=0)
    with pytest.raises(pimo.UnreachableFprError, match=r"reachable values start at 0.00195"):
        pimo.threshold_at(maps, masks, fpr=1e-5)
    with pytest.raises(pimo.UnreachableFprError, match=r"share"):
        pimo.threshold_at(maps, masks, fpr=1e-5, kind="per-image", share=1.0)


def test_bad_kind_share_and_no_normal_image():
    maps, masks = pimo.make_example(2, 2, (16, 16), seed=0)
    with pytest.raises(pimo.PimoValueError, match="kind must be one of"):
        pimo.threshold_at(maps, masks, fpr=0.1, kind="global")
    with pytest.raises(pimo.PimoValueError, match="per-image"):
        pimo.threshold_at(maps, masks, fpr=0.1, share=0.9)
    with pytest.raises(pimo.PimoValueError, match="share must be in"):
        pimo.threshold_at(maps, masks, fpr=0.1, kind="per-image", share=0)
    with pytest.raises(pimo.NoNormalImageError):
        pimo.threshold_at(maps[2:], masks[2:], fpr=0.1)


def test_nonfinite_score_in_an_anomalous_image_is_named():
    maps, masks = pimo.make_example(2, 2, (16, 16), seed=0)
    maps[3, 2, 5] = np.nan
    with pytest.raises(pimo.NonFiniteScoreError, match=r"image 3 .*\(2, 5\)"):
        pimo.threshold_at(maps, masks, fpr=0.1, paths=[f"i{k}.png" for k in range(4)])


# --------------------------------------------------------------------------------------
# file round trip
# --------------------------------------------------------------------------------------
def test_save_and_load_round_trip(tmp_path):
    maps, masks = pimo.make_example(5, 3, (48, 48), seed=2)
    paths = [f"img/{k}.png" for k in range(8)]
    result = pimo.threshold_at(maps, masks, fpr=1e-2, kind="per-image", share=0.8, paths=paths)
    written = result.save(tmp_path / "out" / "threshold.json")
    loaded = pimo.load_threshold(written)
    assert loaded.threshold == result.threshold and loaded.kind == "per-image"
    assert loaded.share == 0.8 and loaded.paths == paths
    for name in ("tpr", "fpr", "iou", "f1"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    np.testing.assert_array_equal(loaded.fp_regions, result.fp_regions)
    assert loaded.summary() == result.summary()
    (tmp_path / "bad.json").write_text('{"value": 1}')
    with pytest.raises(pimo.ScoreFileError, match="operating-threshold"):
        pimo.load_threshold(tmp_path / "bad.json")


def test_cli_threshold(tmp_path, capsys):
    from pimo.cli import main

    maps, masks = pimo.make_example(6, 4, (64, 64), seed=4)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "masks.npy", masks)
    output = tmp_path / "threshold.json"
    code = main(["threshold", str(tmp_path / "maps.npy"), str(tmp_path / "masks.npy"),
                 "--fpr", "1e-3", "--kind", "per-image", "--share", "0.5", "-o", str(output)])
    out = capsys.readouterr().out
    assert code == 0
    expected = pimo.threshold_at(maps, masks, fpr=1e-3, kind="per-image", share=0.5)
    assert repr(expected.threshold) in out and "normal images within the target" in out
    assert pimo.load_threshold(output).threshold == expected.threshold
    code = main(["threshold", str(tmp_path / "maps.npy"), str(tmp_path / "masks.npy"),
                 "--fpr", "2"])
    assert code == 2 and "fpr must be in (0, 1]" in capsys.readouterr().err


def test_cli_threshold_mask_threshold_and_resize(tmp_path, capsys):
    """0/255 masks and maps at half the masks' size: the threshold of the binarised masks and
    the resized maps, and the file says how the inputs were prepared."""
    from pimo.cli import main
    from pimo.data.resize import resize_bilinear

    maps, masks = pimo.make_example(6, 4, (64, 64), seed=5)
    small = maps[:, ::2, ::2].copy()
    np.save(tmp_path / "small.npy", small)
    np.save(tmp_path / "masks255.npy", masks.astype(np.uint8) * 255)
    base = ["threshold", str(tmp_path / "small.npy"), str(tmp_path / "masks255.npy"),
            "--fpr", "1e-3"]
    assert main([*base, "--resize"]) == 2
    assert "--mask-threshold 0" in capsys.readouterr().err
    assert main([*base, "--mask-threshold", "0"]) == 2
    assert "--resize" in capsys.readouterr().err
    output = tmp_path / "threshold.json"
    code = main([*base, "--mask-threshold", "0", "--resize", "-o", str(output)])
    out = capsys.readouterr().out
    assert code == 0 and "maps resized to the masks" in out
    expected = pimo.threshold_at([resize_bilinear(m, (64, 64)) for m in small], masks,
                                 fpr=1e-3)
    loaded = pimo.load_threshold(output)
    assert loaded.threshold == expected.threshold
    np.testing.assert_array_equal(loaded.fp_regions, expected.fp_regions)
    saved = json.loads(output.read_text())
    assert saved["mask_threshold"] == 0 and saved["resize"].startswith("bilinear")
    # maps already at the masks' size: --resize changes nothing and is not recorded
    np.save(tmp_path / "maps.npy", maps)
    code = main(["threshold", str(tmp_path / "maps.npy"), str(tmp_path / "masks255.npy"),
                 "--fpr", "1e-3", "--mask-threshold", "0", "--resize", "-o", str(output)])
    capsys.readouterr()
    assert code == 0 and "resize" not in json.loads(output.read_text())
    assert pimo.load_threshold(output).threshold == pimo.threshold_at(
        maps, masks, fpr=1e-3).threshold
