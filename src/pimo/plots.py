"""Figures of the paper's per-dataset pages (App. D), drawn with matplotlib.

Every ``plot_*`` function takes arrays and result objects, draws into a new
:class:`matplotlib.figure.Figure` (or into the ``ax`` it is given) and returns the figure. No
function touches :mod:`matplotlib.pyplot`, so nothing is registered in pyplot's global figure
list: a figure is freed when it goes out of scope, and works with any backend, e.g.::

    fig = plot_pimo_curves(curves, result, selection={"mean": 12, "Q1": 3})
    fig.savefig("curves.png")

Figures
-------
- :func:`plot_pimo_curves`: TPR vs shared FPR (log x axis), integration range shaded.
- :func:`plot_aupimo_boxplots`: one boxplot per model, mean, AUROC and AUPRO lines (Fig. 22a).
- :func:`plot_aupimo_histogram`: distribution of one model's per-image AUPIMO.
- :func:`plot_average_ranks`: average-rank diagram with low-confidence bars (Fig. 22b).
- :func:`plot_heatmap`: image + anomaly map in the AUPIMO colour scheme + ground-truth contour.
- :func:`plot_fp_levels`: FP masks at image FPR 1e-2 .. 1e-5 on a normal image (Fig. 7).
- :func:`plot_bound_false_positives`: a normal image's FPs at the thresholds of the FPR bounds.
- :func:`plot_image_diagnosis`: one image's PIMO curve next to its heatmap (``pimo show``).

Array helpers used by the figures, and testable on their own: :func:`aupimo_overlay`,
:func:`compose_heatmap`, :func:`mask_contour`, :func:`fp_level_masks`, :func:`compose_fp_levels`,
:func:`format_sample_label`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter
from scipy import ndimage

from pimo._validate import PimoValueError, ShapeMismatchError
from pimo.data.resize import resize_bilinear
from pimo.results import AupimoResult, PimoCurves

__all__ = [
    "AUPRO_COLOR",
    "AUROC_COLOR",
    "BOUND_FP_COLORS",
    "FP_LEVELS",
    "FP_LEVEL_COLORS",
    "aupimo_colour_stops",
    "aupimo_overlay",
    "bound_false_positive_masks",
    "compose_fp_levels",
    "compose_heatmap",
    "format_sample_label",
    "fp_level_masks",
    "low_confidence_pairs",
    "mask_contour",
    "plot_aupimo_boxplots",
    "plot_aupimo_histogram",
    "plot_average_ranks",
    "plot_bound_false_positives",
    "plot_fp_levels",
    "plot_heatmap",
    "plot_image_diagnosis",
    "plot_pimo_curves",
]

#: Colour of AUROC marks (paper: blue).
AUROC_COLOR = "#1f77b4"
#: Colour of AUPRO marks (paper: red).
AUPRO_COLOR = "#d62728"
#: Image-FPR levels of the FP-mask figure (paper Fig. 7).
FP_LEVELS: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5)
#: Their colours: darker blue, lighter blue, white, black (paper Fig. 7).
FP_LEVEL_COLORS: tuple[str, ...] = ("#08519c", "#6baed6", "#ffffff", "#000000")
#: Colours of the false positives at the thresholds of shared FPR U and L (the heatmap's
#: blue and red).
BOUND_FP_COLORS: tuple[str, ...] = ("#4292c6", "#cb181d")

# Part of the Blues/Reds colour maps used: the lightest tones are hard to tell from the image.
_CMAP_START = 0.35
_CMAP_STOP = 1.0
_INTEGRATION_BAND_COLOR = "#bbbbbb"

# ``vert=False`` is deprecated from matplotlib 3.10, which added ``orientation``.
_HORIZONTAL: dict[str, Any] = (
    {"orientation": "horizontal"}
    if tuple(int(part) for part in re.findall(r"\d+", matplotlib.__version__)[:2]) >= (3, 10)
    else {"vert": False}
)

Selection = Mapping[str, int] | Sequence[int] | None


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """A new figure with one axes, or the figure of the axes given."""
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.add_subplot()


def format_sample_label(statistic: str | None, aupimo: float, image_index: int) -> str:
    """The paper's sample caption ``"[Statistic]: [AUPIMO] ([Image Index])"``.

    >>> format_sample_label("Q1", 0.9312, 81)
    'Q1: 93.1% (081)'
    """
    score = "n/a" if not math.isfinite(aupimo) else f"{100 * aupimo:.1f}%"
    text = f"{score} ({image_index:03d})"
    return text if not statistic else f"{statistic}: {text}"


def _selection_items(selection: Selection, default: Sequence[int]) -> list[tuple[str | None, int]]:
    """Normalise a selection to ``[(statistic or None, image index), ...]``."""
    if selection is None:
        return [(None, int(index)) for index in default]
    if isinstance(selection, Mapping):
        return [(str(name), int(index)) for name, index in selection.items()]
    return [(None, int(index)) for index in selection]


def _check_thresh_bounds(thresh_bounds: Sequence[float]) -> tuple[float, float]:
    try:
        lower, upper = (float(value) for value in thresh_bounds)
    except (TypeError, ValueError) as error:
        raise PimoValueError(
            f"thresh_bounds must be two numbers (threshold at shared FPR = U, threshold at "
            f"shared FPR = L), got {thresh_bounds!r}."
        ) from error
    if not (math.isfinite(lower) and math.isfinite(upper)):
        raise PimoValueError(
            f"thresh_bounds are {thresh_bounds!r}: the heatmap colours need the two thresholds "
            "of the integration range. Use the thresh_bounds of the AupimoResult returned by "
            "pimo.aupimo (score files written by pimo carry them)."
        )
    if lower > upper:
        raise PimoValueError(
            f"thresh_bounds = ({lower}, {upper}) is in the wrong order: the first is the "
            "threshold at shared FPR = U (the lower threshold), the second the one at shared "
            "FPR = L (the higher). Swap them."
        )
    return lower, upper


def _as_rgb_image(image: np.ndarray | None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """An image as float RGB in [0, 1], shape (H, W, 3); mid-grey when ``image`` is None."""
    if image is None:
        if shape is None:
            raise PimoValueError("Give an image or a shape.")
        return np.full((*shape, 3), 0.5)
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.float64)
    elif array.dtype.kind in "ui":
        array = array.astype(np.float64) / (
            255.0 if array.dtype.itemsize == 1 else float(np.iinfo(array.dtype).max)
        )
    else:
        array = array.astype(np.float64)
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            low, high = float(array.min()), float(array.max())
            array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ShapeMismatchError(
            f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {array.shape}."
        )
    return array


def _map_at(anomaly_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The anomaly map at ``shape``, upsampled bilinearly (paper's full-resolution rule)."""
    array = np.asarray(anomaly_map)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ShapeMismatchError(f"anomaly map must be 2-D (H, W), got shape {array.shape}.")
    return np.asarray(resize_bilinear(array, shape), dtype=np.float64)


