"""The paper's analyses: region sizes, FP regions vs FPR, noisy annotations, video timelines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

import pimo
from pimo.analysis import (
    VISA_TINY_REGIONS,
    NoiseStatistics,
    add_tiny_regions,
    fp_regions_vs_fpr,
    frame_number,
    natural_key,
    noisy_annotation_robustness,
    region_sizes,
    tiny_region_table,
    video_timelines,
)
from pimo.analysis.fp_regions import FpRegionsResult

FAST = settings(max_examples=40, deadline=None)


def scipy_count(mask: np.ndarray, rank: int | None = None) -> int:
    structure = ndi.generate_binary_structure(mask.ndim, mask.ndim if rank is None else rank)
    return int(ndi.label(mask, structure)[1])


def draw_square(mask: np.ndarray, row: int, col: int, side: int) -> None:
    mask[row:row + side, col:col + side] = True


# ---------------------------------------------------------------------------------------------
# region sizes and the tiny-region table
# ---------------------------------------------------------------------------------------------
def test_region_sizes_of_hand_built_masks():
    first = np.zeros((10, 20), dtype=bool)
    draw_square(first, 0, 0, 2)          # 4 pixels
    first[5, 5] = first[6, 6] = True     # diagonal: one 8-connected region of 2 pixels
    first[9, 19] = True                  # 1 pixel
    normal = np.zeros((10, 20), dtype=bool)
    second = np.zeros((4, 5), dtype=np.uint8)
    second[:, 2] = 1                     # a 4-pixel column
    sizes = region_sizes([first, normal, second], paths=["a.png", "b.png", "c.png"])
    assert sizes.image_index.tolist() == [0, 0, 0, 2]
    assert sizes.pixels.tolist() == [4, 2, 1, 4]
    assert sizes.relative.tolist() == [4 / 200, 2 / 200, 1 / 200, 4 / 20]
    assert sizes.regions_per_image().tolist() == [3, 0, 1]
    assert sizes.connectivity == 8
    assert sizes.summary()["num_anomalous_images"] == 2
    rows = sizes.to_rows()
    assert rows[1] == {"image": 0, "path": "a.png", "region": 2, "pixels": 2,
                       "relative_size": 0.01}
    four = region_sizes([first], connectivity=4)
    assert four.pixels.tolist() == [4, 1, 1, 1]


def test_region_sizes_of_a_volume_use_26_connectivity():
    volume = np.zeros((3, 4, 4), dtype=bool)
    volume[0, 0, 0] = volume[1, 1, 1] = True   # touch at a corner only: one region
    volume[2, 3, 3] = True                     # touches (1, 2, 2)? no: isolated
    sizes = region_sizes([volume])
    assert sizes.pixels.tolist() == [2, 1]
    assert sizes.connectivity == 26
    assert region_sizes([volume], connectivity=6).pixels.tolist() == [1, 1, 1]


@FAST
@given(seed=st.integers(0, 2**32 - 1), density=st.floats(0.05, 0.7), three_d=st.booleans())
def test_region_sizes_agree_with_scipy(seed, density, three_d):
    rng = np.random.default_rng(seed)
    shape = (3, 7, 9) if three_d else (13, 17)
    masks = [rng.random(shape) < density for _ in range(3)]
    sizes = region_sizes(masks)
    structure = ndi.generate_binary_structure(len(shape), len(shape))
    expected = []
    for mask in masks:
        labels, count = ndi.label(mask, structure)
        expected.extend(np.bincount(labels.ravel(), minlength=count + 1)[1:].tolist())
    assert sizes.pixels.tolist() == expected
    assert sizes.pixels.sum() == sum(int(m.sum()) for m in masks)


def test_tiny_region_table_by_hand():
    # 1600 x 1600 pixels: tiny means fewer than 1600**2 / 256**2 = 39.06 pixels
    big = np.zeros((1600, 1600), dtype=bool)
    for k, size in enumerate([5, 15, 25, 35, 40, 3, 9]):  # 35: tiny, outside the bins; 40 not
        big[10 * k, 0:size] = True
    small = np.zeros((1600, 1600), dtype=bool)
    small[500, 0:10] = True
    small[700, 0:20] = True
    table = tiny_region_table(region_sizes([big, small, np.zeros((1600, 1600), bool)]))
    assert table.size_counts == (3, 2, 2)      # {5, 3, 9}, {15, 10}, {25, 20}
    assert table.size_outside_bins == 1        # 35
    assert table.num_tiny_regions == 8
    assert table.image_counts == (1, 1)        # small: 2 tiny; big: 6 tiny
    assert table.num_images_with_tiny == 2
    record = table.to_dict()
    assert record["regions_by_size"] == {"1-9": 3, "10-19": 2, "20-29": 2}
    assert record["images_by_count"] == {"1-5": 1, "6+": 1}


def test_without_tiny_keeps_the_images():
    mask = np.zeros((512, 512), dtype=bool)   # tiny: fewer than 4 pixels
    mask[0, 0:3] = True
    mask[10, 0:4] = True
    sizes = region_sizes([mask, np.zeros((8, 8), bool)])
    kept = sizes.without_tiny()
    assert kept.pixels.tolist() == [4] and kept.num_images == 2
    with pytest.raises(pimo.PimoValueError, match="one entry per region"):
        sizes.select(np.ones(3, dtype=bool))


def test_tiny_region_table_threshold_is_strict():
    mask = np.zeros((512, 512), dtype=bool)   # tiny: fewer than 4 pixels
    mask[0, 0:3] = True
    mask[10, 0:4] = True
    table = tiny_region_table(region_sizes([mask]))
    assert table.num_tiny_regions == 1
    with pytest.raises(pimo.PimoValueError, match="size_bins"):
        tiny_region_table(region_sizes([mask]), size_bins=[(5, 9), (1, 4)])


def test_region_sizes_names_a_bad_mask():
    good = np.zeros((4, 4))
    bad = np.full((4, 4), 2.0)
    with pytest.raises(pimo.MaskValueError, match=r"bad\.png"):
        region_sizes([good, bad], paths=["good.png", "bad.png"])


# ---------------------------------------------------------------------------------------------
# FP regions vs FPR
# ---------------------------------------------------------------------------------------------
def test_fp_regions_by_hand():
    # 100 x 100 normal image, two separate peaks: the top 2 pixels are 2 regions, top 4 are 2
    anomaly_map = np.zeros((100, 100))
    anomaly_map[10, 10], anomaly_map[80, 80] = 10.0, 9.0
    anomaly_map[10, 11], anomaly_map[80, 81] = 8.0, 7.0
    masks = np.zeros((2, 100, 100), dtype=bool)
    masks[1, 0, 0] = True
    maps = np.stack([anomaly_map, np.zeros((100, 100))])
    result = fp_regions_vs_fpr(maps, masks, fpr_range=(1e-4, 4e-4), num_levels=3, jitter=0.0)
    assert result.image_index.tolist() == [0, 0, 0]   # the anomalous image is left out
    assert result.levels.tolist() == pytest.approx([1e-4, 2e-4, 4e-4])
    assert result.fpr.tolist() == pytest.approx([1e-4, 2e-4, 4e-4])
    assert result.threshold.tolist() == [10.0, 9.0, 7.0]
    assert result.num_regions.tolist() == [1, 2, 2]
    assert result.mean_per_level().tolist() == [1.0, 2.0, 2.0]
    fractions, count = result.histogram(2e-4, max_regions=2)
    assert count == 3 and fractions.tolist() == pytest.approx([0, 1 / 3, 2 / 3])


@FAST
@given(seed=st.integers(0, 2**32 - 1), ties=st.booleans(), three_d=st.booleans())
def test_fp_region_counts_agree_with_scipy(seed, ties, three_d):
    rng = np.random.default_rng(seed)
    shape = (4, 30, 40) if three_d else (60, 80)
    maps = rng.random((3, *shape))
    if ties:
        maps = np.round(maps * 50) / 50
    masks = np.zeros(maps.shape, dtype=bool)
    result = fp_regions_vs_fpr(maps, masks, fpr_range=(1e-3, 2e-1), num_levels=5, seed=seed)
    assert result.num_points == 15
    for image, threshold, fpr, count, target in zip(
            result.image_index, result.threshold, result.fpr, result.num_regions,
            result.target_fpr, strict=True):
        predicted = maps[image] >= threshold
        assert count == scipy_count(predicted)
        assert fpr == np.count_nonzero(predicted) / predicted.size
        rank = max(1, round(target * predicted.size))
        assert threshold == np.sort(maps[image].ravel())[::-1][rank - 1]
    assert np.all((result.target_fpr >= result.level * 0.9 - 1e-15)
                  & (result.target_fpr <= result.level * 1.1 + 1e-15))


def test_fp_regions_are_seeded():
    maps, masks = pimo.make_example(4, 2, (64, 64), seed=1)
    first = fp_regions_vs_fpr(maps, masks, fpr_range=(1e-3, 1e-1), seed=7)
    again = fp_regions_vs_fpr(maps, masks, fpr_range=(1e-3, 1e-1), seed=7)
    other = fp_regions_vs_fpr(maps, masks, fpr_range=(1e-3, 1e-1), seed=8)
    assert np.array_equal(first.target_fpr, again.target_fpr)
    assert np.array_equal(first.num_regions, again.num_regions)
    assert not np.array_equal(first.target_fpr, other.target_fpr)
    pooled = FpRegionsResult.concatenate([first, other])
    assert pooled.num_images == 12 and pooled.num_points == 2 * first.num_points
    assert pooled.image_index.max() == other.image_index.max() + 6


def test_fp_regions_need_normal_images_and_finite_maps():
    maps = np.zeros((2, 8, 8))
    masks = np.ones((2, 8, 8), dtype=bool)
    with pytest.raises(pimo.NoNormalImageError):
        fp_regions_vs_fpr(maps, masks)
    maps[0, 1, 1] = np.nan
    with pytest.raises(pimo.NonFiniteScoreError, match="image 0"):
        fp_regions_vs_fpr(maps, np.zeros((2, 8, 8), dtype=bool))


# ---------------------------------------------------------------------------------------------
# noisy annotations
# ---------------------------------------------------------------------------------------------
def test_added_regions_have_the_drawn_count_and_sizes():
    rng = np.random.default_rng(3)
    mask = np.zeros((64, 64), dtype=bool)
    draw_square(mask, 20, 20, 10)
    for _ in range(20):
        noisy, sizes = add_tiny_regions(mask, rng)
        assert np.all(noisy[mask])                                  # nothing removed
        labels, count = ndi.label(noisy, np.ones((3, 3)))
        assert count == 1 + sizes.size                              # no region merged
        new_sizes = np.bincount(labels.ravel())[1:]
        original = labels[25, 25]
        assert sorted(np.delete(new_sizes, original - 1).tolist()) == sorted(sizes.tolist())
        assert new_sizes[original - 1] == 100


def test_noise_statistics_match_their_targets():
    """Bin frequencies and means of many draws, within 5 standard errors of the targets."""
    stats = VISA_TINY_REGIONS
    rng = np.random.default_rng(0)
    n = 200_000
    for sample, bins, weights in ((stats.sample_counts(rng, n), stats.count_bins,
                                   stats.count_weights),
                                  (stats.sample_sizes(rng, n), stats.size_bins,
                                   stats.size_weights)):
        total = sum(weights)
        for (low, high), weight in zip(bins, weights, strict=True):
            p = weight / total
            observed = np.mean((sample >= low) & (sample <= high))
            assert abs(observed - p) < 5 * math.sqrt(p * (1 - p) / n)
        values = np.concatenate([np.arange(lo, hi + 1) for lo, hi in bins])
        probabilities = np.concatenate([np.full(hi - lo + 1, w / total / (hi - lo + 1))
                                        for (lo, hi), w in zip(bins, weights, strict=True)])
        mean = float(values @ probabilities)
        std = math.sqrt(float((values - mean) ** 2 @ probabilities))
        assert abs(sample.mean() - mean) < 5 * std / math.sqrt(n)
    # the defaults reproduce VisA's mean number of tiny regions per image (1436 / 210)
    values, pmf = stats.count_pmf()
    assert values @ pmf == pytest.approx(1436 / 210, rel=0.02)


def test_noise_generator_statistics_over_many_masks():
    """What add_tiny_regions really adds matches the target means (5 standard errors)."""
    stats = VISA_TINY_REGIONS
    rng = np.random.default_rng(1)
    mask = np.zeros((48, 48), dtype=bool)
    draw_square(mask, 0, 0, 8)
    counts, sizes = [], []
    for _ in range(400):
        noisy, added = add_tiny_regions(mask, rng, stats)
        counts.append(added.size)
        sizes.extend(added.tolist())
        assert noisy.sum() == mask.sum() + added.sum()
    for values_pmf, sample in ((stats.count_pmf(), np.array(counts)),
                               (stats.size_pmf(), np.array(sizes))):
        values, pmf = values_pmf
        mean = values @ pmf
        std = math.sqrt(((values - mean) ** 2) @ pmf)
        assert abs(sample.mean() - mean) < 5 * std / math.sqrt(sample.size)
        assert sample.min() >= values.min() and sample.max() <= values.max()


def test_noise_in_a_volume_is_26_connected():
    rng = np.random.default_rng(2)
    volume = np.zeros((6, 16, 16), dtype=bool)
    volume[2:4, 5:9, 5:9] = True
    noisy, sizes = add_tiny_regions(volume, rng)
    assert scipy_count(noisy) == 1 + sizes.size


def test_noise_statistics_validation_and_full_masks():
    with pytest.raises(pimo.PimoValueError, match="size_bins"):
        NoiseStatistics(((1, 2),), (1.0,), ((0, 3),), (1.0,))
    with pytest.raises(pimo.PimoValueError, match="weights"):
        NoiseStatistics(((1, 2),), (0.0,), ((1, 3),), (1.0,))
    stats = NoiseStatistics(((1, 1),), (1.0,), ((20, 20),), (1.0,))
    assert NoiseStatistics.from_dict(stats.to_dict()) == stats
    with pytest.raises(pimo.PimoValueError, match="No room"):
        add_tiny_regions(np.zeros((4, 4), dtype=bool), np.random.default_rng(0), stats)
    maps = np.random.default_rng(0).random((2, 4, 4))
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[1, 0, 0] = True
    with pytest.raises(pimo.PimoValueError, match=r"image 1 \('b\.png'\).*No room"):
        noisy_annotation_robustness(maps, masks, statistics=stats, fpr_bounds=(0.1, 0.5),
                                    paths=["a.png", "b.png"])


def test_robustness_is_reproducible_and_consistent():
    maps, masks = pimo.make_example(6, 6, (96, 96), seed=4)
    kwargs = {"fpr_bounds": (1e-3, 1e-2), "num_draws": 2, "seed": 5}
    result = noisy_annotation_robustness(maps, masks, **kwargs)
    again = noisy_annotation_robustness(maps, masks, **kwargs)
    assert np.array_equal(result.aupimo_noisy, again.aupimo_noisy, equal_nan=True)
    assert np.array_equal(result.aupro_noisy, again.aupro_noisy)
    clean = pimo.aupimo(maps, masks, fpr_bounds=(1e-3, 1e-2))
    assert np.array_equal(result.aupimo_clean, clean.aupimos, equal_nan=True)
    assert result.aupro_clean[0] == pytest.approx(pimo.aupro(maps, masks, fpr_limit=0.3))
    assert result.aupimo_differences.shape == (2, 6)
    assert np.all(result.added_regions[:, :6] == 0) and np.all(result.added_regions[:, 6:] >= 1)
    assert np.all(np.isnan(result.aupimo_noisy[:, :6]))
    assert len(result.to_rows()) == 12
    # no noise at all: nothing changes
    silent = NoiseStatistics(((0, 0),), (1.0,), ((1, 1),), (1.0,))
    same = noisy_annotation_robustness(maps, masks, statistics=silent,
                                       fpr_bounds=(1e-3, 1e-2))
    assert np.all(same.aupro_differences == 0) and np.all(same.aupimo_differences == 0)


# ---------------------------------------------------------------------------------------------
# video
# ---------------------------------------------------------------------------------------------
def test_natural_order_and_frame_numbers():
    names = ["f10.png", "f2.png", "F1.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f2.png", "f10.png"]
    assert frame_number("Test006/frame_042.tif") == 42
    assert frame_number("v2/frame.png") is None


def test_video_timelines_split_sort_and_find_missing_frames():
    paths = ["vid10/010.png", "vid2/3.png", "vid2/1.png", "vid10/008.png", "vid2/2.png",
             "vid2/6.png"]
    scores = np.array([0.5, np.nan, 0.25, np.nan, 1.0, 0.75])
    timelines = video_timelines(scores, paths)
    assert [t.name for t in timelines] == ["vid2", "vid10"]
    vid2 = timelines[0]
    assert vid2.frame_indices.tolist() == [1, 2, 3, 6]
    assert vid2.anomalous.tolist() == [True, True, False, True]
    assert vid2.missing_frames.tolist() == [4, 5]
    indices, states = vid2.states()
    assert indices.tolist() == [1, 2, 3, 4, 5, 6]
    assert states.tolist() == ["anomalous", "anomalous", "normal", "missing", "missing",
                               "anomalous"]
    assert vid2.summary()["mean_aupimo"] == pytest.approx((0.25 + 1.0 + 0.75) / 3)
    assert timelines[1].frame_indices.tolist() == [8, 10]


def test_video_timelines_fall_back_to_positions_and_reject_duplicates():
    timelines = video_timelines([np.nan, 0.5], ["v/b.png", "v/a.png"])
    assert timelines[0].frame_indices.tolist() == [0, 1]
    assert timelines[0].paths == ["v/a.png", "v/b.png"]
    with pytest.raises(pimo.PimoValueError, match="frame number 3"):
        video_timelines([0.1, 0.2], ["v/3.png", "v/003.png"])
    with pytest.raises(pimo.PimoValueError, match="paths"):
        video_timelines([0.1])


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def test_figures_draw(tmp_path):
    from pimo.analysis.plots import (
        plot_fp_regions,
        plot_region_sizes,
        plot_robustness,
        plot_video_timelines,
    )

    maps, masks = pimo.make_example(4, 4, (64, 64), seed=0)
    figures = [
        plot_region_sizes({"a": region_sizes(masks), "empty": region_sizes(masks[:4])}),
        plot_fp_regions(fp_regions_vs_fpr(maps, masks, fpr_range=(1e-3, 1e-1))),
        plot_robustness({"a": noisy_annotation_robustness(maps, masks,
                                                          fpr_bounds=(1e-2, 1e-1))}),
        plot_video_timelines(video_timelines([np.nan, 0.5, 0.7], ["v/1.png", "v/2.png",
                                                                  "v/5.png"])),
    ]
    for k, figure in enumerate(figures):
        figure.savefig(tmp_path / f"{k}.png")
        assert (tmp_path / f"{k}.png").stat().st_size > 1000
