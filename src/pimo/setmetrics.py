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

The computation is exact (no threshold grid) and never sorts all pixels: see
:mod:`pimo._kernels._roc`. One pass over the data gives the histograms; a second pass gathers
only the pixels of the score ranges where both classes occur (more passes only when those
exceed a memory budget), so AUROC and every AUPRO limit come from the same passes
(:func:`set_metrics`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np

from pimo import _kernels
from pimo._validate import (
    EmptyInputError,
    FprBoundsError,
    ImageSet,
    NoAnomalousImageError,
    NonFiniteScoreError,
    NoNormalImageError,
    PimoTypeError,
    PimoValueError,
    ShapeMismatchError,
    _flat_mask,
    as_image_set,
)
from pimo.results import save_value

__all__ = [
    "DEFAULT_FPR_LIMITS",
    "DEFAULT_MAX_BUFFER_BYTES",
    "SetCurves",
    "SetMetricsResult",
    "SetMetricsStream",
    "aupro",
    "aupro_filename",
    "auroc",
    "label_regions",
    "set_metrics",
]

DEFAULT_FPR_LIMITS: tuple[float, ...] = (0.3, 0.05)
DEFAULT_MAX_BUFFER_BYTES = 512 * 2**20
_ITEM_PIXELS = 1 << 18  # pixels per work item (parallel grain)
_WEIGHT_BYTES = 8

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
    """AUROC and AUPRO of one set of images.

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
    """

    auroc: float | None
    aupro: Mapping[float, float]
    num_images: int
    num_normal_pixels: int
    num_anomalous_pixels: int
    num_regions: int
    curves: SetCurves | None = field(default=None, repr=False)

    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write ``{"value": ...}`` files in the published layout and return their paths.

        ``auroc.json`` and one file per AUPRO limit named by :func:`aupro_filename`
        (``aupro.json`` for 0.3, ``aupro_05.json`` for 0.05); AUPRO files also carry
        ``"fpr_limit"``.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        if self.auroc is not None:
            written.append(save_value(folder / "auroc.json", self.auroc))
        for limit, value in self.aupro.items():
            written.append(
                save_value(folder / aupro_filename(limit), value, fpr_limit=float(limit))
            )
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
        (self.run_offsets, self.run_starts, self.run_lengths, self.run_weights,
         regions) = _kernels.image_runs(image_set.masks_flat, image_set.offsets,
                                         anomalous, dims, ranks)
        self.num_regions = int(regions.sum())
        self.num_images = num_images
        self.num_pixels = int(image_set.num_pixels.sum())
        self.num_anomalous = int(image_set.mask_counts.sum())
        self.num_chunks = num_chunks
        self._counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

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
                    f"(the first at flat pixel {int(first_bad[item])}). AUROC and AUPRO need "
                    "finite scores: fix the model output, or replace them (e.g. np.nan_to_num) "
                    "on purpose.",
                    image_index=self.first_index + local,
                    path=paths[local] if paths else None,
                )
            self._counts = (neg, pos, weight)
        return self._counts


