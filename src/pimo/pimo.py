r"""PIMO curves, AUPIMO and AUIMO: the per-image metrics, in exact and grid modes.

Definitions (DESIGN §1). For ``N`` images with anomaly maps :math:`a_i` and binary masks
:math:`y_i`, let :math:`Y_0` be the normal images (all-zero masks) and, for a threshold
:math:`t` (``a >= t`` is predicted anomalous, ties included):

.. math::

    F_i(t) = \frac{|(a_i \ge t) \wedge \neg y_i|}{|\neg y_i|}, \qquad
    T_i(t) = \frac{|(a_i \ge t) \wedge y_i|}{|y_i|}, \qquad
    F_{sh}(t) = \frac{1}{|Y_0|} \sum_{j \in Y_0} F_j(t).

The PIMO curve of an anomalous image is the set of points :math:`(\log F_{sh}(t), T_i(t))` and

.. math::

    \mathrm{AUPIMO}_i = \frac{1}{\log(U/L)} \int_{\log L}^{\log U} T_i \; d(\log F_{sh}),

with the paper's defaults :math:`L = 10^{-5}`, :math:`U = 10^{-4}`. AUIMO uses the per-image
IoU :math:`|(a_i \ge t) \wedge y_i| / |(a_i \ge t) \vee y_i|` instead of :math:`T_i`.

**Exact mode** (``num_thresholds=None``, the default): the curve has a point at every distinct
score; consecutive points are joined by straight lines in :math:`(\log F_{sh}, T)` (trapezoid
rule), a run of tied scores moving both coordinates together (a diagonal, as in scikit-learn's
ROC); the curve is cut at :math:`\log L` and :math:`\log U` by linear interpolation. Nothing to
tune, and only the scores inside the integration range are ever ordered (DESIGN §2): one
histogram pass and one selection pass over the normal images find every normal score whose
shared FPR is at most ``U`` (plus the next one), and one pass over each anomalous image places
each of its pixels on the segment of that curve where it switches on.

**Grid mode** (``num_thresholds=K``): the official implementation's and anomalib's rules, to
reproduce published numbers. ``K`` thresholds ``linspace(min, max, K)`` over the normal
images' scores (bounds as Python floats, the result cast to the maps' dtype, as the official
code does); per-image rates at each threshold; shared FPR = their mean
(float64); each bound taken at the grid point whose shared FPR is nearest (``argmin |F_sh -
level|`` over ascending thresholds, first index on ties); the curve between those two points
inclusive, points with a non-finite log FPR dropped; trapezoid rule; divided by
:math:`\log(U/L)`; clipped to [0, 1]. It is biased (a perfect image can score 0.99, ties can
shift scores): prefer the exact mode for new results.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from pimo import _kernels
from pimo._kernels import _pimo as _pimo_kernels
from pimo._validate import (
    ConstantNormalMapsError,
    ImageSet,
    NonFiniteScoreError,
    PimoValueError,
    PimoWarning,
    UnreachableFprError,
    as_image_set,
    pixel_position,
    validate_fpr_bounds,
    validate_num_thresholds,
)
from pimo.results import AuimoResult, AupimoResult, PimoCurves

__all__ = [
    "IntegrationRange",
    "SharedFprCurve",
    "auimo",
    "aupimo",
    "pimo_curves",
]

DEFAULT_FPR_BOUNDS = (1e-5, 1e-4)

# Above this many collected normal scores, the radix selection refines its cut (one more pass).
_MAX_TAIL_VALUES = 1 << 20
# The cut is placed where the shared FPR exceeds the target by this relative margin, so that
# rounding in the histogram's float sums can never place it above the true crossing.
_CUT_MARGIN = 1e-9


@dataclass(frozen=True)
class IntegrationRange:
    """The part of the shared-FPR curve that AUPIMO integrates (exact mode).

    Attributes
    ----------
    breakpoints : ndarray of float64, shape (m+1,)
        Distinct normal scores, descending, from the lowest threshold whose shared FPR is at
        most ``L`` down to the highest one whose shared FPR is at least ``U``.
    log_fpr : ndarray of float64, shape (m+1,)
        Natural log of the shared FPR at each breakpoint (ascending).
    fpr_bounds : tuple of float
        ``(L, U)``.
    """

    breakpoints: np.ndarray
    log_fpr: np.ndarray
    fpr_bounds: tuple[float, float]

    @property
    def thresh_bounds(self) -> tuple[float, float]:
        """``(threshold at shared FPR >= U, threshold at shared FPR <= L)``."""
        return float(self.breakpoints[-1]), float(self.breakpoints[0])

    @property
    def num_points(self) -> int:
        """Number of curve vertices spanning the integration range (both ends included)."""
        return int(self.breakpoints.shape[0])


@dataclass(frozen=True)
class SharedFprCurve:
    """The shared FPR at every distinct normal score down to a cut (exact mode).

    Built from small per-image summaries (the scores of each normal image at or above the
    cut), so the same object serves in-memory, streaming and distributed evaluation.

    Attributes
    ----------
    thresholds : ndarray of float64, shape (K,)
        Distinct normal scores at or above the cut, descending.
    shared_fpr : ndarray of float64, shape (K,)
        :math:`F_{sh}` at each threshold (ascending). Exact for every listed threshold.
    num_normal : int
        :math:`|Y_0|`.
    max_normal_pixels : int
        Pixels of the largest normal image (for the smallest reachable FPR in messages).
    complete : bool
        True when the cut is the lowest normal score (the curve reaches :math:`F_{sh} = 1`).
    """

    thresholds: np.ndarray
    shared_fpr: np.ndarray
    num_normal: int
    max_normal_pixels: int
    complete: bool

    @classmethod
    def from_tails(
        cls,
        tail_values: np.ndarray,
        tail_counts: np.ndarray,
        num_pixels: np.ndarray,
        *,
        complete: bool,
    ) -> SharedFprCurve:
        r"""Build the curve from each normal image's scores at or above a cut.

        Parameters
        ----------
        tail_values : ndarray, shape (sum(tail_counts),)
            The scores of normal image j (all those ``>= cut_j``), image after image.
        tail_counts : ndarray of int, shape (n_normal,)
            How many scores each normal image contributed.
        num_pixels : ndarray of int, shape (n_normal,)
            :math:`M_j`, the pixels of each normal image.
        complete : bool
            Whether every score of every normal image is included.

        Notes
        -----
        The shared FPR is computed from integer counts: with the normal images grouped by
        pixel count :math:`M_g` and :math:`c_g(v)` the number of their scores ``>= v``,

        .. math::

            F_{sh}(v) = \sum_g \frac{c_g(v)}{|Y_0| \, M_g},

        one correctly rounded division when every image has the same size, so ``F_sh`` equals
        a bound such as ``1e-4`` exactly where the definition says so (a float sum of
        ``1/M`` steps would not). Exact for every ``v >= max_j cut_j``; callers guarantee
        that the tails cover the range they need.
        """
        tail_counts = np.asarray(tail_counts, dtype=np.int64)
        num_pixels = np.asarray(num_pixels, dtype=np.int64)
        num_normal = int(tail_counts.shape[0])
        distinct, inverse = np.unique(np.asarray(tail_values, dtype=np.float64),
                                      return_inverse=True)
        num_distinct = distinct.shape[0]
        sizes, group_of_image = np.unique(num_pixels, return_inverse=True)
        group_of_value = np.repeat(group_of_image, tail_counts)
        shared_fpr = np.zeros(num_distinct, dtype=np.float64)
        for group, size in enumerate(sizes.tolist()):
            in_group = group_of_value == group
            counts = np.bincount(inverse[in_group], minlength=num_distinct)[::-1]
            at_least = np.cumsum(counts)  # scores >= each threshold, descending thresholds
            shared_fpr += at_least / float(num_normal * size)
        if complete and num_distinct:
            shared_fpr[-1] = 1.0  # every normal pixel is counted: exactly 1, not 1 - 1e-16
        return cls(
            thresholds=distinct[::-1].copy(),
            shared_fpr=shared_fpr,
            num_normal=num_normal,
            max_normal_pixels=int(num_pixels.max()) if num_normal else 0,
            complete=complete,
        )

    @property
    def smallest_fpr(self) -> float:
        """The smallest non-zero shared FPR of the data (at the highest normal score)."""
        return float(self.shared_fpr[0])

    def index_at_most(self, level: float) -> int:
        """Index of the lowest threshold whose shared FPR is ``<= level`` (-1 if none)."""
        return int(np.searchsorted(self.shared_fpr, level, side="right")) - 1

    def index_at_least(self, level: float) -> int:
        """Index of the highest threshold whose shared FPR is ``>= level`` (K if none)."""
        return int(np.searchsorted(self.shared_fpr, level, side="left"))

    def integration_range(self, fpr_bounds: tuple[float, float]) -> IntegrationRange:
        """Select the breakpoints that bracket ``[L, U]``.

        Raises
        ------
        UnreachableFprError
            When the data cannot produce a shared FPR as low as ``L``.
        """
        lower, upper = fpr_bounds
        if self.smallest_fpr > lower * (1.0 + 1e-12):
            raise UnreachableFprError(self.unreachable_message(lower))
        first = max(self.index_at_most(lower), 0)
        last = self.index_at_least(upper)
        if last >= self.thresholds.shape[0]:  # pragma: no cover - guarded by the tail selection
            raise RuntimeError(
                "internal error: the normal-score tail does not reach the upper FPR bound"
            )
        return IntegrationRange(
            breakpoints=self.thresholds[first : last + 1],
            log_fpr=np.log(self.shared_fpr[first : last + 1]),
            fpr_bounds=(lower, upper),
        )

    def unreachable_message(self, lower: float) -> str:
        """Explain why the lower FPR bound cannot be reached, with the numbers and the fixes."""
        theoretical = 1.0 / (self.num_normal * self.max_normal_pixels)
        tie_note = ""
        if self.smallest_fpr > theoretical * 1.5:
            tie_note = (
                " (the highest normal score is shared by several pixels, which raises the "
                "smallest reachable value above that floor)"
            )
        return (
            f"The shared FPR cannot go as low as the lower integration bound L={lower:g}: on "
            f"these data its smallest non-zero value is {self.smallest_fpr:.3g}{tie_note}. With "
            f"{self.num_normal} normal image(s) of at most {self.max_normal_pixels} pixels, the "
            f"smallest reachable shared FPR is 1/(n_normal*pixels) = {theoretical:.3g}. To fix "
            "it: add normal images, evaluate at a higher resolution (upsample the maps to the "
            f"masks' full size), or raise L (fpr_bounds=({self.smallest_fpr:.2g}, U) or higher)."
        )


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _num_chunks() -> int:
    return max(1, int(numba.get_num_threads()))


def _raise_if_nonfinite(first_bad: np.ndarray, indices: np.ndarray, image_set: ImageSet) -> None:
    """Raise :class:`NonFiniteScoreError` for the first image with a NaN/inf score."""
    bad_positions = np.flatnonzero(first_bad >= 0)
    if bad_positions.shape[0] == 0:
        return
    position = int(bad_positions[0])
    index = int(indices[position])
    value = float(image_set.map_of(index)[int(first_bad[position])])
    pixel = image_set.full_pixel(index, int(first_bad[position]))
    shape = image_set.shapes[index]
    others = bad_positions.shape[0] - 1
    more = f" ({others} more image(s) have non-finite scores too)" if others else ""
    raise NonFiniteScoreError(
        f"The anomaly map of {image_set.describe(index)} holds {value} at pixel "
        f"{pixel_position(pixel, shape)}{more}. Scores must be finite: fix the model's "
        "output (e.g. a division by zero or log(0)), or replace the values with "
        "np.nan_to_num(maps, nan=..., posinf=..., neginf=...) if that is what you intend.",
        image_index=index,
        path=image_set.paths[index] if image_set.paths else None,
    )


def _constant_normal_check(image_set: ImageSet, normal: np.ndarray) -> None:
    """Raise :class:`ConstantNormalMapsError` if every normal map is constant."""
    minima, maxima, _ = _pimo_kernels.normal_min_max(image_set.maps_flat, image_set.offsets,
                                                     normal)
    raise_if_constant_normal_maps(minima, maxima)


def raise_if_constant_normal_maps(minima: np.ndarray, maxima: np.ndarray) -> None:
    """Raise :class:`ConstantNormalMapsError` if every normal map's minimum equals its maximum.

    Parameters
    ----------
    minima, maxima : ndarray, shape (n_normal,)
        The smallest and largest score of each normal image.
    """
    if np.all(minima == maxima):
        values = np.unique(minima)
        raise ConstantNormalMapsError(
            f"All {minima.shape[0]} normal images have constant anomaly maps (values "
            f"{', '.join(f'{v:g}' for v in values[:5])}), so the shared FPR only takes the "
            "values 0 and 1 and there is no threshold inside the FPR range. Check that the "
            "maps were produced by the model (not placeholders) and that they were not "
            "quantised or clipped to a constant."
        )


def normalised_scores(areas: np.ndarray, fpr_bounds: tuple[float, float]) -> np.ndarray:
    r"""Turn un-normalised areas into scores: :math:`\min(\max(A / \log(U/L), 0), 1)`."""
    normaliser = math.log(fpr_bounds[1]) - math.log(fpr_bounds[0])
    return np.minimum(np.maximum(areas / normaliser, 0.0), 1.0)


def _select_normal_tail(image_set: ImageSet, normal: np.ndarray, fpr_target: float
                        ) -> SharedFprCurve:
    """Shared FPR curve from every normal score down to where it exceeds ``fpr_target``.

    A radix selection on the sort keys of the normal scores (weighted by 1/M_j) finds the
    highest key bin at which the shared FPR exceeds ``fpr_target``; a finer histogram inside
    that bin follows only when the bin holds too many scores. The scores at or above the cut
    are then collected exactly.
    """
    dtype = image_set.map_dtype
    _, key_bits, sign_bit, exponent_mask, all_ones = _kernels.KEY_LAYOUTS[dtype]
    bits = _kernels.bit_view(image_set.maps_flat)
    num_normal = normal.shape[0]
    normal_pixels = image_set.num_pixels[normal]
    threshold_weight = fpr_target * num_normal * (1.0 + _CUT_MARGIN)
    lo_key = 0
    shift = key_bits - 16
    while True:
        weighted, counts, first_bad = _pimo_kernels.tail_key_histogram(
            bits, image_set.offsets, normal, np.uint64(lo_key), np.uint64(shift), sign_bit,
            all_ones, exponent_mask, _num_chunks(),
        )
        _raise_if_nonfinite(first_bad, normal, image_set)
        suffix_weight = np.cumsum(weighted[::-1])[::-1]
        suffix_count = np.cumsum(counts[::-1])[::-1]
        crossing = np.flatnonzero(suffix_weight > threshold_weight)
        if crossing.shape[0]:
            cut_bin = int(crossing[-1])
            complete_candidate = False
        else:
            cut_bin = int(np.flatnonzero(counts)[0]) if lo_key == 0 else 0
            complete_candidate = lo_key == 0
        too_many = suffix_count[cut_bin] > max(_MAX_TAIL_VALUES,
                                               4 * fpr_target * normal_pixels.sum())
        if crossing.shape[0] and too_many and shift > 0 and counts[cut_bin] > 1:
            lo_key += cut_bin << shift
            shift = max(shift - 16, 0)
            continue
        break
    cut_key = lo_key + (cut_bin << shift)
    cut_value = _kernels.float_from_key(cut_key, dtype)
    tail_counts = _pimo_kernels.count_at_least(image_set.maps_flat, image_set.offsets, normal,
                                               cut_value)
    tail_offsets = np.zeros(num_normal + 1, dtype=np.int64)
    np.cumsum(tail_counts, out=tail_offsets[1:])
    tail_values = np.empty(int(tail_offsets[-1]), dtype=dtype)
    _pimo_kernels.collect_at_least(image_set.maps_flat, image_set.offsets, normal, cut_value,
                                   tail_offsets, tail_values)
    return SharedFprCurve.from_tails(
        tail_values, tail_counts, normal_pixels, complete=complete_candidate
    )


def _shared_fpr_curve(image_set: ImageSet, fpr_target: float) -> SharedFprCurve:
    image_set.require_both_classes()
    return _select_normal_tail(image_set, image_set.normal_indices, fpr_target)


def _integration_range(image_set: ImageSet, curve: SharedFprCurve,
                       fpr_bounds: tuple[float, float]) -> IntegrationRange:
    try:
        return curve.integration_range(fpr_bounds)
    except UnreachableFprError:
        _constant_normal_check(image_set, image_set.normal_indices)
        raise


def _exact_areas(image_set: ImageSet, integration: IntegrationRange, *, with_iou: bool,
                 indices: np.ndarray | None = None, curves: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Un-normalised TPR (and IoU) areas of the anomalous images ``indices``."""
    if indices is None:
        indices = image_set.anomalous_indices
    lower, upper = integration.fpr_bounds
    tpr_areas, iou_areas, first_bad = _pimo_kernels.segment_integrals(
        image_set.maps_flat, image_set.masks_flat, image_set.offsets, indices,
        image_set.mask_counts[indices],
        integration.breakpoints, integration.log_fpr, math.log(lower), math.log(upper),
        with_iou, np.empty((0, 0)) if curves is None else curves,
    )
    _raise_if_nonfinite(first_bad, indices, image_set)
    return tpr_areas, iou_areas


