r"""Order-free, mergeable, exact AUPIMO: :class:`AupimoAccumulator`.

Images arrive in batches, normal and anomalous mixed in any order, on any number of workers;
each image is reduced at once to a small record, and :meth:`AupimoAccumulator.compute` gives
exactly :func:`pimo.aupimo` of all the images seen.

What an image keeps (DESIGN §2). If :math:`F_{sh}(t) \le U` then every normal image j has
:math:`F_j(t) \le n_0 U`, so only its top :math:`\lceil n_0 U M_j \rceil` scores can matter.
The final number of normal images :math:`n_0` is unknown while images arrive (and adding
low-scoring normal images lowers the ``U`` crossing), so a normal image keeps its top

.. math::

    k_j = \lceil k \, U \, M_j \rceil + 2, \qquad
    k = \max(\text{expected\_num\_normal}, \text{normal images seen so far}, 64)

scores, ties completed (every score ``>=`` the :math:`k_j`-th highest). At :meth:`compute`
the retained tails are *verified*: the shared FPR is exact down to the highest per-image cut
:math:`C`, and it must reach ``U`` there, :math:`F_{sh}(C) \ge U`; otherwise
:class:`~pimo.IncompleteSummaryError` says so with the numbers (pass
``expected_num_normal``). With ``expected_num_normal >= n_0`` it always holds. An anomalous
image keeps its mask scores (its TPR curve) and, for AUIMO, its top
:math:`\lceil 16 k U M_i \rceil + 2` non-mask scores (ties completed), verified in the same
way against the lowest threshold of the integration range.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pimo import _kernels
from pimo._kernels import _summary
from pimo._validate import (
    ImageSet,
    IncompleteSummaryError,
    PimoError,
    PimoTypeError,
    PimoValueError,
    UnreachableFprError,
    as_image_set,
    describe_image,
    require_both_classes,
    validate_fpr_bounds,
)
from pimo.pimo import (
    DEFAULT_FPR_BOUNDS,
    IntegrationRange,
    SharedFprCurve,
    _exact_areas,
    _raise_if_nonfinite,
    normalised_scores,
    raise_if_constant_normal_maps,
)
from pimo.results import AuimoResult, AupimoResult

__all__ = ["AupimoAccumulator"]

# the smallest number of normal images a normal tail is sized for
MIN_NORMAL_FACTOR = 64
# anomalous images keep this many times a normal image's tail of non-mask scores for AUIMO
AUIMO_TAIL_FACTOR = 16
# the tail's cut is estimated on a sample: the first SAMPLE_RUN pixels (one cache line of
# float32) of every SAMPLE_SPAN, a prime so that the runs drift across the columns of any width
SAMPLE_SPAN = 1031
SAMPLE_RUN = 16
# room for this many times the budget (plus the slack) of candidates above the estimate
CAPACITY_FACTOR = 4
CAPACITY_SLACK = 1024

_STATE_DTYPES = {
    "num_pixels": np.dtype(np.int64),
    "num_positive": np.dtype(np.int64),
    "num_kept": np.dtype(np.int64),
    "values": np.dtype(np.float32),
}


@dataclass(frozen=True)
class _Records:
    """Per-image records, image after image.

    ``values[starts[i] : starts[i] + num_kept[i]]`` holds image i's mask scores (the first
    ``num_positive[i]``) and then its retained non-mask scores.
    """

    num_pixels: np.ndarray
    num_positive: np.ndarray
    num_kept: np.ndarray
    values: np.ndarray

    @classmethod
    def concatenate(cls, parts: Sequence[_Records]) -> _Records:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls(*(np.empty(0, dtype=dtype) for dtype in _STATE_DTYPES.values()))
        return cls(
            num_pixels=np.concatenate([part.num_pixels for part in parts]),
            num_positive=np.concatenate([part.num_positive for part in parts]),
            num_kept=np.concatenate([part.num_kept for part in parts]),
            values=np.concatenate([part.values for part in parts]),
        )

    @property
    def num_images(self) -> int:
        return int(self.num_pixels.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.num_pixels.nbytes + self.num_positive.nbytes + self.num_kept.nbytes
                   + self.values.nbytes)

    @property
    def starts(self) -> np.ndarray:
        starts = np.zeros(self.num_images, dtype=np.int64)
        np.cumsum(self.num_kept[:-1], out=starts[1:])
        return starts


# --------------------------------------------------------------------------------------
# summaries of a batch
# --------------------------------------------------------------------------------------
def _is_torch(array: Any) -> bool:
    return hasattr(array, "detach") and hasattr(array, "cpu")


def _squeeze_channel(images: Any) -> Any:
    """(B, 1, H, W) -> (B, H, W); anything else unchanged."""
    shape = getattr(images, "shape", None)
    if shape is not None and len(shape) == 4 and shape[1] == 1:
        return images[:, 0]
    return images


def _tail_budgets(num_pixels: np.ndarray, num_positive: np.ndarray, normal_factor: int,
                  upper: float, with_auimo: bool) -> np.ndarray:
    r"""How many top non-mask scores each image keeps.

    Normal image: :math:`\lceil k U M \rceil + 2`; anomalous image: 0, or
    :math:`\lceil 16 k U M \rceil + 2` with AUIMO.
    """
    normal_budget = np.ceil(normal_factor * upper * num_pixels.astype(np.float64)) + 2
    anomalous_budget = (np.ceil(AUIMO_TAIL_FACTOR * normal_factor * upper
                                * num_pixels.astype(np.float64)) + 2 if with_auimo else 0.0)
    budgets = np.where(num_positive == 0, normal_budget, anomalous_budget)
    return np.minimum(budgets, num_pixels).astype(np.int64)


def _exact_tails(flat_maps: np.ndarray, flat_masks: np.ndarray, offsets: np.ndarray,
                 images: np.ndarray, num_positive: np.ndarray, budgets: np.ndarray
                 ) -> list[np.ndarray]:
    """The records' values of ``images`` by the two exact radix passes (no estimate)."""
    sub_maps = np.concatenate([flat_maps[offsets[i]:offsets[i + 1]] for i in images])
    sub_masks = np.concatenate([flat_masks[offsets[i]:offsets[i + 1]] for i in images])
    sub_offsets = np.zeros(images.shape[0] + 1, dtype=np.int64)
    np.cumsum(offsets[images + 1] - offsets[images], out=sub_offsets[1:])
    sub_positive, sub_budgets = num_positive[images], budgets[images]
    view_dtype, key_bits, sign_bit, exponent_mask, all_ones = _kernels.KEY_LAYOUTS[
        sub_maps.dtype]
    bits = sub_maps.view(view_dtype)
    shift = np.uint64(key_bits - 16)
    cut_bins, num_candidates, _ = _summary.tail_cut_bins(
        bits, sub_masks, sub_offsets, sub_budgets, shift, sign_bit, all_ones, exponent_mask)
    out_offsets = np.zeros(images.shape[0] + 1, dtype=np.int64)
    np.cumsum(sub_positive + num_candidates, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=sub_maps.dtype)
    kept = _summary.collect_summaries(
        sub_maps, bits, sub_masks, sub_offsets, sub_positive, cut_bins, sub_budgets,
        out_offsets, out, shift, sign_bit, all_ones)
    return [out[start:start + count]
            for start, count in zip(out_offsets[:-1], kept, strict=True)]


