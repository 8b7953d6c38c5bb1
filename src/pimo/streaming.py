r"""Streaming AUPIMO: one image at a time, each anomalous image scored as it arrives.

A thin use of :class:`pimo.AupimoAccumulator`: the normal images are reduced to the
accumulator's records (each keeps its top :math:`\lceil k U M_j \rceil + 2` scores, ties
completed, :math:`k = \max(` expected_num_normal, 64 :math:`)`), so once every announced normal
image is in, the integration range is fixed and each anomalous image is scored at once with the
same curve and kernel as :func:`pimo.aupimo`; only its score is kept. For batches in any order
(normal and anomalous mixed), use :class:`pimo.AupimoAccumulator` itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pimo._validate import (
    NoAnomalousImageError,
    NoNormalImageError,
    PimoValueError,
)
from pimo.accumulate import AupimoAccumulator, _anomalous_areas, _integration, batch_records
from pimo.pimo import DEFAULT_FPR_BOUNDS, IntegrationRange, normalised_scores
from pimo.results import AuimoResult, AupimoResult

__all__ = ["AupimoStream"]


class AupimoStream:
    """Exact AUPIMO (and optionally AUIMO) over images fed one at a time.

    Parameters
    ----------
    expected_num_normal : int
        How many normal images will be added (all before the first anomalous image).
    fpr_bounds : (float, float), default (1e-5, 1e-4)
        ``(L, U)``.
    with_auimo : bool, default False
        Also compute AUIMO (IoU curve).

    Examples
    --------
    >>> import pimo
    >>> from pimo.streaming import AupimoStream
    >>> maps, masks = pimo.make_example(4, 4, (256, 256))
    >>> stream = AupimoStream(expected_num_normal=4)
    >>> for index in range(4):
    ...     stream.add_normal(index, maps[index])
    >>> for index in range(4, 8):
    ...     _ = stream.add_anomalous(index, maps[index], masks[index])
    >>> bool(abs(stream.result().mean() - pimo.aupimo(maps, masks).mean()) < 1e-12)
    True
    """

    def __init__(self, expected_num_normal: int, *,
                 fpr_bounds: tuple[float, float] = DEFAULT_FPR_BOUNDS,
                 with_auimo: bool = False) -> None:
        if isinstance(expected_num_normal, bool) or not isinstance(expected_num_normal,
                                                                   int | np.integer):
            raise PimoValueError(
                f"expected_num_normal must be an int, got {expected_num_normal!r}."
            )
        if expected_num_normal < 1:
            raise NoNormalImageError(
                "expected_num_normal must be at least 1: the shared FPR is measured on normal "
                "images (all-zero masks), so the set needs some."
            )
        self.num_normal = int(expected_num_normal)
        self._normal = AupimoAccumulator(fpr_bounds, with_auimo=with_auimo,
                                         expected_num_normal=self.num_normal)
        self.fpr_bounds = self._normal.fpr_bounds
        self.with_auimo = self._normal.with_auimo
        self._normal_added = 0
        self._integration: IntegrationRange | None = None
        self._scores: dict[int, float] = {}
        self._iou_scores: dict[int, float] = {}
        self._normal_indices: set[int] = set()
        self._paths: dict[int, str] = {}

    # -- normal images -------------------------------------------------------------------
    def add_normal(self, index: int, anomaly_map: Any, mask: Any = None, *,
                   path: str | None = None, ignore_mask: Any = None) -> None:
        """Add normal image ``index``: its anomaly map and, optionally, its (all-zero) mask.

        ``ignore_mask`` (optional, same shape, 1 = pixel left out) leaves pixels out of the
        image, as in :func:`pimo.aupimo`.

        Raises
        ------
        ShapeMismatchError
            When the mask's shape differs from the map's.
        PimoValueError
            When the mask has anomalous pixels, the image was added already, or more normal
            images arrive than announced.
        """
        if self._integration is not None:
            raise PimoValueError(
                f"Normal image {index} ({path or 'no path'}) was added after an "
                "anomalous image: add all normal images first (the shared FPR must be complete "
                "before anomalous images are scored)."
            )
        self._register(index, path)
        if self._normal_added >= self.num_normal:
            raise PimoValueError(
                f"More normal images than announced (expected_num_normal={self.num_normal}); "
                "create the stream with the right count."
            )
        if mask is None:
            mask = np.zeros(np.shape(anomaly_map), dtype=bool)
        records = self._records(index, anomaly_map, mask, path, self._normal.normal_factor,
                                ignore_mask)
        if records.num_positive[0] != 0:
            raise PimoValueError(
                f"The mask of {self._describe(index)} has {int(records.num_positive[0])} "
                "anomalous pixel(s): that is an anomalous image; add it with add_anomalous.",
                image_index=int(index), path=path,
            )
        self._normal._append(records, [path])
        self._normal_added += 1
        self._normal_indices.add(int(index))

    def _records(self, index: int, anomaly_map: Any, mask: Any, path: str | None,
                 normal_factor: int, ignore_mask: Any) -> Any:
        return batch_records(
            [anomaly_map], [mask], paths=[path] if path else None,
            image_indices=np.array([int(index)]), batch_number=0,
            normal_factor=normal_factor, upper=self.fpr_bounds[1], with_auimo=self.with_auimo,
            ignore_masks=None if ignore_mask is None else [ignore_mask],
        )

    # -- anomalous images ----------------------------------------------------------------
    def _freeze(self) -> IntegrationRange:
        if self._integration is not None:
            return self._integration
        if self._normal_added != self.num_normal:
            raise PimoValueError(
                f"{self._normal_added} normal image(s) were added but expected_num_normal="
                f"{self.num_normal}: add every normal image before the first anomalous one."
            )
        self._integration = _integration(self._normal._records(), self.fpr_bounds)
        return self._integration

    def add_anomalous(self, index: int, anomaly_map: Any, mask: Any, *,
                      path: str | None = None, ignore_mask: Any = None) -> float:
        """Score anomalous image ``index`` and return its AUPIMO.

        All normal images must have been added before; ``ignore_mask`` as in
        :meth:`add_normal`.
        """
        integration = self._freeze()
        self._register(index, path)
        # keep every non-mask score for AUIMO: the image is scored now and then dropped
        whole_image = math.ceil(1.0 / (16 * self.fpr_bounds[1])) + 1
        records = self._records(index, anomaly_map, mask, path,
                                max(self._normal.normal_factor, whole_image), ignore_mask)
        if records.num_positive[0] == 0:
            raise PimoValueError(
                f"The mask of {self._describe(index)} is all zeros: that is a normal image; "
                "add it with add_normal (before the anomalous images)."
            )
        tpr_areas, iou_areas = _anomalous_areas(
            records, np.zeros(1, dtype=np.int64), integration, with_iou=self.with_auimo,
            image_indices=np.array([int(index)]),
        )
        score = float(normalised_scores(tpr_areas, self.fpr_bounds)[0])
        self._scores[int(index)] = score
        if self.with_auimo:
            self._iou_scores[int(index)] = float(normalised_scores(iou_areas,
                                                                   self.fpr_bounds)[0])
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