def _exact_scores(image_set: ImageSet, fpr_bounds: tuple[float, float], *, with_iou: bool
                  ) -> tuple[np.ndarray, np.ndarray, IntegrationRange]:
    curve = _shared_fpr_curve(image_set, fpr_bounds[1])
    integration = _integration_range(image_set, curve, fpr_bounds)
    tpr_areas, iou_areas = _exact_areas(image_set, integration, with_iou=with_iou)
    anomalous = image_set.anomalous_indices
    tpr_scores = np.full(image_set.num_images, np.nan)
    tpr_scores[anomalous] = normalised_scores(tpr_areas, fpr_bounds)
    iou_scores = np.full(image_set.num_images, np.nan)
    if with_iou:
        iou_scores[anomalous] = normalised_scores(iou_areas, fpr_bounds)
    return tpr_scores, iou_scores, integration


# --------------------------------------------------------------------------------------
# grid mode
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Grid:
    thresholds: np.ndarray  # ascending, float64 holding the maps' dtype values
    shared_fpr: np.ndarray  # descending


def _grid_shared_fpr(image_set: ImageSet, num_thresholds: int) -> _Grid:
    image_set.require_both_classes()
    normal = image_set.normal_indices
    minima, maxima, first_bad = _pimo_kernels.normal_min_max(image_set.maps_flat,
                                                             image_set.offsets, normal)
    _raise_if_nonfinite(first_bad, normal, image_set)
    low, high = float(minima.min()), float(maxima.max())
    if low == high:
        raise ConstantNormalMapsError(
            f"All {normal.shape[0]} normal images have the same constant score {low:g}: "
            "grid mode cannot place thresholds between min and max. Check the maps."
        )
    thresholds = np.linspace(low, high, num_thresholds, dtype=image_set.map_dtype)
    thresholds = thresholds.astype(np.float64)
    fpr_sum = _pimo_kernels.grid_normal_fpr_sum(image_set.maps_flat, image_set.offsets, normal,
                                                thresholds, _num_chunks())
    return _Grid(thresholds=thresholds, shared_fpr=fpr_sum / normal.shape[0])