def _mask_at(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.shape != shape:
        raise ShapeMismatchError(
            f"mask has shape {array.shape} but the image has {shape}; masks are the full "
            "resolution, so pass the image and mask of the same sample."
        )
    return array.astype(bool)


# --------------------------------------------------------------------------------------------
# PIMO curves
# --------------------------------------------------------------------------------------------
def plot_pimo_curves(
    curves: PimoCurves,
    result: AupimoResult | None = None,
    *,
    selection: Selection = None,
    ax: Axes | None = None,
    title: str | None = None,
    max_legend_entries: int = 12,
) -> Figure:
    """PIMO curves: per-image TPR vs shared FPR on a log x axis, integration range shaded.

    Parameters
    ----------
    curves : PimoCurves
        From :func:`pimo.pimo_curves`.
    result : AupimoResult, optional
        Scores used in the labels; without it labels show the image index only.
    selection : mapping of str to int, or sequence of int, optional
        Images to draw: ``{"Mean": 12, "Q1": 3, ...}`` (statistic -> image index) gives the
        labels ``"Mean: 93.1% (012)"``; a plain sequence of indices gives ``"93.1% (012)"``.
        Default: every anomalous image.
    ax : Axes, optional
        Draw here instead of in a new figure.
    title : str, optional
        Axes title.
    max_legend_entries : int, default 12
        No legend when more curves than this are drawn.

    Returns
    -------
    Figure
    """
    figure, ax = _figure_and_axes(ax, (8.0, 4.0))
    lower, upper = curves.fpr_bounds
    ax.axvspan(lower, upper, color=_INTEGRATION_BAND_COLOR, alpha=0.4, zorder=0,
               label=f"integration range [{lower:.0e}, {upper:.0e}]")
    items = _selection_items(selection, curves.anomalous_indices.tolist())
    num_images = curves.tprs.shape[0]
    shared_fpr = np.asarray(curves.shared_fpr, dtype=np.float64)
    positive = shared_fpr > 0
    palette = colormaps["tab10"]
    for position, (statistic, index) in enumerate(items):
        if not 0 <= index < num_images:
            raise PimoValueError(
                f"image index {index} is out of range: the curves have {num_images} images "
                f"(0 to {num_images - 1})."
            )
        if curves.image_classes[index] != 1:
            raise PimoValueError(
                f"image {index} is normal (all-zero mask): it has no PIMO curve. Select "
                "anomalous images only."
            )
        score = math.nan if result is None else float(result.aupimos[index])
        label = (format_sample_label(statistic, score, index) if result is not None
                 else (f"{statistic}: ({index:03d})" if statistic else f"({index:03d})"))
        ax.plot(shared_fpr[positive], curves.tprs[index][positive], label=label,
                color=palette(position % 10), linewidth=1.5)
    ax.set_xscale("log")
    if positive.any():
        left = min(float(shared_fpr[positive].min()), lower / 10)
        right = min(1.0, max(float(shared_fpr[positive].max()), upper * 10))
        ax.set_xlim(left, right)
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_xlabel("shared FPR (mean image FPR on normal images), log scale")
    ax.set_ylabel("TPR of the image")
    ax.grid(True, which="major", alpha=0.3)
    if title:
        ax.set_title(title)
    if 0 < len(items) <= max_legend_entries:  # beside the axes: curves stay visible
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
                  frameon=False, borderaxespad=0.0)
    return figure