def _numpy_records(image_set: ImageSet, normal_factor: int, upper: float,
                   with_auimo: bool) -> _Records:
    """The records of a validated batch, with the numba kernels (O(pixels) per image).

    One pass per image from a sampled estimate of the tail's cut (room for
    ``CAPACITY_FACTOR * budget + CAPACITY_SLACK`` candidates); the rare images whose estimate
    missed take the two exact radix passes.
    """
    flat_maps, flat_masks, offsets = image_set.maps_flat, image_set.masks_flat, image_set.offsets
    num_positive = image_set.mask_counts.astype(np.int64)
    num_pixels = image_set.num_pixels.astype(np.int64)
    budgets = _tail_budgets(num_pixels, num_positive, normal_factor, upper, with_auimo)
    capacity = np.where(budgets > 0, np.minimum(num_pixels - num_positive,
                                                CAPACITY_FACTOR * budgets + CAPACITY_SLACK), 0)
    out_offsets = np.zeros(image_set.num_images + 1, dtype=np.int64)
    np.cumsum(num_positive + capacity, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=flat_maps.dtype)
    kept, first_bad = _summary.sampled_summaries(
        flat_maps, flat_masks, offsets, num_positive, budgets, out_offsets, out, SAMPLE_SPAN,
        SAMPLE_RUN)
    _raise_if_nonfinite(first_bad, np.arange(image_set.num_images), image_set)
    missed = np.flatnonzero(kept < 0)
    if missed.size == 0 and np.array_equal(kept, out_offsets[1:] - out_offsets[:-1]):
        values = out
    else:
        pieces = [out[start:start + count] for start, count in
                  zip(out_offsets[:-1], kept, strict=True)]
        if missed.size:
            for image, piece in zip(missed, _exact_tails(flat_maps, flat_masks, offsets, missed,
                                                         num_positive, budgets), strict=True):
                pieces[image] = piece
                kept[image] = piece.shape[0]
        values = np.concatenate(pieces)
    return _Records(num_pixels=num_pixels, num_positive=num_positive, num_kept=kept,
                    values=values)