def _grid_index_at(shared_fpr: np.ndarray, level: float) -> int:
    """The official rule: nearest shared FPR, first index on ties (max index at level 1)."""
    if level == 1.0:
        return int(np.flatnonzero(shared_fpr == 1.0).max())
    return int(np.argmin(np.abs(shared_fpr - level)))


def _grid_scores(image_set: ImageSet, fpr_bounds: tuple[float, float], num_thresholds: int,
                 *, with_iou: bool) -> tuple[np.ndarray, np.ndarray, tuple[float, float], int]:
    lower, upper = fpr_bounds
    grid = _grid_shared_fpr(image_set, num_thresholds)
    smallest = float(grid.shared_fpr.min())
    if lower * (1.0 + 1e-12) < smallest:
        normal = image_set.normal_indices
        curve_floor = SharedFprCurve(
            thresholds=grid.thresholds[-1:], shared_fpr=np.array([smallest]),
            num_normal=normal.shape[0],
            max_normal_pixels=int(image_set.num_pixels[normal].max()), complete=False,
        )
        raise UnreachableFprError(curve_floor.unreachable_message(lower))
    index_upper_fpr = _grid_index_at(grid.shared_fpr, upper)  # the lower threshold
    index_lower_fpr = _grid_index_at(grid.shared_fpr, lower)  # the upper threshold
    for level, index in ((lower, index_lower_fpr), (upper, index_upper_fpr)):
        achieved = grid.shared_fpr[index]
        if not math.isclose(achieved, level, rel_tol=1e-2):
            warnings.warn(
                f"Grid mode: the shared FPR bound {level:g} is not achieved on the grid (nearest "
                f"{achieved:.4g}); increase num_thresholds or use the exact mode "
                "(num_thresholds=None).",
                PimoWarning,
                stacklevel=3,
            )
    if index_upper_fpr >= index_lower_fpr:
        raise PimoValueError(
            f"Grid mode: both FPR bounds {fpr_bounds} fall on the same grid threshold (index "
            f"{index_lower_fpr} of {num_thresholds}); the grid is too coarse for this range. "
            "Increase num_thresholds or use the exact mode (num_thresholds=None)."
        )
    anomalous = image_set.anomalous_indices
    tp, fp, first_bad = _pimo_kernels.grid_counts(
        image_set.maps_flat, image_set.masks_flat, image_set.offsets, anomalous,
        grid.thresholds, index_upper_fpr, index_lower_fpr,
    )
    _raise_if_nonfinite(first_bad, anomalous, image_set)
    # ascending shared FPR = descending thresholds
    log_fpr = np.log(grid.shared_fpr[index_upper_fpr : index_lower_fpr + 1])[::-1]
    keep = np.isfinite(log_fpr)
    log_fpr = log_fpr[keep]
    positives = image_set.mask_counts[anomalous].astype(np.float64)[:, None]
    num_points = int(log_fpr.shape[0])
    if num_points < 300:
        warnings.warn(
            f"Grid mode: only {num_points} grid points fall inside the FPR range, so AUPIMO may "
            "be inaccurate; increase num_thresholds or use the exact mode.",
            PimoWarning,
            stacklevel=3,
        )
    normaliser = float(np.log(upper / lower))

    def integrate(values: np.ndarray) -> np.ndarray:
        values = values[:, ::-1][:, keep]
        if num_points < 2:
            return np.zeros(values.shape[0])
        areas = np.trapezoid(values, x=log_fpr, axis=1)
        return np.clip(areas / normaliser, 0.0, 1.0)

    tpr_scores = np.full(image_set.num_images, np.nan)
    tpr_scores[anomalous] = integrate(tp / positives)
    iou_scores = np.full(image_set.num_images, np.nan)
    if with_iou:
        iou_scores[anomalous] = integrate(tp / (positives + fp))
    thresh_bounds = (float(grid.thresholds[index_upper_fpr]),
                     float(grid.thresholds[index_lower_fpr]))
    return tpr_scores, iou_scores, thresh_bounds, num_points


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def _per_image(anomaly_maps: Any, masks: Any, fpr_bounds: Any, num_thresholds: Any,
               paths: Sequence[str] | None, ignore_masks: Any, *, with_iou: bool
               ) -> tuple[ImageSet, np.ndarray, np.ndarray, tuple[float, float], int,
                          tuple[float, float], str]:
    bounds = validate_fpr_bounds(fpr_bounds)
    num = validate_num_thresholds(num_thresholds)
    image_set = as_image_set(anomaly_maps, masks, paths=paths, ignore_masks=ignore_masks)
    if num is None:
        tpr_scores, iou_scores, integration = _exact_scores(image_set, bounds,
                                                            with_iou=with_iou)
        return (image_set, tpr_scores, iou_scores, integration.thresh_bounds,
                integration.num_points, bounds, "exact")
    tpr_scores, iou_scores, thresh_bounds, num_points = _grid_scores(
        image_set, bounds, num, with_iou=with_iou
    )
    return image_set, tpr_scores, iou_scores, thresh_bounds, num_points, bounds, "grid"