class SetMetricsStream:
    """Exact AUROC and AUPRO from images fed one at a time (or in batches), in a few passes.

    Feed the same images (in any order) once per pass until :meth:`needs_another_pass` says
    no, then call :meth:`compute`::

        stream = SetMetricsStream(fpr_limits=(0.3, 0.05))
        while True:
            for anomaly_map, mask in read_images():
                stream.add(anomaly_map, mask)
            if not stream.needs_another_pass():
                break
        result = stream.compute()

    Pass 1 builds the class histograms (65,536 buckets of consecutive scores). Each further
    pass gathers the pixels of a *window* of buckets holding both classes (only there does the
    order inside a bucket matter) and resolves them exactly. Usually one window suffices: two
    passes in all.

    Parameters
    ----------
    fpr_limits : sequence of float
        AUPRO limits U in (0, 1]; ``()`` for none.
    auroc : bool
        Compute the AUROC too (it needs every bucket that holds both classes; without it only
        the buckets left of the largest limit are resolved).
    curves : bool
        Keep the ROC/PRO curve vertices (resolves every bucket; memory grows with the number
        of distinct anomalous scores, about 64 bytes each).
    connectivity : int, optional
        Region connectivity (see :func:`label_regions`); default 8 (2-D) / 26 (3-D).
    max_buffer_bytes : int
        Memory for the gathered pixels of one window (default 512 MiB): 2 bytes per normal
        pixel and 10 per anomalous pixel of the window for float32 maps, 8 and 16 for float64.
        A smaller budget means more passes, never a different result.
    dtype : numpy dtype, optional
        Score dtype (float32 or float64). By default that of the first batch; later float32
        batches are widened exactly when the stream is float64, and a float64 batch fed to a
        float32 stream is refused (construct the stream with ``dtype=np.float64``).

    Notes
    -----
    Memory does not grow with the number of images: the histograms take 65,536 x 24 bytes per
    thread, one window's buffer is bounded by ``max_buffer_bytes`` (a single bucket larger
    than the budget, i.e. a very narrow score range holding a large share of the pixels, is
    gathered alone and can exceed it), and each batch needs its region runs (a few bytes per
    run of mask pixels). Only ``curves=True`` keeps data that grows with the set.
    """

    def __init__(
        self,
        fpr_limits: Iterable[float] = DEFAULT_FPR_LIMITS,
        *,
        auroc: bool = True,
        curves: bool = False,
        connectivity: int | None = None,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        dtype: Any = None,
    ) -> None:
        self._limits = _validate_limits(fpr_limits)
        if not auroc and not self._limits and not curves:
            raise PimoValueError(
                "Nothing to compute: pass auroc=True, curves=True or at least one FPR limit."
            )
        if connectivity is not None and not any(
            connectivity in ranks for ranks in _CONNECTIVITY_RANKS.values()
        ):
            raise PimoValueError(
                f"connectivity={connectivity!r} is not valid: use 4 or 8 (2-D), 6, 18 or 26 "
                "(3-D), or None."
            )
        if int(max_buffer_bytes) <= 0:
            raise PimoValueError(f"max_buffer_bytes must be positive, got {max_buffer_bytes!r}.")
        self._want_auroc = bool(auroc)
        self._want_curves = bool(curves)
        self._connectivity = connectivity
        self._budget = int(max_buffer_bytes)
        self._dtype: np.dtype | None = None if dtype is None else np.dtype(dtype)
        if self._dtype is not None and self._dtype not in _kernels.KEY_LAYOUTS:
            raise PimoTypeError(f"dtype must be float32 or float64, got {self._dtype}.")
        self._num_chunks = max(1, min(int(nb.get_num_threads()), 64))
        self._pass = 0
        self._done = False
        # totals of pass 1
        self._neg_total = np.zeros(_kernels.NUM_BUCKETS, dtype=np.int64)
        self._pos_total = np.zeros(_kernels.NUM_BUCKETS, dtype=np.int64)
        self._weight_total = np.zeros(_kernels.NUM_BUCKETS, dtype=np.float64)
        self._num_images = 0
        self._num_pixels = 0
        self._num_regions = 0
        # what the current pass has seen
        self._pass_images = 0
        self._pass_pixels = 0
        # accumulated exact contributions
        self._auroc_sum = 0.0
        self._area_sums = np.zeros(len(self._limits), dtype=np.float64)
        self._vertices: list[tuple[np.ndarray, ...]] = []
        self._windows: list[np.ndarray] = []
        self._window: dict[str, Any] | None = None

    # -- state -------------------------------------------------------------------------------
    @property
    def pass_index(self) -> int:
        """Index of the pass being fed (0 = the histogram pass)."""
        return self._pass

    @property
    def planned_passes(self) -> int | None:
        """Total passes, known once the first pass is closed (None before)."""
        if self._pass == 0 and not self._done:
            return None
        return 1 + len(self._windows)

    @property
    def fpr_limits(self) -> tuple[float, ...]:
        """The AUPRO limits."""
        return self._limits

    # -- feeding -----------------------------------------------------------------------------
    def add(self, anomaly_map: Any, mask: Any, *, path: str | None = None) -> None:
        """Feed one image: its anomaly map and its mask (same shape, 2-D or 3-D)."""
        self.add_batch([anomaly_map], [mask], paths=None if path is None else [path])

    def add_batch(self, anomaly_maps: Any, masks: Any, *, paths: Sequence[str] | None = None
                  ) -> None:
        """Feed several images at once (an (N, H, W) array or sequences); uses all cores."""
        if self._done:
            raise PimoValueError(
                "This stream needs no more passes; call compute() (or start a new stream)."
            )
        image_set = as_image_set(anomaly_maps, masks, paths=paths)
        self._feed(self._prepare(image_set))

    def _prepare(self, image_set: ImageSet) -> _Batch:
        dtype = image_set.map_dtype
        if self._dtype is None:
            self._dtype = dtype
        elif dtype.itemsize > self._dtype.itemsize:
            raise PimoTypeError(
                f"These anomaly maps are {dtype} but the stream holds {self._dtype} scores; "
                "narrowing would change the scores. Construct the stream with "
                "dtype=np.float64 to mix float32 and float64 maps."
            )
        return _Batch(image_set, self._dtype, self._connectivity, self._pass_images,
                      self._num_chunks)

    def _feed(self, batch: _Batch) -> None:
        batch.first_index = self._pass_images
        neg, pos, weight = batch.counts(self._dtype)
        if self._pass == 0:
            self._neg_total += neg.sum(axis=0)
            self._pos_total += pos.sum(axis=0)
            self._weight_total += weight.sum(axis=0)
            self._num_regions += batch.num_regions
            self._num_images += batch.num_images
            self._num_pixels += batch.num_pixels
        else:
            self._scatter(batch, neg, pos)
        self._pass_images += batch.num_images
        self._pass_pixels += batch.num_pixels

    def _scatter(self, batch: _Batch, neg: np.ndarray, pos: np.ndarray) -> None:
        window = self._window
        assert window is not None
        in_window = window["in_window"]
        # chunk c of this batch writes bucket b from the fill point plus the earlier chunks
        neg_cursor = np.empty_like(neg)
        pos_cursor = np.empty_like(pos)
        neg_next = window["neg_fill"].copy()
        pos_next = window["pos_fill"].copy()
        for chunk in range(neg.shape[0]):
            neg_cursor[chunk] = neg_next
            pos_cursor[chunk] = pos_next
            neg_next += neg[chunk]
            pos_next += pos[chunk]
        if np.any((neg_next > window["neg_end"]) & in_window) or np.any(
            (pos_next > window["pos_end"]) & in_window
        ):
            self._raise_changed_images()
        shift, sign_bit, all_ones, _ = batch.key_constants(self._dtype)
        _kernels.scatter_window(
            batch.bits, batch.offsets, batch.item_image, batch.item_begin, batch.item_end,
            batch.run_offsets, batch.run_starts, batch.run_lengths, batch.run_weights, shift,
            sign_bit, all_ones, in_window, neg_cursor, pos_cursor, window["neg_low"],
            window["pos_low"], window["pos_weight"],
        )
        window["neg_fill"] = neg_next
        window["pos_fill"] = pos_next

    def _raise_changed_images(self) -> None:
        raise PimoValueError(
            f"The images fed in pass {self._pass + 1} differ from those of pass 1 "
            f"({self._num_images} images, {self._num_pixels} pixels). Feed exactly the same "
            "images, with the same maps and masks, in every pass."
        )

    # -- passes ------------------------------------------------------------------------------
    def needs_another_pass(self) -> bool:
        """Close the pass just fed; True if the images must be fed once more."""
        if self._done:
            return False
        if self._pass == 0:
            self._close_histogram_pass()
        else:
            self._close_window_pass()
        if self._pass < len(self._windows):
            self._open_window(self._windows[self._pass])
            self._pass += 1
            self._pass_images = 0
            self._pass_pixels = 0
            return True
        self._done = True
        return False

    def _close_histogram_pass(self) -> None:
        if self._num_images == 0:
            raise EmptyInputError("No image was fed to the stream before closing its pass.")
        num_neg = int(self._neg_total.sum())
        num_pos = int(self._pos_total.sum())
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
        self._num_neg = num_neg
        self._num_pos = num_pos
        buckets = np.flatnonzero(self._neg_total + self._pos_total)[::-1].astype(np.int64)
        neg = self._neg_total[buckets]
        pos = self._pos_total[buckets]
        weight = self._weight_total[buckets]
        neg_above = np.cumsum(neg) - neg
        pos_above = np.cumsum(pos) - pos
        weight_above = np.cumsum(weight) - weight
        self._ordered = (buckets, neg, pos, weight, neg_above, pos_above, weight_above)
        if self._want_curves:
            needed = np.ones(buckets.shape[0], dtype=bool)
        else:
            needed = (neg > 0) & (pos > 0)
            if not self._want_auroc:
                largest = max(self._limits) if self._limits else 0.0
                needed &= neg_above / num_neg < largest
        unresolved = np.flatnonzero(~needed)
        if unresolved.size:
            self._resolve(unresolved, resolved=False, window=None)
        self._windows = self._plan_windows(np.flatnonzero(needed), neg, pos)

    def _plan_windows(self, positions: np.ndarray, neg: np.ndarray, pos: np.ndarray
                      ) -> list[np.ndarray]:
        low_bytes = 2 if self._dtype == np.dtype(np.float32) else 8
        sizes = neg[positions] * low_bytes + pos[positions] * (low_bytes + _WEIGHT_BYTES)
        windows: list[np.ndarray] = []
        start = 0
        used = 0
        for offset, size in enumerate(sizes.tolist()):
            if offset > start and used + size > self._budget:
                windows.append(positions[start:offset])
                start = offset
                used = 0
            used += size
        if start < positions.shape[0]:
            windows.append(positions[start:])
        return windows

    def _open_window(self, positions: np.ndarray) -> None:
        buckets, neg, pos = self._ordered[0], self._ordered[1], self._ordered[2]
        low_dtype = np.uint16 if self._dtype == np.dtype(np.float32) else np.uint64
        window_buckets = buckets[positions]
        neg_sizes = neg[positions]
        pos_sizes = pos[positions]
        neg_start = np.concatenate(([0], np.cumsum(neg_sizes))).astype(np.int64)
        pos_start = np.concatenate(([0], np.cumsum(pos_sizes))).astype(np.int64)
        in_window = np.zeros(_kernels.NUM_BUCKETS, dtype=np.bool_)
        in_window[window_buckets] = True
        neg_fill = np.zeros(_kernels.NUM_BUCKETS, dtype=np.int64)
        pos_fill = np.zeros(_kernels.NUM_BUCKETS, dtype=np.int64)
        neg_end = np.zeros(_kernels.NUM_BUCKETS, dtype=np.int64)
        pos_end = np.zeros(_kernels.NUM_BUCKETS, dtype=np.int64)
        neg_fill[window_buckets] = neg_start[:-1]
        pos_fill[window_buckets] = pos_start[:-1]
        neg_end[window_buckets] = neg_start[1:]
        pos_end[window_buckets] = pos_start[1:]
        self._window = {
            "positions": positions,
            "in_window": in_window,
            "neg_start": neg_start,
            "pos_start": pos_start,
            "neg_fill": neg_fill,
            "pos_fill": pos_fill,
            "neg_end": neg_end,
            "pos_end": pos_end,
            "neg_low": np.empty(int(neg_start[-1]), dtype=low_dtype),
            "pos_low": np.empty(int(pos_start[-1]), dtype=low_dtype),
            "pos_weight": np.empty(int(pos_start[-1]), dtype=np.float64),
        }

    def _close_window_pass(self) -> None:
        window = self._window
        assert window is not None
        in_window = window["in_window"]
        if (
            self._pass_images != self._num_images
            or self._pass_pixels != self._num_pixels
            or np.any((window["neg_fill"] != window["neg_end"]) & in_window)
            or np.any((window["pos_fill"] != window["pos_end"]) & in_window)
        ):
            self._raise_changed_images()
        self._resolve(window["positions"], resolved=True, window=window)
        self._window = None

    def _resolve(self, positions: np.ndarray, *, resolved: bool, window: dict[str, Any] | None
                 ) -> None:
        buckets, neg, pos, weight, neg_above, pos_above, weight_above = self._ordered
        count = positions.shape[0]
        emit = self._want_curves and resolved
        if window is None:
            empty_low = np.empty(0, dtype=np.uint16 if self._dtype == np.float32 else np.uint64)
            neg_start = pos_start = np.zeros(count + 1, dtype=np.int64)
            neg_low = pos_low = empty_low
            pos_weight = np.empty(0, dtype=np.float64)
        else:
            neg_start, pos_start = window["neg_start"], window["pos_start"]
            neg_low, pos_low = window["neg_low"], window["pos_low"]
            pos_weight = window["pos_weight"]
        if emit:
            vertex_start = np.concatenate(([0], np.cumsum(2 * pos[positions] + 1)))
        else:
            vertex_start = np.zeros(count + 1, dtype=np.int64)
        total_vertices = int(vertex_start[-1]) if emit else 0
        v_key = np.empty(total_vertices, dtype=np.uint64)
        v_neg = np.empty(total_vertices, dtype=np.int64)
        v_pos = np.empty(total_vertices, dtype=np.int64)
        v_weight = np.empty(total_vertices, dtype=np.float64)
        _, key_bits, _, _, _ = _kernels.KEY_LAYOUTS[self._dtype]
        limits = np.array(self._limits, dtype=np.float64)
        auroc_parts, areas, num_vertices = _kernels.resolve_buckets(
            buckets[positions], np.full(count, resolved), neg[positions], pos[positions],
            weight[positions], neg_above[positions], pos_above[positions],
            weight_above[positions], neg_start, neg_low, pos_start, pos_low, pos_weight,
            np.int64(key_bits - _kernels.BUCKET_BITS), float(self._num_neg),
            float(max(self._num_regions, 1)), limits, emit, vertex_start.astype(np.int64),
            v_key, v_neg, v_pos, v_weight, 4 * self._num_chunks,
        )
        self._auroc_sum += float(auroc_parts.sum())
        self._area_sums += areas[:, : len(self._limits)].sum(axis=0)
        if emit:
            keep = np.zeros(total_vertices, dtype=bool)
            for slot in np.flatnonzero(num_vertices):
                begin = int(vertex_start[slot])
                keep[begin:begin + int(num_vertices[slot])] = True
            self._vertices.append((v_key[keep], v_neg[keep], v_pos[keep], v_weight[keep]))

    # -- result ------------------------------------------------------------------------------
    def compute(self) -> SetMetricsResult:
        """The metrics, once :meth:`needs_another_pass` has returned False."""
        if not self._done:
            raise PimoValueError(
                "The stream still needs passes: after feeding all images, call "
                "needs_another_pass() and feed them again while it returns True."
            )
        auroc_value = None
        if self._want_auroc:
            auroc_value = min(max(self._auroc_sum / (self._num_neg * self._num_pos), 0.0), 1.0)
        aupro_values = {
            limit: min(max(float(area) / limit, 0.0), 1.0)
            for limit, area in zip(self._limits, self._area_sums, strict=True)
        }
        return SetMetricsResult(
            auroc=auroc_value,
            aupro=aupro_values,
            num_images=self._num_images,
            num_normal_pixels=self._num_neg,
            num_anomalous_pixels=self._num_pos,
            num_regions=self._num_regions,
            curves=self._build_curves() if self._want_curves else None,
        )

    def _build_curves(self) -> SetCurves:
        keys = np.concatenate([v[0] for v in self._vertices])
        order = np.argsort(keys)[::-1]
        keys = keys[order]
        neg = np.concatenate([v[1] for v in self._vertices])[order]
        pos = np.concatenate([v[2] for v in self._vertices])[order]
        weight = np.concatenate([v[3] for v in self._vertices])[order]
        thresholds = np.concatenate(([np.inf], _floats_from_keys(keys, self._dtype)))
        fpr = np.concatenate(([0.0], neg / self._num_neg))
        tpr = np.concatenate(([0.0], pos / self._num_pos))
        pro = np.concatenate(([0.0], np.minimum(weight / max(self._num_regions, 1), 1.0)))
        # drop the vertices in the middle of a straight horizontal or vertical run
        middle = np.ones(fpr.shape[0], dtype=bool)
        middle[[0, -1]] = False
        horizontal = (tpr[:-2] == tpr[1:-1]) & (tpr[1:-1] == tpr[2:])
        vertical = (fpr[:-2] == fpr[1:-1]) & (fpr[1:-1] == fpr[2:])
        middle[1:-1] &= horizontal | vertical
        keep = ~middle
        return SetCurves(thresholds=thresholds[keep], fpr=fpr[keep], tpr=tpr[keep],
                         pro=pro[keep])


