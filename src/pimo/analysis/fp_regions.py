"""False-positive regions vs image FPR on normal images (paper App. A.1, Fig. 6).

For a normal image i (all-zero mask) with ``M_i`` pixels, a threshold t gives::

    image FPR   F_i(t) = |a_i >= t| / M_i
    NumFPReg_i(t)      = number of connected regions of {a_i >= t}   (8-connected; 26 in 3-D)

Thresholds are chosen per image so that ``F_i`` hits log-spaced levels (default 11 levels from
1e-5 to 1e-3), each multiplied by a random factor in ``[1 - jitter, 1 + jitter]`` (default
10 %): for a target FPR f the threshold is the k-th highest score, ``k = max(1, round(f M_i))``,
and the FPR actually reached (``>= k / M_i`` when scores tie) is what is reported. The draws are
seeded, so a result is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pimo._validate import (
    NonFiniteScoreError,
    NoNormalImageError,
    PimoValueError,
    as_image_set,
)
from pimo.setmetrics import label_regions

__all__ = [
    "DEFAULT_FP_FPR_RANGE",
    "FP_HISTOGRAM_LEVELS",
    "FpRegionsResult",
    "fp_regions_vs_fpr",
]

#: Range of the image-FPR levels (paper Fig. 6).
DEFAULT_FP_FPR_RANGE: tuple[float, float] = (1e-5, 1e-3)
#: Levels of the histograms of paper Fig. 6b.
FP_HISTOGRAM_LEVELS: tuple[float, ...] = (1e-5, 1e-4, 1e-3)


@dataclass(frozen=True)
class FpRegionsResult:
    """One point per (normal image, FPR level): the FPR reached and the FP regions counted.

    Attributes
    ----------
    image_index : ndarray of int64, shape (P,)
        The image of each point (index into the input set).
    level : ndarray of float64, shape (P,)
        The preset level of each point (one of ``levels``).
    target_fpr : ndarray of float64, shape (P,)
        The level times the random jitter factor.
    threshold : ndarray of float64, shape (P,)
        The score threshold used (``a >= threshold`` is predicted anomalous).
    fpr : ndarray of float64, shape (P,)
        The image FPR reached at that threshold.
    num_regions : ndarray of int64, shape (P,)
        Number of connected false-positive regions at that threshold.
    levels : ndarray of float64, shape (K,)
        The preset log-spaced levels.
    num_images : int
        Images of the input set (normal and anomalous).
    paths : list of str or None
        Paths of the images of the input set.
    jitter : float
        Half-width of the random factor.
    seed : int or None
        The seed of the draws.
    connectivity : int
        Neighbours of a pixel for the regions.
    """

    image_index: np.ndarray
    level: np.ndarray
    target_fpr: np.ndarray
    threshold: np.ndarray
    fpr: np.ndarray
    num_regions: np.ndarray
    levels: np.ndarray
    num_images: int
    paths: list[str] | None
    jitter: float
    seed: int | None
    connectivity: int

    @property
    def num_points(self) -> int:
        """P, the number of (image, level) points."""
        return int(self.fpr.size)

    def mean_per_level(self) -> np.ndarray:
        """Mean number of FP regions of the points of each preset level (the mean line), (K,)."""
        return np.array([self.num_regions[self.level == level].mean() for level in self.levels])

    def histogram(self, level: float, *, max_regions: int = 5) -> tuple[np.ndarray, int]:
        """Distribution of the number of FP regions around an FPR level (paper Fig. 6b).

        The points whose FPR is in ``[level / 2, 2 level]`` are counted; counts above
        ``max_regions`` go to the last bin.

        Returns
        -------
        fractions : ndarray of float64, shape (max_regions + 1,)
            Fraction of those points with 0, 1, ..., ``max_regions`` (or more) regions (sums to
            1; all zero when no point is in the range).
        num_points : int
            The number of points in the range.
        """
        inside = (self.fpr >= level / 2) & (self.fpr <= 2 * level)
        counts = np.bincount(np.minimum(self.num_regions[inside], max_regions),
                             minlength=max_regions + 1).astype(np.float64)
        total = int(np.count_nonzero(inside))
        return (counts / total if total else counts), total

    def summary(self) -> dict[str, Any]:
        """Mean line and histograms at :data:`FP_HISTOGRAM_LEVELS`, JSON-ready."""
        histograms = {}
        for level in FP_HISTOGRAM_LEVELS:
            fractions, count = self.histogram(level)
            histograms[f"{level:g}"] = {"num_points": count, "fractions": fractions.tolist()}
        return {
            "num_images": int(np.unique(self.image_index).size),
            "num_points": self.num_points,
            "levels": self.levels.tolist(),
            "mean_num_regions": self.mean_per_level().tolist(),
            "histograms": histograms,
            "jitter": self.jitter,
            "seed": self.seed,
            "connectivity": self.connectivity,
        }

    def to_rows(self) -> list[dict[str, Any]]:
        """One record per point."""
        return [
            {
                "image": int(image),
                "path": self.paths[image] if self.paths else "",
                "level": float(level),
                "target_fpr": float(target),
                "threshold": float(threshold),
                "fpr": float(fpr),
                "num_regions": int(count),
            }
            for image, level, target, threshold, fpr, count in zip(
                self.image_index.tolist(), self.level.tolist(), self.target_fpr.tolist(),
                self.threshold.tolist(), self.fpr.tolist(), self.num_regions.tolist(),
                strict=True,
            )
        ]

    @classmethod
    def concatenate(cls, results: Sequence[FpRegionsResult]) -> FpRegionsResult:
        """Pool the points of several sets (e.g. several datasets or models), as Fig. 6 does.

        Image indices are offset so that they index the concatenation of the sets' images.
        """
        if not results:
            raise PimoValueError("Nothing to concatenate: give at least one FpRegionsResult.")
        first = results[0]
        for other in results[1:]:
            if not np.array_equal(other.levels, first.levels):
                raise PimoValueError("Results with different FPR levels cannot be pooled.")
        offsets = np.cumsum([0] + [r.num_images for r in results[:-1]])
        paths = ([path for r in results for path in r.paths]  # type: ignore[union-attr]
                 if all(r.paths is not None for r in results) else None)
        return cls(
            image_index=np.concatenate([r.image_index + o for r, o in zip(results, offsets,
                                                                          strict=True)]),
            level=np.concatenate([r.level for r in results]),
            target_fpr=np.concatenate([r.target_fpr for r in results]),
            threshold=np.concatenate([r.threshold for r in results]),
            fpr=np.concatenate([r.fpr for r in results]),
            num_regions=np.concatenate([r.num_regions for r in results]),
            levels=first.levels, num_images=sum(r.num_images for r in results), paths=paths,
            jitter=first.jitter, seed=first.seed, connectivity=first.connectivity,
        )


def fp_regions_vs_fpr(
    anomaly_maps: Any,
    masks: Any,
    *,
    fpr_range: tuple[float, float] = DEFAULT_FP_FPR_RANGE,
    num_levels: int = 11,
    jitter: float = 0.1,
    seed: int | None = 0,
    connectivity: int | None = None,
    paths: Sequence[str] | None = None,
) -> FpRegionsResult:
    """Number of false-positive regions vs image FPR on the normal images (paper Fig. 6).

    Parameters
    ----------
    anomaly_maps, masks : arrays (N, H, W) or sequences of arrays
        As for :func:`pimo.aupimo`; only the normal images (all-zero masks) are used.
    fpr_range : (float, float)
        Lowest and highest level; ``num_levels`` levels are log-spaced between them.
    num_levels : int
        Number of levels (at least 1; a single level is ``fpr_range[0]``).
    jitter : float
        Each target FPR is ``level * u`` with ``u`` uniform in ``[1 - jitter, 1 + jitter]``.
    seed : int or None
        Seed of the jitter draws.
    connectivity : int, optional
        Region connectivity (default 8 in 2-D, 26 in 3-D).
    paths : sequence of str, optional
        Image paths.

    Returns
    -------
    FpRegionsResult
        ``num_normal_images * num_levels`` points, image by image.
    """
    low, high = (float(v) for v in fpr_range)
    if not 0 < low <= high <= 1:
        raise PimoValueError(f"fpr_range must satisfy 0 < low <= high <= 1, got {fpr_range!r}.")
    if int(num_levels) != num_levels or num_levels < 1:
        raise PimoValueError(f"num_levels must be a positive integer, got {num_levels!r}.")
    if not 0 <= jitter < 1:
        raise PimoValueError(f"jitter must be in [0, 1), got {jitter!r}.")
    image_set = as_image_set(anomaly_maps, masks, paths=paths)
    normal = image_set.normal_indices
    if normal.size == 0:
        raise NoNormalImageError(
            f"None of the {image_set.num_images} images is normal (every mask has an anomalous "
            "pixel); false-positive regions are counted on normal images (all-zero masks)."
        )
    levels = np.geomspace(low, high, int(num_levels)) if num_levels > 1 else np.array([low])
    rng = np.random.default_rng(seed)
    columns: dict[str, list[Any]] = {k: [] for k in ("image", "level", "target", "threshold",
                                                      "fpr", "regions")}
    used_connectivity = 0
    for index in normal.tolist():
        shape = image_set.shapes[index]
        flat = np.asarray(image_set.map_of(index), dtype=np.float64)
        if not np.all(np.isfinite(flat)):
            raise NonFiniteScoreError(
                f"The anomaly map of {image_set.describe(index)} holds NaN or infinite scores; "
                "anomaly maps must be finite.", image_index=index,
                path=image_set.paths[index] if image_set.paths else None,
            )
        num_pixels = flat.size
        targets = levels * rng.uniform(1 - jitter, 1 + jitter, size=levels.size)
        ranks = np.clip(np.rint(targets * num_pixels).astype(np.int64), 1, num_pixels)
        deepest = int(ranks.max())
        top = np.sort(np.partition(flat, num_pixels - deepest)[num_pixels - deepest:])[::-1]
        used_connectivity = used_connectivity or (
            connectivity if connectivity is not None else 3 ** len(shape) - 1
        )
        for level, target, rank in zip(levels, targets, ranks.tolist(), strict=True):
            threshold = top[rank - 1]
            predicted = (flat >= threshold).reshape(shape)
            _, count = label_regions(predicted, connectivity=connectivity)
            columns["image"].append(index)
            columns["level"].append(level)
            columns["target"].append(target)
            columns["threshold"].append(threshold)
            columns["fpr"].append(np.count_nonzero(predicted) / num_pixels)
            columns["regions"].append(count)
    return FpRegionsResult(
        image_index=np.asarray(columns["image"], dtype=np.int64),
        level=np.asarray(columns["level"], dtype=np.float64),
        target_fpr=np.asarray(columns["target"], dtype=np.float64),
        threshold=np.asarray(columns["threshold"], dtype=np.float64),
        fpr=np.asarray(columns["fpr"], dtype=np.float64),
        num_regions=np.asarray(columns["regions"], dtype=np.int64),
        levels=levels, num_images=image_set.num_images, paths=image_set.paths,
        jitter=float(jitter), seed=seed, connectivity=used_connectivity,
    )