def aupimo(
    anomaly_maps: Any,
    masks: Any,
    *,
    fpr_bounds: tuple[float, float] = DEFAULT_FPR_BOUNDS,
    num_thresholds: int | None = None,
    paths: Sequence[str] | None = None,
    ignore_masks: Any = None,
) -> AupimoResult:
    r"""Per-image AUPIMO: the average TPR of each anomalous image over a shared-FPR range.

    .. math::

        \mathrm{AUPIMO}_i = \frac{1}{\log(U/L)}\int_{\log L}^{\log U} T_i \,d(\log F_{sh}),
        \quad F_{sh}(t) = \operatorname*{mean}_{j \in Y_0} \frac{|a_j \ge t|}{M_j},
        \quad T_i(t) = \frac{|(a_i \ge t) \wedge y_i|}{|y_i|}.

    Parameters
    ----------
    anomaly_maps : array (N, H, W) or sequence of N arrays
        Anomaly score maps (higher = more anomalous). Images may differ in shape; 3-D volumes
        count as images. Integer maps are accepted and read as floats.
    masks : array (N, H, W) or sequence of N arrays
        Binary ground-truth masks of the same shapes (bool or 0/1). An all-zero mask marks a
        normal image: normal images define the shared FPR and get no score (NaN).
    fpr_bounds : (float, float), default (1e-5, 1e-4)
        ``(L, U)`` with ``0 < L < U <= 1``.
    num_thresholds : int or None, default None
        ``None``: exact mode (every distinct score is a curve point; nothing to tune).
        An int ``K``: grid mode with ``K`` linearly spaced thresholds, reproducing the official
        implementation and anomalib (see the module documentation).
    paths : sequence of str, optional
        Image paths, kept in the result and used in error messages.
    ignore_masks : array (N, H, W) or sequence of N arrays, optional
        Pixels to leave out of every image (1 = ignored: a border, a fixture, a "don't care"
        region), same shapes as the masks. Each image is then scored on its other pixels only:
        ``M_j`` counts the kept pixels of normal image j and ``y_i`` the kept mask pixels of
        anomalous image i, exactly as if the ignored pixels had never been there. An ignore mask
        that covers a whole image, or all the anomalous pixels of an image, is an error.

    Returns
    -------
    AupimoResult
        ``aupimos`` (NaN for normal images), ``image_classes``, ``fpr_bounds``,
        ``thresh_bounds`` and ``num_thresholds`` (curve points used in the integral).

    Raises
    ------
    PimoError
        On bad input, naming the image and the fix: shape mismatch, non-binary mask, NaN/inf
        score, no normal or no anomalous image, bad ``fpr_bounds``, an ``L`` the data cannot
        reach (:class:`UnreachableFprError`), constant normal maps.

    Examples
    --------
    >>> import numpy as np, pimo
    >>> maps, masks = pimo.make_example(num_normal=4, num_anomalous=4, shape=(128, 128))
    >>> result = pimo.aupimo(maps, masks)
    >>> result.aupimos.shape
    (8,)
    """
    image_set, scores, _, thresh_bounds, num_points, bounds, mode = _per_image(
        anomaly_maps, masks, fpr_bounds, num_thresholds, paths, ignore_masks, with_iou=False
    )
    return AupimoResult(
        scores, image_set.image_classes, fpr_bounds=bounds, thresh_bounds=thresh_bounds,
        num_thresholds=num_points, mode=mode, paths=image_set.paths,
    )