# --------------------------------------------------------------------------------------------
# distributions
# --------------------------------------------------------------------------------------------
def _anomalous_scores(scores: AupimoResult | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(scores, AupimoResult):
        values = scores.anomalous_scores
    else:
        values = np.asarray(scores, dtype=np.float64)
        values = values[np.isfinite(values)]
    return values


def plot_aupimo_boxplots(
    scores: Mapping[str, AupimoResult | np.ndarray | Sequence[float]],
    *,
    auroc: Mapping[str, float | None] | None = None,
    aupro: Mapping[str, float | None] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """AUPIMO boxplots, one row per model (paper Fig. 22a layout).

    Whiskers reach at most 1.5 IQR, the mean is a white diamond, fliers are grey dots; the
    model's AUROC (blue) and AUPRO (red) are vertical lines across its row when given.

    Parameters
    ----------
    scores : mapping of str to AupimoResult or array
        Model name -> per-image AUPIMO (normal images, NaN, are ignored). The first model is
        drawn on the top row.
    auroc, aupro : mapping of str to float, optional
        Model name -> set-level AUROC / AUPRO (in [0, 1]); missing or None values are skipped.
    ax : Axes, optional
        Draw here instead of in a new figure.
    title : str, optional
        Axes title.

    Returns
    -------
    Figure
    """
    names = list(scores)
    if not names:
        raise PimoValueError("No model to draw: pass at least one model's scores.")
    own_figure = ax is None
    figure, ax = _figure_and_axes(ax, (7.0, 1.5 + 0.38 * len(names)))
    data = [_anomalous_scores(scores[name]) for name in names]
    for name, values in zip(names, data, strict=True):
        if values.size == 0:
            raise PimoValueError(f"model {name!r} has no AUPIMO score (no anomalous image).")
    positions = np.arange(len(names), 0, -1, dtype=float)  # first model on top
    ax.boxplot(
        data, positions=positions, **_HORIZONTAL, widths=0.55, whis=1.5,
        showmeans=True, patch_artist=True,
        boxprops={"facecolor": "#d9d9d9", "edgecolor": "black"},
        medianprops={"color": "black"},
        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black",
                   "markersize": 6},
        flierprops={"marker": "o", "markerfacecolor": "#999999", "markeredgecolor": "none",
                    "markersize": 3, "alpha": 0.7},
    )
    handles: list[Any] = [
        Line2D([], [], marker="D", linestyle="none", markerfacecolor="white",
               markeredgecolor="black", label="mean AUPIMO"),
    ]
    for values_by_model, color, label in ((auroc, AUROC_COLOR, "AUROC"),
                                          (aupro, AUPRO_COLOR, "AUPRO")):
        if not values_by_model:
            continue
        drawn = False
        for name, position in zip(names, positions, strict=True):
            value = values_by_model.get(name)
            if value is None or not math.isfinite(float(value)):
                continue
            ax.vlines(float(value), position - 0.4, position + 0.4, colors=color, linewidth=2,
                      zorder=3)
            drawn = True
        if drawn:
            handles.append(Line2D([], [], color=color, linewidth=2, label=label))
    ax.set_yticks(positions, names)
    ax.set_ylim(0.4, len(names) + 0.6)
    ax.set_xlim(-0.02, 1.02)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_xlabel("AUPIMO (per image)")
    ax.grid(True, axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    if own_figure:
        figure.legend(handles=handles, loc="outside lower center", ncol=len(handles),
                      fontsize="small", frameon=False)
    else:
        ax.legend(handles=handles, loc="lower left", fontsize="small")
    return figure


def plot_aupimo_histogram(
    scores: AupimoResult | np.ndarray | Sequence[float],
    *,
    bins: int = 20,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Histogram of one model's per-image AUPIMO (anomalous images), mean as a dashed line.

    Parameters
    ----------
    scores : AupimoResult or array
        Per-image AUPIMO; NaN entries (normal images) are ignored.
    bins : int, default 20
        Number of equal bins over [0, 1].
    ax : Axes, optional
        Draw here instead of in a new figure.
    title : str, optional
        Axes title.

    Returns
    -------
    Figure
    """
    values = _anomalous_scores(scores)
    if values.size == 0:
        raise PimoValueError("No AUPIMO score to draw (no anomalous image).")
    figure, ax = _figure_and_axes(ax, (6.0, 3.5))
    ax.hist(values, bins=bins, range=(0.0, 1.0), color="#9ecae1", edgecolor="black")
    mean = float(values.mean())
    ax.axvline(mean, color="black", linestyle="--", label=f"mean {100 * mean:.1f}%")
    ax.set_xlim(0.0, 1.0)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_xlabel("AUPIMO (per image)")
    ax.set_ylabel("number of images")
    ax.legend(loc="upper left", fontsize="small")
    if title:
        ax.set_title(title)
    return figure


# --------------------------------------------------------------------------------------------
# average ranks
# --------------------------------------------------------------------------------------------
def low_confidence_pairs(
    average_ranks: Mapping[str, float],
    confidence: Mapping[str, Mapping[str, float]] | None,
    *,
    level: float = 0.95,
) -> list[tuple[str, str, float]]:
    """Adjacent models (in rank order) whose pairwise confidence is below ``level``.

    Parameters
    ----------
    average_ranks : mapping of str to float
        Model -> average image-wise rank (1 = best).
    confidence : mapping, optional
        ``confidence[a][b]`` = confidence that ``a`` is better than ``b`` (1 - p of a
        one-sided Wilcoxon test). Pairs missing from it are skipped.
    level : float, default 0.95

    Returns
    -------
    list of (better model, worse model, confidence)
    """
    ordered = sorted(average_ranks, key=lambda name: (average_ranks[name], name))
    pairs = []
    for better, worse in itertools.pairwise(ordered):
        value = None if confidence is None else confidence.get(better, {}).get(worse)
        if value is not None and math.isfinite(float(value)) and float(value) < level:
            pairs.append((better, worse, float(value)))
    return pairs


def plot_average_ranks(
    average_ranks: Mapping[str, float],
    confidence: Mapping[str, Mapping[str, float]] | None = None,
    *,
    level: float = 0.95,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Average-rank diagram (paper Fig. 22b): models on a rank axis, 1 = best, on the left.

    Each model is a tick on the axis, joined by an elbow line to its name (and average rank),
    the better half on the left, the worse half on the right. A thick bar below the axis joins
    two models adjacent in rank whose pairwise confidence is below ``level`` (their order is
    not statistically established).

    Parameters
    ----------
    average_ranks : mapping of str to float
        Model -> average image-wise rank.
    confidence : mapping, optional
        ``confidence[a][b]``: confidence that ``a`` beats ``b`` (see
        :func:`low_confidence_pairs`). Without it no bar is drawn.
    level : float, default 0.95
        Confidence below which adjacent models are joined.
    ax : Axes, optional
        Draw here instead of in a new figure.
    title : str, optional
        Axes title.

    Returns
    -------
    Figure
        The bars are the axes' collections with ``gid="low-confidence"``.
    """
    if not average_ranks:
        raise PimoValueError("No model to draw: average_ranks is empty.")
    ordered = sorted(average_ranks, key=lambda name: (average_ranks[name], name))
    count = len(ordered)
    half = (count + 1) // 2
    rows = max(half, count - half)
    figure, ax = _figure_and_axes(ax, (7.5, 1.4 + 0.32 * rows))
    axis_max = max(count, math.ceil(max(average_ranks.values())))
    axis_y = 0.0
    ax.hlines(axis_y, 1, axis_max, colors="black", linewidth=1.2)
    for tick in range(1, axis_max + 1):
        ax.vlines(tick, axis_y, axis_y + 0.18, colors="black", linewidth=1)
        ax.text(tick, axis_y + 0.25, str(tick), ha="center", va="bottom", fontsize="small")
    ax.text((1 + axis_max) / 2, axis_y + 0.7, "average rank (1 = best)", ha="center",
            va="bottom", fontsize="small")
    left_x, right_x = 1 - 0.25 * axis_max / 6 - 0.3, axis_max + 0.25 * axis_max / 6 + 0.3
    for position, name in enumerate(ordered):
        rank = float(average_ranks[name])
        on_left = position < half
        row = position if on_left else count - 1 - position
        y = -(0.9 + 0.55 * row)
        end_x = left_x if on_left else right_x
        ax.plot([rank, rank, end_x], [axis_y, y, y], color="#444444", linewidth=0.9)
        ax.plot([rank], [axis_y], marker="o", color="black", markersize=4)
        ax.text(end_x + (-0.1 if on_left else 0.1), y, f"{name} ({rank:.1f})",
                ha="right" if on_left else "left", va="center", fontsize="small")
    pairs = low_confidence_pairs(average_ranks, confidence, level=level)
    for number, (better, worse, _value) in enumerate(pairs):
        y = -(0.35 + 0.14 * (number % 3))
        ax.hlines(y, float(average_ranks[better]) - 0.12, float(average_ranks[worse]) + 0.12,
                  colors="#e6550d", linewidth=4, gid="low-confidence")
    if pairs:
        ax.text((1 + axis_max) / 2, -(0.9 + 0.55 * rows), f"bars: confidence < {level:.0%}",
                ha="center", va="top", fontsize="x-small", color="#e6550d")
    ax.set_xlim(left_x - 0.2 * axis_max - 0.8, right_x + 0.2 * axis_max + 0.8)
    ax.set_ylim(-(1.25 + 0.55 * rows), 1.1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return figure


# --------------------------------------------------------------------------------------------
# heatmaps
# --------------------------------------------------------------------------------------------
def aupimo_overlay(
    anomaly_map: np.ndarray,
    thresh_bounds: Sequence[float],
    *,
    alpha: float = 0.6,
) -> np.ndarray:
    """The AUPIMO colour layer of an anomaly map, as RGBA floats.

    - ``score < thresh_lower_bound`` (threshold at shared FPR = U): fully transparent;
    - ``thresh_lower_bound <= score < thresh_upper_bound``: blues, darker = higher, scaled over
      the two thresholds (the same for every image);
    - ``score >= thresh_upper_bound`` (threshold at shared FPR = L): reds, darker = higher,
      scaled from that threshold to the image's maximum (per-image, paper App. D).

    Parameters
    ----------
    anomaly_map : ndarray, shape (H, W)
    thresh_bounds : (float, float)
        ``AupimoResult.thresh_bounds``: (threshold at shared FPR = U, threshold at shared
        FPR = L).
    alpha : float, default 0.6
        Opacity of the coloured pixels.

    Returns
    -------
    ndarray of float64, shape (H, W, 4)
    """
    lower, upper = _check_thresh_bounds(thresh_bounds)
    scores = np.asarray(anomaly_map, dtype=np.float64)
    if scores.ndim != 2:
        raise ShapeMismatchError(f"anomaly map must be 2-D (H, W), got shape {scores.shape}.")
    overlay = np.zeros((*scores.shape, 4))
    span = _CMAP_STOP - _CMAP_START
    blue = (scores >= lower) & (scores < upper)
    if blue.any():
        fraction = (scores[blue] - lower) / (upper - lower) if upper > lower else 1.0
        overlay[blue] = colormaps["Blues"](_CMAP_START + span * np.clip(fraction, 0, 1))
        overlay[blue, 3] = alpha
    red = scores >= upper
    if red.any():
        peak = float(scores[red].max())
        fraction = (scores[red] - upper) / (peak - upper) if peak > upper else 0.0
        overlay[red] = colormaps["Reds"](_CMAP_START + span * np.clip(fraction, 0, 1))
        overlay[red, 3] = alpha
    return overlay


def aupimo_colour_stops(num: int = 5) -> tuple[list[str], list[str]]:
    """Hex colours along the two scales of :func:`aupimo_overlay` (for a legend).

    Returns
    -------
    (list of str, list of str)
        ``num`` blues (between the thresholds) and ``num`` reds (above the upper one), from
        the lowest to the highest score.
    """
    from matplotlib.colors import to_hex

    positions = np.linspace(_CMAP_START, _CMAP_STOP, num)
    return ([to_hex(colormaps["Blues"](p)) for p in positions],
            [to_hex(colormaps["Reds"](p)) for p in positions])


def mask_contour(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The ``width``-pixel outer contour of a binary mask (pixels just outside it)."""
    region = np.asarray(mask).astype(bool)
    if not region.any():
        return np.zeros_like(region)
    grown = ndimage.binary_dilation(region, structure=np.ones((3, 3), bool), iterations=width)
    return grown & ~region


def compose_heatmap(
    image: np.ndarray | None,
    anomaly_map: np.ndarray,
    mask: np.ndarray | None,
    thresh_bounds: Sequence[float],
    *,
    alpha: float = 0.6,
    contour_width: int = 2,
    ignore: np.ndarray | None = None,
) -> np.ndarray:
    """The heatmap picture: image, AUPIMO colour layer on top, ground-truth contour in white.

    Parameters
    ----------
    image : ndarray or None
        (H, W) grey or (H, W, 3|4) colour, uint8 or float in [0, 1]; None draws on mid-grey
        at the mask's (or map's) size.
    anomaly_map : ndarray, shape (h, w)
        Upsampled bilinearly to (H, W) when smaller.
    mask : ndarray, shape (H, W), optional
        Ground truth; its outer contour is drawn in white.
    thresh_bounds : (float, float)
        See :func:`aupimo_overlay`.
    alpha : float, default 0.6
        Opacity of the colour layer.
    contour_width : int, default 2
        Contour width in pixels.
    ignore : ndarray of bool, shape (H, W), optional
        Pixels left out of the metrics (an ignore mask): drawn dark grey, without colour.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
    """
    if image is not None:
        shape = np.asarray(image).shape[:2]
    elif mask is not None:
        shape = np.asarray(mask).shape[-2:]
    else:
        shape = np.asarray(anomaly_map).shape[-2:]
    shape = (int(shape[0]), int(shape[1]))
    base = _as_rgb_image(image, shape)
    overlay = aupimo_overlay(_map_at(anomaly_map, shape), thresh_bounds, alpha=alpha)
    opacity = overlay[:, :, 3:4]
    picture = base * (1.0 - opacity) + overlay[:, :, :3] * opacity
    left_out = _mask_at(ignore, shape)
    if left_out is not None:
        picture[left_out] = 0.25 + 0.25 * base[left_out]  # dimmed image, no colour
    region = _mask_at(mask, shape)
    if region is not None and contour_width > 0:
        picture[mask_contour(region, contour_width)] = 1.0
    return np.round(np.clip(picture, 0, 1) * 255).astype(np.uint8)


def plot_heatmap(
    image: np.ndarray | None,
    anomaly_map: np.ndarray,
    mask: np.ndarray | None,
    thresh_bounds: Sequence[float],
    *,
    statistic: str | None = None,
    aupimo: float | None = None,
    image_index: int | None = None,
    alpha: float = 0.6,
    ax: Axes | None = None,
    size_inches: float = 3.2,
    ignore: np.ndarray | None = None,
) -> Figure:
    """One heatmap in the AUPIMO colour scheme, caption on the upper-left corner.

    See :func:`compose_heatmap` for the picture (and ``ignore``) and :func:`aupimo_overlay`
    for the colours.
    The caption is ``"[statistic]: [AUPIMO] ([image index])"`` when the index is given.

    Returns
    -------
    Figure
    """
    picture = compose_heatmap(image, anomaly_map, mask, thresh_bounds, alpha=alpha,
                              ignore=ignore)
    height, width = picture.shape[:2]
    if ax is None:
        figure = Figure(figsize=(size_inches, size_inches * height / width))
        ax = figure.add_axes((0, 0, 1, 1))
    else:
        figure = ax.figure  # type: ignore[assignment]
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    if image_index is not None:
        score = math.nan if aupimo is None else float(aupimo)
        caption = format_sample_label(statistic, score, int(image_index))
        ax.text(0.02, 0.98, caption, transform=ax.transAxes, ha="left", va="top",
                fontsize="small", color="black",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 2})
    return figure


# --------------------------------------------------------------------------------------------
# FP levels on normal images (paper Fig. 7)
# --------------------------------------------------------------------------------------------
def fp_level_masks(
    anomaly_map: np.ndarray,
    levels: Sequence[float] = FP_LEVELS,
) -> np.ndarray:
    """Predicted masks of a normal image at given image-FPR levels.

    On a normal image the image FPR of ``[a >= t]`` is the fraction of pixels at or above
    ``t``. For each level the mask holds the ``floor(level * M)`` highest-scoring pixels (the
    threshold is the score of the last of them; pixels tied with it are included, as
    ``a >= t`` includes them). A level below one pixel (``level * M < 1``) gives an empty mask.

    Parameters
    ----------
    anomaly_map : ndarray, shape (H, W)
    levels : sequence of float in (0, 1]

    Returns
    -------
    ndarray of bool, shape (len(levels), H, W)
    """
    scores = np.asarray(anomaly_map, dtype=np.float64)
    if scores.ndim != 2:
        raise ShapeMismatchError(f"anomaly map must be 2-D (H, W), got shape {scores.shape}.")
    flat = scores.ravel()
    size = flat.size
    masks = np.zeros((len(levels), *scores.shape), dtype=bool)
    for position, level in enumerate(levels):
        if not 0 < float(level) <= 1:
            raise PimoValueError(f"FPR level {level!r} is not in (0, 1].")
        count = math.floor(float(level) * size + 1e-9)
        if count == 0:
            continue
        threshold = np.partition(flat, size - count)[size - count]
        masks[position] = scores >= threshold
    return masks


def compose_fp_levels(
    image: np.ndarray | None,
    anomaly_map: np.ndarray,
    *,
    levels: Sequence[float] = FP_LEVELS,
    colors: Sequence[str] = FP_LEVEL_COLORS,
    alpha: float = 1.0,
) -> np.ndarray:
    """A normal image with its FP masks at ``levels`` painted in ``colors`` (largest first).

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
    """
    if len(colors) < len(levels):
        raise PimoValueError(f"Got {len(colors)} colours for {len(levels)} FPR levels.")
    shape = (np.asarray(image).shape[:2] if image is not None
             else np.asarray(anomaly_map).shape[-2:])
    shape = (int(shape[0]), int(shape[1]))
    masks = fp_level_masks(_map_at(anomaly_map, shape), levels)
    order = np.argsort([-float(level) for level in levels], kind="stable")
    return _paint_regions(_as_rgb_image(image, shape), masks[order],
                          [colors[position] for position in order], alpha)


def _paint_regions(base: np.ndarray, regions: np.ndarray, colors: Sequence[str],
                   alpha: float) -> np.ndarray:
    """``base`` (float RGB) with each region painted in its colour, in order (last on top)."""
    picture = base.copy()
    for region, color in zip(regions, colors, strict=True):
        picture[region] = picture[region] * (1 - alpha) + np.asarray(to_rgb(color)) * alpha
    return np.round(np.clip(picture, 0, 1) * 255).astype(np.uint8)


def plot_fp_levels(
    image: np.ndarray | None,
    anomaly_map: np.ndarray,
    *,
    levels: Sequence[float] = FP_LEVELS,
    colors: Sequence[str] = FP_LEVEL_COLORS,
    alpha: float = 1.0,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """FP masks of a normal image at image FPR 1e-2, 1e-3, 1e-4, 1e-5 (paper Fig. 7).

    Colours (paper): darker blue 1e-2, lighter blue 1e-3, white 1e-4, black 1e-5. The legend
    below the image names each level (and says when a level is under one pixel at this size).
    The map is upsampled bilinearly to the image's size first.

    Returns
    -------
    Figure
    """
    picture = compose_fp_levels(image, anomaly_map, levels=levels, colors=colors, alpha=alpha)
    height, width = picture.shape[:2]
    figure, ax = _figure_and_axes(ax, (4.0, 4.0 * height / width + 0.7))
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    num_pixels = height * width
    handles = [
        Patch(facecolor=color, edgecolor="black",
              label=f"image FPR {level:.0e}" + ("" if level * num_pixels >= 1 - 1e-9
                                                else " (under 1 pixel: none)"))
        for level, color in zip(levels, colors, strict=False)
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2,
              fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    return figure


def bound_false_positive_masks(anomaly_map: np.ndarray,
                               thresh_bounds: Sequence[float]) -> np.ndarray:
    """The pixels at or above the thresholds of the two FPR bounds.

    ``[a >= t_U, a >= t_L]`` with ``(t_U, t_L) = thresh_bounds``: ``t_U`` is the threshold at
    shared FPR = U (the lower threshold, more pixels), ``t_L`` the one at shared FPR = L. On a
    normal image every such pixel is a false positive: these are the pixels the image adds to
    the shared FPR at each end of AUPIMO's integration range.

    Returns
    -------
    ndarray of bool, shape (2, H, W)
    """
    lower, upper = _check_thresh_bounds(thresh_bounds)
    scores = np.asarray(anomaly_map)
    if scores.ndim != 2:
        raise ShapeMismatchError(f"anomaly map must be 2-D (H, W), got shape {scores.shape}.")
    return np.stack([scores >= lower, scores >= upper])


def plot_bound_false_positives(
    image: np.ndarray | None,
    anomaly_map: np.ndarray,
    thresh_bounds: Sequence[float],
    fpr_bounds: Sequence[float],
    *,
    colors: Sequence[str] = BOUND_FP_COLORS,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """A normal image's false positives at the thresholds of the two FPR bounds.

    Pixels with ``a >= t_U`` (threshold at shared FPR = U) are painted in ``colors[0]``, those
    with ``a >= t_L`` (shared FPR = L) in ``colors[1]`` on top (blue and red, as in the
    heatmap). The legend gives each threshold, its pixel count and this image's FPR
    ``count / pixels`` there (the shared FPR is the mean of that over the normal images).
    The map is upsampled bilinearly to the image's size first.

    Returns
    -------
    Figure
    """
    shape = (np.asarray(image).shape[:2] if image is not None
             else np.asarray(anomaly_map).shape[-2:])
    shape = (int(shape[0]), int(shape[1]))
    regions = bound_false_positive_masks(_map_at(anomaly_map, shape), thresh_bounds)
    picture = _paint_regions(_as_rgb_image(image, shape), regions, colors[:2], 1.0)
    height, width = shape
    figure, ax = _figure_and_axes(ax, (4.0, 4.0 * height / width + 0.7))
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    low_fpr, high_fpr = (float(bound) for bound in fpr_bounds)
    handles = []
    for region, color, threshold, level, name in zip(
        regions, colors, _check_thresh_bounds(thresh_bounds), (high_fpr, low_fpr), "UL",
        strict=False,
    ):
        count = int(region.sum())
        handles.append(Patch(
            facecolor=color, edgecolor="black",
            label=f"score \u2265 {threshold:.4g} (shared FPR {name} = {level:.0e}): {count} px, "
                  f"image FPR {count / (height * width):.1e}",
        ))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1,
              fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    return figure


# --------------------------------------------------------------------------------------------
# one image, for debugging a model
# --------------------------------------------------------------------------------------------
def plot_image_diagnosis(
    curves: PimoCurves | None,
    result: AupimoResult,
    image_index: int,
    image: np.ndarray | None,
    anomaly_map: np.ndarray,
    mask: np.ndarray | None,
    *,
    statistic: str | None = None,
    title: str | None = None,
    ignore: np.ndarray | None = None,
) -> Figure:
    """One image's PIMO curve (left) next to its AUPIMO heatmap (right).

    Parameters
    ----------
    curves : PimoCurves or None
        Curves of the whole set (the shared FPR needs every normal image); not used, and may
        be None, for a normal image.
    result : AupimoResult
        Scores and thresholds of the same set.
    image_index : int
        The image to show. A normal image has no PIMO curve: its false positives at the
        thresholds of the two FPR bounds (:func:`plot_bound_false_positives`) are drawn
        instead, next to its heatmap.
    image, anomaly_map, mask : ndarray
        That image, its map and its mask.
    statistic : str, optional
        Label prefix (e.g. "Q1").
    title : str, optional
        Figure title (e.g. the image path).
    ignore : ndarray of bool, optional
        The image's ignore mask, drawn dark grey on the heatmap (see :func:`compose_heatmap`).

    Returns
    -------
    Figure
    """
    figure = Figure(figsize=(10.0, 4.2), layout="constrained")
    curve_ax, map_ax = figure.subplots(1, 2, width_ratios=(1.25, 1))
    normal = result.image_classes[image_index] != 1
    if not normal:
        if curves is None:
            raise PimoValueError(
                f"image {image_index} is anomalous: its PIMO curve needs `curves` "
                "(pimo.pimo_curves of the whole set)."
            )
        plot_pimo_curves(curves, result, selection={statistic or "": image_index}, ax=curve_ax)
        curve_ax.legend(loc="lower right", fontsize="small")  # one curve: inside the axes
    else:  # a normal image has no curve: show its false positives at the two bounds
        plot_bound_false_positives(
            image, anomaly_map, result.thresh_bounds, result.fpr_bounds, ax=curve_ax,
            title=f"image {image_index:03d} is normal (no PIMO curve): false positives",
        )
    plot_heatmap(image, anomaly_map, mask, result.thresh_bounds,
                 statistic=statistic or ("normal image" if normal else None),
                 aupimo=float(result.aupimos[image_index]), image_index=image_index, ax=map_ax,
                 ignore=ignore)
    if title:
        figure.suptitle(title, fontsize="medium")
    return figure
