"""Set-scoped metrics: exact pixel AUROC, AUPRO at any FPR limit, their curves, region labels.

Definitions (DESIGN §1). All pixels of all images are confounded; a pixel is *normal* when its
mask is 0 (in normal and in anomalous images alike) and *anomalous* when its mask is 1. At a
threshold t the predicted-anomalous pixels are ``a >= t``.

- Set FPR: ``F(t) = |{normal pixels with a >= t}| / |{normal pixels}|``.
- Set TPR: ``T(t) = |{anomalous pixels with a >= t}| / |{anomalous pixels}|``.
- PRO: ``P(t) = (1 / |regions|) * sum over regions r of |{p in r with a >= t}| / |r|``, where
  the regions are the connected components of every mask (8-connected in 2-D, 26-connected in
  3-D by default), all images together. Equivalently a ROC in which an anomalous pixel of
  region r weighs ``1 / (|r| * |regions|)``.

The curves have one point per distinct score, from (0, 0) (threshold above every score) to
(1, 1) (threshold at the lowest score), joined by straight segments; a run of equal scores
moves both coordinates at once (a diagonal segment), exactly as scikit-learn's ROC. Then::

    AUROC       = area under (F, T) = (1 / (N0 * N1)) * sum over normal pixels n of
                  (#anomalous pixels a > score(n) + 0.5 * #anomalous pixels a = score(n))
    AUPRO(U)    = (1 / U) * area under (F, P) for F in [0, U], the segment that crosses
                  F = U being cut there by linear interpolation.

Pixel AP and F1-max come from the same walk down the scores (see :func:`set_metrics`).

The computation is exact (no threshold grid) and never sorts all pixels: see
:mod:`pimo._kernels._roc`. :class:`SetMetricsAccumulator` keeps, in one pass over the data,
the class histograms of 65,536 score buckets and the low key bits of the pixels grouped by
bucket; its ``compute`` counts the normal pixels between and at the distinct anomalous scores
(the gap summary) and walks down those once for every metric. :func:`set_metrics`,
:func:`auroc` and :func:`aupro` are one ``update`` and one ``compute`` of it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numba as nb
import numpy as np

from pimo import _kernels
from pimo._validate import (
    EmptyInputError,
    FprBoundsError,
    IgnoreMaskError,
    ImageSet,
    NoAnomalousImageError,
    NonFiniteScoreError,
    NoNormalImageError,
    PimoError,
    PimoTypeError,
    PimoValueError,
    ShapeMismatchError,
    _flat_mask,
    as_image_set,
    pixel_position,
)
from pimo.results import save_value

__all__ = [
    "AP_FILE",
    "AUROC_FILE",
    "DEFAULT_FPR_LIMITS",
    "DEFAULT_MAX_STATE_BYTES",
    "F1_MAX_FILE",
    "SetCurves",
    "SetMetricsAccumulator",
    "SetMetricsResult",
    "aupro",
    "aupro_filename",
    "auroc",
    "label_regions",
    "set_metrics",
]

DEFAULT_FPR_LIMITS: tuple[float, ...] = (0.3, 0.05)
DEFAULT_MAX_STATE_BYTES = 4 * 2**30
#: Published ``{"value": x}`` file names of pixel AUROC, pixel AP and pixel F1-max (AUPRO's:
#: :func:`aupro_filename`).
AUROC_FILE = "auroc.json"
AP_FILE = "aupr.json"
F1_MAX_FILE = "f1max.json"
_ITEM_PIXELS = 1 << 18  # pixels per work item (parallel grain)

# connectivity (neighbours of a pixel) -> rank (axes in which a neighbour may differ)
_CONNECTIVITY_RANKS = {1: {2: 1}, 2: {4: 1, 8: 2}, 3: {6: 1, 18: 2, 26: 3}}


# --------------------------------------------------------------------------------------------
# Region labelling
# --------------------------------------------------------------------------------------------
def _connectivity_rank(connectivity: int | None, ndim: int, where: str = "the mask") -> int:
    """Rank of ``connectivity`` for ``ndim``-D images (None = full: 8 in 2-D, 26 in 3-D)."""
    if ndim not in _CONNECTIVITY_RANKS:
        raise ShapeMismatchError(
            f"{where} has {ndim} dimensions; regions are defined for 2-D images and 3-D "
            "volumes (and 1-D signals). Pass (H, W) or (D, H, W) arrays."
        )
    if connectivity is None:
        return ndim
    allowed = _CONNECTIVITY_RANKS[ndim]
    if isinstance(connectivity, bool) or connectivity not in allowed:
        raise PimoValueError(
            f"connectivity={connectivity!r} is not valid for {where} ({ndim}-D): use one of "
            f"{sorted(allowed)} (or None for {max(allowed)})."
        )
    return allowed[connectivity]


def _dims(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``shape`` as (depth, height, width)."""
    padded = (1,) * (3 - len(shape)) + tuple(shape)
    return int(padded[0]), int(padded[1]), int(padded[2])