def _torch_records(anomaly_maps: Any, masks: Any, normal_factor: int, upper: float,
                   with_auimo: bool) -> _Records | None:
    """The records of a torch batch, computed on its device; only the records move to the CPU.

    Per image: the mask scores by boolean indexing, the top ``budget`` non-mask scores by
    ``torch.topk`` with ties completed by a ``>=`` selection. Returns None when the batch needs
    the checks (and error messages) of the NumPy path: shapes that differ, a non-binary mask,
    a NaN/inf score, an unusual dtype.
    """
    import torch

    maps = anomaly_maps.detach()
    masks = masks.detach()
    if maps.ndim < 3 or maps.shape != masks.shape or maps.numel() == 0:
        return None
    if maps.dtype in (torch.float16, torch.bfloat16):
        maps = maps.to(torch.float32)  # exact widening
    elif maps.dtype in (torch.int8, torch.int16, torch.int32, torch.uint8, torch.bool):
        maps = maps.to(torch.float64)
    elif maps.dtype not in (torch.float32, torch.float64):
        return None
    if masks.dtype != torch.bool:
        if masks.is_complex() or bool(((masks != 0) & (masks != 1)).any()):
            return None
        masks = masks != 0
    if not bool(torch.isfinite(maps).all()):
        return None
    num_images = maps.shape[0]
    flat_maps = maps.reshape(num_images, -1)
    flat_masks = masks.reshape(num_images, -1).to(maps.device)
    num_pixels = np.full(num_images, flat_maps.shape[1], dtype=np.int64)
    num_positive = flat_masks.sum(dim=1).cpu().numpy().astype(np.int64)
    budgets = _tail_budgets(num_pixels, num_positive, normal_factor, upper, with_auimo)
    pieces = []
    for image in range(num_images):
        scores = flat_maps[image]
        if num_positive[image] == 0:
            positive_scores, negative_scores = scores[:0], scores
        else:
            positive_scores = scores[flat_masks[image]]
            negative_scores = scores[~flat_masks[image]]
        budget = int(budgets[image])
        if budget == 0:
            tail = negative_scores[:0]
        elif budget >= negative_scores.numel():
            tail = negative_scores
        else:
            cut = torch.topk(negative_scores, budget, sorted=False).values.min()
            tail = negative_scores[negative_scores >= cut]
        pieces.append(positive_scores)
        pieces.append(tail)
    counts = torch.tensor([piece.numel() for piece in pieces]).reshape(num_images, 2).sum(1)
    values = torch.cat(pieces).cpu().numpy()
    return _Records(num_pixels=num_pixels, num_positive=num_positive,
                    num_kept=counts.numpy().astype(np.int64), values=values)


def _renamed(error: PimoError, image_indices: np.ndarray, batch_number: int,
             paths: Sequence[str] | None) -> PimoError:
    """The same error, naming the image by its global index (and its batch position)."""
    message = str(error)
    local = error.image_index
    if local is not None and 0 <= local < image_indices.shape[0]:
        index = int(image_indices[local])
        path = paths[local] if paths is not None else None
        name = f"image {index} ({path!r}; " if path else f"image {index} ("
        name += f"position {local} of batch {batch_number})"
        pattern = re.escape(describe_image(local, paths)) + r"(?!\d)"
        message, found = re.subn(pattern, lambda _: name, message, count=1)
        if not found:
            message = f"{name[0].upper()}{name[1:]}: {message}"
        renamed = type(error)(message, image_index=index, path=error.path)
    else:
        renamed = type(error)(f"In batch {batch_number}: {message}", path=error.path)
    return renamed


