"""Sizes of the ground-truth regions (paper App. B, Fig. 8 and Tab. 2).

A *region* is a maximal connected component of a mask: 8-connected in 2-D, 26-connected in 3-D
(:func:`pimo.label_regions`, the regions of AUPRO). For region ``r`` of image ``i``::

    absolute size  |r|              (pixels, at the mask's own resolution)
    relative size  |r| / M_i        (M_i: pixels of image i)

A region is *tiny* when its relative size is below ``1 / 256**2``, the size of one pixel at the
256x256 input of the paper's models: an anomaly that small is at most one pixel for the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pimo._validate import PimoValueError, _as_image_list, _flat_mask
from pimo.setmetrics import label_regions

__all__ = [
    "DEFAULT_COUNT_BINS",
    "DEFAULT_SIZE_BINS",
    "TINY_RELATIVE_SIZE",
    "RegionSizes",
    "TinyRegionTable",
    "region_sizes",
    "tiny_region_table",
]

#: Relative size of one pixel at 256x256: regions strictly smaller are *tiny*.
TINY_RELATIVE_SIZE = 1.0 / 256**2
#: Absolute-size bins (inclusive pixel ranges) of the tiny-region table (paper Tab. 2a).
DEFAULT_SIZE_BINS: tuple[tuple[int, int | None], ...] = ((1, 9), (10, 19), (20, 29))
#: Tiny-regions-per-image bins (inclusive; ``None``: no upper end) (paper Tab. 2b).
DEFAULT_COUNT_BINS: tuple[tuple[int, int | None], ...] = ((1, 5), (6, None))


def _bin_label(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else f"{low}-{high}"


def _check_bins(bins: Sequence[tuple[int, int | None]], what: str) -> tuple[tuple[int, int | None],
                                                                               ...]:
    checked: list[tuple[int, int | None]] = []
    previous_high: int | None = 0
    for low, high in bins:
        if previous_high is None or int(low) <= previous_high or (high is not None and high < low):
            raise PimoValueError(
                f"{what} must be increasing, non-overlapping inclusive ranges (low, high) of "
                f"positive integers, the last high may be None; got {list(bins)!r}."
            )
        checked.append((int(low), None if high is None else int(high)))
        previous_high = None if high is None else int(high)
    if not checked:
        raise PimoValueError(f"{what} is empty; give at least one (low, high) range.")
    return tuple(checked)


def _bin_of(values: np.ndarray, bins: Sequence[tuple[int, int | None]]) -> np.ndarray:
    """Index of the bin holding each value; -1 when no bin holds it."""
    index = np.full(values.shape, -1, dtype=np.int64)
    for position, (low, high) in enumerate(bins):
        inside = values >= low if high is None else (values >= low) & (values <= high)
        index[inside] = position
    return index


@dataclass(frozen=True)
class RegionSizes:
    """Every ground-truth region of a set of masks.

    Attributes
    ----------
    image_index : ndarray of int64, shape (R,)
        The image of each region (index into the masks given).
    pixels : ndarray of int64, shape (R,)
        Absolute size of each region, in pixels (voxels for volumes).
    image_pixels : ndarray of int64, shape (N,)
        Pixels of each image.
    paths : list of str or None
        The images' paths.
    connectivity : int
        Neighbours of a pixel used for the regions (8 in 2-D, 26 in 3-D by default).
    """

    image_index: np.ndarray
    pixels: np.ndarray
    image_pixels: np.ndarray
    paths: list[str] | None
    connectivity: int

    @property
    def relative(self) -> np.ndarray:
        """Relative size of each region: ``pixels / image_pixels[image_index]`` (float64)."""
        return self.pixels / self.image_pixels[self.image_index]

    @property
    def num_images(self) -> int:
        """N, the number of masks (normal ones included)."""
        return int(self.image_pixels.size)

    @property
    def num_regions(self) -> int:
        """R, the number of regions of all masks."""
        return int(self.pixels.size)

    def regions_per_image(self) -> np.ndarray:
        """Number of regions in each mask (0 for a normal image), int64 shape (N,)."""
        return np.bincount(self.image_index, minlength=self.num_images).astype(np.int64)

    def select(self, keep: np.ndarray) -> RegionSizes:
        """The regions where ``keep`` (bool, shape (R,)) is true; the images stay the same."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != self.pixels.shape:
            raise PimoValueError(f"keep must have one entry per region ({self.num_regions}), "
                                 f"got shape {keep.shape}.")
        return RegionSizes(self.image_index[keep], self.pixels[keep], self.image_pixels,
                           self.paths, self.connectivity)

    def without_tiny(self, tiny_relative_size: float = TINY_RELATIVE_SIZE) -> RegionSizes:
        """The regions whose relative size is at least ``tiny_relative_size`` (Fig. 8, right)."""
        return self.select(self.relative >= tiny_relative_size)

    def summary(self) -> dict[str, float | int | None]:
        """Counts and quantiles of the relative sizes (None when there is no region)."""
        relative = self.relative
        quantiles = (
            np.quantile(relative, [0.0, 0.25, 0.5, 0.75, 1.0]).tolist()
            if relative.size else [None] * 5
        )
        return {
            "num_images": self.num_images,
            "num_anomalous_images": int(np.count_nonzero(self.regions_per_image())),
            "num_regions": self.num_regions,
            "relative_min": quantiles[0],
            "relative_q1": quantiles[1],
            "relative_median": quantiles[2],
            "relative_q3": quantiles[3],
            "relative_max": quantiles[4],
        }

    def to_rows(self) -> list[dict[str, Any]]:
        """One record per region: image index and path, region number, absolute, relative size."""
        relative = self.relative
        numbers = np.zeros(self.num_regions, dtype=np.int64)
        seen: dict[int, int] = {}
        for position, image in enumerate(self.image_index.tolist()):
            seen[image] = seen.get(image, 0) + 1
            numbers[position] = seen[image]
        return [
            {
                "image": int(image),
                "path": self.paths[image] if self.paths else "",
                "region": int(number),
                "pixels": int(size),
                "relative_size": float(rel),
            }
            for image, number, size, rel in zip(self.image_index.tolist(), numbers.tolist(),
                                                self.pixels.tolist(), relative.tolist(),
                                                strict=True)
        ]


