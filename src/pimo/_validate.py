"""Input checks, input normalisation and the :class:`PimoError` family.

Every public function funnels its inputs through :func:`as_image_set`, so that the same problem
always gets the same message: what is wrong, which image (index, and path when known), and how
to fix it. Nothing is silently dropped, clipped or converted to NaN.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "THRESHOLD_KINDS",
    "ConstantNormalMapsError",
    "EmptyInputError",
    "FprBoundsError",
    "IgnoreMaskError",
    "IgnoredPixels",
    "ImageSet",
    "IncompleteSummaryError",
    "MaskValueError",
    "NoAnomalousImageError",
    "NoNormalImageError",
    "NonFiniteScoreError",
    "OutputPathError",
    "PimoError",
    "PimoTypeError",
    "PimoValueError",
    "PimoWarning",
    "ScoreFileError",
    "ShapeMismatchError",
    "UnreachableFprError",
    "as_image_set",
    "describe_image",
    "integer_map_problem",
    "pixel_position",
    "require_both_classes",
    "tensor_to_numpy",
    "validate_fpr_bounds",
    "validate_num_thresholds",
]


#: The rules of :func:`pimo.threshold_at` (``kind=``).
THRESHOLD_KINDS = ("shared", "per-image")


class PimoError(Exception):
    """Base class of every error raised by pimo for bad input.

    Concrete errors also derive from :class:`ValueError` or :class:`TypeError`, so existing
    ``except ValueError`` blocks keep working. ``image_index`` and ``path`` name the offending
    image when there is one.
    """

    def __init__(self, message: str, *, image_index: int | None = None, path: str | None = None):
        super().__init__(message)
        self.image_index = image_index
        self.path = path


class PimoValueError(PimoError, ValueError):
    """A value is wrong (shape, range, content)."""


class PimoTypeError(PimoError, TypeError):
    """A type is wrong (dtype, container)."""


class EmptyInputError(PimoValueError):
    """No image at all, or an image with no pixel."""


class ShapeMismatchError(PimoValueError):
    """A map and its mask do not have the same shape, or the lists differ in length."""


class MaskValueError(PimoValueError):
    """A mask holds values other than 0 and 1."""


class NonFiniteScoreError(PimoValueError):
    """An anomaly map holds NaN or an infinity."""


class NoNormalImageError(PimoValueError):
    """The set has no normal image (all-zero mask), so the shared FPR is undefined."""


class NoAnomalousImageError(PimoValueError):
    """The set has no anomalous image, so there is nothing to score."""


class FprBoundsError(PimoValueError):
    """``fpr_bounds`` is not ``0 < L < U <= 1``."""


class UnreachableFprError(PimoValueError):
    """The data cannot produce a shared FPR as low as the lower integration bound."""


class ConstantNormalMapsError(UnreachableFprError):
    """Every normal image's anomaly map is constant, so the shared FPR only takes 0 and 1."""


class IgnoreMaskError(PimoValueError):
    """An ignore mask leaves out a whole image, every anomalous pixel of one, or a region."""


class IncompleteSummaryError(PimoValueError):
    """An accumulator's retained top scores do not cover the shared-FPR range to integrate."""


class ScoreFileError(PimoValueError):
    """A score file is malformed."""


class OutputPathError(PimoError, OSError):
    """An output cannot be written there: a folder where a file goes, a file in the way of a
    folder, no write permission, a full disk.

    It derives from :class:`OSError` (not ValueError), as the write failures it replaces did.
    """


class PimoWarning(UserWarning):
    """A result was computed but may not mean what you expect (e.g. a coarse grid)."""


def describe_image(index: int, paths: Sequence[str] | None = None) -> str:
    """Return ``"image 3"`` or ``"image 3 ('bottle/test/good/003.png')"`` for messages."""
    if paths is not None and 0 <= index < len(paths) and paths[index]:
        return f"image {index} ({paths[index]!r})"
    return f"image {index}"