def batch_records(anomaly_maps: Any, masks: Any, *, paths: Sequence[str] | None,
                  image_indices: np.ndarray, batch_number: int, normal_factor: int,
                  upper: float, with_auimo: bool, ignore_masks: Any = None) -> _Records:
    """Validate a batch and reduce each image to its record (NumPy/numba, or torch on device).

    Errors name each image by ``image_indices[position]`` (its global index) and its batch.
    With ``ignore_masks`` the records are those of the kept pixels (summarised on the host).
    """
    anomaly_maps = _squeeze_channel(anomaly_maps)
    masks = _squeeze_channel(masks)
    if ignore_masks is None and _is_torch(anomaly_maps) and _is_torch(masks) and (
        paths is None or len(paths) == len(anomaly_maps)
    ):
        records = _torch_records(anomaly_maps, masks, normal_factor, upper, with_auimo)
        if records is not None:
            return records
    if ignore_masks is not None:
        ignore_masks = _squeeze_channel(ignore_masks)
    try:
        image_set = as_image_set(anomaly_maps, masks, paths=paths, ignore_masks=ignore_masks)
        return _numpy_records(image_set, normal_factor, upper, with_auimo)
    except PimoError as error:
        raise _renamed(error, image_indices, batch_number, image_set_paths(paths)) from None


def image_set_paths(paths: Sequence[str] | None) -> list[str] | None:
    """Paths as :func:`pimo._validate.as_image_set` keeps them (strings)."""
    return None if paths is None else [str(path) for path in paths]


# --------------------------------------------------------------------------------------
# from records to results
# --------------------------------------------------------------------------------------
def _normal_curve(records: _Records, upper: float) -> tuple[SharedFprCurve, np.ndarray]:
    """The shared-FPR curve from the normal images' tails, verified to reach ``U``.

    Returns the curve and each normal image's (min, max) retained score.
    """
    normal = np.flatnonzero(records.num_positive == 0)
    # every image keeps at least one value, so the segments start at records.starts
    minima = np.minimum.reduceat(records.values, records.starts)[normal]
    maxima = np.maximum.reduceat(records.values, records.starts)[normal]
    incomplete = records.num_kept[normal] < records.num_pixels[normal]
    image_of_value = np.repeat(np.arange(records.num_images), records.num_kept)
    is_normal_value = np.repeat(records.num_positive == 0, records.num_kept)
    if incomplete.any():
        highest_cut = float(minima[incomplete].max())
        selected = is_normal_value & (records.values >= highest_cut)
    else:
        highest_cut = -math.inf
        selected = is_normal_value
    tail_counts = np.bincount(image_of_value[selected], minlength=records.num_images)[normal]
    curve = SharedFprCurve.from_tails(records.values[selected], tail_counts,
                                      records.num_pixels[normal],
                                      complete=not incomplete.any())
    if incomplete.any() and curve.shared_fpr[-1] < upper:
        cut_image = int(normal[incomplete][np.argmax(minima[incomplete])])
        raise IncompleteSummaryError(
            f"The retained top scores of the {normal.size} normal images only cover the "
            f"shared FPR down to score {highest_cut:g} (the lowest score kept for image "
            f"{cut_image}), where it is {curve.shared_fpr[-1]:.4g} < U={upper:g}: the "
            "integration range cannot be computed exactly. Each normal image keeps its top "
            "ceil(k*U*M)+2 scores with k = max(expected_num_normal, normal images seen so far, "
            f"{MIN_NORMAL_FACTOR}), and images that arrived early were sized for fewer normal "
            f"images than the final {normal.size}. Fix: create the accumulator with "
            f"expected_num_normal={normal.size} (or more)."
        )
    return curve, np.stack([minima, maxima])


def _integration(records: _Records, fpr_bounds: tuple[float, float]) -> IntegrationRange:
    """The integration range of the normal images' records (with the one-shot errors)."""
    curve, extremes = _normal_curve(records, fpr_bounds[1])
    try:
        return curve.integration_range(fpr_bounds)
    except UnreachableFprError:
        normal = records.num_positive == 0
        if np.all(records.num_kept[normal] == records.num_pixels[normal]):
            raise_if_constant_normal_maps(extremes[0], extremes[1])
        raise