# --------------------------------------------------------------------------------------------
# Array functions
# --------------------------------------------------------------------------------------------
def set_metrics(
    anomaly_maps: Any,
    masks: Any,
    *,
    fpr_limits: Iterable[float] = DEFAULT_FPR_LIMITS,
    auroc: bool = True,
    curves: bool = False,
    connectivity: int | None = None,
    paths: Sequence[str] | None = None,
    max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
) -> SetMetricsResult:
    """AUROC and AUPRO at every limit in ``fpr_limits``, from the same two passes.

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
    curves : bool
        Also return the ROC and PRO curves (:class:`SetCurves`).
    connectivity : int, optional
        Region connectivity; default 8 in 2-D, 26 in 3-D (see :func:`label_regions`).
    paths : sequence of str, optional
        Image paths for error messages.
    max_buffer_bytes : int
        Memory for the pixels gathered in the second pass (see :class:`SetMetricsStream`).

    Returns
    -------
    SetMetricsResult

    Raises
    ------
    NonFiniteScoreError
        A map holds NaN or an infinity (the image is named).
    NoAnomalousImageError, NoNormalImageError
        No pixel with mask 1 (no curve to measure), or no pixel with mask 0 (no FPR).
    """
    image_set = as_image_set(anomaly_maps, masks, paths=paths)
    stream = SetMetricsStream(fpr_limits, auroc=auroc, curves=curves, connectivity=connectivity,
                              max_buffer_bytes=max_buffer_bytes)
    batch = stream._prepare(image_set)
    while True:
        stream._feed(batch)
        if not stream.needs_another_pass():
            break
    return stream.compute()


def auroc(anomaly_maps: Any, masks: Any, *, paths: Sequence[str] | None = None) -> float:
    """Exact pixel AUROC over all pixels of all images (ties as ``sklearn.metrics.roc_auc_score``).

    ``AUROC = (1 / (N0 * N1)) * sum over normal pixels n of (#anomalous pixels scoring above n
    + 0.5 * #anomalous pixels scoring equal to n)``, the area under the exact ROC curve with
    diagonal segments for ties. See :func:`set_metrics` for the parameters and errors.
    """
    result = set_metrics(anomaly_maps, masks, fpr_limits=(), auroc=True, paths=paths)
    assert result.auroc is not None
    return result.auroc


def aupro(
    anomaly_maps: Any,
    masks: Any,
    *,
    fpr_limit: float = 0.3,
    connectivity: int | None = None,
    paths: Sequence[str] | None = None,
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
    result = set_metrics(anomaly_maps, masks, fpr_limits=(limit,), auroc=False,
                         connectivity=connectivity, paths=paths)
    return result.aupro[limit]
