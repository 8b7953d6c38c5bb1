"""Figures: what they draw (scales, curves, spans, colours), not only that they run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import io

import numpy as np
import pytest
from matplotlib import pyplot as plt
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

import pimo
from pimo import plots
from pimo._synthetic import make_example
from pimo._validate import PimoValueError
from pimo.results import AupimoResult, PimoCurves


@pytest.fixture(scope="module")
def example() -> tuple[np.ndarray, np.ndarray, AupimoResult, PimoCurves]:
    maps, masks = make_example(12, 8, (96, 96), seed=3)
    result = pimo.aupimo(maps, masks)
    curves = pimo.pimo_curves(maps, masks)
    return maps, masks, result, curves


def hand_curves() -> tuple[PimoCurves, AupimoResult]:
    """Three images (one normal), five thresholds, by hand."""
    shared_fpr = np.array([0.0, 1e-6, 1e-5, 1e-4, 1e-3])
    tprs = np.array([
        [np.nan] * 5,
        [0.0, 0.2, 0.5, 0.9, 1.0],
        [0.1, 0.1, 0.1, 0.3, 0.6],
    ])
    curves = PimoCurves(
        thresholds=np.array([5.0, 4.0, 3.0, 2.0, 1.0]), shared_fpr=shared_fpr, tprs=tprs,
        image_classes=np.array([0, 1, 1]), fpr_bounds=(1e-5, 1e-4),
    )
    result = AupimoResult(np.array([np.nan, 0.7, 0.2]), np.array([0, 1, 1]),
                          thresh_bounds=(2.0, 3.0))
    return curves, result


def test_no_pyplot_figure_is_left_open(example) -> None:
    maps, masks, result, curves = example
    before = plt.get_fignums()
    figures = [
        plots.plot_pimo_curves(curves, result),
        plots.plot_aupimo_boxplots({"a": result}),
        plots.plot_aupimo_histogram(result),
        plots.plot_average_ranks({"a": 1.2, "b": 1.8}),
        plots.plot_heatmap(None, maps[-1], masks[-1], result.thresh_bounds),
        plots.plot_fp_levels(None, maps[0]),
        plots.plot_image_diagnosis(curves, result, 19, None, maps[19], masks[19]),
    ]
    assert all(isinstance(figure, Figure) for figure in figures)
    assert plt.get_fignums() == before
    buffer = io.BytesIO()
    figures[0].savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")


# -- PIMO curves -------------------------------------------------------------------------------
def test_pimo_curves_log_axis_band_and_labels() -> None:
    curves, result = hand_curves()
    figure = plots.plot_pimo_curves(curves, result, selection={"Mean": 1, "Q1": 2})
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == 2
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "Mean: 70.0% (001)" in labels and "Q1: 20.0% (002)" in labels
    # the point at shared FPR 0 cannot be drawn on a log axis: it is left out
    np.testing.assert_allclose(lines[0].get_xdata(), [1e-6, 1e-5, 1e-4, 1e-3])
    np.testing.assert_allclose(lines[0].get_ydata(), [0.2, 0.5, 0.9, 1.0])
    spans = [patch for patch in ax.patches if "integration range" in patch.get_label()]
    assert len(spans) == 1
    span = spans[0]
    if hasattr(span, "get_width"):  # a Rectangle (matplotlib >= 3.9)
        x_limits = [span.get_x(), span.get_x() + span.get_width()]
    else:  # a Polygon
        x_limits = [span.get_xy()[:, 0].min(), span.get_xy()[:, 0].max()]
    np.testing.assert_allclose(x_limits, [1e-5, 1e-4])


def test_pimo_curves_default_draws_every_anomalous_image(example) -> None:
    _, _, result, curves = example
    ax = plots.plot_pimo_curves(curves, result).axes[0]
    assert len(ax.get_lines()) == result.num_anomalous


def test_pimo_curves_refuse_a_normal_image() -> None:
    curves, result = hand_curves()
    with pytest.raises(PimoValueError, match="normal"):
        plots.plot_pimo_curves(curves, result, selection=[0])
    with pytest.raises(PimoValueError, match="out of range"):
        plots.plot_pimo_curves(curves, result, selection=[7])


# -- distributions -----------------------------------------------------------------------------
def test_boxplots_one_row_per_model_with_auroc_and_aupro_lines() -> None:
    rng = np.random.default_rng(0)
    scores = {name: rng.uniform(0, 1, 30) for name in ("best", "middle", "worst")}
    figure = plots.plot_aupimo_boxplots(
        scores, auroc={"best": 0.97, "middle": 0.9, "worst": 0.8},
        aupro={"best": 0.91, "middle": None},
    )
    ax = figure.axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["best", "middle", "worst"]
    collections = [c for c in ax.collections if isinstance(c, LineCollection)]
    by_color = {}
    for collection in collections:
        color = tuple(np.round(collection.get_colors()[0][:3], 3))
        by_color.setdefault(color, []).extend(seg[0][0] for seg in collection.get_segments())
    auroc_x = sorted(by_color[tuple(np.round(to_rgb(plots.AUROC_COLOR), 3))])
    aupro_x = sorted(by_color[tuple(np.round(to_rgb(plots.AUPRO_COLOR), 3))])
    np.testing.assert_allclose(auroc_x, [0.8, 0.9, 0.97])
    np.testing.assert_allclose(aupro_x, [0.91])
    # the mean is drawn as a white diamond at each model's mean
    means = [line for line in ax.get_lines() if line.get_marker() == "D"
             and line.get_xdata().size == 1]
    np.testing.assert_allclose(sorted(float(line.get_xdata()[0]) for line in means),
                               sorted(float(values.mean()) for values in scores.values()))
    assert ax.get_xlim()[0] <= 0 and ax.get_xlim()[1] >= 1


def test_histogram_counts_anomalous_images_only(example) -> None:
    _, _, result, _ = example
    ax = plots.plot_aupimo_histogram(result, bins=10).axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    assert len(heights) == 10
    assert sum(heights) == result.num_anomalous


# -- average ranks -----------------------------------------------------------------------------
def test_rank_diagram_joins_adjacent_models_with_low_confidence() -> None:
    ranks = {"a": 1.5, "b": 1.8, "c": 3.0, "d": 3.7}
    confidence = {
        "a": {"b": 0.80, "c": 0.99, "d": 1.0},
        "b": {"c": 0.99, "d": 1.0},
        "c": {"d": 0.50},
    }
    assert plots.low_confidence_pairs(ranks, confidence) == [("a", "b", 0.80), ("c", "d", 0.50)]
    ax = plots.plot_average_ranks(ranks, confidence).axes[0]
    bars = [c for c in ax.collections if c.get_gid() == "low-confidence"]
    assert len(bars) == 2
    spans = sorted((seg[0][0], seg[1][0]) for bar in bars for seg in bar.get_segments())
    assert spans[0][0] < 1.5 < 1.8 < spans[0][1] < 3.0
    assert spans[1][0] < 3.0 < 3.7 < spans[1][1]
    texts = [text.get_text() for text in ax.texts]
    assert "a (1.5)" in texts and "d (3.7)" in texts
    assert not [c for c in plots.plot_average_ranks(ranks).axes[0].collections
                if c.get_gid() == "low-confidence"]


# -- heatmaps ----------------------------------------------------------------------------------
LOW, HIGH = 2.0, 4.0


def ramp_map() -> np.ndarray:
    """Scores 0..7 on a 8x8 grid: rows of equal score."""
    return np.repeat(np.arange(8, dtype=np.float64)[:, None], 8, axis=1)


def test_overlay_colours_follow_the_thresholds() -> None:
    overlay = plots.aupimo_overlay(ramp_map(), (LOW, HIGH), alpha=0.6)
    assert overlay.shape == (8, 8, 4)
    below, at_low, between, at_high, above, top = (overlay[row, 0] for row in (1, 2, 3, 4, 5, 7))
    assert below[3] == 0.0 and overlay[0, 0, 3] == 0.0  # transparent below the lowest threshold
    for blue in (at_low, between):
        assert blue[3] == pytest.approx(0.6)
        assert blue[2] > blue[0] and blue[2] > blue[1]  # blue dominates
    for red in (at_high, above, top):
        assert red[3] == pytest.approx(0.6)
        assert red[0] > red[1] and red[0] > red[2]  # red dominates
    # darker = higher, within each colour
    assert between[:3].sum() < at_low[:3].sum()
    assert top[:3].sum() < above[:3].sum() < at_high[:3].sum()


def test_overlay_checks_thresholds() -> None:
    with pytest.raises(PimoValueError, match="wrong order"):
        plots.aupimo_overlay(ramp_map(), (HIGH, LOW))
    with pytest.raises(PimoValueError, match="thresh_bounds"):
        plots.aupimo_overlay(ramp_map(), (np.nan, np.nan))


def test_composed_heatmap_keeps_image_below_threshold_and_draws_white_contour() -> None:
    image = np.full((16, 16, 3), 100, dtype=np.uint8)
    low_res_map = np.repeat(np.arange(8, dtype=np.float64)[:, None], 8, axis=1)
    mask = np.zeros((16, 16), dtype=bool)
    mask[10:12, 6:10] = True
    picture = plots.compose_heatmap(image, low_res_map, mask, (LOW, HIGH))
    assert picture.shape == (16, 16, 3) and picture.dtype == np.uint8  # map upsampled
    np.testing.assert_array_equal(picture[0, 0], [100, 100, 100])  # transparent
    contour = plots.mask_contour(mask, 2)
    assert contour.sum() == (2 + 4) * (4 + 4) - 2 * 4  # 2-pixel ring around a 2x4 box
    assert (picture[contour] == 255).all()
    assert not (picture[mask] == 255).all(axis=-1).any()  # the mask itself is not painted
    red_pixel = picture[15, 0].astype(int)
    assert red_pixel[0] > red_pixel[2]
    ax = plots.plot_heatmap(image, low_res_map, mask, (LOW, HIGH), statistic="Q3",
                            aupimo=0.931, image_index=81).axes[0]
    assert [text.get_text() for text in ax.texts] == ["Q3: 93.1% (081)"]
    np.testing.assert_array_equal(ax.images[0].get_array(), picture)


# -- FP levels ---------------------------------------------------------------------------------
def test_fp_level_masks_have_the_requested_sizes_and_colours() -> None:
    rng = np.random.default_rng(1)
    anomaly_map = rng.permutation(200 * 500).reshape(200, 500).astype(np.float64)
    masks = plots.fp_level_masks(anomaly_map)
    assert masks.sum(axis=(1, 2)).tolist() == [1000, 100, 10, 1]
    assert all((masks[i] >= masks[i + 1]).all() for i in range(3))  # nested
    picture = plots.compose_fp_levels(None, anomaly_map)
    colours = [np.round(np.asarray(to_rgb(c)) * 255) for c in plots.FP_LEVEL_COLORS]
    only = [masks[0] & ~masks[1], masks[1] & ~masks[2], masks[2] & ~masks[3], masks[3]]
    for region, colour in zip(only, colours, strict=True):
        assert (picture[region] == colour).all()
    assert (picture[~masks[0]] == 128).all()  # mid-grey background without an image
    # a level under one pixel gives an empty mask and says so in the legend
    small = plots.fp_level_masks(anomaly_map[:10, :10])
    assert small.sum(axis=(1, 2)).tolist() == [1, 0, 0, 0]
    legend = plots.plot_fp_levels(None, anomaly_map[:10, :10]).axes[0].get_legend()
    assert "under 1 pixel" in legend.get_texts()[1].get_text()


def test_image_diagnosis_has_curve_and_heatmap(example) -> None:
    maps, masks, result, curves = example
    index = int(curves.anomalous_indices[0])
    figure = plots.plot_image_diagnosis(curves, result, index, None, maps[index], masks[index])
    curve_ax, map_ax = figure.axes[:2]
    assert curve_ax.get_xscale() == "log" and len(curve_ax.get_lines()) == 1
    assert len(map_ax.images) == 1
    assert map_ax.texts[0].get_text() == plots.format_sample_label(
        None, float(result.aupimos[index]), index)


def test_image_diagnosis_of_a_normal_image_shows_false_positives_at_the_bounds(
    example,
) -> None:
    maps, masks, result, _ = example
    figure = plots.plot_image_diagnosis(None, result, 0, None, maps[0], masks[0])
    fp_ax, map_ax = figure.axes[:2]
    assert "normal" in fp_ax.get_title()
    legend = [text.get_text() for text in fp_ax.get_legend().get_texts()]
    low, high = result.thresh_bounds
    counts = [int((maps[0] >= low).sum()), int((maps[0] >= high).sum())]
    assert legend[0].startswith(f"score \u2265 {low:.4g} (shared FPR U = 1e-04): {counts[0]} px")
    assert legend[1].startswith(f"score \u2265 {high:.4g} (shared FPR L = 1e-05): {counts[1]} px")
    assert f"image FPR {counts[0] / maps[0].size:.1e}" in legend[0]
    assert map_ax.texts[0].get_text() == "normal image: n/a (000)"
    with pytest.raises(pimo.PimoValueError, match="anomalous"):
        plots.plot_image_diagnosis(None, result, 19, None, maps[19], masks[19])


def test_bound_false_positives_paint_the_pixels_over_each_threshold() -> None:
    rng = np.random.default_rng(4)
    anomaly_map = rng.random((40, 50))
    thresh_bounds = (0.9, 0.97)
    regions = plots.bound_false_positive_masks(anomaly_map, thresh_bounds)
    np.testing.assert_array_equal(regions[0], anomaly_map >= 0.9)
    np.testing.assert_array_equal(regions[1], anomaly_map >= 0.97)
    figure = plots.plot_bound_false_positives(None, anomaly_map, thresh_bounds, (1e-5, 1e-4))
    picture = figure.axes[0].images[0].get_array()
    blue, red = (np.round(np.asarray(to_rgb(c)) * 255) for c in plots.BOUND_FP_COLORS)
    assert (picture[regions[1]] == red).all()
    assert (picture[regions[0] & ~regions[1]] == blue).all()
    assert (picture[~regions[0]] == 128).all()  # mid-grey without an image