def region_sizes(
    masks: Any, *, connectivity: int | None = None, paths: Sequence[str] | None = None
) -> RegionSizes:
    """Absolute and relative size of every connected region of every mask.

    Parameters
    ----------
    masks : array (N, H, W) or (N, D, H, W), or sequence of arrays
        Binary masks (bool or 0/1); images may differ in shape; all-zero masks (normal images)
        have no region.
    connectivity : int, optional
        4 or 8 in 2-D, 6, 18 or 26 in 3-D; default full (8 / 26), as :func:`pimo.label_regions`.
    paths : sequence of str, optional
        Image paths, kept in the result and used in error messages.

    Returns
    -------
    RegionSizes
        Regions in image order, each image's regions in raster order of their first pixel.

    Raises
    ------
    MaskValueError, PimoTypeError, ShapeMismatchError
        A mask is not binary or not 2-D/3-D (the image is named).
    """
    mask_list, _ = _as_image_list(masks, "masks")
    if paths is not None and len(paths) != len(mask_list):
        raise PimoValueError(f"Got {len(paths)} paths for {len(mask_list)} masks; pass one path "
                             "per mask.")
    path_list = [str(p) for p in paths] if paths is not None else None
    images: list[np.ndarray] = []
    sizes: list[np.ndarray] = []
    image_pixels = np.zeros(len(mask_list), dtype=np.int64)
    used_connectivity = 0
    for index, mask in enumerate(mask_list):
        _flat_mask(mask, index, path_list)  # names the image when the mask is not binary
        labels, count = label_regions(mask, connectivity=connectivity)
        used_connectivity = used_connectivity or (
            connectivity if connectivity is not None else 3**mask.ndim - 1
        )
        image_pixels[index] = mask.size
        if count:
            counts = np.bincount(labels.reshape(-1), minlength=count + 1)[1:]
            sizes.append(counts.astype(np.int64))
            images.append(np.full(count, index, dtype=np.int64))
    return RegionSizes(
        image_index=np.concatenate(images) if images else np.zeros(0, dtype=np.int64),
        pixels=np.concatenate(sizes) if sizes else np.zeros(0, dtype=np.int64),
        image_pixels=image_pixels,
        paths=path_list,
        connectivity=used_connectivity,
    )


