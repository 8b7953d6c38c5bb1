r"""Image-level metrics: how well the image scores separate anomalous from normal images.

Each image gets one score :math:`s_i` (by default the maximum of its anomaly map) and one label
:math:`l_i` (1 when its mask has an anomalous pixel). Then, as scikit-learn defines them:

- image AUROC: the area under the ROC curve of ``(s, l)``, ties as
  ``sklearn.metrics.roc_auc_score`` (a tied normal/anomalous pair counts 1/2):
  :math:`\frac{1}{N_0 N_1}\sum_{i: l_i=0}\sum_{j: l_j=1} [s_j > s_i] + \tfrac12 [s_j = s_i]`.
- image AP: :math:`\sum_k (R_k - R_{k-1}) P_k` over the distinct thresholds in decreasing
  order, as ``sklearn.metrics.average_precision_score``, with precision
  :math:`P(t) = |\{s \ge t, l = 1\}| / |\{s \ge t\}|` and recall
  :math:`R(t) = |\{s \ge t, l = 1\}| / N_1`.
- image F1-max: :math:`\max_t 2 P(t) R(t) / (P(t) + R(t))` over the distinct scores, and the
  (highest) threshold ``t`` reaching it (``s >= t`` is anomalous).

There is one implementation of these curves in pimo, the set-metrics engine
(:func:`pimo.set_metrics`): the scores are handed to it as one-pixel images, a ``(N, 1, 1)``
array of scores with ``(N, 1, 1)`` labels, so the image metrics are the set metrics of that
set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pimo._validate import (
    MaskValueError,
    NoAnomalousImageError,
    NonFiniteScoreError,
    NoNormalImageError,
    PimoTypeError,
    PimoValueError,
    ShapeMismatchError,
    as_image_set,
    describe_image,
)
from pimo.pimo import _raise_if_nonfinite
from pimo.results import save_value
from pimo.setmetrics import set_metrics
from pimo.thresholds import first_nonfinite_pixels

__all__ = ["IMAGE_SCORES", "ImageMetricsResult", "image_metrics"]

#: How an anomaly map becomes an image score.
IMAGE_SCORES = ("max", "mean")


@dataclass(frozen=True, eq=False)
class ImageMetricsResult:
    """Image-level metrics of one set of images.

    Attributes
    ----------
    auroc : float
        Image AUROC (as ``sklearn.metrics.roc_auc_score(labels, scores)``).
    ap : float
        Image average precision (as ``sklearn.metrics.average_precision_score``).
    f1_max : float
        The largest image F1 over all thresholds.
    f1_max_threshold : float
        The highest threshold ``t`` (a score: ``s >= t`` is anomalous) giving ``f1_max``.
    scores : ndarray, shape (N,)
        The image scores used (the maps' maxima by default).
    labels : ndarray of int8, shape (N,)
        1 = anomalous image, 0 = normal image.
    score : str
        ``"max"``, ``"mean"`` or ``"given"`` (scores passed by the caller).
    """

    auroc: float
    ap: float
    f1_max: float
    f1_max_threshold: float
    scores: np.ndarray
    labels: np.ndarray
    score: str

    @property
    def num_images(self) -> int:
        """N."""
        return int(self.labels.shape[0])

    def values(self) -> dict[str, float]:
        """The figures, named as their ``{"value": x}`` files (``image_auroc``, ...)."""
        return {"image_auroc": float(self.auroc), "image_ap": float(self.ap),
                "image_f1max": float(self.f1_max)}

    def save(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``image_auroc.json``, ``image_ap.json`` and ``image_f1max.json`` (with its
        ``"threshold"``) as ``{"value": x}`` files, atomically, into ``directory``."""
        folder = Path(directory)
        extra: dict[str, dict[str, float]] = {
            "image_f1max": {"threshold": float(self.f1_max_threshold)}}
        return {name: save_value(folder / f"{name}.json", value, **extra.get(name, {}))
                for name, value in self.values().items()}


def _as_numpy(values: Any) -> Any:
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor, without torch
        return values.detach().cpu().numpy()
    return values


def _is_vector(values: Any) -> bool:
    """Whether ``values`` is one number per image (a 1-D array or a list of numbers)."""
    values = _as_numpy(values)
    if isinstance(values, np.ndarray):
        return values.ndim == 1
    if isinstance(values, Sequence) and not isinstance(values, str | bytes):
        return all(np.ndim(_as_numpy(value)) == 0 for value in values)
    return False


def _labels_from(masks_or_labels: Any, num_images: int, what: str,
                 paths: Sequence[str] | None) -> np.ndarray:
    if _is_vector(masks_or_labels):
        labels = np.asarray(_as_numpy(masks_or_labels))
        if labels.shape[0] != num_images:
            raise ShapeMismatchError(
                f"Got {num_images} {what} but {labels.shape[0]} image labels; pass one label "
                "(or one mask) per image, in the same order."
            )
        if labels.dtype.kind not in "biuf":
            raise PimoTypeError(f"Image labels must be bool or 0/1 numbers, got {labels.dtype}.")
        bad = np.flatnonzero((labels != 0) & (labels != 1))
        if bad.shape[0]:
            index = int(bad[0])
            raise MaskValueError(
                f"The label of {describe_image(index, paths)} is {labels[index].item()!r}; image "
                "labels must be 0 (normal) or 1 (anomalous).",
                image_index=index, path=paths[index] if paths else None,
            )
        return labels.astype(np.int8)
    masks = _as_numpy(masks_or_labels)
    count = len(masks)
    if count != num_images:
        raise ShapeMismatchError(
            f"Got {num_images} {what} but {count} masks; pass one mask (or one label) per "
            "image, in the same order."
        )
    return np.array([bool(np.any(np.asarray(_as_numpy(mask)))) for mask in masks],
                    dtype=np.int8)


def _map_scores(anomaly_maps: Any, masks: Any, score: str, paths: Sequence[str] | None,
                ignore_masks: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Each map's maximum (or mean) over its kept pixels and each mask's label, after the usual
    input checks."""
    image_set = as_image_set(anomaly_maps, masks, paths=paths, ignore_masks=ignore_masks)
    _raise_if_nonfinite(first_nonfinite_pixels(image_set), np.arange(image_set.num_images),
                        image_set)
    starts = image_set.offsets[:-1]
    if score == "max":
        scores = np.maximum.reduceat(image_set.maps_flat, starts)
    else:
        sums = np.add.reduceat(image_set.maps_flat, starts, dtype=np.float64)
        scores = sums / image_set.num_pixels
    return scores, image_set.image_classes


def image_metrics(
    anomaly_maps_or_scores: Any,
    masks_or_labels: Any,
    *,
    score: str = "max",
    paths: Sequence[str] | None = None,
    ignore_masks: Any = None,
) -> ImageMetricsResult:
    r"""Image AUROC, AP and F1-max of per-image scores, equal to scikit-learn's on the same data.

    Parameters
    ----------
    anomaly_maps_or_scores : array (N, H, W), sequence of N maps, or N numbers
        Anomaly maps (each becomes one score, see ``score``), or one score per image (a 1-D
        array or a list of numbers: e.g. a model's own image-level output).
    masks_or_labels : array (N, H, W), sequence of N masks, or N labels
        Masks (an image is anomalous when its mask has an anomalous pixel) or image labels
        (0 = normal, 1 = anomalous).
    score : {"max", "mean"}
        How a map becomes an image score: its maximum (default, as anomalib and the
        benchmark tables) or its mean. Not used when scores are given.
    paths : sequence of str, optional
        Image paths, for messages.
    ignore_masks : array (N, H, W) or sequence of N arrays, optional
        Pixels left out of each map's score (1 = ignored), as in :func:`pimo.aupimo`; only
        with maps, not with given scores.

    Returns
    -------
    ImageMetricsResult

    Raises
    ------
    ShapeMismatchError
        The number of scores and of masks/labels differ (both counts are named).
    NonFiniteScoreError, MaskValueError, PimoValueError
        NaN/inf scores, labels other than 0/1, an unknown ``score``.
    NoNormalImageError, NoAnomalousImageError
        Both kinds of images are needed.
    """
    if score not in IMAGE_SCORES:
        raise PimoValueError(
            f"score must be one of {list(IMAGE_SCORES)} (how a map becomes an image score), "
            f"got {score!r}. To use your own image scores, pass them as a 1-D array instead of "
            "the maps."
        )
    if _is_vector(anomaly_maps_or_scores):
        if ignore_masks is not None:
            raise PimoValueError(
                "ignore_masks applies to anomaly maps (it leaves pixels out of each map's "
                "score); with image scores given, leave it out.")
        scores = np.asarray(_as_numpy(anomaly_maps_or_scores))
        if scores.dtype.kind not in "iuf":
            raise PimoTypeError(f"Image scores must be real numbers, got dtype {scores.dtype}.")
        labels = _labels_from(masks_or_labels, scores.shape[0], "image scores", paths)
        bad = np.flatnonzero(~np.isfinite(scores))
        if bad.shape[0]:
            index = int(bad[0])
            raise NonFiniteScoreError(
                f"The score of {describe_image(index, paths)} is {scores[index]}; image scores "
                "must be finite.", image_index=index, path=paths[index] if paths else None,
            )
        used = "given"
    elif _is_vector(masks_or_labels):
        maps = _as_numpy(anomaly_maps_or_scores)
        count = len(maps)
        labels = _labels_from(masks_or_labels, count, "anomaly maps", paths)
        scores, _ = _map_scores(maps, [np.zeros(np.shape(m), dtype=bool) for m in maps],
                                score, paths, ignore_masks)
        used = score
    else:
        scores, labels = _map_scores(anomaly_maps_or_scores, masks_or_labels, score, paths,
                                     ignore_masks)
        used = score
    if not np.any(labels == 0):
        raise NoNormalImageError(
            f"None of the {labels.shape[0]} images is normal; image-level metrics need normal "
            "and anomalous images."
        )
    if not np.any(labels == 1):
        raise NoAnomalousImageError(
            f"None of the {labels.shape[0]} images is anomalous; image-level metrics need "
            "normal and anomalous images."
        )
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)
    one_pixel = scores.reshape(-1, 1, 1)
    result = set_metrics(one_pixel, labels.reshape(-1, 1, 1).astype(bool), fpr_limits=(),
                         auroc=True, ap=True, f1_max=True, paths=paths)
    assert result.auroc is not None and result.ap is not None and result.f1_max is not None
    assert result.f1_max_threshold is not None
    return ImageMetricsResult(auroc=float(result.auroc), ap=float(result.ap),
                              f1_max=float(result.f1_max),
                              f1_max_threshold=float(result.f1_max_threshold), scores=scores,
                              labels=labels, score=used)