def auimo(
    anomaly_maps: Any,
    masks: Any,
    *,
    fpr_bounds: tuple[float, float] = DEFAULT_FPR_BOUNDS,
    num_thresholds: int | None = None,
    paths: Sequence[str] | None = None,
    ignore_masks: Any = None,
) -> AuimoResult:
    r"""Per-image AUIMO: AUPIMO with the per-image IoU instead of the TPR (paper App. C.4).

    .. math::

        \mathrm{AUIMO}_i = \frac{1}{\log(U/L)}\int_{\log L}^{\log U}
        \frac{|(a_i \ge t) \wedge y_i|}{|(a_i \ge t) \vee y_i|} \,d(\log F_{sh}).

    Parameters (``ignore_masks`` included) and modes are those of :func:`aupimo`; the IoU curve
    has a vertex wherever the image's own normal pixels change its union, which the exact mode
    includes.
    """
    image_set, _, scores, thresh_bounds, num_points, bounds, mode = _per_image(
        anomaly_maps, masks, fpr_bounds, num_thresholds, paths, ignore_masks, with_iou=True
    )
    return AuimoResult(
        scores, image_set.image_classes, fpr_bounds=bounds, thresh_bounds=thresh_bounds,
        num_thresholds=num_points, mode=mode, paths=image_set.paths,
    )