def label_regions(mask: Any, *, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Label the connected regions of a binary mask.

    Parameters
    ----------
    mask : array (H, W) or (D, H, W)
        Bool or 0/1 values.
    connectivity : int, optional
        Neighbours of a pixel: 4 or 8 for 2-D masks, 6, 18 or 26 for 3-D volumes (2 for 1-D).
        Default: full connectivity (8 in 2-D, 26 in 3-D), as the AUPRO regions.

    Returns
    -------
    labels : ndarray of int32, same shape as ``mask``
        0 for background, 1..R for the regions, numbered in raster order of their first pixel
        (the same labels as ``scipy.ndimage.label`` with the matching structure).
    num_regions : int
        R.

    Notes
    -----
    Runs of ones along the last axis are merged with union-find: time linear in the pixels,
    memory linear in the runs. This is the labelling used by :func:`aupro`.
    """
    array = np.asarray(mask)
    if array.ndim == 0 or array.size == 0:
        raise EmptyInputError(f"label_regions needs a non-empty mask, got shape {array.shape}.")
    rank = _connectivity_rank(connectivity, array.ndim)
    flat = _flat_mask(array, 0, None)
    depth, height, width = _dims(array.shape)
    labels, num_regions = _kernels.label_mask(flat, depth, height, width, rank)
    return labels.reshape(array.shape), int(num_regions)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SetCurves:
    """ROC and PRO curves (shared vertices), for plotting.

    Vertices are the points of the exact curves where the direction changes: after each
    distinct anomalous score, and at the end of each run of normal-only scores (points on a
    straight run are left out). The first vertex is (0, 0) at threshold +inf.

    Attributes
    ----------
    thresholds : ndarray of float64, descending
        The lowest score reached at each vertex: thresholding at ``a >= thresholds[k]`` gives
        exactly the vertex k.
    fpr, tpr, pro : ndarray of float64, ascending
        Set FPR, set TPR (ROC) and mean region TPR (PRO) at each vertex.
    """

    thresholds: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    pro: np.ndarray

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fpr, tpr, thresholds)``, as ``sklearn.metrics.roc_curve`` orders them."""
        return self.fpr, self.tpr, self.thresholds

    def pro_until(self, fpr_limit: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        """``(fpr, pro)`` from 0 up to ``fpr_limit``, the last point interpolated at the limit.

        The area under it divided by ``fpr_limit`` is AUPRO(``fpr_limit``).
        """
        limit = _validate_limits((fpr_limit,))[0]
        inside = int(np.searchsorted(self.fpr, limit, side="right"))
        fpr = self.fpr[:inside]
        pro = self.pro[:inside]
        if inside < self.fpr.shape[0] and fpr[-1] < limit:
            x0, x1 = self.fpr[inside - 1], self.fpr[inside]
            y0, y1 = self.pro[inside - 1], self.pro[inside]
            fpr = np.append(fpr, limit)
            pro = np.append(pro, y0 + (y1 - y0) * (limit - x0) / (x1 - x0))
        return fpr, pro


def aupro_filename(fpr_limit: float) -> str:
    """The published file name of AUPRO up to ``fpr_limit``.

    ``aupro.json`` for the usual limit 0.3; otherwise ``aupro_<percent>.json`` with whole
    percents on two digits, as the published ``aupro_05.json`` (0.05); e.g. ``aupro_10.json``
    for 0.1 and ``aupro_0.5.json`` for 0.005.
    """
    if fpr_limit == 0.3:
        return "aupro.json"
    percent = round(float(fpr_limit) * 100, 10)
    if percent == int(percent):
        return f"aupro_{int(percent):02d}.json"
    return f"aupro_{percent:g}.json"


@dataclass(frozen=True)
class SetMetricsResult:
    """AUROC, AUPRO, pixel AP and F1-max of one set of images.

    Attributes
    ----------
    auroc : float or None
        Pixel AUROC (None when not requested).
    aupro : dict of float to float
        AUPRO at each requested FPR limit, e.g. ``{0.3: ..., 0.05: ...}``.
    num_images : int
        Images in the set.
    num_normal_pixels, num_anomalous_pixels : int
        Pixels with mask 0 and with mask 1, all images together.
    num_regions : int
        Connected anomalous regions (the PRO curve's average runs over them).
    curves : SetCurves or None
        The ROC and PRO curves when requested (``curves=True``).
    ap : float or None
        Pixel average precision, as ``sklearn.metrics.average_precision_score`` (None when not
        requested).
    f1_max : float or None
        Largest pixel F1 over the distinct thresholds (None when not requested).
    f1_max_threshold : float or None
        The (highest) score t such that thresholding at ``a >= t`` gives ``f1_max``.
    """

    auroc: float | None
    aupro: Mapping[float, float]
    num_images: int
    num_normal_pixels: int
    num_anomalous_pixels: int
    num_regions: int
    curves: SetCurves | None = field(default=None, repr=False)
    ap: float | None = None
    f1_max: float | None = None
    f1_max_threshold: float | None = None

    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write ``{"value": ...}`` files in the published layout and return their paths.

        ``auroc.json``, one file per AUPRO limit named by :func:`aupro_filename`
        (``aupro.json`` for 0.3, ``aupro_05.json`` for 0.05; they also carry ``"fpr_limit"``),
        ``aupr.json`` (pixel AP) and ``f1max.json`` (also ``"threshold"``), for the metrics
        computed.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        if self.auroc is not None:
            written.append(save_value(folder / AUROC_FILE, self.auroc))
        for limit, value in self.aupro.items():
            written.append(
                save_value(folder / aupro_filename(limit), value, fpr_limit=float(limit))
            )
        if self.ap is not None:
            written.append(save_value(folder / AP_FILE, self.ap))
        if self.f1_max is not None:
            written.append(save_value(folder / F1_MAX_FILE, self.f1_max,
                                      threshold=self.f1_max_threshold))
        return written


# --------------------------------------------------------------------------------------------
# The stream
# --------------------------------------------------------------------------------------------
def _validate_limits(fpr_limits: Any) -> tuple[float, ...]:
    try:
        values = [float(limit) for limit in fpr_limits]
    except (TypeError, ValueError) as error:
        raise FprBoundsError(
            f"fpr_limits must be a sequence of numbers in (0, 1], got {fpr_limits!r}."
        ) from error
    unique: list[float] = []
    for value in values:
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise FprBoundsError(
                f"An AUPRO FPR limit must be in (0, 1], got {value!r}. The usual limits are "
                "0.3 and 0.05."
            )
        if value not in unique:
            unique.append(value)
    return tuple(unique)


def _floats_from_keys(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Vectorised inverse of the sort key (see :mod:`pimo._kernels._common`), as float64."""
    view_dtype, _, sign_bit, _, all_ones = _kernels.KEY_LAYOUTS[np.dtype(dtype)]
    keys = keys.astype(np.uint64)
    bits = np.where(keys & sign_bit, keys ^ sign_bit, keys ^ all_ones)
    return bits.astype(view_dtype).view(dtype).astype(np.float64)


class _Batch:
    """Images prepared for the kernels: bit views, work items, regions, class histograms."""

    def __init__(self, image_set: ImageSet, dtype: np.dtype, connectivity: int | None,
                 first_index: int, num_chunks: int):
        self.image_set = image_set
        self.first_index = first_index
        self.bits = _kernels.bit_view(image_set.maps_flat.astype(dtype, copy=False))
        self.offsets = image_set.offsets
        num_images = image_set.num_images
        dims = np.empty((num_images, 3), dtype=np.int64)
        ranks = np.empty(num_images, dtype=np.int64)
        images, begins, ends = [], [], []
        for index, shape in enumerate(image_set.shapes):
            where = f"the mask of {self.describe(index)}"
            ranks[index] = _connectivity_rank(connectivity, len(shape), where)
            dims[index] = _dims(shape)
            size = int(image_set.num_pixels[index])
            starts = np.arange(0, size, _ITEM_PIXELS, dtype=np.int64)
            images.append(np.full(starts.shape, index, dtype=np.int64))
            begins.append(starts)
            ends.append(np.minimum(starts + _ITEM_PIXELS, size))
        self.item_image = np.concatenate(images)
        self.item_begin = np.concatenate(begins)
        self.item_end = np.concatenate(ends)
        anomalous = image_set.anomalous_indices.astype(np.int64)
        (self.run_offsets, self.run_starts, self.run_lengths, self.run_weights, regions) = (
            _kernels.image_runs(image_set.masks_flat, image_set.offsets, anomalous, dims, ranks)
            if image_set.ignored is None else self._runs_of_kept_pixels(anomalous, dims, ranks))
        self.num_regions = int(regions.sum())
        self.num_images = num_images
        self.num_pixels = int(image_set.num_pixels.sum())
        self.num_anomalous = int(image_set.mask_counts.sum())
        self.num_chunks = num_chunks
        self._counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _runs_of_kept_pixels(self, anomalous: np.ndarray, dims: np.ndarray, ranks: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                        np.ndarray]:
        """:func:`pimo._kernels.image_runs` for a set whose ignore mask left pixels out.

        Regions are labelled on each whole mask, before removal (a region cut in two by the
        ignore mask stays one region); the runs then cover the kept anomalous pixels in the
        kept-pixel numbering of the image set, and a region's weight is one over its kept
        pixels.
        """
        ignored = self.image_set.ignored
        assert ignored is not None
        num_images = self.image_set.num_images
        run_offsets = np.zeros(num_images + 1, dtype=np.int64)
        starts: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        num_regions = np.zeros(num_images, dtype=np.int64)
        runs_per_image = np.zeros(num_images, dtype=np.int64)
        for index in anomalous.tolist():
            labels, count = _kernels.label_mask(ignored.mask_of(index), *dims[index],
                                                ranks[index])
            kept_labels = labels[ignored.kept_of(index)]
            kept_sizes = np.bincount(kept_labels, minlength=count + 1)[1:]
            if np.any(kept_sizes == 0):
                region = int(np.flatnonzero(kept_sizes == 0)[0]) + 1
                first_pixel = int(np.argmax(labels == region))
                shape = self.image_set.shapes[index]
                paths = self.image_set.paths
                raise IgnoreMaskError(
                    f"The ignore mask of {self.describe(index)} covers the whole anomalous "
                    f"region at pixel {pixel_position(first_pixel, shape)} "
                    f"({int(np.count_nonzero(labels == region))} pixels): AUPRO averages the "
                    "recall of every region, and this one has no pixel left. Leave each "
                    "defect (at least in part) outside the ignore mask.",
                    image_index=self.first_index + index,
                    path=paths[index] if paths else None,
                )
            position = np.flatnonzero(kept_labels)
            region_of = kept_labels[position]
            new_run = np.ones(position.shape[0], dtype=bool)
            new_run[1:] = (np.diff(position) != 1) | (np.diff(region_of) != 0)
            first = np.flatnonzero(new_run)
            starts.append(position[first])
            lengths.append(np.diff(np.append(first, position.shape[0])))
            weights.append(1.0 / kept_sizes[region_of[first] - 1])
            runs_per_image[index] = first.shape[0]
            num_regions[index] = count
        np.cumsum(runs_per_image, out=run_offsets[1:])

        def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

        return (run_offsets, joined(starts, np.int64), joined(lengths, np.int64),
                joined(weights, np.float64), num_regions)

    def describe(self, local_index: int) -> str:
        """``"image 7 ('a/b.png')"``, numbered in the order the images were fed in the pass."""
        paths = self.image_set.paths
        path = f" ({paths[local_index]!r})" if paths and paths[local_index] else ""
        return f"image {self.first_index + local_index}{path}"

    def key_constants(self, dtype: np.dtype) -> tuple[Any, ...]:
        _, key_bits, sign_bit, exponent_mask, all_ones = _kernels.KEY_LAYOUTS[dtype]
        shift = np.uint64(key_bits - _kernels.BUCKET_BITS)
        return shift, sign_bit, all_ones, exponent_mask

    def counts(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-chunk histograms ``(normal counts, anomalous counts, anomalous weights)``."""
        if self._counts is None:
            shape = (self.num_chunks, _kernels.NUM_BUCKETS)
            neg = np.zeros(shape, dtype=np.int64)
            pos = np.zeros(shape, dtype=np.int64)
            weight = np.zeros(shape, dtype=np.float64)
            first_bad = np.full(self.item_image.shape[0], -1, dtype=np.int64)
            shift, sign_bit, all_ones, exponent_mask = self.key_constants(dtype)
            _kernels.bucket_counts(
                self.bits, self.offsets, self.item_image, self.item_begin, self.item_end,
                self.run_offsets, self.run_starts, self.run_lengths, self.run_weights, shift,
                sign_bit, all_ones, exponent_mask, neg, pos, weight, first_bad,
            )
            bad_items = np.flatnonzero(first_bad >= 0)
            if bad_items.size:
                item = int(bad_items[0])
                local = int(self.item_image[item])
                paths = self.image_set.paths
                raise NonFiniteScoreError(
                    f"The anomaly map of {self.describe(local)} holds NaN or infinite scores "
                    "(the first at flat pixel "
                    f"{self.image_set.full_pixel(local, int(first_bad[item]))}). AUROC and "
                    "AUPRO need finite scores: fix the model output, or replace them (e.g. "
                    "np.nan_to_num) on purpose.",
                    image_index=self.first_index + local,
                    path=paths[local] if paths else None,
                )
            self._counts = (neg, pos, weight)
        return self._counts


_DENSE_MIN_PIXELS = (_kernels.NUM_BUCKETS * 8) // 2  # a list of 2-byte keys larger than this
#   takes more memory than the bucket's dense 65,536 x int64 histogram
_COMPACT_MIN_BYTES = 64 * 2**20
_MAX_PIECES = 256
_LOW_DTYPES = {np.dtype(np.float32): np.dtype(np.uint16), np.dtype(np.float64): np.dtype(np.uint64)}
_STATE_LOW_DTYPES = {np.dtype(np.float32): np.dtype(np.int16),
                     np.dtype(np.float64): np.dtype(np.int64)}


@dataclass(frozen=True)
class _Piece:
    """Low key bits of some pixels, grouped by bucket: segment k is bucket ``bucket[k]``.

    The normal low keys of segment k are the next ``neg[k]`` entries of ``neg_low``; its
    anomalous low keys and PRO weights the next ``pos[k]`` entries of ``pos_low`` and
    ``pos_weight`` (segments in order, no gap).
    """

    bucket: np.ndarray
    neg: np.ndarray
    pos: np.ndarray
    neg_low: np.ndarray
    pos_low: np.ndarray
    pos_weight: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(int(array.nbytes) for array in (self.bucket, self.neg, self.pos, self.neg_low,
                                                   self.pos_low, self.pos_weight))

    @staticmethod
    def empty(low_dtype: np.dtype) -> _Piece:
        no_index = np.zeros(0, dtype=np.int64)
        return _Piece(no_index, no_index, no_index, np.zeros(0, dtype=low_dtype),
                      np.zeros(0, dtype=low_dtype), np.zeros(0, dtype=np.float64))


@dataclass(frozen=True)
class _Gaps:
    """Where the pixels fall among the distinct anomalous scores: all every metric needs.

    With ``keys`` the D distinct anomalous sort keys, ascending: ``pos[j]`` anomalous pixels
    score ``keys[j]``, with PRO weights summing to ``weight[j]``; ``neg[2 j + 1]`` normal pixels
    score ``keys[j]`` and ``neg[2 j]`` lie strictly between ``keys[j - 1]`` and ``keys[j]`` (a
    *gap*; ``neg[2 D]`` above the highest). Where a normal pixel falls inside its gap changes
    no metric (the curves run horizontally across a gap), except the curves' thresholds:
    ``gap_lowest[j]`` is the lowest normal key of gap j (only kept for the curves, else empty).
    """

    keys: np.ndarray
    pos: np.ndarray
    weight: np.ndarray
    neg: np.ndarray
    gap_lowest: np.ndarray


_RANK_MIN_KEYS = 32  # a bucket holding this many distinct anomalous keys gets a bitmap row
_RANK_ROW_BYTES = _kernels.RANK_ROW_WORDS * 16
_RANK_MAX_BYTES = 2**27  # bitmap rows beyond this (and 4 x the keys) go by binary search
_HISTOGRAM_MIN_KEYS = 2**13  # a bitmap-row bucket with this many normal keys (in one piece)
#   counts them in a histogram of its low values: one increment per key and one pass over the
#   65,536 values, instead of a row lookup per key


def _key_shift(dtype: np.dtype) -> np.uint64:
    """Low key bits below the bucket (16 for float32 scores, 48 for float64)."""
    return np.uint64(_kernels.KEY_LAYOUTS[np.dtype(dtype)][1] - _kernels.BUCKET_BITS)


def _distinct(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The distinct sort keys of ``dtype`` scores in ``keys``, ascending, as uint64 (sorted in
    the keys' own width: float32 keys as uint32, twice as fast)."""
    ordered = keys.astype(_kernels.KEY_LAYOUTS[np.dtype(dtype)][0])  # a copy, sorted in place
    ordered.sort()
    if ordered.shape[0] < 2:
        return ordered.astype(np.uint64)
    first = np.empty(ordered.shape[0], dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first].astype(np.uint64)


@dataclass(frozen=True)
class _Rank:
    """The slot (:func:`pimo._kernels._roc._slot_of_key`) of any key among ascending ``keys``.

    ``bucket_start`` locates each bucket's keys; for float32 scores a bucket holding at least
    ``_RANK_MIN_KEYS`` keys gets a 65,536-bit row of ``table`` (its low key values, with the
    rank of every 64-bit word), the others are searched.
    """

    keys: np.ndarray
    shift: np.uint64
    bucket_start: np.ndarray
    bucket_row: np.ndarray
    table: np.ndarray

    @property
    def arrays(self) -> tuple[Any, ...]:
        """The kernel arguments ``shift, keys, bucket_start, bucket_row, table``."""
        return self.shift, self.keys, self.bucket_start, self.bucket_row, self.table

    @staticmethod
    def of(keys: np.ndarray, dtype: np.dtype) -> _Rank:
        shift = _key_shift(dtype)
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        bucket_start = _kernels.rank_bucket_starts(keys, shift)
        bucket_row = np.full(_kernels.NUM_BUCKETS, -1, dtype=np.int64)
        if int(shift) == _kernels.RANK_LOW_BITS:
            sizes = np.diff(bucket_start)
            chosen = np.flatnonzero(sizes >= _RANK_MIN_KEYS)
            max_rows = max(_RANK_MAX_BYTES, 4 * keys.nbytes) // _RANK_ROW_BYTES
            if chosen.shape[0] > max_rows:
                chosen = np.sort(chosen[np.argsort(-sizes[chosen], kind="stable")[:max_rows]])
            bucket_row[chosen] = np.arange(chosen.shape[0])
        table = np.zeros((int((bucket_row >= 0).sum()), _kernels.RANK_ROW_WORDS, 2),
                         dtype=np.uint64)
        _kernels.fill_rank_rows(keys, bucket_start, bucket_row, table)
        return _Rank(keys, shift, bucket_start, bucket_row, table)

    def anomalous_sums(self, anomalous_keys: np.ndarray, weights: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Anomalous pixels and PRO weight sums at each key (``anomalous_keys`` among them)."""
        pos = np.zeros(self.keys.shape[0], dtype=np.int64)
        weight = np.zeros(self.keys.shape[0], dtype=np.float64)
        _kernels.anomalous_slot_sums(anomalous_keys, weights, *self.arrays, pos, weight)
        return pos, weight


def _exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    out = np.zeros(values.shape[0], dtype=np.int64)
    if values.shape[0] > 1:
        np.cumsum(values[:-1], out=out[1:])
    return out


def _group_by_bucket(pieces: Sequence[_Piece]) -> _Piece:
    """One piece holding every pixel of ``pieces``, one segment per bucket, ascending."""
    if len(pieces) == 1 and np.all(np.diff(pieces[0].bucket) > 0):
        return pieces[0]
    bucket = np.concatenate([piece.bucket for piece in pieces])
    neg = np.concatenate([piece.neg for piece in pieces])
    pos = np.concatenate([piece.pos for piece in pieces])
    order = np.argsort(bucket, kind="stable")
    neg_low = _gather(np.concatenate([piece.neg_low for piece in pieces]), neg, order)
    pos_low = _gather(np.concatenate([piece.pos_low for piece in pieces]), pos, order)
    pos_weight = _gather(np.concatenate([piece.pos_weight for piece in pieces]), pos, order)
    sorted_bucket = bucket[order]
    buckets, first = np.unique(sorted_bucket, return_index=True)
    if buckets.shape[0] == 0:
        return _Piece.empty(neg_low.dtype)
    return _Piece(buckets.astype(np.int64), np.add.reduceat(neg[order], first).astype(np.int64),
                  np.add.reduceat(pos[order], first).astype(np.int64), neg_low, pos_low,
                  pos_weight)


def _gather(data: np.ndarray, lengths: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The segments of ``data`` (consecutive, of ``lengths``) in the order ``order``."""
    target = np.empty_like(data)
    if data.shape[0]:
        _kernels.copy_segments(data, _exclusive_cumsum(lengths)[order], lengths[order],
                               _exclusive_cumsum(lengths[order]), target)
    return target


def _keys_of_floats(values: np.ndarray) -> np.ndarray:
    """Sort keys (uint64) of float64 values (vectorised :func:`pimo._kernels.key_of_bits`)."""
    _, _, sign_bit, _, all_ones = _kernels.KEY_LAYOUTS[np.dtype(np.float64)]
    bits = (values + 0.0).view(np.uint64)  # -0.0 + 0.0 == +0.0
    return np.where(bits & sign_bit, bits ^ all_ones, bits | sign_bit)


def _as_batch_arrays(images: Any) -> Any:
    """Detach torch tensors and drop a channel axis of size 1: (B, 1, H, W) -> (B, H, W)."""
    if hasattr(images, "detach") and hasattr(images, "cpu"):  # torch, without importing it
        images = images.detach()
        if images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]
        return images.cpu().numpy()
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1] == 1:
        return images[:, 0]
    return images


def _on_accelerator(images: Any) -> bool:
    """True for a floating (B, H, W), (B, 1, H, W) or (B, D, H, W) torch tensor off the CPU."""
    device = getattr(images, "device", None)
    return (
        device is not None and getattr(device, "type", "cpu") != "cpu"
        and hasattr(images, "detach") and getattr(images, "ndim", 0) in (3, 4)
        and str(images.dtype) in ("torch.float16", "torch.float32", "torch.float64")
    )


def _image_name(offset: int, local: int, paths: Sequence[str] | None) -> str:
    """``"image 7 ('a/b.png')"`` for image ``local`` of a batch after ``offset`` images."""
    path = f" ({paths[local]!r})" if paths and paths[local] else ""
    return f"image {offset + local}{path}"


_IMAGE_NUMBER = re.compile(r"\bimage (\d+)\b")


def _renumbered(error: PimoError, offset: int) -> PimoError:
    """``error`` with its image numbered in the accumulator (``offset`` images before)."""
    if offset == 0 or error.image_index is None:
        return error
    message = _IMAGE_NUMBER.sub(
        lambda match: f"image {int(match.group(1)) + offset}"
        if int(match.group(1)) == error.image_index else match.group(0),
        str(error), count=1,
    )
    return type(error)(message, image_index=error.image_index + offset, path=error.path)


class SetMetricsAccumulator:
    """Exact AUROC, AUPRO, pixel AP and F1-max, accumulated batch by batch in one pass.

    ``update`` takes batches in any order and of any size; ``merge``, ``state_dict`` and
    ``from_state_dict`` combine the states of several workers; ``compute`` gives exactly the
    result of :func:`set_metrics` on all images (to rounding, 1e-12), whatever the order,
    batching and merge tree::

        accumulator = SetMetricsAccumulator(fpr_limits=(0.3, 0.05))
        for anomaly_maps, masks in loader:
            accumulator.update(anomaly_maps, masks)
        result = accumulator.compute()

    Parameters
    ----------
    fpr_limits : sequence of float
        AUPRO limits U in (0, 1]; ``()`` for none.
    auroc, ap, f1_max : bool
        Compute the pixel AUROC, the pixel average precision (as
        ``sklearn.metrics.average_precision_score``), and the largest pixel F1 with its
        threshold.
    curves : bool
        Also return the ROC/PRO curve vertices (:class:`SetCurves`).
    connectivity : int, optional
        Region connectivity (see :func:`label_regions`); default 8 (2-D) / 26 (3-D).
    max_state_bytes : int
        Largest state allowed (default 4 GiB); beyond it ``update`` raises
        :class:`PimoValueError` with the numbers.
    dtype : numpy dtype, optional
        Score dtype of the state, float32 or float64. By default that of the first batch; when
        a float64 (or integer) batch follows float32 ones, the state is re-keyed in float64,
        exactly (float32 scores are float64 scores). A given dtype is fixed: float32 batches
        are widened exactly into a float64 state, a float64 batch is refused by a float32 one.
        State dicts are concatenated only between accumulators of the same dtype (their
        arrays' dtypes differ): construct them all with the same ``dtype``.

    Notes
    -----
    **State.** Scores are ordered by their sort key (:mod:`pimo._kernels._common`); the top
    16 bits pick one of 65,536 buckets of consecutive scores. The state holds per bucket the
    number of normal pixels, of anomalous pixels and the sum of the anomalous pixels' PRO
    weights ``1 / |region|`` (3 x 65,536 numbers: 1.5 MiB), and, for each pixel, the low bits
    of its key grouped by bucket (counting sort at ``update``). A bucket's normal low keys
    are turned into its dense 65,536-bin histogram (512 KiB) once they would take more room:

    - float32 maps: 2 bytes per normal pixel (at most 512 KiB per bucket) and 10 bytes per
      anomalous pixel (2 for the key, 8 for its weight);
    - float64 maps: 8 bytes per normal and 16 per anomalous pixel.

    This is the smallest exact state: the AUROC depends on the order of every normal pixel
    relative to every anomalous one, and the state keeps that order and nothing more (the
    pixels' positions and images are dropped; only the number of regions is kept). Regions
    are labelled per image at ``update``.

    **Devices.** A floating torch tensor off the CPU (e.g. on a GPU) is summarised on its
    device: keys, bucket counts and the normal pixels' low keys sorted there; only those, the
    anomalous pixels' scores and the masks (for the regions) move to the CPU. CPU tensors and
    arrays go through the numba kernels; both give the same state.

    **compute.** The distinct anomalous scores split the normal pixels into gaps; each normal
    low key is ranked among the anomalous keys of its bucket (a bitmap row with word ranks
    for float32 buckets holding many of them, a binary search otherwise) and counted in its
    gap or equal slot; a bucket without anomalous pixels falls in one gap as a whole. One walk
    down the slots gives every metric (:func:`pimo._kernels.walk_gaps`); with ``curves``,
    each gap's lowest normal score is kept for the curves' thresholds.
    """

    STATE_REDUCTIONS: ClassVar[dict[str, str]] = {
        "neg_hist": "sum",
        "pos_hist": "sum",
        "pos_weight_hist": "sum",
        "counts": "sum",
        "seg_bucket": "cat",
        "seg_neg": "cat",
        "seg_pos": "cat",
        "neg_low": "cat",
        "pos_low": "cat",
        "pos_weight": "cat",
        "dense_bucket": "cat",
        "dense_counts": "cat",
    }

    def __init__(
        self,
        fpr_limits: Iterable[float] = DEFAULT_FPR_LIMITS,
        *,
        auroc: bool = True,
        ap: bool = True,
        f1_max: bool = True,
        curves: bool = False,
        connectivity: int | None = None,
        max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
        dtype: Any = None,
    ) -> None:
        self._limits = _validate_limits(fpr_limits)
        if not (auroc or ap or f1_max or curves or self._limits):
            raise PimoValueError(
                "Nothing to compute: pass auroc=True, ap=True, f1_max=True, curves=True or at "
                "least one FPR limit."
            )
        if connectivity is not None and not any(
            connectivity in ranks for ranks in _CONNECTIVITY_RANKS.values()
        ):
            raise PimoValueError(
                f"connectivity={connectivity!r} is not valid: use 4 or 8 (2-D), 6, 18 or 26 "
                "(3-D), or None."
            )
        if int(max_state_bytes) <= 0:
            raise PimoValueError(f"max_state_bytes must be positive, got {max_state_bytes!r}.")
        self._want_auroc = bool(auroc)
        self._want_ap = bool(ap)
        self._want_f1 = bool(f1_max)
        self._want_curves = bool(curves)
        self._connectivity = connectivity
        self._max_state_bytes = int(max_state_bytes)
        self._dtype: np.dtype | None = None if dtype is None else np.dtype(dtype)
        self._fixed_dtype = dtype is not None
        if self._dtype is not None and self._dtype not in _kernels.KEY_LAYOUTS:
            raise PimoTypeError(f"dtype must be float32 or float64, got {self._dtype}.")
        self._num_chunks = max(1, min(int(nb.get_num_threads()), 64))
        self._neg_hist = np.zeros(_kernels.NUM_BUCKETS, dtype=np.int64)
        self._pos_hist = np.zeros(_kernels.NUM_BUCKETS, dtype=np.int64)
        self._weight_hist = np.zeros(_kernels.NUM_BUCKETS, dtype=np.float64)
        self._num_images = 0
        self._num_pixels = 0
        self._num_regions = 0
        self._pieces: list[_Piece] = []
        self._compacted_bytes = 0  # bytes of the first piece when it is the compacted one
        self._dense_bucket = np.zeros(0, dtype=np.int64)
        self._dense = np.zeros((0, _kernels.NUM_BUCKETS), dtype=np.int64)
        self._paths: list[str | None] = []

    # -- settings and sizes ------------------------------------------------------------------
    @property
    def fpr_limits(self) -> tuple[float, ...]:
        """The AUPRO limits."""
        return self._limits

    @property
    def connectivity(self) -> int | None:
        """The region connectivity (None = full)."""
        return self._connectivity

    @property
    def num_images(self) -> int:
        """Images accumulated so far."""
        return self._num_images

    @property
    def paths(self) -> list[str | None]:
        """Path of each accumulated image (None when not given), in arrival order."""
        return list(self._paths)

    @property
    def state_bytes(self) -> int:
        """Bytes of the state: histograms, low keys of the pixels, dense bucket histograms."""
        return (self._neg_hist.nbytes + self._pos_hist.nbytes + self._weight_hist.nbytes
                + sum(piece.nbytes for piece in self._pieces) + self._dense.nbytes
                + self._dense_bucket.nbytes)

    def _state_dtype(self) -> np.dtype:
        return self._dtype if self._dtype is not None else np.dtype(np.float32)

    def _settings(self) -> dict[str, Any]:
        return {"fpr_limits": self._limits, "auroc": self._want_auroc, "ap": self._want_ap,
                "f1_max": self._want_f1, "curves": self._want_curves,
                "connectivity": self._connectivity, "max_state_bytes": self._max_state_bytes}

    # -- update ------------------------------------------------------------------------------
    def update(self, anomaly_maps: Any, masks: Any, *, paths: Sequence[str] | None = None,
               ignore_masks: Any = None) -> None:
        """Add a batch of images.

        Parameters
        ----------
        anomaly_maps : array or tensor (B, H, W), (B, 1, H, W), (B, D, H, W), or a sequence
            Raw anomaly scores; numpy arrays or torch tensors (detached, on any device), images
            of any sizes in a sequence. (B, 1, H, W) is read as B images of (H, W); (B, D, H, W)
            with D > 1 as B volumes (regions 26-connected by default).
        masks : same layout
            Binary ground truth.
        paths : sequence of str, optional
            Image paths for messages (:attr:`paths`).
        ignore_masks : same layout, optional
            Pixels to leave out (1 = ignored), as in :func:`set_metrics`.

        Raises
        ------
        PimoError
            Bad input, naming the image by its number in the accumulator (arrival order).
        """
        if ignore_masks is None and _on_accelerator(anomaly_maps):
            self._update_on_device(anomaly_maps, masks, paths)
        else:
            self._update_on_host(anomaly_maps, masks, paths, ignore_masks)

    def _update_on_host(self, anomaly_maps: Any, masks: Any, paths: Sequence[str] | None,
                        ignore_masks: Any = None) -> None:
        offset = self._num_images
        try:
            image_set = as_image_set(
                _as_batch_arrays(anomaly_maps), _as_batch_arrays(masks), paths=paths,
                ignore_masks=None if ignore_masks is None else _as_batch_arrays(ignore_masks))
        except PimoError as error:
            raise _renumbered(error, offset) from None
        self._adopt_dtype(image_set.map_dtype)
        assert self._dtype is not None
        batch = _Batch(image_set, self._dtype, self._connectivity, offset, self._num_chunks)
        piece = self._summarise(batch)
        self._num_images += batch.num_images
        self._num_pixels += batch.num_pixels
        self._num_regions += batch.num_regions
        self._paths.extend(image_set.paths if image_set.paths else [None] * batch.num_images)
        self._pieces.append(piece)
        self._after_growth()

    def _update_on_device(self, anomaly_maps: Any, masks: Any, paths: Sequence[str] | None
                          ) -> None:
        """:meth:`update` for a floating torch tensor: keys, counts and sorted keys on its device.

        Only the masks (for the regions), the bucket counts, the normal pixels' low keys
        (2 bytes each for float32 maps) and the anomalous pixels' scores move to the CPU; the
        summary is the same as :meth:`_summarise`'s (low keys sorted inside each bucket).
        """
        import torch

        maps = anomaly_maps.detach()
        if maps.ndim == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        offset = self._num_images
        mask_array = np.asarray(_as_batch_arrays(masks))
        num_images = int(maps.shape[0])
        if paths is not None:
            paths = [str(path) for path in paths]
        if tuple(mask_array.shape) != tuple(maps.shape) or (paths is not None
                                                             and len(paths) != num_images):
            # let the common checks name the problem
            self._update_on_host(maps.cpu().numpy(), mask_array, paths)
            return
        if maps.dtype == torch.float16:
            maps = maps.float()
        dtype = np.dtype(np.float64) if maps.dtype == torch.float64 else np.dtype(np.float32)
        self._adopt_dtype(dtype)
        assert self._dtype is not None
        if self._dtype != dtype:
            maps = maps.double()
        flat_maps = maps.reshape(num_images, -1) + 0.0  # -0.0 + 0.0 == +0.0: one key for zero
        finite = torch.isfinite(flat_maps)
        if not bool(finite.all()):
            image, pixel = (int(v) for v in torch.nonzero(~finite)[0].tolist())
            raise NonFiniteScoreError(
                f"The anomaly map of {_image_name(offset, image, paths)} "
                f"holds NaN or infinite scores (the first at flat pixel {pixel}). AUROC and "
                "AUPRO need finite scores: fix the model output, or replace them (e.g. "
                "torch.nan_to_num) on purpose.",
                image_index=offset + image, path=paths[image] if paths else None)
        flat_masks = []
        for index in range(num_images):
            try:
                flat_masks.append(_flat_mask(mask_array[index], index, paths))
            except PimoError as error:
                raise _renumbered(error, offset) from None
        masks_flat = np.concatenate(flat_masks)
        image_offsets = np.arange(num_images + 1, dtype=np.int64) * flat_masks[0].shape[0]
        shape = tuple(int(side) for side in maps.shape[1:])
        rank = _connectivity_rank(self._connectivity, len(shape),
                                  f"the mask of {_image_name(offset, 0, paths)}")
        mask_counts = _kernels.mask_counts(masks_flat, image_offsets)
        anomalous = np.flatnonzero(mask_counts).astype(np.int64)
        dims = np.tile(np.array(_dims(shape), dtype=np.int64), (num_images, 1))
        _, _, run_lengths, run_weights, regions = _kernels.image_runs(
            masks_flat, image_offsets, anomalous, dims, np.full(num_images, rank, dtype=np.int64))
        # signed keys: the float order is the integer order of these
        bits = flat_maps.view(torch.int64 if self._dtype == np.float64 else torch.int32)
        key_bits = 8 * self._dtype.itemsize
        shift = key_bits - _kernels.BUCKET_BITS
        signed = torch.where(bits < 0, bits ^ ((1 << (key_bits - 1)) - 1), bits)
        low_mask = (1 << shift) - 1
        is_anomalous = torch.from_numpy(masks_flat.view(bool).reshape(num_images, -1)).to(
            flat_maps.device)
        normal = torch.sort(signed[~is_anomalous]).values
        neg_bucket = (normal >> shift).long() + _kernels.NUM_BUCKETS // 2
        neg_total = torch.bincount(neg_bucket, minlength=_kernels.NUM_BUCKETS).cpu().numpy()
        low_dtype = _LOW_DTYPES[self._dtype]
        if low_dtype == np.uint16:
            neg_low = (normal & low_mask).to(torch.int16).cpu().numpy().view(np.uint16)
        else:
            neg_low = (normal & low_mask).cpu().numpy().view(np.uint64)
        signed_pos = signed[is_anomalous].cpu().numpy().astype(np.int64)  # raster order
        pos_bucket = (signed_pos >> shift) + _kernels.NUM_BUCKETS // 2
        order = np.argsort(pos_bucket, kind="stable")
        pos_low = (signed_pos[order] & low_mask).astype(low_dtype)
        pos_weight = np.repeat(run_weights, run_lengths)[order]
        pos_total = np.bincount(pos_bucket, minlength=_kernels.NUM_BUCKETS).astype(np.int64)
        self._neg_hist += neg_total
        self._pos_hist += pos_total
        self._weight_hist += np.bincount(pos_bucket[order], weights=pos_weight,
                                         minlength=_kernels.NUM_BUCKETS)
        present = np.flatnonzero(neg_total + pos_total).astype(np.int64)
        self._num_images += num_images
        self._num_pixels += int(flat_maps.numel())
        self._num_regions += int(regions.sum())
        self._paths.extend(paths if paths else [None] * num_images)
        self._pieces.append(_Piece(present, neg_total[present].astype(np.int64),
                                   pos_total[present], neg_low, pos_low, pos_weight))
        self._after_growth()

    def _adopt_dtype(self, batch_dtype: np.dtype) -> None:
        """Take the first batch's dtype, or re-key the state for a wider one."""
        if self._dtype is None:
            self._dtype = batch_dtype
        elif batch_dtype.itemsize > self._dtype.itemsize:
            if self._fixed_dtype:
                raise PimoTypeError(
                    f"These anomaly maps are {batch_dtype} but the accumulator was constructed "
                    f"with dtype={self._dtype}; narrowing would change the scores. Construct it "
                    "with dtype=np.float64 (or dtype=None to re-key the state when a float64 "
                    "batch arrives)."
                )
            self._widen()

    def _summarise(self, batch: _Batch) -> _Piece:
        """The batch's class histograms (added to the state) and low keys grouped by bucket."""
        assert self._dtype is not None
        neg, pos, weight = batch.counts(self._dtype)
        neg_total = neg.sum(axis=0)
        pos_total = pos.sum(axis=0)
        self._neg_hist += neg_total
        self._pos_hist += pos_total
        self._weight_hist += weight.sum(axis=0)
        # counting sort: chunk c writes bucket b after every earlier bucket and earlier chunk
        neg_cursor = _exclusive_cumsum(neg_total) + (np.cumsum(neg, axis=0) - neg)
        pos_cursor = _exclusive_cumsum(pos_total) + (np.cumsum(pos, axis=0) - pos)
        low_dtype = _LOW_DTYPES[self._dtype]
        neg_low = np.empty(int(neg_total.sum()), dtype=low_dtype)
        pos_low = np.empty(int(pos_total.sum()), dtype=low_dtype)
        pos_weight = np.empty(pos_low.shape[0], dtype=np.float64)
        shift, sign_bit, all_ones, _ = batch.key_constants(self._dtype)
        _kernels.scatter_low_keys(
            batch.bits, batch.offsets, batch.item_image, batch.item_begin, batch.item_end,
            batch.run_offsets, batch.run_starts, batch.run_lengths, batch.run_weights, shift,
            sign_bit, all_ones, neg_cursor, pos_cursor, neg_low, pos_low, pos_weight,
        )
        present = np.flatnonzero(neg_total + pos_total)
        return _Piece(present.astype(np.int64), neg_total[present], pos_total[present], neg_low,
                      pos_low, pos_weight)

    def _after_growth(self) -> None:
        """Compact when the new pieces outgrow the compacted one; enforce the budget."""
        new_bytes = sum(piece.nbytes for piece in self._pieces) - self._compacted_bytes
        if len(self._pieces) > _MAX_PIECES or (
            len(self._pieces) > 1 and new_bytes >= max(self._compacted_bytes, _COMPACT_MIN_BYTES)
        ) or self.state_bytes > self._max_state_bytes:
            self._compact()
        if self.state_bytes > self._max_state_bytes:
            piece = self._pieces[0] if self._pieces else _Piece.empty(np.dtype(np.uint16))
            raise PimoValueError(
                f"The set-metrics state takes {self.state_bytes} bytes after "
                f"{self._num_images} images, over max_state_bytes={self._max_state_bytes}: "
                f"{int(piece.neg.sum())} normal and {int(piece.pos.sum())} anomalous pixels "
                f"kept as {self._state_dtype()} key bits, {self._dense.shape[0]} dense bucket "
                f"histograms. Pass a larger max_state_bytes (each further normal pixel takes "
                f"{_LOW_DTYPES[self._state_dtype()].itemsize} bytes, each anomalous pixel "
                f"{_LOW_DTYPES[self._state_dtype()].itemsize + 8}), or feed float32 maps "
                "(a quarter of the float64 state)."
            )

    def _compact(self, *, dense: bool = True) -> None:
        """One piece grouped by bucket; large normal key lists become dense histograms."""
        if not self._pieces:
            return
        piece = _group_by_bucket(self._pieces)
        if dense and self._state_dtype() == np.dtype(np.float32):
            piece = self._to_dense(piece)
        self._pieces = [piece]
        self._compacted_bytes = piece.nbytes

    def _to_dense(self, piece: _Piece) -> _Piece:
        convert = piece.neg > _DENSE_MIN_PIXELS
        if not np.any(convert):
            return piece
        rows = np.empty(int(convert.sum()), dtype=np.int64)
        known = {int(bucket): row for row, bucket in enumerate(self._dense_bucket.tolist())}
        new_buckets = []
        for position, bucket in enumerate(piece.bucket[convert].tolist()):
            if bucket not in known:
                known[bucket] = self._dense_bucket.shape[0] + len(new_buckets)
                new_buckets.append(bucket)
            rows[position] = known[bucket]
        if new_buckets:
            self._dense_bucket = np.concatenate(
                (self._dense_bucket, np.array(new_buckets, dtype=np.int64)))
            self._dense = np.concatenate(
                (self._dense, np.zeros((len(new_buckets), _kernels.NUM_BUCKETS), np.int64)))
        begins = _exclusive_cumsum(piece.neg)
        _kernels.add_to_dense(piece.neg_low, begins[convert], (begins + piece.neg)[convert],
                              rows, self._dense)
        keep = np.flatnonzero(~convert)
        kept_neg = np.where(convert, 0, piece.neg)
        neg_low = np.empty(int(kept_neg.sum()), dtype=piece.neg_low.dtype)
        _kernels.copy_segments(piece.neg_low, begins[keep], piece.neg[keep],
                               _exclusive_cumsum(kept_neg)[keep], neg_low)
        return _Piece(piece.bucket, kept_neg, piece.pos, neg_low, piece.pos_low,
                      piece.pos_weight)

    def _widen(self) -> None:
        """Re-key a float32 state in float64 (exact: float32 scores are float64 scores)."""
        if self._dtype == np.dtype(np.float64):
            return
        self._dtype = np.dtype(np.float64)
        self._compact(dense=False)
        piece = self._pieces[0] if self._pieces else _Piece.empty(np.dtype(np.uint16))
        float32 = np.dtype(np.float32)

        def keys64(bucket: np.ndarray, low: np.ndarray) -> np.ndarray:
            keys32 = (bucket.astype(np.uint64) << np.uint64(16)) | low.astype(np.uint64)
            return _keys_of_floats(_floats_from_keys(keys32, float32))

        neg_keys = [keys64(np.repeat(piece.bucket, piece.neg), piece.neg_low)]
        for row, bucket in enumerate(self._dense_bucket.tolist()):
            lows = np.repeat(np.arange(_kernels.NUM_BUCKETS), self._dense[row])
            neg_keys.append(keys64(np.full(lows.shape, bucket), lows))
        neg_key = np.concatenate(neg_keys)
        pos_key = keys64(np.repeat(piece.bucket, piece.pos), piece.pos_low)
        shift = np.uint64(64 - _kernels.BUCKET_BITS)
        low_mask = (np.uint64(1) << shift) - np.uint64(1)
        neg_bucket = (neg_key >> shift).astype(np.int64)
        pos_bucket = (pos_key >> shift).astype(np.int64)
        neg_order = np.argsort(neg_bucket, kind="stable")
        pos_order = np.argsort(pos_bucket, kind="stable")
        size = _kernels.NUM_BUCKETS
        self._neg_hist = np.bincount(neg_bucket, minlength=size).astype(np.int64)
        self._pos_hist = np.bincount(pos_bucket, minlength=size).astype(np.int64)
        pos_weight = piece.pos_weight[pos_order]
        self._weight_hist = np.bincount(pos_bucket[pos_order], weights=pos_weight,
                                        minlength=size).astype(np.float64)
        present = np.flatnonzero(self._neg_hist + self._pos_hist).astype(np.int64)
        self._pieces = [] if present.shape[0] == 0 else [_Piece(
            present, self._neg_hist[present], self._pos_hist[present],
            neg_key[neg_order] & low_mask, pos_key[pos_order] & low_mask, pos_weight)]
        self._compacted_bytes = self._pieces[0].nbytes if self._pieces else 0
        self._dense_bucket = np.zeros(0, dtype=np.int64)
        self._dense = np.zeros((0, _kernels.NUM_BUCKETS), dtype=np.int64)

    # -- merging and state dicts -------------------------------------------------------------
    def merge(self, other: SetMetricsAccumulator) -> SetMetricsAccumulator:
        """Add ``other``'s images after this accumulator's own (``other`` is left unchanged).

        Raises
        ------
        PimoValueError
            The accumulators have different FPR limits or connectivity (both values named).
        """
        if not isinstance(other, SetMetricsAccumulator):
            raise PimoTypeError(
                f"Can only merge a SetMetricsAccumulator, got {type(other).__name__}.")
        for name, mine, theirs in (("fpr_limits", self._limits, other._limits),
                                   ("connectivity", self._connectivity, other._connectivity)):
            if mine != theirs:
                raise PimoValueError(
                    f"Cannot merge set-metric accumulators with different {name}: "
                    f"{mine!r} here, {theirs!r} in the other. Construct every accumulator with "
                    "the same settings."
                )
        if other._dtype is not None and other._dtype.itemsize > self._state_dtype().itemsize:
            if self._fixed_dtype:
                raise PimoTypeError(
                    f"Cannot merge a {other._dtype} state into an accumulator constructed with "
                    f"dtype={self._dtype}: narrowing would change the scores. Construct it "
                    "with dtype=np.float64 (or None).")
            self._widen()
        elif self._dtype is not None and other._dtype is not None and (
                self._dtype.itemsize > other._dtype.itemsize):
            other = SetMetricsAccumulator.from_state_dict(other.state_dict(), **other._settings())
            other._widen()
        if self._dtype is None:
            self._dtype = other._dtype
        self._neg_hist = self._neg_hist + other._neg_hist
        self._pos_hist = self._pos_hist + other._pos_hist
        self._weight_hist = self._weight_hist + other._weight_hist
        self._num_images += other._num_images
        self._num_pixels += other._num_pixels
        self._num_regions += other._num_regions
        self._paths.extend(other._paths)
        self._pieces = self._pieces + other._pieces
        self._add_dense(other._dense_bucket, other._dense)
        self._after_growth()
        return self

    def _add_dense(self, buckets: np.ndarray, dense: np.ndarray) -> None:
        """Add dense bucket histograms (rows of the same bucket are summed)."""
        if buckets.shape[0] == 0:
            return
        all_buckets = np.concatenate((self._dense_bucket, buckets))
        unique, inverse = np.unique(all_buckets, return_inverse=True)
        combined = np.zeros((unique.shape[0], _kernels.NUM_BUCKETS), dtype=np.int64)
        np.add.at(combined, inverse, np.concatenate((self._dense, dense)))
        self._dense_bucket = unique.astype(np.int64)
        self._dense = combined

    def state_dict(self) -> dict[str, np.ndarray]:
        """The state as numeric arrays; see :attr:`STATE_REDUCTIONS` to combine several.

        Concatenating the ``"cat"`` arrays of several state dicts along axis 0, adding the
        ``"sum"`` arrays and calling :meth:`from_state_dict` gives the merged accumulator. Low
        key bits are stored as int16 (float32 state) or int64 (float64) bit patterns.
        """
        dtype = self._state_dtype()
        pieces = self._pieces or [_Piece.empty(_LOW_DTYPES[dtype])]
        state_low = _STATE_LOW_DTYPES[dtype]
        return {
            "neg_hist": self._neg_hist.copy(),
            "pos_hist": self._pos_hist.copy(),
            "pos_weight_hist": self._weight_hist.copy(),
            "counts": np.array([self._num_images, self._num_pixels, self._num_regions],
                               dtype=np.int64),
            "seg_bucket": np.concatenate([piece.bucket for piece in pieces]),
            "seg_neg": np.concatenate([piece.neg for piece in pieces]),
            "seg_pos": np.concatenate([piece.pos for piece in pieces]),
            "neg_low": np.concatenate([piece.neg_low for piece in pieces]).view(state_low),
            "pos_low": np.concatenate([piece.pos_low for piece in pieces]).view(state_low),
            "pos_weight": np.concatenate([piece.pos_weight for piece in pieces]),
            "dense_bucket": self._dense_bucket.copy(),
            "dense_counts": self._dense.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], **settings: Any) -> SetMetricsAccumulator:
        """An accumulator holding ``state`` (from :meth:`state_dict`), with ``settings``.

        Arrays may be numpy arrays or torch tensors (on any device). The score dtype is read
        from the low-key arrays (int16: float32, int64: float64). Paths are not part of the
        state: the images get no path.
        """
        missing = sorted(set(cls.STATE_REDUCTIONS) - set(state))
        if missing:
            raise PimoValueError(
                f"The state dict lacks {missing}; pass a dict made by state_dict() (or their "
                "concatenation/sum by STATE_REDUCTIONS).")
        arrays = {name: np.asarray(_as_batch_arrays(state[name])) for name in cls.STATE_REDUCTIONS}
        low_dtype = arrays["neg_low"].dtype
        by_state_low = {value: key for key, value in _STATE_LOW_DTYPES.items()}
        if low_dtype not in by_state_low or arrays["pos_low"].dtype != low_dtype:
            raise PimoTypeError(
                f"The state's low keys are {low_dtype}/{arrays['pos_low'].dtype}; expected int16 "
                "(float32 scores) or int64 (float64 scores) in both neg_low and pos_low.")
        data_dtype = by_state_low[low_dtype]
        requested = settings.pop("dtype", None)
        accumulator = cls(**settings, dtype=requested)
        if requested is not None and accumulator._state_dtype().itemsize < data_dtype.itemsize:
            raise PimoTypeError(
                f"The state holds {data_dtype} scores but dtype={requested!r} was asked for; "
                "narrowing would change the scores. Pass dtype=np.float64 or None.")
        counts = arrays["counts"].astype(np.int64).reshape(-1)
        if int(counts[0]) > 0 or (requested is None and data_dtype == np.float64):
            accumulator._dtype = data_dtype
        accumulator._num_images, accumulator._num_pixels, accumulator._num_regions = (
            int(value) for value in counts)
        accumulator._neg_hist = arrays["neg_hist"].astype(np.int64).reshape(-1)
        accumulator._pos_hist = arrays["pos_hist"].astype(np.int64).reshape(-1)
        accumulator._weight_hist = arrays["pos_weight_hist"].astype(np.float64).reshape(-1)
        low = _LOW_DTYPES[data_dtype]
        piece = _Piece(arrays["seg_bucket"].astype(np.int64), arrays["seg_neg"].astype(np.int64),
                       arrays["seg_pos"].astype(np.int64),
                       np.ascontiguousarray(arrays["neg_low"]).view(low),
                       np.ascontiguousarray(arrays["pos_low"]).view(low),
                       arrays["pos_weight"].astype(np.float64))
        if (int(piece.neg.sum()) != piece.neg_low.shape[0]
                or int(piece.pos.sum()) != piece.pos_low.shape[0]
                or piece.pos_weight.shape[0] != piece.pos_low.shape[0]):
            raise PimoValueError(
                "The state dict is inconsistent: its segments count "
                f"{int(piece.neg.sum())} normal and {int(piece.pos.sum())} anomalous pixels but "
                f"it holds {piece.neg_low.shape[0]} and {piece.pos_low.shape[0]} keys. Combine "
                "state dicts key by key as STATE_REDUCTIONS says (cat or sum).")
        accumulator._pieces = [piece] if piece.bucket.shape[0] else []
        accumulator._paths = [None] * accumulator._num_images
        accumulator._add_dense(arrays["dense_bucket"].astype(np.int64).reshape(-1),
                               arrays["dense_counts"].astype(np.int64).reshape(
                                   -1, _kernels.NUM_BUCKETS))
        if accumulator._state_dtype().itemsize > data_dtype.itemsize:
            accumulator._dtype = data_dtype
            accumulator._widen()
        accumulator._after_growth()
        return accumulator

    # -- result ------------------------------------------------------------------------------
    def compute(self) -> SetMetricsResult:
        """The metrics of every image accumulated so far (the state is kept: update further).

        Raises
        ------
        EmptyInputError, NoAnomalousImageError, NoNormalImageError
            No image, no anomalous pixel or no normal pixel.
        """
        if self._num_images == 0:
            raise EmptyInputError("No image was accumulated: call update() before compute().")
        num_neg, num_pos = self._class_totals()
        if num_pos == 0:
            raise NoAnomalousImageError(
                f"None of the {self._num_pixels} pixels of the {self._num_images} images is "
                "anomalous (every mask is all zeros): AUROC and AUPRO are undefined. Add "
                "anomalous images with their masks; check that the masks were loaded (a mask "
                "that failed to load often reads as zeros)."
            )
        if num_neg == 0:
            raise NoNormalImageError(
                f"Every one of the {self._num_pixels} pixels of the {self._num_images} images "
                "is anomalous (no mask has a 0): the FPR, hence AUROC and AUPRO, is undefined. "
                "Add normal images (all-zero masks), and check that the masks are not inverted."
            )
        return self._result(self._gap_summary(), num_neg, num_pos)

    def _class_totals(self) -> tuple[int, int]:
        """Normal and anomalous pixels accumulated."""
        return int(self._neg_hist.sum()), int(self._pos_hist.sum())

    def _gap_summary(self) -> _Gaps:
        """The state as a gap summary: the anomalous low keys of each bucket split its normal
        ones (the state's pieces are read as they are, no regrouping)."""
        dtype = self._state_dtype()
        shift = _key_shift(dtype)
        pieces = self._pieces or [_Piece.empty(_LOW_DTYPES[dtype])]
        piece_keys = []
        for piece in pieces:
            keys = np.empty(piece.pos_low.shape[0], dtype=np.uint64)
            _kernels.expand_keys(piece.bucket, piece.pos, piece.pos_low, shift, keys)
            piece_keys.append(keys)
        all_keys = piece_keys[0] if len(piece_keys) == 1 else np.concatenate(piece_keys)
        rank = _Rank.of(_distinct(all_keys, dtype), dtype)
        del all_keys
        num_keys = rank.keys.shape[0]
        pos = np.zeros(num_keys, dtype=np.int64)
        weight = np.zeros(num_keys, dtype=np.float64)
        for piece, keys in zip(pieces, piece_keys, strict=True):
            _kernels.anomalous_slot_sums(keys, piece.pos_weight, *rank.arrays, pos, weight)
        del piece_keys
        neg = np.zeros(2 * num_keys + 1, dtype=np.int64)
        track = self._want_curves
        no_key = np.iinfo(np.uint64).max
        gap_lowest = np.full(num_keys + 1 if track else 1, no_key, dtype=np.uint64)
        for index, piece in enumerate(pieces):
            dense_bucket = self._dense_bucket if index == 0 else self._dense_bucket[:0]
            begin = _exclusive_cumsum(piece.neg)
            job_bucket = np.concatenate((piece.bucket, dense_bucket))
            job_begin = np.concatenate((begin, np.zeros(dense_bucket.shape[0], np.int64)))
            job_end = np.concatenate((begin + piece.neg,
                                      np.full(dense_bucket.shape[0], _kernels.NUM_BUCKETS)))
            job_row = np.concatenate((np.full(piece.bucket.shape[0], -1),
                                      np.arange(dense_bucket.shape[0]))).astype(np.int64)
            order = np.argsort(job_bucket, kind="stable")
            job_bucket = job_bucket[order].astype(np.int64)
            group_start = np.concatenate((
                [0], np.flatnonzero(np.diff(job_bucket)) + 1, [job_bucket.shape[0]])
                ).astype(np.int64) if job_bucket.shape[0] else np.zeros(1, dtype=np.int64)
            num_groups = group_start.shape[0] - 1
            edge_count = np.zeros((num_groups, 2), dtype=np.int64)
            edge_lowest = np.full((num_groups if track else 1, 2), no_key, dtype=np.uint64)
            _kernels.low_key_slot_counts(
                job_bucket, job_begin[order].astype(np.int64), job_end[order].astype(np.int64),
                job_row[order], group_start, piece.neg_low, self._dense, not track,
                *rank.arrays, neg, track, gap_lowest, edge_count, edge_lowest,
                4 * self._num_chunks, _HISTOGRAM_MIN_KEYS)
            group_bucket = job_bucket[group_start[:-1]]
            for edge in (0, 1):
                gap = rank.bucket_start[group_bucket + edge]
                np.add.at(neg, 2 * gap, edge_count[:, edge])
                if track:
                    np.minimum.at(gap_lowest, gap, edge_lowest[:, edge])
        return _Gaps(rank.keys, pos, weight, neg,
                     gap_lowest if track else np.zeros(0, dtype=np.uint64))

    def _result(self, gaps: _Gaps, num_neg: int, num_pos: int) -> SetMetricsResult:
        """Every requested metric from the gap summary (one walk down the scores)."""
        dtype = self._state_dtype()
        (auroc_sum, areas, ap_sum, f1_best, f1_key, v_key, v_neg, v_pos,
         v_weight) = _kernels.walk_gaps(
            gaps.keys, gaps.pos, gaps.weight, gaps.neg, gaps.gap_lowest, float(num_neg),
            float(num_pos), float(max(self._num_regions, 1)),
            np.array(self._limits, dtype=np.float64), self._want_curves)
        auroc_value = None
        if self._want_auroc:
            auroc_value = min(max(float(auroc_sum) / (num_neg * num_pos), 0.0), 1.0)
        aupro_values = {
            limit: min(max(float(area) / limit, 0.0), 1.0)
            for limit, area in zip(self._limits, areas, strict=True)
        }
        ap_value = min(max(float(ap_sum), 0.0), 1.0) if self._want_ap else None
        f1_value = f1_threshold = None
        if self._want_f1:
            f1_value = float(f1_best)
            f1_threshold = float(_floats_from_keys(np.array([f1_key], dtype=np.uint64),
                                                   dtype)[0])
        curves = None
        if self._want_curves:
            curves = _build_curves(v_key, v_neg, v_pos, v_weight, dtype, num_neg, num_pos,
                                   self._num_regions)
        return SetMetricsResult(
            auroc=auroc_value,
            aupro=aupro_values,
            num_images=self._num_images,
            num_normal_pixels=num_neg,
            num_anomalous_pixels=num_pos,
            num_regions=self._num_regions,
            curves=curves,
            ap=ap_value,
            f1_max=f1_value,
            f1_max_threshold=f1_threshold,
        )


def _build_curves(keys: np.ndarray, neg: np.ndarray, pos: np.ndarray, weight: np.ndarray,
                  dtype: np.dtype, num_neg: int, num_pos: int, num_regions: int) -> SetCurves:
    order = np.argsort(keys)[::-1]
    keys = keys[order]
    thresholds = np.concatenate(([np.inf], _floats_from_keys(keys, dtype)))
    fpr = np.concatenate(([0.0], neg[order] / num_neg))
    tpr = np.concatenate(([0.0], pos[order] / num_pos))
    pro = np.concatenate(([0.0], np.minimum(weight[order] / max(num_regions, 1), 1.0)))
    # drop the vertices in the middle of a straight horizontal or vertical run
    middle = np.ones(fpr.shape[0], dtype=bool)
    middle[[0, -1]] = False
    horizontal = (tpr[:-2] == tpr[1:-1]) & (tpr[1:-1] == tpr[2:])
    vertical = (fpr[:-2] == fpr[1:-1]) & (fpr[1:-1] == fpr[2:])
    middle[1:-1] &= horizontal | vertical
    keep = ~middle
    return SetCurves(thresholds=thresholds[keep], fpr=fpr[keep], tpr=tpr[keep], pro=pro[keep])


# --------------------------------------------------------------------------------------------
# Array functions
# --------------------------------------------------------------------------------------------
def set_metrics(
    anomaly_maps: Any,
    masks: Any,
    *,
    fpr_limits: Iterable[float] = DEFAULT_FPR_LIMITS,
    auroc: bool = True,
    ap: bool = True,
    f1_max: bool = True,
    curves: bool = False,
    connectivity: int | None = None,
    paths: Sequence[str] | None = None,
    max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
    ignore_masks: Any = None,
) -> SetMetricsResult:
    """AUROC, AUPRO at every limit in ``fpr_limits``, pixel AP and F1-max, in one pass.

    Parameters
    ----------
    anomaly_maps : array (N, H, W) or sequence of arrays
        Raw anomaly scores (higher = more anomalous; never passed through a sigmoid). Images
        may differ in shape; 3-D volumes are accepted.
    masks : array or sequence of arrays
        Binary ground truth, same shapes.
    fpr_limits : sequence of float
        AUPRO limits U in (0, 1]; the paper reports 0.3 and 0.05.
    auroc : bool
        Also compute the pixel AUROC.
    ap : bool
        Also compute the pixel average precision, as ``sklearn.metrics.average_precision_score``:
        ``AP = sum over distinct scores s, descending, of (R(s) - R(s_prev)) * P(s)`` with
        ``R``/``P`` the recall and precision of ``a >= s`` (equal scores grouped).
    f1_max : bool
        Also compute the largest pixel F1 over the distinct thresholds,
        ``max over s of 2 TP(s) / (2 TP(s) + FP(s) + FN(s))``, and the threshold attaining it.
    curves : bool
        Also return the ROC and PRO curves (:class:`SetCurves`).
    connectivity : int, optional
        Region connectivity; default 8 in 2-D, 26 in 3-D (see :func:`label_regions`).
    paths : sequence of str, optional
        Image paths for error messages.
    max_state_bytes : int
        Memory bound of the accumulated state (see :class:`SetMetricsAccumulator`).
    ignore_masks : array or sequence of arrays, optional
        Pixels to leave out (1 = ignored: a border, a fixture, a "don't care" region), same
        shapes as the masks. Every metric is then that of the kept pixels alone. AUPRO labels
        its regions on the whole masks first (a region cut by the ignore mask stays one
        region) and weighs each by its kept pixels.

    Returns
    -------
    SetMetricsResult

    Raises
    ------
    NonFiniteScoreError
        A map holds NaN or an infinity (the image is named).
    NoAnomalousImageError, NoNormalImageError
        No pixel with mask 1 (no curve to measure), or no pixel with mask 0 (no FPR).
    IgnoreMaskError
        An ignore mask covers a whole image, every anomalous pixel of an image, or a whole
        region (the image and the region are named).
    """
    accumulator = SetMetricsAccumulator(
        fpr_limits, auroc=auroc, ap=ap, f1_max=f1_max, curves=curves, connectivity=connectivity,
        max_state_bytes=max_state_bytes)
    accumulator.update(anomaly_maps, masks, paths=paths, ignore_masks=ignore_masks)
    return accumulator.compute()


def auroc(anomaly_maps: Any, masks: Any, *, paths: Sequence[str] | None = None,
          ignore_masks: Any = None) -> float:
    """Exact pixel AUROC over all pixels of all images (ties as ``sklearn.metrics.roc_auc_score``).

    ``AUROC = (1 / (N0 * N1)) * sum over normal pixels n of (#anomalous pixels scoring above n
    + 0.5 * #anomalous pixels scoring equal to n)``, the area under the exact ROC curve with
    diagonal segments for ties. See :func:`set_metrics` for the parameters and errors.
    """
    result = set_metrics(anomaly_maps, masks, fpr_limits=(), auroc=True, ap=False, f1_max=False,
                         paths=paths, ignore_masks=ignore_masks)
    assert result.auroc is not None
    return result.auroc


def aupro(
    anomaly_maps: Any,
    masks: Any,
    *,
    fpr_limit: float = 0.3,
    connectivity: int | None = None,
    paths: Sequence[str] | None = None,
    ignore_masks: Any = None,
) -> float:
    """Exact AUPRO: area under the PRO curve for set FPR in [0, ``fpr_limit``], over the limit.

    ``PRO(t) = mean over all regions r of the set of |{p in r : a_p >= t}| / |r|`` against
    ``FPR(t) = |{normal pixels with a >= t}| / |{normal pixels}|``; vertices at every distinct
    score, trapezoids between them (ties move both coordinates), the segment crossing
    ``FPR = fpr_limit`` cut there by linear interpolation, area divided by ``fpr_limit``.
    Regions are the 8-connected (2-D) or 26-connected (3-D) components of each mask. Use
    ``fpr_limit=0.05`` for the paper's AUPRO 5 %, and :func:`set_metrics` to get several
    limits and the AUROC from one computation.
    """
    limit = _validate_limits((fpr_limit,))[0]
    result = set_metrics(anomaly_maps, masks, fpr_limits=(limit,), auroc=False, ap=False,
                         f1_max=False, connectivity=connectivity, paths=paths,
                         ignore_masks=ignore_masks)
    return result.aupro[limit]