def pixel_position(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The (row, column[, ...]) position of a flat pixel index, as plain ints for messages."""
    return tuple(int(axis) for axis in np.unravel_index(int(flat_index), shape))


def validate_fpr_bounds(fpr_bounds: Any) -> tuple[float, float]:
    """Check ``0 < L < U <= 1`` and return ``(L, U)`` as floats."""
    try:
        lower, upper = (float(bound) for bound in fpr_bounds)
    except (TypeError, ValueError) as error:
        raise FprBoundsError(
            f"fpr_bounds must be a pair of numbers (L, U) with 0 < L < U <= 1, got {fpr_bounds!r}."
        ) from error
    if not (math.isfinite(lower) and math.isfinite(upper) and 0.0 < lower < upper <= 1.0):
        raise FprBoundsError(
            f"fpr_bounds must satisfy 0 < L < U <= 1, got L={lower!r}, U={upper!r}. "
            "The paper's default is (1e-5, 1e-4)."
        )
    return lower, upper


#: Float64 arrays of ``num_thresholds`` values that grid mode holds at least (thresholds in
#: the maps' dtype and in float64, the FPR sums, the shared FPR).
GRID_ARRAYS = 4


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # not on this platform
        return None


def validate_num_thresholds(num_thresholds: Any) -> int | None:
    """Check that ``num_thresholds`` is ``None`` (exact mode) or an int >= 2 (grid mode).

    A grid needs at least ``GRID_ARRAYS * 8 * num_thresholds`` bytes; a grid larger than the
    machine's memory is refused before anything is allocated.
    """
    if num_thresholds is None:
        return None
    if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int | np.integer):
        raise PimoTypeError(
            "num_thresholds must be None (exact mode, recommended) or an int >= 2 (grid mode), "
            f"got {num_thresholds!r}."
        )
    if num_thresholds < 2:
        raise PimoValueError(
            f"num_thresholds must be >= 2 in grid mode, got {num_thresholds}. "
            "Use None for the exact mode."
        )
    needed = GRID_ARRAYS * 8 * int(num_thresholds)
    available = _physical_memory()
    if available is not None and needed > available:
        raise PimoValueError(
            f"num_thresholds={int(num_thresholds)} needs at least {needed / 2**30:.1f} GiB for "
            f"the threshold grid ({GRID_ARRAYS} arrays of {int(num_thresholds)} float64 values), "
            f"more than this machine's {available / 2**30:.1f} GiB of memory. Use fewer "
            "thresholds (the official implementation uses 300 000) or None for the exact mode, "
            "which needs no grid."
        )
    return int(num_thresholds)


@dataclass(frozen=True)
class ImageSet:
    """A validated set of images, flattened for the kernels.

    The pixels of all images are stored back to back: image i is
    ``maps_flat[offsets[i]:offsets[i + 1]]`` (and the same slice of ``masks_flat``), its pixels
    in C order. An (N, H, W) C-contiguous input of the common dtype is used as it is (a reshape,
    no copy); a sequence of per-image arrays is concatenated once.

    Attributes
    ----------
    maps_flat : ndarray of float32 or float64, shape (P,)
        The anomaly maps of all images, flat and C-contiguous (``P = sum_i M_i``).
    masks_flat : ndarray of uint8, shape (P,)
        The 0/1 masks of all images (a zero-copy view for boolean or uint8 input).
    offsets : ndarray of int64, shape (N + 1,)
        ``offsets[0] = 0`` and ``offsets[i + 1] = offsets[i] + M_i``.
    shapes : list of tuple of int
        The original shape of each image (2-D images or 3-D volumes).
    num_pixels : ndarray of int64, shape (N,)
        Pixels per image, ``M_i``.
    mask_counts : ndarray of int64, shape (N,)
        Anomalous (mask) pixels per image.
    paths : list of str or None
        Image paths used in messages and score files.
    ignored : IgnoredPixels or None
        Set when an ignore mask left pixels out: then image i's flat arrays hold only its
        ``num_pixels[i]`` kept pixels (in C order) of the ``prod(shapes[i])`` it has, and
        ``mask_counts`` counts kept anomalous pixels. ``None``: every pixel is kept.
    """

    maps_flat: np.ndarray
    masks_flat: np.ndarray
    offsets: np.ndarray
    shapes: list[tuple[int, ...]]
    num_pixels: np.ndarray
    mask_counts: np.ndarray
    paths: list[str] | None
    ignored: IgnoredPixels | None = None

    def full_pixel(self, index: int, pixel: int) -> int:
        """The flat index in the whole image ``index`` of its kept pixel number ``pixel``."""
        if self.ignored is None:
            return pixel
        return int(np.flatnonzero(self.ignored.kept_of(index))[pixel])

    def full_image(self, index: int, values: np.ndarray, fill: Any) -> np.ndarray:
        """Per-pixel ``values`` of image ``index`` (one per kept pixel) in its original shape.

        Left-out pixels get ``fill``; without an ignore mask this is a reshape (a view).
        """
        shape = self.shapes[index]
        if self.ignored is None:
            return values.reshape(shape)
        full = np.full(math.prod(shape), fill, dtype=values.dtype)
        full[self.ignored.kept_of(index)] = values
        return full.reshape(shape)

    def map_of(self, index: int) -> np.ndarray:
        """The flat anomaly map of image ``index`` (a view)."""
        return self.maps_flat[self.offsets[index] : self.offsets[index + 1]]

    def mask_of(self, index: int) -> np.ndarray:
        """The flat uint8 mask of image ``index`` (a view)."""
        return self.masks_flat[self.offsets[index] : self.offsets[index + 1]]

    @property
    def num_images(self) -> int:
        """Number of images."""
        return len(self.shapes)

    @property
    def image_classes(self) -> np.ndarray:
        """0 for a normal image (all-zero mask), 1 for an anomalous image (int8, shape (N,))."""
        return (self.mask_counts > 0).astype(np.int8)

    @property
    def normal_indices(self) -> np.ndarray:
        """Indices of the normal images."""
        return np.flatnonzero(self.mask_counts == 0)

    @property
    def anomalous_indices(self) -> np.ndarray:
        """Indices of the anomalous images."""
        return np.flatnonzero(self.mask_counts > 0)

    @property
    def map_dtype(self) -> np.dtype:
        """The common floating dtype of the maps."""
        return np.dtype(self.maps_flat.dtype)

    def describe(self, index: int) -> str:
        """Human-readable name of image ``index`` for messages."""
        return describe_image(index, self.paths)

    def require_both_classes(self) -> None:
        """Raise if the set lacks normal or anomalous images."""
        require_both_classes(self.mask_counts)


@dataclass(frozen=True)
class IgnoredPixels:
    """The pixels an ignore mask left out of an :class:`ImageSet`, in the images' own layout.

    Attributes
    ----------
    kept_flat : ndarray of bool, shape (P_all,)
        True for a kept pixel, every image's pixels back to back in C order.
    offsets : ndarray of int64, shape (N + 1,)
        Image i is ``kept_flat[offsets[i]:offsets[i + 1]]``.
    masks_flat : ndarray of uint8, shape (P_all,)
        The ground-truth masks before removal: AUPRO labels its regions on these, so that a
        region cut by the ignore mask stays one region.
    """

    kept_flat: np.ndarray
    offsets: np.ndarray
    masks_flat: np.ndarray

    def kept_of(self, index: int) -> np.ndarray:
        """The flat bool kept-pixel mask of image ``index`` (a view)."""
        return self.kept_flat[self.offsets[index] : self.offsets[index + 1]]

    def mask_of(self, index: int) -> np.ndarray:
        """The flat uint8 ground-truth mask of image ``index`` before removal (a view)."""
        return self.masks_flat[self.offsets[index] : self.offsets[index + 1]]


def require_both_classes(mask_counts: np.ndarray) -> None:
    """Raise :class:`NoNormalImageError` / :class:`NoAnomalousImageError` for a one-class set.

    ``mask_counts`` holds the anomalous pixels of each image (0 = normal image).
    """
    num_images = int(mask_counts.shape[0])
    if not np.any(mask_counts == 0):
        raise NoNormalImageError(
            f"None of the {num_images} images is normal (every mask has an anomalous "
            "pixel). The shared FPR is measured on normal images only: add images whose "
            "mask is all zeros (e.g. MVTec AD's 'good' test images)."
        )
    if not np.any(mask_counts > 0):
        raise NoAnomalousImageError(
            f"All {num_images} images are normal (every mask is all zeros), so there "
            "is nothing to score. Add anomalous images with their ground-truth masks; check "
            "that the masks were loaded (a mask that failed to load often reads as zeros)."
        )


def tensor_to_numpy(value: Any) -> Any:
    """A torch tensor as a numpy array (detached, on the CPU); anything else unchanged.

    bfloat16, which numpy lacks, is widened exactly to float32. torch is not imported.
    """
    if not (hasattr(value, "detach") and hasattr(value, "cpu")):
        return value
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":
        value = value.float()  # every bfloat16 is a float32: exact
    return value.numpy()


def _as_image_list(images: Any, what: str) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Turn an (N, ...) array or a sequence of arrays into a list of arrays (views).

    Also returns the (N, ...) array itself (``None`` for a sequence), whose flat view holds the
    images back to back.
    """
    if images is None:
        raise PimoTypeError(f"{what} is None; pass an (N, H, W) array or a sequence of arrays.")
    images = tensor_to_numpy(images)
    if isinstance(images, np.ndarray):
        if images.ndim < 2:
            raise ShapeMismatchError(
                f"{what} must be an (N, H, W) array (or (N, D, H, W) for volumes) or a sequence "
                f"of per-image arrays; got an array of shape {images.shape}. For a single image, "
                "pass a list with one array."
            )
        return list(images), images
    if isinstance(images, str | bytes) or not isinstance(images, Sequence):
        raise PimoTypeError(
            f"{what} must be an (N, H, W) array or a sequence of arrays, "
            f"got {type(images).__name__}."
        )
    return [np.asarray(tensor_to_numpy(image)) for image in images], None


def shape_mismatch_message(where: str, map_shape: tuple[int, ...],
                           mask_shape: tuple[int, ...]) -> str:
    """Why a map and its mask differ in shape, and the fix (a channel axis is not a resize)."""
    def squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(side for side in shape if side != 1)

    if squeezed(map_shape) == squeezed(mask_shape):
        extra = "map" if len(map_shape) > len(mask_shape) else "mask"
        return (
            f"The anomaly map of {where} has shape {map_shape} but its mask has shape "
            f"{mask_shape}: the {extra} has an extra axis of size 1 (a channel axis). Drop the "
            f"channel axis, e.g. pass {extra}s[:, 0] for an (N, 1, H, W) array or "
            f"{extra}.squeeze() for each image."
        )
    return (
        f"The anomaly map of {where} has shape {map_shape} but its mask has shape "
        f"{mask_shape}. Resize the map to the mask's resolution (bilinear, as the paper "
        "prescribes: pimo.data.resize.resize_bilinear, or `pimo aupimo --resize`) before "
        "evaluating."
    )


#: Integers up to this magnitude are exact in float64 (53-bit significand).
MAX_EXACT_INTEGER = 2**53


def integer_map_problem(image: np.ndarray, where: str) -> str | None:
    """Why an integer map cannot be read as float64 exactly, or None when it can.

    Integers with ``|value| > 2**53`` are rounded in float64, which merges distinct scores
    and shifts every curve and AUPIMO; 32-bit and narrower integers always fit.
    """
    if image.dtype.kind not in "iu" or image.dtype.itemsize < 8 or image.size == 0:
        return None
    low, high = int(image.min()), int(image.max())
    if low >= -MAX_EXACT_INTEGER and high <= MAX_EXACT_INTEGER:
        return None
    worst = high if high > MAX_EXACT_INTEGER else low
    return (
        f"The anomaly map of {where} has {image.dtype} scores up to {worst} in magnitude, "
        "beyond 2**53: float64 cannot hold them exactly, so distinct scores would be merged "
        "and the results would be wrong. Rescale the scores to |value| <= 2**53 (e.g. shift "
        "them by their minimum, or divide and round them yourself) or pass float scores."
    )


def _common_map_dtype(maps: list[np.ndarray], paths: Sequence[str] | None) -> np.dtype:
    for index, image in enumerate(maps):
        if image.dtype.kind not in "fiub":
            raise PimoTypeError(
                f"The anomaly map of {describe_image(index, paths)} has dtype {image.dtype}; "
                "anomaly maps must be real numbers (float or integer).",
                image_index=index,
                path=paths[index] if paths else None,
            )
        problem = integer_map_problem(image, describe_image(index, paths))
        if problem is not None:
            raise PimoValueError(problem, image_index=index, path=paths[index] if paths else None)
    if all(image.dtype == np.float32 for image in maps):
        return np.dtype(np.float32)
    if all(image.dtype.kind == "f" and image.dtype.itemsize <= 4 for image in maps):
        return np.dtype(np.float32)  # float16 maps are widened exactly to float32
    return np.dtype(np.float64)  # float64 and integer maps: exact in float64 (|int| <= 2**53)


def _check_mask_dtype(mask: np.ndarray, index: int, paths: Sequence[str] | None,
                      what: str = "mask") -> None:
    if mask.dtype != np.bool_ and mask.dtype.kind not in "iuf":
        raise PimoTypeError(
            f"The {what} of {describe_image(index, paths)} has dtype {mask.dtype}; {what}s "
            "must be bool or 0/1 integers.",
            image_index=index,
            path=paths[index] if paths else None,
        )


def _check_mask_values(flat: np.ndarray, index: int, paths: Sequence[str] | None,
                       what: str = "mask") -> None:
    """Raise :class:`MaskValueError` if the flat mask of image ``index`` holds a value not 0/1."""
    bad = (flat != 0) & (flat != 1)
    if np.any(bad):
        values = np.unique(flat[bad])[:5]
        hint = (
            " It looks like a 0/255 image: divide by 255 or compare with > 0 (`pimo aupimo "
            "--mask-threshold 0`)."
            if np.all(np.isin(np.unique(flat), (0, 1, 255)))
            else " If the mask is soft or was saved lossily (e.g. JPEG), binarise it with a "
            "threshold, e.g. mask > 0.5 (`pimo aupimo --mask-threshold 0.5`)."
        )
        raise MaskValueError(
            f"The {what} of {describe_image(index, paths)} holds values other than 0 and 1 "
            f"(e.g. {', '.join(repr(v.item()) for v in values)}).{hint}",
            image_index=index,
            path=paths[index] if paths else None,
        )


def _flat_mask(mask: np.ndarray, index: int, paths: Sequence[str] | None,
               what: str = "mask") -> np.ndarray:
    """The mask of image ``index`` as a flat uint8 0/1 array (no copy for bool or uint8)."""
    if mask.dtype == np.bool_:
        return np.ascontiguousarray(mask).reshape(-1).view(np.uint8)
    _check_mask_dtype(mask, index, paths, what)
    flat = np.ascontiguousarray(mask).reshape(-1)
    _check_mask_values(flat, index, paths, what)
    return flat.astype(np.uint8, copy=False)


def _flat_masks(stacked: np.ndarray | None, masks: list[np.ndarray], offsets: np.ndarray,
                paths: Sequence[str] | None, what: str = "mask") -> np.ndarray:
    """All masks back to back as one flat uint8 array (a view of a stacked bool/uint8 input)."""
    if stacked is None:
        flat = np.empty(int(offsets[-1]), dtype=np.uint8)
        for index, mask in enumerate(masks):
            flat[offsets[index] : offsets[index + 1]] = _flat_mask(mask, index, paths, what)
        return flat
    if stacked.dtype == np.bool_:
        return np.ascontiguousarray(stacked).reshape(-1).view(np.uint8)
    _check_mask_dtype(stacked, 0, paths, what)
    flat = np.ascontiguousarray(stacked).reshape(-1)
    bad = (flat != 0) & (flat != 1)
    if np.any(bad):
        index = int(np.searchsorted(offsets, np.argmax(bad), side="right")) - 1
        _check_mask_values(flat[offsets[index] : offsets[index + 1]], index, paths, what)
    return flat.astype(np.uint8, copy=False)


def _flat_maps(stacked: np.ndarray | None, maps: list[np.ndarray], dtype: np.dtype,
               offsets: np.ndarray) -> np.ndarray:
    """All maps back to back as one flat ``dtype`` array (a view of a stacked input if it can)."""
    if stacked is not None:
        return np.ascontiguousarray(stacked, dtype=dtype).reshape(-1)
    flat = np.empty(int(offsets[-1]), dtype=dtype)
    for index, image in enumerate(maps):
        flat[offsets[index] : offsets[index + 1]].reshape(image.shape)[...] = image
    return flat


def as_image_set(
    anomaly_maps: Any,
    masks: Any,
    *,
    paths: Sequence[str] | None = None,
    ignore_masks: Any = None,
) -> ImageSet:
    """Validate and flatten ``(anomaly_maps, masks)`` into an :class:`ImageSet`.

    Parameters
    ----------
    anomaly_maps : array (N, H, W) or sequence of N arrays
        One score map per image; images may differ in shape (3-D volumes count as images).
        Float maps are used as they are (float16 is widened to float32); integer maps are
        accepted and read as float64 when exact there (``|value| <= 2**53``).
    masks : array (N, H, W) or sequence of N arrays
        Binary ground truth of the same shapes: bool, or integers/floats equal to 0 or 1.
    paths : sequence of str, optional
        Image paths, used in error messages and score files.
    ignore_masks : array (N, H, W) or sequence of N arrays, optional
        Pixels to leave out (1 = ignored: a border, a fixture, a "don't care" region), same
        shapes as the masks. Every metric then sees each image without those pixels, exactly
        as if they had never been there.

    Raises
    ------
    EmptyInputError, ShapeMismatchError, MaskValueError, PimoTypeError, PimoValueError
        With the index (and path) of the first offending image and the fix.
    IgnoreMaskError
        An ignore mask covers a whole image, or every anomalous pixel of an anomalous image
        (it would silently count as normal).

    Notes
    -----
    NaN and infinite scores are detected by the kernels during their single pass over the
    data (no extra pass or copy here) and raise :class:`NonFiniteScoreError`.
    """
    map_list, stacked_maps = _as_image_list(anomaly_maps, "anomaly_maps")
    mask_list, stacked_masks = _as_image_list(masks, "masks")
    if paths is not None:
        paths = [str(path) for path in paths]
        if len(paths) != len(map_list):
            raise ShapeMismatchError(
                f"Got {len(paths)} paths for {len(map_list)} anomaly maps; pass one path per image."
            )
    if len(map_list) == 0:
        raise EmptyInputError("No image was given: anomaly_maps is empty.")
    if len(map_list) != len(mask_list):
        raise ShapeMismatchError(
            f"Got {len(map_list)} anomaly maps but {len(mask_list)} masks; "
            "pass exactly one mask per anomaly map, in the same order."
        )
    shapes: list[tuple[int, ...]] = []
    for index, (image, mask) in enumerate(zip(map_list, mask_list, strict=True)):
        where = describe_image(index, paths)
        if image.shape != mask.shape:
            raise ShapeMismatchError(
                shape_mismatch_message(where, image.shape, mask.shape),
                image_index=index,
                path=paths[index] if paths else None,
            )
        if image.size == 0:
            raise EmptyInputError(
                f"The anomaly map of {where} has no pixel (shape {image.shape}).",
                image_index=index,
                path=paths[index] if paths else None,
            )
        shapes.append(tuple(int(side) for side in image.shape))
    dtype = _common_map_dtype(map_list, paths)
    num_pixels = np.array([math.prod(shape) for shape in shapes], dtype=np.int64)
    offsets = np.zeros(len(shapes) + 1, dtype=np.int64)
    np.cumsum(num_pixels, out=offsets[1:])
    masks_flat = _flat_masks(stacked_masks, mask_list, offsets, paths)
    maps_flat = _flat_maps(stacked_maps, map_list, dtype, offsets)
    from pimo import _kernels

    image_set = ImageSet(
        maps_flat=maps_flat,
        masks_flat=masks_flat,
        offsets=offsets,
        shapes=shapes,
        num_pixels=num_pixels,
        mask_counts=_kernels.mask_counts(masks_flat, offsets),
        paths=list(paths) if paths is not None else None,
    )
    if ignore_masks is None:
        return image_set
    return _without_ignored(image_set, ignore_masks)


def _without_ignored(image_set: ImageSet, ignore_masks: Any) -> ImageSet:
    """``image_set`` with the pixels of ``ignore_masks`` (1 = left out) removed."""
    paths = image_set.paths
    ignore_list, stacked = _as_image_list(ignore_masks, "ignore_masks")
    if len(ignore_list) != image_set.num_images:
        raise ShapeMismatchError(
            f"Got {len(ignore_list)} ignore masks for {image_set.num_images} images; pass one "
            "ignore mask per image, in the same order (np.broadcast_to(ignore, maps.shape) "
            "repeats one mask for every image)."
        )
    for index, (ignore, shape) in enumerate(zip(ignore_list, image_set.shapes, strict=True)):
        if tuple(ignore.shape) != shape:
            raise ShapeMismatchError(
                f"The ignore mask of {describe_image(index, paths)} has shape {ignore.shape} "
                f"but the image has shape {shape}; an ignore mask must have the ground-truth "
                "mask's shape.",
                image_index=index,
                path=paths[index] if paths else None,
            )
    ignored_flat = _flat_masks(stacked, ignore_list, image_set.offsets, paths, "ignore mask")
    kept_flat = ignored_flat == 0
    num_pixels = np.empty(image_set.num_images, dtype=np.int64)
    for index in range(image_set.num_images):
        begin, end = image_set.offsets[index], image_set.offsets[index + 1]
        num_pixels[index] = np.count_nonzero(kept_flat[begin:end])
    offsets = np.zeros(image_set.num_images + 1, dtype=np.int64)
    np.cumsum(num_pixels, out=offsets[1:])
    masks_flat = image_set.masks_flat[kept_flat]
    from pimo import _kernels

    mask_counts = _kernels.mask_counts(masks_flat, offsets)
    for index in range(image_set.num_images):
        where = describe_image(index, paths)
        path = paths[index] if paths else None
        if num_pixels[index] == 0:
            raise IgnoreMaskError(
                f"The ignore mask of {where} covers all its {image_set.num_pixels[index]} "
                "pixels: nothing of the image is left to evaluate. Leave the image out, or fix "
                "its ignore mask (1 = pixel left out, 0 = pixel evaluated).",
                image_index=index, path=path)
        if mask_counts[index] == 0 and image_set.mask_counts[index] > 0:
            raise IgnoreMaskError(
                f"The ignore mask of {where} covers all {image_set.mask_counts[index]} "
                "anomalous pixels of its mask: the image would count as a normal image and "
                "change the shared FPR. Leave each defect (at least in part) outside the "
                "ignore mask, or leave the image out.",
                image_index=index, path=path)
    return ImageSet(
        maps_flat=image_set.maps_flat[kept_flat],
        masks_flat=masks_flat,
        offsets=offsets,
        shapes=image_set.shapes,
        num_pixels=num_pixels,
        mask_counts=mask_counts,
        paths=paths,
        ignored=IgnoredPixels(kept_flat=kept_flat, offsets=image_set.offsets,
                              masks_flat=image_set.masks_flat),
    )
