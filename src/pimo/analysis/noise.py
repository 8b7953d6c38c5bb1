"""Robustness to noisy annotations: tiny random regions added to the masks (paper Fig. 5b).

Each anomalous mask gets ``n`` new regions of ``s_1, ..., s_n`` pixels, where ``n`` and each
``s_j`` are drawn from histograms of the tiny regions of a real dataset (default: VisA, paper
Tab. 2): a bin is drawn with probability proportional to its weight, then a value uniformly
inside it. A region grows from a random seed pixel by adding random neighbours (8-connected in
2-D, 26-connected in 3-D) one pixel at a time, so its shape is random; it never touches the
mask's regions nor the other new regions, so the noisy mask has exactly ``n`` more regions of
exactly those sizes.

The experiment (:func:`noisy_annotation_robustness`) scores the same maps against the clean and
the noisy masks and reports ``clean - noisy`` for AUPRO (one value per dataset and draw) and
for AUPIMO (one value per anomalous image and draw).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from pimo._validate import (
    PimoValueError,
    _as_image_list,
    _flat_mask,
    describe_image,
    validate_fpr_bounds,
)
from pimo.pimo import aupimo
from pimo.setmetrics import _connectivity_rank, set_metrics

__all__ = [
    "VISA_TINY_REGIONS",
    "NoiseStatistics",
    "RobustnessResult",
    "add_tiny_regions",
    "load_noise_statistics",
    "noisy_annotation_robustness",
]

_MAX_SEEDS = 1000


@dataclass(frozen=True)
class NoiseStatistics:
    """Distributions of the number of added regions per image and of their sizes.

    Attributes
    ----------
    count_bins : tuple of (int, int)
        Inclusive ranges of the number of regions added to one mask.
    count_weights : tuple of float
        Relative frequency of each count bin (e.g. numbers of images).
    size_bins : tuple of (int, int)
        Inclusive ranges of a region's size in pixels.
    size_weights : tuple of float
        Relative frequency of each size bin (e.g. numbers of regions).

    Notes
    -----
    A value is drawn as: bin ``b`` with probability ``w_b / sum(w)``, then an integer uniformly
    in the bin. Its expectation is ``sum_b p_b (low_b + high_b) / 2``.
    """

    count_bins: tuple[tuple[int, int], ...]
    count_weights: tuple[float, ...]
    size_bins: tuple[tuple[int, int], ...]
    size_weights: tuple[float, ...]
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        for bins, weights, what, smallest in ((self.count_bins, self.count_weights, "count", 0),
                                              (self.size_bins, self.size_weights, "size", 1)):
            if len(bins) == 0 or len(bins) != len(weights):
                raise PimoValueError(
                    f"{what}_bins and {what}_weights must be non-empty and of the same length, "
                    f"got {len(bins)} bins and {len(weights)} weights."
                )
            for low, high in bins:
                if int(low) != low or int(high) != high or low < smallest or high < low:
                    raise PimoValueError(
                        f"{what}_bins must be inclusive integer ranges (low, high) with "
                        f"{smallest} <= low <= high; got {list(bins)!r}."
                    )
            weight_array = np.asarray(weights, dtype=np.float64)
            if not np.all(np.isfinite(weight_array)) or np.any(weight_array < 0) \
                    or weight_array.sum() <= 0:
                raise PimoValueError(
                    f"{what}_weights must be finite, non-negative and not all zero; got "
                    f"{list(weights)!r}."
                )

    @staticmethod
    def _pmf(bins: Sequence[tuple[int, int]], weights: Sequence[float]
             ) -> tuple[np.ndarray, np.ndarray]:
        probabilities = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        values = np.arange(min(low for low, _ in bins), max(high for _, high in bins) + 1)
        pmf = np.zeros(values.size)
        for (low, high), probability in zip(bins, probabilities, strict=True):
            pmf[low - values[0]: high - values[0] + 1] += probability / (high - low + 1)
        return values, pmf

    def count_pmf(self) -> tuple[np.ndarray, np.ndarray]:
        """Every possible number of regions per mask and its probability."""
        return self._pmf(self.count_bins, self.count_weights)

    def size_pmf(self) -> tuple[np.ndarray, np.ndarray]:
        """Every possible region size (pixels) and its probability."""
        return self._pmf(self.size_bins, self.size_weights)

    def sample_counts(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` numbers of regions."""
        values, pmf = self.count_pmf()
        return rng.choice(values, size=size, p=pmf)

    def sample_sizes(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` region sizes."""
        values, pmf = self.size_pmf()
        return rng.choice(values, size=size, p=pmf)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (the format of :func:`load_noise_statistics`)."""
        return {
            "name": self.name,
            "count_bins": [list(b) for b in self.count_bins],
            "count_weights": list(self.count_weights),
            "size_bins": [list(b) for b in self.size_bins],
            "size_weights": list(self.size_weights),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> NoiseStatistics:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                count_bins=tuple((int(a), int(b)) for a, b in record["count_bins"]),
                count_weights=tuple(float(w) for w in record["count_weights"]),
                size_bins=tuple((int(a), int(b)) for a, b in record["size_bins"]),
                size_weights=tuple(float(w) for w in record["size_weights"]),
                name=str(record.get("name", "custom")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PimoValueError(
                "Noise statistics need count_bins, count_weights, size_bins and size_weights "
                f"(bins as [low, high] pairs); got {record!r} ({error})."
            ) from error


#: VisA's tiny regions (paper Tab. 2, summed over its 12 categories): 1436 regions of 1-9 (936),
#: 10-19 (400) and 20-29 (100) pixels, in 210 images, 147 with 1-5 and 63 with 6 or more. The
#: open bin "6+" is closed at 26, which makes the mean number of regions per image
#: (0.7 * 3 + 0.3 * 16 = 6.9) match the table's 1436 / 210 = 6.84.
VISA_TINY_REGIONS = NoiseStatistics(
    count_bins=((1, 5), (6, 26)),
    count_weights=(147.0, 63.0),
    size_bins=((1, 9), (10, 19), (20, 29)),
    size_weights=(936.0, 400.0, 100.0),
    name="visa",
)


def load_noise_statistics(path: str | os.PathLike[str]) -> NoiseStatistics:
    """Read :class:`NoiseStatistics` from a JSON file written by :meth:`NoiseStatistics.to_dict`."""
    from pimo._io import read_json

    try:
        record = read_json(path)
    except (OSError, json.JSONDecodeError) as error:
        raise PimoValueError(f"Cannot read noise statistics from {path}: {error}") from error
    return NoiseStatistics.from_dict(record)


def _offsets(ndim: int, rank: int) -> np.ndarray:
    """Neighbour offsets of a pixel for a connectivity rank (1: faces ... ndim: full)."""
    grid = np.stack(np.meshgrid(*([np.arange(-1, 2)] * ndim), indexing="ij"), axis=-1)
    grid = grid.reshape(-1, ndim)
    steps = np.abs(grid).sum(axis=1)
    return grid[(steps > 0) & (steps <= rank)]


def _grow_region(free: np.ndarray, seed: tuple[int, ...], size: int, offsets: np.ndarray,
                 rng: np.random.Generator) -> list[tuple[int, ...]] | None:
    """Grow a connected region of ``size`` free pixels from ``seed``; None when it gets stuck."""
    shape = free.shape
    region = [seed]
    inside = {seed}
    frontier: list[tuple[int, ...]] = []
    frontier_set: set[tuple[int, ...]] = set()

    def push_neighbours(pixel: tuple[int, ...]) -> None:
        for offset in offsets:
            neighbour = tuple(int(p + o) for p, o in zip(pixel, offset, strict=True))
            if (all(0 <= n < s for n, s in zip(neighbour, shape, strict=True))
                    and neighbour not in inside and neighbour not in frontier_set
                    and free[neighbour]):
                frontier.append(neighbour)
                frontier_set.add(neighbour)

    push_neighbours(seed)
    while len(region) < size:
        if not frontier:
            return None
        chosen = frontier.pop(int(rng.integers(len(frontier))))
        frontier_set.discard(chosen)
        region.append(chosen)
        inside.add(chosen)
        push_neighbours(chosen)
    return region


def add_tiny_regions(
    mask: Any,
    rng: np.random.Generator,
    statistics: NoiseStatistics = VISA_TINY_REGIONS,
    *,
    connectivity: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``mask`` with random tiny regions added (see the module notes).

    Parameters
    ----------
    mask : array (H, W) or (D, H, W)
        Binary mask (bool or 0/1).
    rng : numpy.random.Generator
        Source of randomness (seeded by the caller for reproducibility).
    statistics : NoiseStatistics
        Distributions of the number of regions and of their sizes.
    connectivity : int, optional
        Connectivity of the new regions (default 8 in 2-D, 26 in 3-D). New regions never touch
        existing foreground, even diagonally.

    Returns
    -------
    noisy : ndarray of bool
        The mask with the new regions.
    sizes : ndarray of int64
        The size of each added region (its length is the number of regions added).

    Raises
    ------
    PimoValueError
        The mask has no room left for a region of the size drawn.
    """
    array = np.asarray(mask)
    rank = _connectivity_rank(connectivity, array.ndim)
    noisy = _flat_mask(array, 0, None).reshape(array.shape).astype(bool)
    structure = ndimage.generate_binary_structure(array.ndim, array.ndim)
    free = ~ndimage.binary_dilation(noisy, structure=structure)
    offsets = _offsets(array.ndim, rank)
    count = int(statistics.sample_counts(rng, 1)[0])
    sizes = statistics.sample_sizes(rng, count).astype(np.int64)
    for size in sizes.tolist():
        region = None
        for _ in range(_MAX_SEEDS):
            candidates = np.flatnonzero(free)
            if candidates.size == 0:
                break
            seed = np.unravel_index(int(candidates[rng.integers(candidates.size)]), array.shape)
            region = _grow_region(free, tuple(int(s) for s in seed), size, offsets, rng)
            if region is not None:
                break
        if region is None:
            raise PimoValueError(
                f"No room to add a region of {size} pixels to a mask of shape {array.shape} "
                f"({int(noisy.sum())} anomalous pixels): the mask is nearly full. Use larger "
                "images or statistics with smaller regions."
            )
        coordinates = tuple(np.array(region).T)
        noisy[coordinates] = True
        touched = np.zeros_like(noisy)
        touched[coordinates] = True
        free &= ~ndimage.binary_dilation(touched, structure=structure)
    return noisy, sizes


@dataclass(frozen=True)
class RobustnessResult:
    """Scores against clean and noisy masks, for ``R`` independent noisy draws.

    Attributes
    ----------
    fpr_limits : tuple of float
        The AUPRO limits.
    aupro_clean : ndarray of float64, shape (L,)
        AUPRO at each limit with the clean masks.
    aupro_noisy : ndarray of float64, shape (R, L)
        AUPRO at each limit with each draw of noisy masks.
    aupimo_clean : ndarray of float64, shape (N,)
        Per-image AUPIMO with the clean masks (NaN for normal images).
    aupimo_noisy : ndarray of float64, shape (R, N)
        Per-image AUPIMO with each draw.
    added_regions : ndarray of int64, shape (R, N)
        Regions added to each mask in each draw (0 for normal images).
    added_pixels : ndarray of int64, shape (R, N)
        Pixels added.
    fpr_bounds : (float, float)
        AUPIMO's integration range.
    statistics : NoiseStatistics
        The noise distributions.
    seed : int or None
        The seed of the draws.
    paths : list of str or None
        Image paths.
    """

    fpr_limits: tuple[float, ...]
    aupro_clean: np.ndarray
    aupro_noisy: np.ndarray
    aupimo_clean: np.ndarray
    aupimo_noisy: np.ndarray
    added_regions: np.ndarray
    added_pixels: np.ndarray
    fpr_bounds: tuple[float, float]
    statistics: NoiseStatistics
    seed: int | None
    paths: list[str] | None

    @property
    def aupro_differences(self) -> np.ndarray:
        """``clean - noisy`` AUPRO, shape (R, L)."""
        return self.aupro_clean[None, :] - self.aupro_noisy

    @property
    def aupimo_differences(self) -> np.ndarray:
        """``clean - noisy`` AUPIMO of the anomalous images, shape (R, N_anomalous)."""
        anomalous = np.isfinite(self.aupimo_clean)
        return self.aupimo_clean[None, anomalous] - self.aupimo_noisy[:, anomalous]

    def summary(self) -> dict[str, Any]:
        """Mean absolute differences and the noise added, JSON-ready."""
        aupimo_diff = self.aupimo_differences
        return {
            "num_draws": int(self.aupro_noisy.shape[0]),
            "num_images": int(self.aupimo_clean.size),
            "num_anomalous_images": int(aupimo_diff.shape[1]),
            "fpr_bounds": list(self.fpr_bounds),
            "fpr_limits": list(self.fpr_limits),
            "aupro_clean": self.aupro_clean.tolist(),
            "aupro_noisy": self.aupro_noisy.tolist(),
            "aupro_differences": self.aupro_differences.tolist(),
            "aupimo_clean_mean": float(np.nanmean(self.aupimo_clean)),
            "aupimo_difference_mean": float(aupimo_diff.mean()),
            "aupimo_difference_mean_abs": float(np.abs(aupimo_diff).mean()),
            "aupimo_difference_max_abs": float(np.abs(aupimo_diff).max()),
            "added_regions_mean": float(self.added_regions[:, np.isfinite(self.aupimo_clean)]
                                        .mean()),
            "statistics": self.statistics.to_dict(),
            "seed": self.seed,
        }

    def to_rows(self) -> list[dict[str, Any]]:
        """One record per (draw, anomalous image): AUPIMO clean, noisy, difference, noise."""
        rows = []
        for draw in range(self.aupimo_noisy.shape[0]):
            for image in np.flatnonzero(np.isfinite(self.aupimo_clean)).tolist():
                clean = float(self.aupimo_clean[image])
                noisy = float(self.aupimo_noisy[draw, image])
                rows.append({
                    "draw": draw,
                    "image": image,
                    "path": self.paths[image] if self.paths else "",
                    "aupimo_clean": clean,
                    "aupimo_noisy": noisy,
                    "difference": clean - noisy,
                    "added_regions": int(self.added_regions[draw, image]),
                    "added_pixels": int(self.added_pixels[draw, image]),
                })
        return rows


def noisy_annotation_robustness(
    anomaly_maps: Any,
    masks: Any,
    *,
    statistics: NoiseStatistics = VISA_TINY_REGIONS,
    num_draws: int = 1,
    seed: int | None = 0,
    fpr_bounds: tuple[float, float] = (1e-5, 1e-4),
    fpr_limits: Sequence[float] = (0.3, 0.05),
    connectivity: int | None = None,
    paths: Sequence[str] | None = None,
) -> RobustnessResult:
    """AUPRO and AUPIMO with clean masks and with masks made noisy by tiny regions (Fig. 5b).

    Every anomalous mask gets random tiny regions (:func:`add_tiny_regions`), ``num_draws``
    times independently; normal masks are left as they are. AUPRO (:func:`pimo.set_metrics`)
    and AUPIMO (:func:`pimo.aupimo`) are computed for the clean masks and for each draw.

    Parameters
    ----------
    anomaly_maps, masks : arrays (N, H, W) or sequences of arrays
        As for :func:`pimo.aupimo`.
    statistics : NoiseStatistics
        Distributions of the noise (default VisA's tiny regions, paper Tab. 2).
    num_draws : int
        Independent noisy versions of the masks.
    seed : int or None
        Seed of the noise: the same seed gives the same noisy masks and scores.
    fpr_bounds : (float, float)
        AUPIMO's integration range.
    fpr_limits : sequence of float
        AUPRO's FPR limits.
    connectivity : int, optional
        Region connectivity for the noise and for AUPRO (default 8 in 2-D, 26 in 3-D).
    paths : sequence of str, optional
        Image paths.

    Returns
    -------
    RobustnessResult
    """
    if int(num_draws) != num_draws or num_draws < 1:
        raise PimoValueError(f"num_draws must be a positive integer, got {num_draws!r}.")
    bounds = validate_fpr_bounds(fpr_bounds)
    limits = tuple(float(limit) for limit in fpr_limits)
    map_list, _ = _as_image_list(anomaly_maps, "anomaly_maps")
    mask_list, _ = _as_image_list(masks, "masks")
    clean_aupimo = aupimo(map_list, mask_list, fpr_bounds=bounds, paths=paths)
    clean_sets = set_metrics(map_list, mask_list, fpr_limits=limits, auroc=False,
                             connectivity=connectivity, paths=paths)
    anomalous = np.flatnonzero(clean_aupimo.image_classes == 1)
    rng = np.random.default_rng(seed)
    num_images = len(mask_list)
    added_regions = np.zeros((num_draws, num_images), dtype=np.int64)
    added_pixels = np.zeros((num_draws, num_images), dtype=np.int64)
    noisy_aupimo = np.zeros((num_draws, num_images))
    noisy_aupro = np.zeros((num_draws, len(limits)))
    for draw in range(int(num_draws)):
        noisy_masks = list(mask_list)
        for index in anomalous.tolist():
            try:
                noisy_masks[index], sizes = add_tiny_regions(mask_list[index], rng, statistics,
                                                             connectivity=connectivity)
            except PimoValueError as error:
                raise PimoValueError(
                    f"{describe_image(index, paths)}: {error}", image_index=index,
                    path=paths[index] if paths else None,
                ) from error
            added_regions[draw, index] = sizes.size
            added_pixels[draw, index] = int(sizes.sum())
        noisy_aupimo[draw] = aupimo(map_list, noisy_masks, fpr_bounds=bounds,
                                    paths=paths).aupimos
        noisy_sets = set_metrics(map_list, noisy_masks, fpr_limits=limits, auroc=False,
                                 connectivity=connectivity, paths=paths)
        noisy_aupro[draw] = [noisy_sets.aupro[limit] for limit in limits]
    return RobustnessResult(
        fpr_limits=limits,
        aupro_clean=np.array([clean_sets.aupro[limit] for limit in limits]),
        aupro_noisy=noisy_aupro,
        aupimo_clean=np.asarray(clean_aupimo.aupimos, dtype=np.float64),
        aupimo_noisy=noisy_aupimo,
        added_regions=added_regions,
        added_pixels=added_pixels,
        fpr_bounds=bounds,
        statistics=statistics,
        seed=seed,
        paths=clean_aupimo.paths,
    )