def _anomalous_areas(records: _Records, positions: np.ndarray, integration: IntegrationRange,
                     *, with_iou: bool, image_indices: np.ndarray) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """Un-normalised TPR (and IoU) areas of the anomalous records ``positions``."""
    starts = records.starts
    bottom = float(integration.breakpoints[-1])
    scores, masks = [], []
    for position in positions.tolist():
        start, positives = int(starts[position]), int(records.num_positive[position])
        kept = int(records.num_kept[position]) if with_iou else positives
        values = records.values[start:start + kept]
        if with_iou and kept < records.num_pixels[position] and kept > positives:
            lowest = float(values[positives:].min())
            if lowest > bottom:
                raise IncompleteSummaryError(
                    f"AUIMO: image {int(image_indices[position])} kept its "
                    f"{kept - positives} highest non-mask scores (down to {lowest:g}), but "
                    f"the integration range goes down to score {bottom:g}: its IoU curve "
                    "cannot be computed exactly. Fix: create the accumulator with a larger "
                    "expected_num_normal (anomalous images keep "
                    f"ceil({AUIMO_TAIL_FACTOR}*k*U*M)+2 non-mask scores, k >= "
                    "expected_num_normal), or compute AUIMO in memory with pimo.auimo."
                )
        mask = np.zeros(kept, dtype=bool)
        mask[:positives] = True
        scores.append(values)
        masks.append(mask)
    image_set = as_image_set(scores, masks)
    return _exact_areas(image_set, integration, with_iou=with_iou)