@dataclass(frozen=True)
class TinyRegionTable:
    """Counts of tiny regions (paper Tab. 2): by absolute size, and by number per image.

    Attributes
    ----------
    tiny_relative_size : float
        A region is tiny when ``relative size < tiny_relative_size``.
    size_bins, size_counts
        Inclusive absolute-size ranges and the number of tiny regions in each (Tab. 2a).
    size_outside_bins : int
        Tiny regions whose absolute size is in no size bin (large images: at 2000x1000 a
        30-pixel region is still tiny). Counted here instead of being dropped.
    count_bins, image_counts
        Inclusive ranges of tiny regions per image and the number of images in each (Tab. 2b).
    num_tiny_regions, num_images_with_tiny : int
        Totals (the last column of Tab. 2b is ``num_images_with_tiny``).
    """

    tiny_relative_size: float
    size_bins: tuple[tuple[int, int | None], ...]
    size_counts: tuple[int, ...]
    size_outside_bins: int
    count_bins: tuple[tuple[int, int | None], ...]
    image_counts: tuple[int, ...]
    num_tiny_regions: int
    num_images_with_tiny: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record; bins as ``"1-9"`` / ``"6+"`` labels."""
        return {
            "tiny_relative_size": self.tiny_relative_size,
            "regions_by_size": {_bin_label(*b): c for b, c in zip(self.size_bins,
                                                                   self.size_counts, strict=True)},
            "regions_outside_size_bins": self.size_outside_bins,
            "images_by_count": {_bin_label(*b): c for b, c in zip(self.count_bins,
                                                                   self.image_counts,
                                                                   strict=True)},
            "num_tiny_regions": self.num_tiny_regions,
            "num_images_with_tiny": self.num_images_with_tiny,
        }


def tiny_region_table(
    sizes: RegionSizes,
    *,
    tiny_relative_size: float = TINY_RELATIVE_SIZE,
    size_bins: Sequence[tuple[int, int | None]] = DEFAULT_SIZE_BINS,
    count_bins: Sequence[tuple[int, int | None]] = DEFAULT_COUNT_BINS,
) -> TinyRegionTable:
    """Tab. 2 of the paper for one dataset: how many tiny regions, how small, how many per image.

    A region r of image i is tiny when ``|r| / M_i < tiny_relative_size`` (default
    ``1 / 256**2``). Tab. 2a counts the tiny regions whose absolute size ``|r|`` falls in each
    of ``size_bins``; Tab. 2b counts the images whose number of tiny regions falls in each of
    ``count_bins`` (images without tiny region are in no bin).
    """
    if not 0 < tiny_relative_size <= 1:
        raise PimoValueError(f"tiny_relative_size must be in (0, 1], got {tiny_relative_size!r}.")
    size_ranges = _check_bins(size_bins, "size_bins")
    count_ranges = _check_bins(count_bins, "count_bins")
    tiny = sizes.relative < tiny_relative_size
    tiny_pixels = sizes.pixels[tiny]
    size_index = _bin_of(tiny_pixels, size_ranges)
    per_image = np.bincount(sizes.image_index[tiny], minlength=sizes.num_images)
    with_tiny = per_image[per_image > 0]
    count_index = _bin_of(with_tiny, count_ranges)
    return TinyRegionTable(
        tiny_relative_size=float(tiny_relative_size),
        size_bins=size_ranges,
        size_counts=tuple(int(np.count_nonzero(size_index == k)) for k in range(len(size_ranges))),
        size_outside_bins=int(np.count_nonzero(size_index < 0)),
        count_bins=count_ranges,
        image_counts=tuple(int(np.count_nonzero(count_index == k))
                           for k in range(len(count_ranges))),
        num_tiny_regions=int(tiny_pixels.size),
        num_images_with_tiny=int(with_tiny.size),
    )
