"""Figures of the analyses, drawn with matplotlib without pyplot (as :mod:`pimo.plots`).

- :func:`plot_region_sizes`: boxplots of relative region sizes per dataset (paper Fig. 8).
- :func:`plot_fp_regions`: FP regions vs image FPR, scatter and histograms (paper Fig. 6).
- :func:`plot_robustness`: histograms of clean - noisy AUPRO and AUPIMO (paper Fig. 5b).
- :func:`plot_video_timelines`: per-frame AUPIMO along time (paper Fig. 11).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from pimo._validate import PimoValueError
from pimo.analysis.fp_regions import FP_HISTOGRAM_LEVELS, FpRegionsResult
from pimo.analysis.noise import RobustnessResult
from pimo.analysis.sizes import TINY_RELATIVE_SIZE, RegionSizes
from pimo.analysis.video import VideoTimeline
from pimo.plots import _HORIZONTAL, AUPRO_COLOR

__all__ = ["plot_fp_regions", "plot_region_sizes", "plot_robustness", "plot_video_timelines"]

_BAND_COLOR = "#bbbbbb"
_NORMAL_COLOR = "#9ecae1"
_ANOMALOUS_COLOR = "#fc9272"
_MISSING_COLOR = "#d9d9d9"


def plot_region_sizes(
    sizes: Mapping[str, RegionSizes],
    *,
    fpr_bounds: tuple[float, float] = (1e-5, 1e-4),
    reference_pixels: float = 1 / TINY_RELATIVE_SIZE,
    title: str | None = None,
) -> Figure:
    """Boxplots of the relative region sizes, one row per dataset, log x axis (paper Fig. 8).

    Whiskers reach at most 1.5 IQR, fliers are grey dots; AUPIMO's integration range
    ``fpr_bounds`` is shaded and the relative size of one pixel at ``reference_pixels`` pixels
    (default 256x256) is a vertical grey line. Datasets without region are labelled, not drawn.
    """
    names = list(sizes)
    if not names:
        raise PimoValueError("No dataset to draw: pass at least one dataset's region sizes.")
    figure = Figure(figsize=(7.0, 1.4 + 0.36 * len(names)), layout="constrained")
    ax = figure.add_subplot()
    positions = np.arange(len(names), 0, -1, dtype=float)
    data = [sizes[name].relative for name in names]
    drawn = [k for k, values in enumerate(data) if values.size]
    if drawn:
        ax.boxplot(
            [data[k] for k in drawn], positions=positions[drawn], **_HORIZONTAL, widths=0.55,
            whis=1.5, patch_artist=True,
            boxprops={"facecolor": "#d9d9d9", "edgecolor": "black"},
            medianprops={"color": "black"},
            flierprops={"marker": "o", "markerfacecolor": "#999999", "markeredgecolor": "none",
                        "markersize": 3, "alpha": 0.7},
        )
    ax.axvspan(fpr_bounds[0], fpr_bounds[1], color=_BAND_COLOR, alpha=0.5, zorder=0)
    ax.axvline(1 / reference_pixels, color="#666666", linewidth=1.5, zorder=1)
    ax.set_xscale("log")
    labels = [name if data[k].size else f"{name} (no region)" for k, name in enumerate(names)]
    ax.set_yticks(positions, labels)
    ax.set_ylim(0.4, len(names) + 0.6)
    ax.set_xlabel("relative region size (pixels of the region / pixels of the image)")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    side = round(float(np.sqrt(reference_pixels)))
    figure.legend(handles=[
        Patch(color=_BAND_COLOR, alpha=0.5, label="AUPIMO integration range"),
        Patch(color="#666666", label=f"1 pixel at {side}x{side}"),
    ], loc="outside lower center", ncol=2, fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    return figure


def plot_fp_regions(
    result: FpRegionsResult,
    *,
    max_regions: int = 5,
    seed: int | None = 0,
    title: str | None = None,
) -> Figure:
    """FP regions vs image FPR (paper Fig. 6): scatter with the mean line, and histograms.

    Left: every point, FPR on a log x axis, number of regions clipped at ``max_regions`` and
    jittered vertically (seeded) so points do not overlap; the black line joins the mean
    number of regions (not clipped) of each preset level. Right: for FPR levels 1e-5, 1e-4,
    1e-3, the fraction of points in ``[L/2, 2L]`` with each number of regions, and its
    cumulative sum (dashed).
    """
    figure = Figure(figsize=(11.0, 3.8), layout="constrained")
    grid = figure.add_gridspec(1, 1 + len(FP_HISTOGRAM_LEVELS), width_ratios=[2.2, 1, 1, 1])
    ax = figure.add_subplot(grid[0, 0])
    rng = np.random.default_rng(seed)
    clipped = np.minimum(result.num_regions, max_regions)
    ax.scatter(result.fpr, clipped + rng.uniform(-0.25, 0.25, clipped.size), s=6, alpha=0.35,
               color="#3182bd", edgecolors="none")
    ax.plot(result.levels, result.mean_per_level(), color="black", marker="o", markersize=3,
            label="mean")
    ax.set_xscale("log")
    ax.set_ylim(-0.5, max_regions + 0.5)  # a mean above max_regions leaves the axes
    ax.set_yticks(range(max_regions + 1),
                  [str(k) for k in range(max_regions)] + [f"{max_regions}+"])
    ax.set_xlabel("image FPR")
    ax.set_ylabel("number of FP regions")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(True, alpha=0.3)
    bins = np.arange(max_regions + 1)
    for column, level in enumerate(FP_HISTOGRAM_LEVELS, start=1):
        hax = figure.add_subplot(grid[0, column])
        fractions, count = result.histogram(level, max_regions=max_regions)
        hax.bar(bins, fractions, color="#9ecae1", edgecolor="black")
        hax.plot(bins, np.cumsum(fractions), color="black", linestyle="--", marker=".")
        hax.set_xticks(bins, [str(k) for k in range(max_regions)] + [f"{max_regions}+"])
        hax.set_ylim(0, 1.05)
        hax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        hax.set_title(f"FPR {level:g} (n={count})", fontsize="small")
        if count == 0:
            hax.text(0.5, 0.5, "no point in [L/2, 2L]", transform=hax.transAxes,
                     ha="center", va="center", fontsize="small")
        hax.set_xlabel("FP regions")
    if title:
        figure.suptitle(title)
    return figure


def plot_robustness(results: Mapping[str, RobustnessResult], *, bins: int = 30,
                    title: str | None = None) -> Figure:
    """Histograms of ``clean - noisy`` scores (paper Fig. 5b).

    One panel per AUPRO limit (one value per dataset and draw) and one for AUPIMO (one value
    per anomalous image, dataset and draw). Closer to zero is more robust.
    """
    if not results:
        raise PimoValueError("No robustness result to draw.")
    limits = next(iter(results.values())).fpr_limits
    figure = Figure(figsize=(3.6 * (len(limits) + 1), 3.4), layout="constrained")
    axes = figure.subplots(1, len(limits) + 1, squeeze=False)[0]
    for column, limit in enumerate(limits):
        values = np.concatenate([r.aupro_differences[:, column] for r in results.values()])
        axes[column].hist(values, bins=bins, color=AUPRO_COLOR, alpha=0.7, edgecolor="black")
        axes[column].set_title(f"AUPRO {100 * limit:g} % (per dataset)", fontsize="small")
    aupimo_values = np.concatenate([r.aupimo_differences.ravel() for r in results.values()])
    axes[-1].hist(aupimo_values, bins=bins, color="#31a354", alpha=0.7, edgecolor="black")
    axes[-1].set_title("AUPIMO (per image)", fontsize="small")
    for ax in axes:
        ax.axvline(0.0, color="black", linewidth=1)
        ax.set_xlabel("score without noise - with noise")
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("count")
    if title:
        figure.suptitle(title)
    return figure


def _runs(indices: np.ndarray, states: np.ndarray) -> list[tuple[int, int, str]]:
    """Maximal runs of equal state as (first index, last index, state)."""
    runs: list[tuple[int, int, str]] = []
    for index, state in zip(indices.tolist(), states.tolist(), strict=True):
        if runs and runs[-1][2] == state and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index, state)
        else:
            runs.append((index, index, state))
    return runs


def plot_video_timelines(timelines: Sequence[VideoTimeline], *, columns: int = 2,
                         title: str | None = None) -> Figure:
    """Per-frame AUPIMO along the frame index, one panel per video (paper Fig. 11).

    Blue background: normal frames; red: anomalous frames; grey: missing frames.
    """
    if not timelines:
        raise PimoValueError("No video to draw.")
    columns = max(1, min(columns, len(timelines)))
    rows = -(-len(timelines) // columns)
    figure = Figure(figsize=(5.0 * columns, 2.2 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    colors = {"normal": _NORMAL_COLOR, "anomalous": _ANOMALOUS_COLOR, "missing": _MISSING_COLOR}
    for ax, timeline in zip(axes, timelines, strict=False):
        indices, states = timeline.states()
        for first, last, state in _runs(indices, states):
            ax.axvspan(first - 0.5, last + 0.5, color=colors[state], alpha=0.6, linewidth=0,
                       zorder=0)
        scores = np.full(indices.size, np.nan)  # NaN: no line across normal or missing frames
        scores[timeline.frame_indices - indices[0]] = np.where(timeline.anomalous,
                                                               timeline.aupimos, np.nan)
        ax.plot(indices, scores, color="black", marker=".", markersize=3, linewidth=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-0.02, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_title(timeline.name, fontsize="small")
        ax.set_xlabel("frame index")
        ax.set_ylabel("AUPIMO")
    for ax in axes[len(timelines):]:
        ax.set_visible(False)
    figure.legend(handles=[Patch(color=c, alpha=0.6, label=s) for s, c in colors.items()],
                  loc="outside lower center", ncol=3, fontsize="small", frameon=False)
    if title:
        figure.suptitle(title)
    return figure