# --------------------------------------------------------------------------------------
# the accumulator
# --------------------------------------------------------------------------------------
class AupimoAccumulator:
    r"""Exact AUPIMO (and AUIMO) of images fed in batches, in any order, mergeable.

    Equal to :func:`pimo.aupimo` / :func:`pimo.auimo` of all the images, whatever the order,
    the batching and the merges. Images are numbered in arrival order (merged accumulators'
    images after self's, in merge order).

    Parameters
    ----------
    fpr_bounds : (float, float), default (1e-5, 1e-4)
        ``(L, U)``.
    with_auimo : bool, default False
        Also keep what AUIMO needs (each anomalous image's top non-mask scores).
    expected_num_normal : int, optional
        The number of normal images to expect. Each normal image keeps its top
        :math:`\lceil k U M \rceil + 2` scores, :math:`k = \max(` expected_num_normal, normal
        images seen so far, 64 :math:`)`; :meth:`compute` verifies that the kept scores cover
        the integration range and raises :class:`~pimo.IncompleteSummaryError` otherwise.
        Passing the true count (or more) guarantees it.

    Notes
    -----
    State (all per-image records, merged by concatenation; ``STATE_REDUCTIONS``):

    ``num_pixels``, ``num_positive``, ``num_kept`` (int64, one each per image) and ``values``
    (the maps' dtype: float32 for float32/float16 maps, float64 once any float64 or integer map
    arrived): per image, its mask scores then its kept non-mask scores. Cost per image:
    24 bytes, plus, for a normal image, about :math:`k U M` scores (64 * 1e-4 = 0.64 % of its
    pixels with the defaults and up to 64 normal images), and for an anomalous image its mask
    pixels (plus 16 times a normal image's tail with AUIMO).

    Examples
    --------
    >>> import numpy as np, pimo
    >>> maps, masks = pimo.make_example(4, 4, (256, 256))
    >>> accumulator = pimo.AupimoAccumulator()
    >>> for batch in np.array_split(np.random.default_rng(0).permutation(8), 3):
    ...     accumulator.update(maps[batch], masks[batch])
    >>> accumulator.num_images
    8
    >>> bool(abs(accumulator.compute().mean() - pimo.aupimo(maps, masks).mean()) < 1e-12)
    True
    """

    STATE_REDUCTIONS: ClassVar[dict[str, str]] = {key: "cat" for key in _STATE_DTYPES}

    def __init__(self, fpr_bounds: tuple[float, float] = DEFAULT_FPR_BOUNDS, *,
                 with_auimo: bool = False, expected_num_normal: int | None = None) -> None:
        self.fpr_bounds = validate_fpr_bounds(fpr_bounds)
        if not isinstance(with_auimo, bool | np.bool_):
            raise PimoTypeError(f"with_auimo must be True or False, got {with_auimo!r}.")
        self.with_auimo = bool(with_auimo)
        if expected_num_normal is not None and (
            isinstance(expected_num_normal, bool)
            or not isinstance(expected_num_normal, int | np.integer)
            or expected_num_normal < 0
        ):
            raise PimoValueError(
                f"expected_num_normal must be None or an int >= 0, got {expected_num_normal!r}."
            )
        self.expected_num_normal = (None if expected_num_normal is None
                                    else int(expected_num_normal))
        self._parts: list[_Records] = []
        self._paths: list[str | None] = []
        self._num_normal = 0
        self._num_batches = 0

    # -- feeding ---------------------------------------------------------------------------
    @property
    def num_images(self) -> int:
        """Number of images seen (merged ones included)."""
        return sum(part.num_images for part in self._parts)

    @property
    def state_bytes(self) -> int:
        """Bytes held by the state arrays."""
        return sum(part.nbytes for part in self._parts)

    @property
    def normal_factor(self) -> int:
        """``k``: the number of normal images the next normal tails are sized for."""
        return max(self.expected_num_normal or 0, self._num_normal, MIN_NORMAL_FACTOR)

    def update(self, anomaly_maps: Any, masks: Any, *,
               paths: Sequence[str] | None = None, ignore_masks: Any = None) -> None:
        """Add a batch of images.

        Parameters
        ----------
        anomaly_maps : array or tensor (B, H, W), (B, 1, H, W), (B, D, H, W), or a list
            Score maps (numpy or torch on any device; torch batches are summarised on their
            device). A list may hold images of different sizes.
        masks : array or tensor of the same shapes (or (B, H, W) for (B, 1, H, W) maps)
            Binary masks; an all-zero mask marks a normal image.
        paths : sequence of str, optional
            One path per image, kept for the result and messages.
        ignore_masks : same layout as the masks, optional
            Pixels to leave out (1 = ignored), as in :func:`pimo.aupimo`.

        Raises
        ------
        PimoError
            As :func:`pimo.aupimo` for bad input, naming the image by its global index and
            its position in the batch.
        """
        self._add(anomaly_maps, masks, paths=paths, image_indices=None,
                  ignore_masks=ignore_masks)

    def _add(self, anomaly_maps: Any, masks: Any, *, paths: Sequence[str] | None,
             image_indices: np.ndarray | None, ignore_masks: Any = None) -> _Records:
        first = self.num_images
        if image_indices is None:
            count = len(anomaly_maps) if hasattr(anomaly_maps, "__len__") else 0
            image_indices = np.arange(first, first + max(count, 1))
        records = batch_records(
            anomaly_maps, masks, paths=paths, image_indices=image_indices,
            batch_number=self._num_batches, normal_factor=self.normal_factor,
            upper=self.fpr_bounds[1], with_auimo=self.with_auimo, ignore_masks=ignore_masks,
        )
        self._append(records, image_set_paths(paths))
        self._num_batches += 1
        return records

    def _append(self, records: _Records, paths: Sequence[str | None] | None) -> None:
        self._parts.append(records)
        self._paths.extend(paths if paths is not None else [None] * records.num_images)
        self._num_normal += int(np.count_nonzero(records.num_positive == 0))

    def _records(self) -> _Records:
        records = _Records.concatenate(self._parts)
        self._parts = [records] if records.num_images else []
        return records

    # -- merging and state -----------------------------------------------------------------
    def merge(self, other: AupimoAccumulator) -> AupimoAccumulator:
        """Append ``other``'s images after self's; returns self (associative).

        Raises
        ------
        PimoValueError
            When ``other`` has different ``fpr_bounds`` or ``with_auimo``.
        """
        if not isinstance(other, AupimoAccumulator):
            raise PimoTypeError(
                f"Can only merge an AupimoAccumulator, got {type(other).__name__}."
            )
        for name in ("fpr_bounds", "with_auimo"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                raise PimoValueError(
                    f"Cannot merge accumulators with different {name}: {mine!r} (this one) "
                    f"and {theirs!r} (the other). Create both with the same settings."
                )
        parts, paths = list(other._parts), list(other._paths)
        for part in parts:
            self._parts.append(part)
        self._paths.extend(paths)
        self._num_normal += other._num_normal
        self._num_batches += other._num_batches
        if other.expected_num_normal is not None:
            self.expected_num_normal = max(self.expected_num_normal or 0,
                                           other.expected_num_normal)
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """The state arrays (see the class notes); all are concatenated when merging."""
        records = self._records()
        return {
            "num_pixels": records.num_pixels.copy(),
            "num_positive": records.num_positive.copy(),
            "num_kept": records.num_kept.copy(),
            "values": records.values.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], **settings: Any) -> AupimoAccumulator:
        """An accumulator holding ``state`` (e.g. concatenated state dicts), with ``settings``.

        ``settings`` are the constructor's arguments (``fpr_bounds``, ``with_auimo``,
        ``expected_num_normal``). Image paths are not part of the state.
        """
        accumulator = cls(**settings)
        missing = set(_STATE_DTYPES) - set(state)
        if missing:
            raise PimoValueError(
                f"The state lacks {sorted(missing)}; expected the keys {sorted(_STATE_DTYPES)} "
                "of AupimoAccumulator.state_dict()."
            )
        arrays = {}
        for key, dtype in _STATE_DTYPES.items():
            value = state[key]
            if _is_torch(value):
                value = value.detach().cpu().numpy()
            value = np.asarray(value).reshape(-1)
            if key == "values":
                if value.dtype.kind != "f":
                    raise PimoTypeError(f"state['values'] must be floats, got {value.dtype}.")
                value = value.astype(np.result_type(value.dtype, dtype), copy=False)
            else:
                value = value.astype(dtype)
            arrays[key] = value
        records = _Records(**arrays)
        sizes = {records.num_pixels.shape[0], records.num_positive.shape[0],
                 records.num_kept.shape[0]}
        if len(sizes) != 1 or int(records.num_kept.sum()) != records.values.shape[0] or (
            np.any(records.num_kept < np.maximum(records.num_positive, 1))
            or np.any(records.num_kept > records.num_pixels)
        ):
            raise PimoValueError(
                "Inconsistent accumulator state: num_pixels, num_positive and num_kept must have "
                "one entry per image, values sum(num_kept) entries, and "
                "max(num_positive, 1) <= num_kept <= num_pixels."
            )
        if records.num_images:
            accumulator._append(records, None)
        return accumulator

    # -- results ---------------------------------------------------------------------------
    def _scores(self, *, with_iou: bool) -> tuple[np.ndarray, np.ndarray, IntegrationRange,
                                                  _Records]:
        records = self._records()
        require_both_classes(records.num_positive)
        integration = _integration(records, self.fpr_bounds)
        anomalous = np.flatnonzero(records.num_positive > 0)
        tpr_areas, iou_areas = _anomalous_areas(
            records, anomalous, integration, with_iou=with_iou,
            image_indices=np.arange(records.num_images))
        tpr_scores = np.full(records.num_images, np.nan)
        tpr_scores[anomalous] = normalised_scores(tpr_areas, self.fpr_bounds)
        iou_scores = np.full(records.num_images, np.nan)
        if with_iou:
            iou_scores[anomalous] = normalised_scores(iou_areas, self.fpr_bounds)
        return tpr_scores, iou_scores, integration, records

    def _result_paths(self) -> list[str] | None:
        if self._paths and all(path is not None for path in self._paths):
            return [str(path) for path in self._paths]
        return None

    def compute(self) -> AupimoResult:
        """The per-image AUPIMO of every image seen (NaN for normal images), exact.

        Raises
        ------
        NoNormalImageError, NoAnomalousImageError, UnreachableFprError,
        ConstantNormalMapsError
            As :func:`pimo.aupimo`.
        IncompleteSummaryError
            When the kept normal scores do not cover the integration range (pass
            ``expected_num_normal``).
        """
        scores, _, integration, records = self._scores(with_iou=False)
        return AupimoResult(
            scores, (records.num_positive > 0).astype(np.int8), fpr_bounds=self.fpr_bounds,
            thresh_bounds=integration.thresh_bounds, num_thresholds=integration.num_points,
            mode="exact", paths=self._result_paths(),
        )

    def compute_auimo(self) -> AuimoResult:
        """The per-image AUIMO (requires ``with_auimo=True``)."""
        if not self.with_auimo:
            raise PimoValueError(
                "This accumulator was created without with_auimo=True, so it did not keep the "
                "non-mask scores AUIMO needs: create it with with_auimo=True."
            )
        _, scores, integration, records = self._scores(with_iou=True)
        return AuimoResult(
            scores, (records.num_positive > 0).astype(np.int8), fpr_bounds=self.fpr_bounds,
            thresh_bounds=integration.thresh_bounds, num_thresholds=integration.num_points,
            mode="exact", paths=self._result_paths(),
        )
