r"""Operating thresholds chosen on normal images, and what they mean on the test set.

A deployed model needs one threshold ``t`` (a pixel is anomalous when ``a >= t``; ties at
``t`` all count as anomalous). pimo picks it from the **normal images alone** (DESIGN §1,
paper App. A: the normal class is the only well-defined one), for a target false-positive
rate ``f``:

- ``kind="shared"``: the lowest normal score ``t`` whose shared FPR

  .. math::

      F_{sh}(t) = \frac{1}{|Y_0|} \sum_{j \in Y_0} \frac{|a_j \ge t|}{M_j}

  is at most ``f``, i.e. the threshold with the largest reachable shared FPR ``<= f``
  (AUPIMO's x-axis; ``f = 1e-4`` is AUPIMO's upper bound).
- ``kind="per-image"``: the lowest normal score ``t`` such that at least a fraction ``share``
  of the normal images each have :math:`F_j(t) = |a_j \ge t| / M_j \le f`.

Either way ``t`` is an exact normal score, never interpolated. Target values ``f`` and
``share`` are read as the decimal numbers they print as (``0.1`` is one tenth), and the
comparisons ``F <= f`` are made on exact integer counts, so a threshold that reaches the
target exactly is accepted whatever the floating-point rounding.

At ``t`` every image gets its binary rates: TPR, IoU and F1 of the anomalous images, the FPR
of every image, and the number of false-positive regions (connected components of
``(a >= t) & ~y``, 8-connected in 2-D, 26-connected in 3-D, :func:`pimo.label_regions`),
with the paper's App. A summary of the normal images (FP regions vs image FPR).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pimo._io import dump_json, read_json
from pimo._validate import (
    THRESHOLD_KINDS,
    ImageSet,
    NoNormalImageError,
    PimoValueError,
    ScoreFileError,
    UnreachableFprError,
    as_image_set,
)
from pimo.pimo import _raise_if_nonfinite, _select_normal_tail
from pimo.setmetrics import _connectivity_rank, label_regions

__all__ = ["THRESHOLD_KINDS", "OperatingThreshold", "load_threshold", "threshold_at"]
_FORMAT = "pimo-operating-threshold"
# Float shared FPRs of the tail curve are trusted to this relative error; the exact integer
# check then settles the candidates.
_FLOAT_SLACK = 1e-9
_REGION_QUANTILES = (0.5, 0.9, 0.99, 1.0)
# The fields :meth:`OperatingThreshold.to_dict` writes itself; any other is kept in ``extra``.
_FIELDS = frozenset({
    "format", "threshold", "kind", "target_fpr", "share", "shared_fpr", "normal_share",
    "connectivity", "summary", "image_classes", "tpr", "fpr", "iou", "f1", "fp_regions",
    "paths",
})


@dataclass(frozen=True, eq=False)
class OperatingThreshold:
    r"""A threshold chosen on the normal images, and its binary results on every image.

    Attributes
    ----------
    threshold : float
        ``t``; a pixel is anomalous when ``a >= t``.
    kind : str
        ``"shared"`` or ``"per-image"`` (see :func:`threshold_at`).
    target_fpr : float
        The FPR the threshold was chosen for.
    share : float or None
        For ``kind="per-image"``, the fraction of normal images that must meet the target.
    shared_fpr : float
        :math:`F_{sh}(t)`, the mean image FPR of the normal images (exact counts).
    normal_share : float
        Fraction of the normal images whose own FPR is ``<= target_fpr`` at ``t``.
    image_classes : ndarray of int8, shape (N,)
        0 = normal image (all-zero mask), 1 = anomalous image.
    tpr, iou, f1 : ndarray of float64, shape (N,)
        ``|P & y| / |y|``, ``|P & y| / |P | y|`` and ``2|P & y| / (|P| + |y|)`` with
        ``P = (a >= t)``; NaN for normal images (no anomalous pixel to find).
    fpr : ndarray of float64, shape (N,)
        ``|P & ~y| / |~y|``; NaN only for an image whose mask covers every pixel.
    fp_regions : ndarray of int64, shape (N,)
        Connected components of ``P & ~y``.
    connectivity : int or None
        Region connectivity used (None = full: 8 in 2-D, 26 in 3-D).
    paths : list of str or None
        Image paths.
    extra : dict
        Further JSON fields, written after the standard ones by :meth:`save` (e.g.
        ``"ignore_masks"``: the file of the pixels left out) and kept by :meth:`load`.
    """

    threshold: float
    kind: str
    target_fpr: float
    share: float | None
    shared_fpr: float
    normal_share: float
    image_classes: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    iou: np.ndarray
    f1: np.ndarray
    fp_regions: np.ndarray
    connectivity: int | None = None
    paths: list[str] | None = field(default=None)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        """N."""
        return int(self.image_classes.shape[0])

    def summary(self) -> dict[str, Any]:
        """Set-level figures at the threshold (paper App. A for the normal images).

        ``normal``: number of images, mean image FPR, mean FP regions, FP-region quantiles
        (P50, P90, P99, max; linear interpolation) and the fraction of normal images with 0,
        at most 1 and at most 2 FP regions. ``anomalous``: number of images, mean TPR, IoU,
        F1 and FP regions. Empty groups give ``None`` figures.
        """
        normal = self.image_classes == 0
        anomalous = ~normal

        def mean(values: np.ndarray) -> float | None:
            return float(np.mean(values)) if values.shape[0] else None

        regions = self.fp_regions[normal].astype(np.float64)
        quantiles: dict[str, float | None] = {
            f"p{round(100 * q)}": (float(np.quantile(regions, q)) if regions.shape[0] else None)
            for q in _REGION_QUANTILES
        }
        return {
            "normal": {
                "num_images": int(np.count_nonzero(normal)),
                "mean_fpr": mean(self.fpr[normal]),
                "mean_fp_regions": mean(regions),
                "fp_regions_quantiles": quantiles,
                "share_fp_regions_0": mean((regions == 0).astype(np.float64)),
                "share_fp_regions_le_1": mean((regions <= 1).astype(np.float64)),
                "share_fp_regions_le_2": mean((regions <= 2).astype(np.float64)),
            },
            "anomalous": {
                "num_images": int(np.count_nonzero(anomalous)),
                "mean_tpr": mean(self.tpr[anomalous]),
                "mean_iou": mean(self.iou[anomalous]),
                "mean_f1": mean(self.f1[anomalous]),
                "mean_fp_regions": mean(self.fp_regions[anomalous].astype(np.float64)),
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON payload (see :meth:`save`)."""

        def floats(values: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in values]

        return {
            "format": _FORMAT,
            "threshold": float(self.threshold),
            "kind": self.kind,
            "target_fpr": float(self.target_fpr),
            "share": None if self.share is None else float(self.share),
            "shared_fpr": float(self.shared_fpr),
            "normal_share": float(self.normal_share),
            "connectivity": self.connectivity,
            "summary": self.summary(),
            "image_classes": [int(v) for v in self.image_classes],
            "tpr": floats(self.tpr),
            "fpr": floats(self.fpr),
            "iou": floats(self.iou),
            "f1": floats(self.f1),
            "fp_regions": [int(v) for v in self.fp_regions],
            "paths": self.paths,
            **{key: value for key, value in self.extra.items() if key not in _FIELDS},
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the threshold and its per-image results as strict JSON, atomically.

        ``threshold`` is written with full precision, so a deployment can read it back
        with :func:`load_threshold` (or any JSON reader) and apply ``a >= threshold``.
        """
        return dump_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, payload: Any, *, source: str = "the payload") -> OperatingThreshold:
        """Rebuild a result from :meth:`to_dict`'s payload (unknown fields are ignored)."""
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ScoreFileError(
                f"{source}: not an operating-threshold file (expected a JSON object with "
                f"\"format\": \"{_FORMAT}\", as written by `pimo threshold -o`)."
            )
        try:
            classes = np.asarray(payload["image_classes"], dtype=np.int8)

            def floats(key: str) -> np.ndarray:
                return np.array([np.nan if v is None else float(v) for v in payload[key]],
                                dtype=np.float64)

            result = cls(
                threshold=float(payload["threshold"]),
                kind=str(payload["kind"]),
                target_fpr=float(payload["target_fpr"]),
                share=None if payload.get("share") is None else float(payload["share"]),
                shared_fpr=float(payload["shared_fpr"]),
                normal_share=float(payload["normal_share"]),
                image_classes=classes,
                tpr=floats("tpr"),
                fpr=floats("fpr"),
                iou=floats("iou"),
                f1=floats("f1"),
                fp_regions=np.asarray(payload["fp_regions"], dtype=np.int64),
                connectivity=payload.get("connectivity"),
                paths=None if payload.get("paths") is None else [str(p) for p in payload["paths"]],
                extra={key: value for key, value in payload.items() if key not in _FIELDS},
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ScoreFileError(
                f"{source}: malformed operating-threshold file ({error})."
            ) from error
        lengths = {len(getattr(result, name))
                   for name in ("tpr", "fpr", "iou", "f1", "fp_regions")}
        if lengths != {result.num_images}:
            raise ScoreFileError(
                f"{source}: the per-image lists do not all have {result.num_images} entries "
                "(one per image_classes entry)."
            )
        return result

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OperatingThreshold:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(read_json(path), source=str(path))


def load_threshold(path: str | os.PathLike[str]) -> OperatingThreshold:
    """Read an operating-threshold file written by :meth:`OperatingThreshold.save`."""
    return OperatingThreshold.load(path)


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
def _decimal(value: float) -> Fraction:
    """The exact rational of ``value``'s shortest decimal form (``0.1`` -> 1/10)."""
    return Fraction(repr(float(value)))


def _validate_fraction(value: Any, name: str, hint: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise PimoValueError(f"{name} must be a number in (0, 1], got {value!r}. {hint}") from error
    if not (math.isfinite(number) and 0.0 < number <= 1.0):
        raise PimoValueError(f"{name} must be in (0, 1], got {value!r}. {hint}")
    return number


def _validate_kind(kind: Any, share: Any) -> float | None:
    if kind not in THRESHOLD_KINDS:
        raise PimoValueError(
            f"kind must be one of {list(THRESHOLD_KINDS)}, got {kind!r}: 'shared' bounds the "
            "mean FPR of the normal images, 'per-image' bounds each normal image's FPR for a "
            "share of them."
        )
    if kind == "shared":
        if share is not None:
            raise PimoValueError(
                f"share={share!r} applies to kind='per-image' only; with kind='shared' the "
                "mean FPR of the normal images is bounded. Drop share or use kind='per-image'."
            )
        return None
    if share is None:
        return 1.0
    return _validate_fraction(share, "share", "E.g. share=0.95: 95 % of the normal images "
                              "must each have an FPR at most the target.")


# --------------------------------------------------------------------------------------
# counting at a threshold
# --------------------------------------------------------------------------------------
def _binary_counts(image_set: ImageSet, threshold: float, indices: np.ndarray, *,
                   regions: bool = False, connectivity: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``|P & y|``, ``|P & ~y|`` and (when ``regions``) the FP regions of images ``indices``.

    ``P = (a >= threshold)``; FP regions are the connected components of ``P & ~y``.
    """
    true_positives = np.zeros(indices.shape[0], dtype=np.int64)
    false_positives = np.zeros(indices.shape[0], dtype=np.int64)
    fp_regions = np.zeros(indices.shape[0], dtype=np.int64)
    for position, index in enumerate(indices):
        mask = image_set.mask_of(index).view(np.bool_)
        predicted = image_set.map_of(index) >= threshold
        true_positives[position] = np.count_nonzero(predicted & mask)
        false_positive = predicted & ~mask
        false_positives[position] = np.count_nonzero(false_positive)
        if regions and false_positives[position]:
            # on the whole image: left-out pixels are never false positives
            fp_regions[position] = label_regions(
                image_set.full_image(index, false_positive, False), connectivity=connectivity
            )[1]
    return true_positives, false_positives, fp_regions


def _exact_shared_fpr(false_positives: np.ndarray, num_pixels: np.ndarray) -> Fraction:
    """:math:`F_{sh}` as an exact rational from the normal images' counts."""
    total = sum(Fraction(int(count), int(pixels))
                for count, pixels in zip(false_positives, num_pixels, strict=True))
    return total / int(num_pixels.shape[0])


# --------------------------------------------------------------------------------------
# the two selection rules
# --------------------------------------------------------------------------------------
def _shared_threshold(image_set: ImageSet, normal: np.ndarray, target: float) -> float:
    """Lowest normal score whose shared FPR is ``<= target`` (exactly)."""
    exact_target = _decimal(target)
    curve = _select_normal_tail(image_set, normal, target * (1.0 + _FLOAT_SLACK))
    index = curve.index_at_most(target * (1.0 + _FLOAT_SLACK))
    while index >= 0:
        candidate = float(curve.thresholds[index])
        _, false_positives, _ = _binary_counts(image_set, candidate, normal)
        if _exact_shared_fpr(false_positives, image_set.num_pixels[normal]) <= exact_target:
            return candidate
        index -= 1
    reachable = ", ".join(f"{value:.3g}" for value in curve.shared_fpr[:3])
    top = float(curve.thresholds[0])
    _, top_counts, _ = _binary_counts(image_set, top, normal)
    theoretical = 1.0 / (normal.shape[0] * int(image_set.num_pixels[normal].max()))
    raise UnreachableFprError(
        f"No normal score gives a shared FPR of at most {target:g}: the reachable values "
        f"start at {reachable} (thresholds {', '.join(f'{v:.6g}' for v in curve.thresholds[:3])}"
        f"). At the highest normal score ({top:.6g}) {int(top_counts.sum())} pixel(s) of the "
        f"{normal.shape[0]} normal image(s) are above or at the threshold; one pixel of the "
        f"largest normal image alone is 1/(n_normal*pixels) = {theoretical:.3g}. To fix it: "
        "use a target FPR at least the smallest reachable value, add normal images, or "
        "evaluate at a higher resolution."
    )


def _per_image_threshold(image_set: ImageSet, normal: np.ndarray, target: float,
                         share: float) -> float:
    r"""Lowest normal score at which ``ceil(share * |Y_0|)`` normal images have FPR ``<= target``.

    Image j meets the target iff ``|a_j >= t| <= k_j = floor(target * M_j)``, i.e. iff ``t``
    is above its ``(k_j + 1)``-th largest score ``u_j`` (always, when ``k_j >= M_j``). So the
    required number ``r`` of images meet it iff ``t > u_(r)``, the r-th smallest ``u_j``; the
    threshold is the lowest normal score above ``u_(r)``.
    """
    exact_target = _decimal(target)
    required = math.ceil(_decimal(share) * normal.shape[0])
    bounds = np.empty(normal.shape[0], dtype=np.float64)
    highest = -math.inf
    for position, index in enumerate(normal):
        scores = image_set.map_of(index)
        pixels = scores.shape[0]
        allowed = math.floor(exact_target * pixels)
        highest = max(highest, float(scores.max()))
        if allowed >= pixels:
            bounds[position] = -math.inf
        else:
            kth = pixels - allowed - 1
            bounds[position] = float(np.partition(scores, kth)[kth])
    bound = float(np.sort(bounds)[required - 1])
    if bound == -math.inf:
        return min(float(image_set.map_of(index).min()) for index in normal)
    if bound >= highest:
        meeting = int(np.count_nonzero(bounds < highest))
        raise UnreachableFprError(
            f"No normal score lets {required} of the {normal.shape[0]} normal images (share "
            f"{share:g}) each have an FPR of at most {target:g}: even at the highest normal "
            f"score ({highest:.6g}) only {meeting} of them do, because one pixel of an image "
            f"with M pixels is already an FPR of 1/M (here up to "
            f"{1.0 / int(image_set.num_pixels[normal].min()):.3g}) and the others' top "
            "scores tie or exceed it. To fix it: raise the target FPR to at least 1/M of the "
            "smallest normal image, lower share, or evaluate at a higher resolution."
        )
    return min(float(np.min(scores[scores > bound], initial=math.inf))
               for scores in (image_set.map_of(index) for index in normal))


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def threshold_at(
    anomaly_maps: Any,
    masks: Any,
    *,
    fpr: float,
    kind: str = "shared",
    share: float | None = None,
    paths: Sequence[str] | None = None,
    connectivity: int | None = None,
    ignore_masks: Any = None,
) -> OperatingThreshold:
    r"""Pick an operating threshold on the normal images and describe it on every image.

    Tie rule: a pixel is anomalous when ``a >= t``; all pixels tied at ``t`` count.

    - ``kind="shared"``: ``t`` is the lowest normal score with
      :math:`F_{sh}(t) = \operatorname{mean}_{j \in Y_0} |a_j \ge t| / M_j \le` ``fpr``,
      i.e. the largest reachable shared FPR not above the target.
    - ``kind="per-image"``: ``t`` is the lowest normal score such that at least
      ``ceil(share * |Y_0|)`` normal images have :math:`F_j(t) = |a_j \ge t| / M_j \le`
      ``fpr``.

    Parameters
    ----------
    anomaly_maps, masks : arrays (N, H, W) or sequences of arrays
        As in :func:`pimo.aupimo`. Only the normal images (all-zero masks) choose ``t``; the
        anomalous images, if any, are only described at ``t``.
    fpr : float
        Target FPR in (0, 1], read as its decimal value (exact comparisons on counts).
    kind : {"shared", "per-image"}
        The rule above.
    share : float, optional
        ``kind="per-image"`` only: fraction of normal images in (0, 1] that must meet the
        target; default 1 (every normal image).
    paths : sequence of str, optional
        Image paths for messages and the result.
    connectivity : int, optional
        FP-region connectivity (see :func:`pimo.label_regions`); default 8 in 2-D, 26 in 3-D.
    ignore_masks : arrays (N, H, W) or sequence of arrays, optional
        Pixels to leave out (1 = ignored), as in :func:`pimo.aupimo`: ``M_j`` and every rate
        count kept pixels only, and an ignored pixel never belongs to an FP region (regions are
        labelled on the whole image, so a region cut by the ignore mask counts twice).

    Returns
    -------
    OperatingThreshold
        The threshold, its shared FPR and per-image binary TPR, FPR, IoU, F1 and FP regions.

    Raises
    ------
    PimoValueError
        ``fpr`` or ``share`` outside (0, 1], an unknown ``kind``, ``share`` with
        ``kind="shared"``.
    NoNormalImageError
        No normal image to choose the threshold on.
    UnreachableFprError
        No normal score reaches the target (the message gives the reachable values and why).
    """
    target = _validate_fraction(fpr, "fpr", "The target false-positive rate, e.g. fpr=1e-4 "
                                "(AUPIMO's upper bound).")
    exact_share = _validate_kind(kind, share)
    image_set = as_image_set(anomaly_maps, masks, paths=paths, ignore_masks=ignore_masks)
    normal = image_set.normal_indices
    if normal.shape[0] == 0:
        raise NoNormalImageError(
            f"None of the {image_set.num_images} images is normal (every mask has an anomalous "
            "pixel); the threshold is chosen on normal images only. Add images whose mask is "
            "all zeros (e.g. MVTec AD's 'good' test images)."
        )
    all_indices = np.arange(image_set.num_images)
    _raise_if_nonfinite(first_nonfinite_pixels(image_set), all_indices, image_set)
    for index, shape in enumerate(image_set.shapes):
        _connectivity_rank(connectivity, len(shape), image_set.describe(index))
    if exact_share is None:
        threshold = _shared_threshold(image_set, normal, target)
    else:
        threshold = _per_image_threshold(image_set, normal, target, exact_share)
    true_positives, false_positives, fp_regions = _binary_counts(
        image_set, threshold, all_indices, regions=True, connectivity=connectivity
    )
    positives = image_set.mask_counts
    negatives = image_set.num_pixels - positives
    anomalous = positives > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        fpr_values = np.where(negatives > 0, false_positives / np.maximum(negatives, 1), np.nan)
        tpr = np.where(anomalous, true_positives / np.maximum(positives, 1), np.nan)
        union = positives + false_positives
        iou = np.where(anomalous, true_positives / np.maximum(union, 1), np.nan)
        f1 = np.where(anomalous, 2 * true_positives / np.maximum(union + true_positives, 1),
                      np.nan)
    shared = _exact_shared_fpr(false_positives[normal], image_set.num_pixels[normal])
    exact_target = _decimal(target)
    meeting = sum(Fraction(int(fp), int(m)) <= exact_target
                  for fp, m in zip(false_positives[normal], image_set.num_pixels[normal],
                                   strict=True))
    return OperatingThreshold(
        threshold=threshold,
        kind=kind,
        target_fpr=target,
        share=exact_share,
        shared_fpr=float(shared),
        normal_share=meeting / normal.shape[0],
        image_classes=image_set.image_classes,
        tpr=tpr,
        fpr=fpr_values,
        iou=iou,
        f1=f1,
        fp_regions=fp_regions,
        connectivity=connectivity,
        paths=image_set.paths,
    )


def first_nonfinite_pixels(image_set: ImageSet) -> np.ndarray:
    """Per image, the flat index of its first NaN/inf score (-1 when all are finite).

    The input of :func:`pimo.pimo._raise_if_nonfinite`, which names the first such image.
    """
    bad = np.flatnonzero(~np.isfinite(image_set.maps_flat))
    first = np.full(image_set.num_images, -1, dtype=np.int64)
    if bad.shape[0]:
        images = np.searchsorted(image_set.offsets, bad, side="right") - 1
        with_bad, first_position = np.unique(images, return_index=True)
        first[with_bad] = bad[first_position] - image_set.offsets[with_bad]
    return first