def pimo_curves(
    anomaly_maps: Any,
    masks: Any,
    *,
    fpr_bounds: tuple[float, float] = DEFAULT_FPR_BOUNDS,
    num_thresholds: int | None = None,
    paths: Sequence[str] | None = None,
    margin_decades: float = 1.0,
    ignore_masks: Any = None,
) -> PimoCurves:
    r"""PIMO curves: the shared FPR and each anomalous image's TPR on a common threshold axis.

    Parameters
    ----------
    anomaly_maps, masks, fpr_bounds, num_thresholds, paths, ignore_masks
        As in :func:`aupimo`.
    margin_decades : float, default 1.0
        Exact mode only: the curves are restricted to the shared-FPR range
        ``[L / 10**margin, min(1, U * 10**margin)]`` (plus the points that bracket it), which
        is what a plot of the integration range needs; the full curve would have a point per
        distinct normal score. Grid mode returns all ``K`` thresholds.

    Returns
    -------
    PimoCurves
        ``thresholds`` (descending), ``shared_fpr`` (ascending) and ``tprs`` (N, K): ``T_i(t)``
        at each threshold, NaN rows for normal images. Between two consecutive exact-mode
        points the curve is the straight line used by :func:`aupimo`.
    """
    bounds = validate_fpr_bounds(fpr_bounds)
    num = validate_num_thresholds(num_thresholds)
    image_set = as_image_set(anomaly_maps, masks, paths=paths, ignore_masks=ignore_masks)
    anomalous = image_set.anomalous_indices
    if num is None:
        if not (math.isfinite(margin_decades) and margin_decades >= 0):
            raise PimoValueError(f"margin_decades must be >= 0, got {margin_decades!r}.")
        factor = 10.0**margin_decades
        plot_bounds = (bounds[0] / factor, min(1.0, bounds[1] * factor))
        curve = _shared_fpr_curve(image_set, plot_bounds[1])
        _integration_range(image_set, curve, bounds)  # same checks as aupimo
        first = max(curve.index_at_most(plot_bounds[0]), 0)
        last = min(curve.index_at_least(plot_bounds[1]), curve.thresholds.shape[0] - 1)
        plot_range = IntegrationRange(
            breakpoints=curve.thresholds[first : last + 1],
            log_fpr=np.log(curve.shared_fpr[first : last + 1]),
            fpr_bounds=plot_bounds,
        )
        anomalous_curves = np.empty((anomalous.shape[0], plot_range.num_points))
        _exact_areas(image_set, plot_range, with_iou=False, curves=anomalous_curves)
        thresholds = plot_range.breakpoints.copy()
        shared_fpr = curve.shared_fpr[first : last + 1].copy()
    else:
        grid = _grid_shared_fpr(image_set, num)
        tp, _, first_bad = _pimo_kernels.grid_counts(
            image_set.maps_flat, image_set.masks_flat, image_set.offsets, anomalous,
            grid.thresholds, 0, num - 1,
        )
        _raise_if_nonfinite(first_bad, anomalous, image_set)
        positives = image_set.mask_counts[anomalous].astype(np.float64)[:, None]
        anomalous_curves = (tp / positives)[:, ::-1]
        thresholds = grid.thresholds[::-1].copy()
        shared_fpr = grid.shared_fpr[::-1].copy()
    tprs = np.full((image_set.num_images, thresholds.shape[0]), np.nan)
    tprs[anomalous] = anomalous_curves
    return PimoCurves(
        thresholds=thresholds, shared_fpr=shared_fpr, tprs=tprs,
        image_classes=image_set.image_classes, fpr_bounds=bounds,
        mode="exact" if num is None else "grid", paths=image_set.paths,
    )

