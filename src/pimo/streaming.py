r"""Streaming AUPIMO: one image at a time, memory independent of the number of images.

The exact engine only needs, from the normal images, the scores whose shared FPR is at most
``U`` (DESIGN §2), and from each anomalous image two numbers. :class:`AupimoStream` keeps
exactly that:

* for each normal image j, the ``floor(n0 * U * M_j) + 2`` highest scores (ties completed).
  If the shared FPR at a score is at most ``U``, image j's own FPR there is at most ``n0 * U``,
  so every score that can matter is kept;
* the merged scores are pruned as images arrive: once the scores seen so far already push the
  shared FPR past ``U`` at some value ``c``, nothing below ``c`` can matter (later images only
  add to the shared FPR), so the summary stays at about ``n0 * U * M`` values in all;
* each anomalous image is scored as soon as it arrives and only its AUPIMO is kept.

So the stream needs the number of normal images up front and all of them before the first
anomalous one (two passes over a dataset: normal images first). Its results equal
:func:`pimo.aupimo` on the same arrays (same curve, same kernel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pimo._kernels import _pimo as _pimo_kernels
from pimo._validate import (
    ConstantNormalMapsError,
    NoAnomalousImageError,
    NonFiniteScoreError,
    NoNormalImageError,
    PimoValueError,
    UnreachableFprError,
    as_image_set,
    pixel_position,
    validate_fpr_bounds,
)
from pimo.pimo import DEFAULT_FPR_BOUNDS, IntegrationRange, SharedFprCurve
from pimo.results import AuimoResult, AupimoResult

__all__ = ["AupimoStream"]

# merge the pending normal tails into the pruned summary once they hold this many scores
_MERGE_EVERY = 1 << 20


class AupimoStream:
    """Exact AUPIMO (and optionally AUIMO) over images fed one at a time.

    Parameters
    ----------
    num_normal : int
        How many normal images will be added (needed to size each image's summary).
    fpr_bounds : (float, float), default (1e-5, 1e-4)
        ``(L, U)``.
    with_auimo : bool, default False
        Also compute AUIMO (IoU curve).

    Examples
    --------
    >>> import pimo
    >>> from pimo.streaming import AupimoStream
    >>> maps, masks = pimo.make_example(4, 4, (128, 128))
    >>> stream = AupimoStream(num_normal=4)
    >>> for index in range(4):
    ...     stream.add_normal(index, maps[index])
    >>> for index in range(4, 8):
    ...     stream.add_anomalous(index, maps[index], masks[index])
    >>> bool(abs(stream.result().mean() - pimo.aupimo(maps, masks).mean()) < 1e-12)
    True
    """

    def __init__(self, num_normal: int, *, fpr_bounds: tuple[float, float] = DEFAULT_FPR_BOUNDS,
                 with_auimo: bool = False) -> None:
        if isinstance(num_normal, bool) or not isinstance(num_normal, int | np.integer):
            raise PimoValueError(f"num_normal must be an int, got {num_normal!r}.")
        if num_normal < 1:
            raise NoNormalImageError(
                "num_normal must be at least 1: the shared FPR is measured on normal images "
                "(all-zero masks), so the set needs some."
            )
        self.num_normal = int(num_normal)
        self.fpr_bounds = validate_fpr_bounds(fpr_bounds)
        self.with_auimo = with_auimo
        self._values = np.empty(0, dtype=np.float64)  # pruned summary, any order
        self._weights = np.empty(0, dtype=np.float64)  # 1 / M_j of each kept score
        self._pending_values: list[np.ndarray] = []
        self._pending_weights: list[np.ndarray] = []
        self._pending_size = 0
        self._complete = True  # every normal score kept so far
        self._normal_added = 0
        self._max_normal_pixels = 0
        self._normal_constant = True
        self._normal_value: float | None = None
        self._integration: IntegrationRange | None = None
        self._scores: dict[int, float] = {}
        self._iou_scores: dict[int, float] = {}
        self._normal_indices: set[int] = set()
        self._paths: dict[int, str] = {}

    # -- normal images -------------------------------------------------------------------
    def add_normal(self, index: int, anomaly_map: Any, *, path: str | None = None) -> None:
        """Add normal image ``index`` (its anomaly map; its mask is all zeros)."""
        if self._integration is not None:
            raise PimoValueError(
                f"Normal image {index} ({path or 'no path'}) was added after an "
                "anomalous image: add all normal images first (the shared FPR must be complete "
                "before anomalous images are scored)."
            )
        self._register(index, path)
        if self._normal_added >= self.num_normal:
            raise PimoValueError(
                f"More normal images than announced (num_normal={self.num_normal}); "
                "create the stream with the right count."
            )
        scores = np.asarray(anomaly_map)
        if scores.dtype.kind not in "fiub":
            raise PimoValueError(
                f"The anomaly map of {self._describe(index)} has dtype {scores.dtype}; "
                "anomaly maps must be real numbers."
            )
        flat = scores.reshape(-1).astype(np.float64, copy=False)
        if flat.size == 0:
            raise PimoValueError(f"The anomaly map of {self._describe(index)} has no pixel.")
        finite = np.isfinite(flat)
        if not finite.all():
            pixel = int(np.flatnonzero(~finite)[0])
            raise NonFiniteScoreError(
                f"The anomaly map of {self._describe(index)} holds {flat[pixel]} at pixel "
                f"{pixel_position(pixel, scores.shape)}. Scores must be finite.",
                image_index=index, path=path,
            )
        num_pixels = flat.size
        budget = math.floor(self.num_normal * self.fpr_bounds[1] * num_pixels) + 2
        if budget >= num_pixels:
            tail = flat.copy()
        else:
            cut = np.partition(flat, num_pixels - budget)[num_pixels - budget]
            tail = flat[flat >= cut]
            self._complete = False
        low, high = float(flat.min()), float(flat.max())
        if low != high or (self._normal_value is not None and low != self._normal_value):
            self._normal_constant = False
        self._normal_value = low
        self._pending_values.append(tail)
        self._pending_weights.append(np.full(tail.shape[0], 1.0 / num_pixels))
        self._pending_size += tail.shape[0]
        self._normal_added += 1
        self._normal_indices.add(int(index))
        self._max_normal_pixels = max(self._max_normal_pixels, num_pixels)
        if self._pending_size >= _MERGE_EVERY:
            self._merge_and_prune()

    def _merge_and_prune(self) -> None:
        """Merge pending tails into the summary and drop scores that can no longer matter."""
        if not self._pending_values:
            return
        values = np.concatenate([self._values, *self._pending_values])
        weights = np.concatenate([self._weights, *self._pending_weights])
        self._pending_values, self._pending_weights, self._pending_size = [], [], 0
        order = np.argsort(-values, kind="stable")
        values, weights = values[order], weights[order]
        # weighted count at or above each value (ties share the count of their last member)
        cumulative = np.cumsum(weights)
        level = self.num_normal * self.fpr_bounds[1] * (1.0 + 1e-9)
        crossing = int(np.searchsorted(cumulative, level, side="right"))
        if crossing < values.shape[0]:
            cut = values[crossing]
            keep = values >= cut
            if not keep.all():
                self._complete = False
            values, weights = values[keep], weights[keep]
        self._values, self._weights = values, weights

    # -- anomalous images ----------------------------------------------------------------
    def _freeze(self) -> IntegrationRange:
        if self._integration is not None:
            return self._integration
        if self._normal_added != self.num_normal:
            raise PimoValueError(
                f"{self._normal_added} normal image(s) were added but num_normal="
                f"{self.num_normal}: add every normal image before the first anomalous one."
            )
        self._merge_and_prune()
        curve = SharedFprCurve.from_weighted_values(
            self._values, self._weights, num_normal=self.num_normal,
            max_normal_pixels=self._max_normal_pixels, complete=self._complete,
        )
        try:
            self._integration = curve.integration_range(self.fpr_bounds)
        except UnreachableFprError:
            if self._normal_constant:
                raise ConstantNormalMapsError(
                    f"All {self.num_normal} normal images have the same constant anomaly map "
                    "value, so the shared FPR only takes the values 0 and 1."
                ) from None
            raise
        return self._integration

    def add_anomalous(self, index: int, anomaly_map: Any, mask: Any, *,
                      path: str | None = None) -> float:
        """Score anomalous image ``index`` and return its AUPIMO.

        All normal images must have been added before.
        """
        integration = self._freeze()
        self._register(index, path)
        image_set = as_image_set([anomaly_map], [mask], paths=[path] if path else None)
        if image_set.mask_counts[0] == 0:
            raise PimoValueError(
                f"The mask of {self._describe(index)} is all zeros: that is a normal image; "
                "add it with add_normal (before the anomalous images)."
            )
        lower, upper = integration.fpr_bounds
        indices = np.zeros(1, dtype=np.int64)
        tpr_areas, iou_areas, first_bad = _pimo_kernels.segment_integrals(
            image_set.maps_flat, image_set.masks_flat, image_set.offsets, indices,
            image_set.mask_counts,
            integration.breakpoints, integration.log_fpr, math.log(lower), math.log(upper),
            self.with_auimo, np.empty((0, 0)),
        )
        if first_bad[0] >= 0:
            pixel = int(first_bad[0])
            raise NonFiniteScoreError(
                f"The anomaly map of {self._describe(index)} holds "
                f"{image_set.map_of(0)[pixel]} at pixel "
                f"{pixel_position(pixel, image_set.shapes[0])}. Scores must be finite.",
                image_index=index, path=path,
            )
        normaliser = math.log(upper) - math.log(lower)
        score = min(max(float(tpr_areas[0]) / normaliser, 0.0), 1.0)
        self._scores[int(index)] = score
        if self.with_auimo:
            self._iou_scores[int(index)] = min(max(float(iou_areas[0]) / normaliser, 0.0), 1.0)
        return score

    # -- results -------------------------------------------------------------------------
    def _register(self, index: int, path: str | None) -> None:
        index = int(index)
        if index < 0:
            raise PimoValueError(f"Image indices must be >= 0, got {index}.")
        if index in self._scores or index in self._normal_indices:
            raise PimoValueError(f"{self._describe(index)} was added twice.")
        if path is not None:
            self._paths[index] = str(path)

    def _describe(self, index: int) -> str:
        path = self._paths.get(int(index))
        return f"image {index} ({path!r})" if path else f"image {index}"

    def _assemble(self, scores: dict[int, float], paths: Sequence[str] | None
                  ) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
        if not scores:
            raise NoAnomalousImageError("No anomalous image was added: nothing to score.")
        num_images = max(max(scores), max(self._normal_indices, default=-1)) + 1
        indices = set(scores) | self._normal_indices
        if len(indices) != num_images:
            missing = sorted(set(range(num_images)) - indices)[:10]
            raise PimoValueError(
                f"Image indices must cover 0..{num_images - 1} without gaps; missing {missing}."
            )
        values = np.full(num_images, np.nan)
        classes = np.zeros(num_images, dtype=np.int8)
        for index, score in scores.items():
            values[index] = score
            classes[index] = 1
        if paths is None and len(self._paths) == num_images:
            paths = [self._paths[i] for i in range(num_images)]
        return values, classes, list(paths) if paths is not None else None

    def result(self, paths: Sequence[str] | None = None) -> AupimoResult:
        """The per-image AUPIMO of every image added (NaN for normal images)."""
        integration = self._freeze()
        values, classes, paths = self._assemble(self._scores, paths)
        return AupimoResult(values, classes, fpr_bounds=self.fpr_bounds,
                            thresh_bounds=integration.thresh_bounds,
                            num_thresholds=integration.num_points, mode="exact", paths=paths)

    def auimo_result(self, paths: Sequence[str] | None = None) -> AuimoResult:
        """The per-image AUIMO (requires ``with_auimo=True``)."""
        if not self.with_auimo:
            raise PimoValueError("Create the stream with with_auimo=True to get AUIMO.")
        integration = self._freeze()
        values, classes, paths = self._assemble(self._iou_scores, paths)
        return AuimoResult(values, classes, fpr_bounds=self.fpr_bounds,
                           thresh_bounds=integration.thresh_bounds,
                           num_thresholds=integration.num_points, mode="exact", paths=paths)
