"""Model comparison from per-image scores: statistics, sample selection, ranks and paired tests.

Everything here works on per-image scores alone (ours or the paper's published files), never on
anomaly maps. The input of the comparison functions is a mapping ``model -> scores`` where the
scores of one model are a 1-D array (or list, or :class:`~pimo.results.AupimoResult`) with one
entry per image, ``NaN``/``None`` for normal images; every model must score the same images in
the same order (checked by image paths when they are known).

Only anomalous images take part: with ``x_1, ..., x_n`` the scores of one model on the ``n``
anomalous images,

- ``mean = (1/n) Σ x_i``; ``std = sqrt((1/n) Σ (x_i − mean)²)`` (population, ``ddof=0``);
- ``P_q`` the q-th percentile with linear interpolation: sort ``x`` ascending into
  ``x_(0) <= ... <= x_(n−1)``, let ``h = (n − 1) q / 100``; then
  ``P_q = x_(⌊h⌋) + (h − ⌊h⌋) (x_(⌊h⌋+1) − x_(⌊h⌋))`` (numpy's default). ``Q1 = P_25``,
  ``median = P_50``, ``Q3 = P_75``, and the paper's worst-case figure ``P33 = P_33``;
- image-wise ranks: at each anomalous image the models are ranked by score, 1 = best (highest),
  ties share the average of the ranks they span; a model's average rank is the mean of its ranks
  over the images (from 1 to the number of models);
- pairwise one-sided Wilcoxon signed-rank tests on ``d_i = x_i(A) − x_i(B)`` (paper, App. C.1)
  with the alternative "A is more often better than B"; the figure reported is the confidence
  ``C = 1 − p``.

The published layout ``<model>/<collection>/<dataset>/aupimo/aupimos.json`` is read by
:func:`find_score_files` (or :func:`explicit_score_tree` for files named one by one) and
compared dataset by dataset, then summarised, by :func:`compare_score_tree`; the command
``pimo compare`` (:mod:`pimo.cli.compare_cmd`) prints and exports the result.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import scipy.stats

from pimo._outputs import (
    evaluation_folder,
    recorded_dataset_key,
    run_consistency_notes,
    settings_notes,
)
from pimo._validate import (
    EmptyInputError,
    NoAnomalousImageError,
    PimoTypeError,
    PimoValueError,
    describe_image,
)
from pimo.results import AupimoResult, load_aupimo, load_value

__all__ = [
    "BOXPLOT_STATISTICS",
    "SET_METRICS",
    "SUMMARY_FIGURES",
    "AlignedScores",
    "BenchmarkComparison",
    "BoxplotStatistics",
    "CrossDatasetSummary",
    "DatasetComparison",
    "DatasetFiles",
    "DefectTypeSummary",
    "ImageListMismatchError",
    "ImageRanks",
    "ModelSummary",
    "PairwiseConfidence",
    "ScoreStatistics",
    "ScoreTree",
    "SelectedSample",
    "align_scores",
    "boxplot_statistics",
    "compare_models",
    "compare_score_tree",
    "competition_ranks",
    "defect_type_breakdown",
    "defect_types_of",
    "explicit_score_tree",
    "find_score_files",
    "image_ranks",
    "pairwise_confidence",
    "score_statistics",
    "select_samples",
    "summarize_comparisons",
    "ttest_confidence",
    "wilcoxon_confidence",
]

#: Anything that holds one model's per-image scores (NaN/None for normal images).
ScoresLike = np.ndarray | Sequence[float | None] | AupimoResult

#: Set-level metrics read from ``{"value": x}`` files ``<name>.json`` beside ``aupimo/`` in the
#: published layout: pixel AUROC, AUPRO (FPR up to 0.3 and 0.05), pixel AP (``aupr.json``) and
#: F1-max, and the image-level AUROC, AP and F1-max of :func:`pimo.image_metrics`.
SET_METRICS: tuple[str, ...] = (
    "auroc", "aupro", "aupro_05", "aupr", "f1max", "image_auroc", "image_ap", "image_f1max",
)

#: The figures averaged over datasets in the cross-dataset summary (paper, Table 5).
SUMMARY_FIGURES: tuple[str, ...] = ("mean", "p33", "avg_rank", *SET_METRICS)

#: The boxplot statistics used for sample selection, in the order they are reported.
BOXPLOT_STATISTICS: tuple[str, ...] = (
    "whisker_low", "q1", "median", "mean", "q3", "whisker_high",
)

#: Default tolerance under which a paired difference counts as a tie (paper, App. C.1).
DEFAULT_ZERO_TOLERANCE = 1e-3

TestName = Literal["wilcoxon", "ttest"]
Alternative = Literal["greater", "two-sided", "less"]
ZeroMethod = Literal["wilcox", "pratt", "zsplit"]
ALTERNATIVES: tuple[str, ...] = ("greater", "two-sided", "less")
ZERO_METHODS: tuple[str, ...] = ("wilcox", "pratt", "zsplit")
OutlierPolicy = Literal["none", "low", "high", "both"]


class ImageListMismatchError(PimoValueError):
    """Models do not score the same images in the same order (or not the same anomalous ones)."""


# =============================================================================================
# inputs
# =============================================================================================


def _as_score_array(scores: ScoresLike, *, model: str | None = None) -> np.ndarray:
    """One model's scores as a 1-D float64 array (``None`` -> NaN); reject infinities."""
    who = f"model {model!r}" if model is not None else "scores"
    if isinstance(scores, AupimoResult):
        array = np.asarray(scores.scores, dtype=np.float64)
    else:
        if isinstance(scores, str | bytes | Mapping):
            raise PimoTypeError(
                f"The scores of {who} must be a 1-D sequence of numbers (NaN/None for normal "
                f"images) or an AupimoResult, got {type(scores).__name__}."
            )
        if not isinstance(scores, np.ndarray):
            scores = [math.nan if value is None else value for value in scores]
        try:
            array = np.array(scores, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise PimoTypeError(
                f"The scores of {who} must be numbers (NaN/None for normal images): {error}."
            ) from error
    if array.ndim != 1:
        raise PimoValueError(
            f"The scores of {who} must be 1-D (one score per image), got shape {array.shape}."
        )
    infinite = np.flatnonzero(np.isinf(array))
    if infinite.size:
        raise PimoValueError(
            f"The scores of {who} hold an infinite value at image {int(infinite[0])}; per-image "
            "scores must be finite numbers, or NaN/None for normal images."
        )
    return array


def _anomalous_values(scores: ScoresLike, *, model: str | None = None) -> np.ndarray:
    """The non-NaN scores (those of the anomalous images), raising when there is none."""
    array = _as_score_array(scores, model=model)
    values = array[~np.isnan(array)]
    if values.size == 0:
        who = f"Model {model!r} has" if model is not None else "The scores have"
        raise NoAnomalousImageError(
            f"{who} no anomalous image: all {array.size} scores are NaN/null (normal images). "
            "Statistics are taken over anomalous images only; check that the file holds the "
            "scores of the test set with its anomalous images."
        )
    return values


def _paths_match(path_a: str, path_b: str) -> bool:
    """Whether two image paths name the same image.

    Paths are compared component-wise from the end, so that a path relative to the dataset
    root (``broken_large/000.png``) matches the same image under a longer prefix
    (``MVTec/bottle/test/broken_large/000.png``).
    """
    parts_a, parts_b = _path_parts(path_a), _path_parts(path_b)
    shortest = min(len(parts_a), len(parts_b))
    if shortest == 0:
        return len(parts_a) == len(parts_b)
    return parts_a[-shortest:] == parts_b[-shortest:]


def _path_parts(path: str) -> tuple[str, ...]:
    return PurePosixPath(path.replace("\\", "/")).parts


def _ambiguous_pair(paths_a: Sequence[str], paths_b: Sequence[str]
                    ) -> tuple[int, str, list[str]] | None:
    """The first image whose pair of paths only matches on a suffix (e.g. the bare name
    ``000.png``) that several images of either list share, with those images; None when
    every pair names one image. Such a pair could be two different images
    (``hole/000.png`` and ``crack/000.png`` both end in ``000.png``)."""
    parts_a = [_path_parts(path) for path in paths_a]
    parts_b = [_path_parts(path) for path in paths_b]
    depths = [min(len(a), len(b)) for a, b in zip(parts_a, parts_b, strict=True)]
    for depth in sorted(set(depths)):
        if depth == 0:
            continue
        for parts, paths in ((parts_a, paths_a), (parts_b, paths_b)):
            holders: dict[tuple[str, ...], list[int]] = {}
            for index, one in enumerate(parts):
                holders.setdefault(one[-depth:], []).append(index)
            for index, one_a in enumerate(parts_a):
                if depths[index] != depth:
                    continue
                shared = holders.get(one_a[-depth:], [])
                if len(shared) > 1:
                    short = paths_a[index] if len(one_a) == depth else paths_b[index]
                    return index, short, [paths[other] for other in shared]
    return None


@dataclass(frozen=True)
class AlignedScores:
    """Per-image scores of several models on the same images, checked and stacked.

    Attributes
    ----------
    models : tuple of str
        Model names, in the order of the input mapping.
    scores : ndarray of float64, shape (num_models, num_images)
        ``scores[m, i]`` is model m's score of image i; NaN for normal images (the same for
        every model).
    paths : tuple of str or None
        Image paths when at least one model's file has them.
    """

    models: tuple[str, ...]
    scores: np.ndarray
    paths: tuple[str, ...] | None = None

    @property
    def num_models(self) -> int:
        """Number of models."""
        return len(self.models)

    @property
    def num_images(self) -> int:
        """Number of images, normal ones included."""
        return int(self.scores.shape[1])

    @property
    def image_classes(self) -> np.ndarray:
        """0 = normal (no score), 1 = anomalous; int8, shape (num_images,)."""
        return (~np.isnan(self.scores[0])).astype(np.int8)

    @property
    def anomalous_indices(self) -> np.ndarray:
        """Indices of the anomalous images."""
        return np.flatnonzero(~np.isnan(self.scores[0]))

    @property
    def num_anomalous(self) -> int:
        """Number of anomalous images."""
        return int(self.anomalous_indices.size)

    @property
    def anomalous_scores(self) -> np.ndarray:
        """Scores of the anomalous images, shape (num_models, num_anomalous)."""
        return self.scores[:, self.anomalous_indices]

    def scores_of(self, model: str) -> np.ndarray:
        """All scores of ``model`` (NaN for normal images)."""
        return self.scores[self._index(model)]

    def _index(self, model: str) -> int:
        try:
            return self.models.index(model)
        except ValueError:
            raise PimoValueError(
                f"Unknown model {model!r}; the models are {', '.join(self.models)}."
            ) from None


def align_scores(
    scores_by_model: Mapping[str, ScoresLike] | AlignedScores,
    *,
    paths_by_model: Mapping[str, Sequence[str] | None] | None = None,
    image_classes: Sequence[int] | np.ndarray | None = None,
) -> AlignedScores:
    """Check that every model scores the same images in the same order, and stack the scores.

    Parameters
    ----------
    scores_by_model : mapping of str to scores
        ``model -> per-image scores`` (1-D array or list with NaN/None for normal images, or an
        :class:`~pimo.results.AupimoResult`, whose ``paths`` are used). An
        :class:`AlignedScores` is returned as it is.
    paths_by_model : mapping of str to sequence of str, optional
        Image paths per model, when the scores are plain arrays.
    image_classes : sequence of int, optional
        0 = normal, 1 = anomalous per image. When given, a NaN where an anomalous score should
        be (or a score for a normal image) is an error.

    Returns
    -------
    AlignedScores

    Raises
    ------
    EmptyInputError
        No model.
    ImageListMismatchError
        Different numbers of images; paths that differ (the first differing one is named, with
        both models' paths); or an image that some models score and others leave NaN (a NaN
        where an anomalous score should be).
    NoAnomalousImageError
        No image has a score.

    Notes
    -----
    Paths are compared from their last component backwards, so relative paths match the same
    images under a longer prefix (``000.png`` vs ``bottle/test/broken_large/000.png``).
    """
    if isinstance(scores_by_model, AlignedScores):
        return scores_by_model
    if not isinstance(scores_by_model, Mapping):
        raise PimoTypeError(
            "Pass the scores as a mapping model name -> per-image scores, got "
            f"{type(scores_by_model).__name__}."
        )
    if len(scores_by_model) == 0:
        raise EmptyInputError("No model to compare: the mapping of scores is empty.")
    models = tuple(str(model) for model in scores_by_model)
    arrays = [
        _as_score_array(scores, model=model)
        for model, scores in zip(models, scores_by_model.values(), strict=True)
    ]

    paths_of: dict[str, list[str]] = {}
    for model, scores in zip(models, scores_by_model.values(), strict=True):
        given = (paths_by_model or {}).get(model)
        if given is None and isinstance(scores, AupimoResult):
            given = scores.paths
        if given is not None:
            paths_of[model] = [str(path) for path in given]

    reference_model, reference = models[0], arrays[0]
    for model, array in zip(models[1:], arrays[1:], strict=True):
        if array.shape != reference.shape:
            raise ImageListMismatchError(
                f"Model {model!r} has {array.size} scores but {reference_model!r} has "
                f"{reference.size}: every model must score the same images of the same test "
                "set, in the same order."
            )
    for model, paths in paths_of.items():
        if len(paths) != reference.size:
            raise ImageListMismatchError(
                f"Model {model!r} has {len(paths)} paths for {reference.size} scores; one path "
                "per image."
            )
    if paths_of:
        path_models = list(paths_of)
        first = path_models[0]
        for model in path_models[1:]:
            for index, (path_a, path_b) in enumerate(
                zip(paths_of[first], paths_of[model], strict=True)
            ):
                if not _paths_match(path_a, path_b):
                    raise ImageListMismatchError(
                        f"Models {first!r} and {model!r} do not list the same images: the first "
                        f"difference is image {index}, {path_a!r} for {first!r} but {path_b!r} "
                        f"for {model!r}. Every model must score the same test images in the "
                        "same order; re-export the scores in a common order.",
                        image_index=index,
                        path=path_b,
                    )
        for model in path_models[1:]:
            ambiguous = _ambiguous_pair(paths_of[first], paths_of[model])
            if ambiguous is not None:
                index, short, candidates = ambiguous
                raise ImageListMismatchError(
                    f"Models {first!r} and {model!r} cannot be paired image by image: image "
                    f"{index} is {short!r} in one of them, which names any of "
                    f"{len(candidates)} images ({', '.join(map(repr, candidates[:3]))}"
                    f"{', ...' if len(candidates) > 3 else ''}). Store paths relative to the "
                    "dataset root (e.g. 'test/crack/000.png') in every score file.",
                    image_index=index,
                    path=short,
                )
    paths = tuple(paths_of[next(iter(paths_of))]) if paths_of else None

    stacked = np.stack(arrays)
    nan_mask = np.isnan(stacked)
    disagreeing = np.flatnonzero(nan_mask.any(axis=0) & ~nan_mask.all(axis=0))
    if disagreeing.size:
        index = int(disagreeing[0])
        missing = [models[m] for m in np.flatnonzero(nan_mask[:, index])]
        scoring = [models[m] for m in np.flatnonzero(~nan_mask[:, index])]
        example = scoring[0]
        where = describe_image(index, paths)
        if len(missing) <= len(scoring):
            message = (
                f"Model(s) {', '.join(map(repr, missing))} have no score (NaN/null) for {where}, "
                f"which {len(scoring)} other model(s) score as anomalous (e.g. {example!r}: "
                f"{stacked[models.index(example), index]:.4g}). A NaN where an anomalous score "
                "should be means a missing or failed score: recompute that model's scores."
            )
        else:
            message = (
                f"Model(s) {', '.join(map(repr, scoring))} score {where} "
                f"(e.g. {example!r}: {stacked[models.index(example), index]:.4g}) but "
                f"{len(missing)} other model(s) leave it NaN/null as a normal image. Every model "
                "must have NaN for exactly the normal images."
            )
        raise ImageListMismatchError(
            message, image_index=index, path=paths[index] if paths else None
        )

    if image_classes is not None:
        classes = np.asarray(image_classes).astype(np.int64).reshape(-1)
        if classes.shape != reference.shape:
            raise ImageListMismatchError(
                f"Got {classes.size} image classes for {reference.size} images."
            )
        wrong = np.flatnonzero((classes == 1) == nan_mask[0])
        if wrong.size:
            index = int(wrong[0])
            where = describe_image(index, paths)
            if classes[index] == 1:
                text = f"{where} is anomalous but its score is NaN/null"
            else:
                text = f"{where} is normal but has a score ({stacked[0, index]:.4g})"
            raise ImageListMismatchError(
                f"{text} (every model). Normal images must have NaN/null, anomalous images a "
                "score.",
                image_index=index,
                path=paths[index] if paths else None,
            )

    if nan_mask[0].all():
        raise NoAnomalousImageError(
            f"No anomalous image: all {reference.size} scores of every model are NaN/null "
            "(normal images). Comparisons are made over anomalous images only."
        )
    return AlignedScores(models=models, scores=stacked, paths=paths)


# =============================================================================================
# one model: statistics and sample selection
# =============================================================================================


@dataclass(frozen=True)
class ScoreStatistics:
    """Statistics of one model's scores over the anomalous images.

    Attributes
    ----------
    mean : float
        ``(1/n) Σ x_i``.
    std : float
        Population standard deviation ``sqrt((1/n) Σ (x_i − mean)²)``.
    median, q1, q3, p33 : float
        Percentiles 50, 25, 75 and 33 (linear interpolation).
    min, max : float
        Extremes.
    count : int
        ``n``, the number of anomalous images (scores that are not NaN).
    """

    mean: float
    std: float
    median: float
    q1: float
    q3: float
    p33: float
    min: float
    max: float
    count: int

    def to_dict(self) -> dict[str, float | int]:
        """The statistics as a plain dict (fractions, not percent)."""
        return {
            "mean": self.mean, "std": self.std, "median": self.median, "q1": self.q1,
            "q3": self.q3, "p33": self.p33, "min": self.min, "max": self.max,
            "count": self.count,
        }


def score_statistics(scores: ScoresLike) -> ScoreStatistics:
    """Mean, population std, quartiles, P33, extremes and count over the anomalous images.

    Parameters
    ----------
    scores : 1-D array, list or AupimoResult
        Per-image scores; NaN/None (normal images) are left out.

    Returns
    -------
    ScoreStatistics
        See the module docstring for the formulas (``std`` uses ``ddof=0``; percentiles use
        linear interpolation).

    Raises
    ------
    NoAnomalousImageError
        Every score is NaN.
    """
    values = _anomalous_values(scores)
    q1, median, q3, p33 = np.percentile(values, [25, 50, 75, 33])
    return ScoreStatistics(
        mean=float(np.mean(values)),
        std=float(np.std(values)),
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        p33=float(p33),
        min=float(np.min(values)),
        max=float(np.max(values)),
        count=int(values.size),
    )


@dataclass(frozen=True)
class BoxplotStatistics:
    """The statistics a boxplot draws (as matplotlib's ``boxplot_stats`` with ``whis=1.5``).

    Attributes
    ----------
    mean, q1, median, q3 : float
        Mean and quartiles (linear interpolation) of the anomalous images' scores.
    whisker_low : float
        The lowest score ``>= Q1 − 1.5 IQR`` (``IQR = Q3 − Q1``); Q1 when there is none below.
    whisker_high : float
        The highest score ``<= Q3 + 1.5 IQR``; Q3 when there is none above.
    outlier_indices_low, outlier_indices_high : ndarray of int64
        Indices (in the full image list) of the images scoring below ``whisker_low`` and above
        ``whisker_high``, in ascending score order.
    """

    mean: float
    q1: float
    median: float
    q3: float
    whisker_low: float
    whisker_high: float
    outlier_indices_low: np.ndarray
    outlier_indices_high: np.ndarray

    def value(self, statistic: str) -> float:
        """The value of one of :data:`BOXPLOT_STATISTICS` by name."""
        if statistic not in BOXPLOT_STATISTICS:
            raise PimoValueError(
                f"Unknown boxplot statistic {statistic!r}; choose from "
                f"{', '.join(BOXPLOT_STATISTICS)}."
            )
        return float(getattr(self, statistic))


def boxplot_statistics(scores: ScoresLike) -> BoxplotStatistics:
    """Boxplot statistics of the anomalous images' scores (whiskers at 1.5 IQR).

    Parameters
    ----------
    scores : 1-D array, list or AupimoResult
        Per-image scores, NaN/None for normal images.

    Returns
    -------
    BoxplotStatistics
        With ``IQR = Q3 − Q1``: ``whisker_low = min{x_i : x_i >= Q1 − 1.5 IQR}`` and
        ``whisker_high = max{x_i : x_i <= Q3 + 1.5 IQR}`` (clamped to Q1 and Q3 as matplotlib
        does); outliers are the scores beyond the whiskers.
    """
    array = _as_score_array(scores)
    values = _anomalous_values(array)
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    iqr = q3 - q1
    above_low_fence = values[values >= q1 - 1.5 * iqr]
    below_high_fence = values[values <= q3 + 1.5 * iqr]
    whisker_low = float(np.min(above_low_fence)) if above_low_fence.size else q1
    whisker_high = float(np.max(below_high_fence)) if below_high_fence.size else q3
    whisker_low = min(whisker_low, q1)
    whisker_high = max(whisker_high, q3)
    indices = np.flatnonzero(~np.isnan(array))
    low = indices[array[indices] < whisker_low]
    high = indices[array[indices] > whisker_high]
    return BoxplotStatistics(
        mean=float(np.mean(values)),
        q1=q1,
        median=median,
        q3=q3,
        whisker_low=whisker_low,
        whisker_high=whisker_high,
        outlier_indices_low=low[np.argsort(array[low], kind="stable")],
        outlier_indices_high=high[np.argsort(array[high], kind="stable")],
    )


@dataclass(frozen=True)
class SelectedSample:
    """The image chosen to illustrate one statistic.

    Attributes
    ----------
    statistic : str
        One of :data:`BOXPLOT_STATISTICS`, or ``"outlier_low"``/``"outlier_high"``.
    statistic_value : float
        The statistic's value.
    image_index : int
        Index of the chosen image in the full image list (normal images included).
    score : float
        The chosen image's score (the closest to ``statistic_value`` among the candidates).
    path : str or None
        The image's path when known.
    """

    statistic: str
    statistic_value: float
    image_index: int
    score: float
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The selection as a plain dict."""
        return {
            "statistic": self.statistic, "statistic_value": self.statistic_value,
            "image_index": self.image_index, "score": self.score, "path": self.path,
        }


def select_samples(
    scores: ScoresLike,
    *,
    paths: Sequence[str] | None = None,
    outliers: OutlierPolicy = "none",
    repeat_tolerance: float | None = None,
) -> tuple[SelectedSample, ...]:
    """Pick the images that illustrate a score distribution (paper, App. D "Sample selection").

    For each boxplot statistic — lower whisker, Q1, median, mean, Q3, upper whisker, and
    optionally each outlier — the anomalous image whose score is closest to the statistic's
    value is selected, without picking the same image twice when it can be avoided.

    Parameters
    ----------
    scores : 1-D array, list or AupimoResult
        Per-image scores, NaN/None for normal images (never selected).
    paths : sequence of str, optional
        Image paths (taken from an AupimoResult when not given).
    outliers : {"none", "low", "high", "both"}
        Which outliers (scores beyond the whiskers) to add, one sample each.
    repeat_tolerance : float, optional
        ``None`` (default): an image already picked is only picked again when every anomalous
        image has been picked. A number: another image replaces an already picked one only if
        its score is within this distance of the statistic (the reference implementation uses
        0.01), otherwise the closest image is repeated.

    Returns
    -------
    tuple of SelectedSample
        In ascending order of statistic value (ties in the order of :data:`BOXPLOT_STATISTICS`,
        outliers last), which is also the order in which images are assigned.

    Notes
    -----
    Candidates are ranked by ``|x_i − value|``; equal distances go to the lower image index.
    """
    if outliers not in ("none", "low", "high", "both"):
        raise PimoValueError(
            f"outliers must be 'none', 'low', 'high' or 'both', got {outliers!r}."
        )
    if paths is None and isinstance(scores, AupimoResult):
        paths = scores.paths
    array = _as_score_array(scores)
    if paths is not None and len(paths) != array.size:
        raise PimoValueError(f"Got {len(paths)} paths for {array.size} scores; one per image.")
    box = boxplot_statistics(array)
    requests: list[tuple[str, float]] = [(name, box.value(name)) for name in BOXPLOT_STATISTICS]
    if outliers in ("low", "both"):
        requests += [("outlier_low", float(array[i])) for i in box.outlier_indices_low]
    if outliers in ("high", "both"):
        requests += [("outlier_high", float(array[i])) for i in box.outlier_indices_high]
    # stable sort: equal values keep the boxplot order
    requests.sort(key=lambda request: request[1])

    candidates = np.flatnonzero(~np.isnan(array))
    candidate_scores = array[candidates]
    selected: set[int] = set()
    samples: list[SelectedSample] = []
    for statistic, value in requests:
        order = np.argsort(np.abs(candidate_scores - value), kind="stable")
        chosen = int(candidates[order[0]])
        if chosen in selected:
            for position in order:
                other = int(candidates[position])
                if other in selected:
                    continue
                if repeat_tolerance is None or abs(array[other] - value) <= repeat_tolerance:
                    chosen = other
                break
        selected.add(chosen)
        samples.append(
            SelectedSample(
                statistic=statistic,
                statistic_value=float(value),
                image_index=chosen,
                score=float(array[chosen]),
                path=str(paths[chosen]) if paths is not None else None,
            )
        )
    return tuple(samples)


# =============================================================================================
# several models: ranks and paired tests
# =============================================================================================


@dataclass(frozen=True)
class ImageRanks:
    """Image-wise ranks of the models (1 = best, ties averaged).

    Attributes
    ----------
    models : tuple of str
        Model names, rows of ``ranks``.
    ranks : ndarray of float64, shape (num_models, num_anomalous)
        ``ranks[m, j]``: rank of model m at the j-th anomalous image among all models; the
        highest score gets 1, equal scores share the mean of the ranks they span.
    image_indices : ndarray of int64, shape (num_anomalous,)
        Index in the full image list of each column.
    """

    models: tuple[str, ...]
    ranks: np.ndarray
    image_indices: np.ndarray

    @property
    def average_ranks(self) -> np.ndarray:
        """``mean_j ranks[m, j]`` per model, shape (num_models,); between 1 and num_models."""
        return self.ranks.mean(axis=1)

    def average_rank(self, model: str) -> float:
        """Average rank of ``model``."""
        return float(self.average_ranks[self.models.index(model)])


def image_ranks(
    scores_by_model: Mapping[str, ScoresLike] | AlignedScores,
    *,
    rank_tolerance: float = 0.0,
) -> ImageRanks:
    """Rank the models at every anomalous image (1 = highest score, ties averaged).

    Parameters
    ----------
    scores_by_model : mapping of str to scores, or AlignedScores
        See :func:`align_scores`.
    rank_tolerance : float, default 0
        Scores closer than this (``|x_k - x_m| <= tol``) count as tied.

    Returns
    -------
    ImageRanks
        ``rank_m(i) = 1 + #{k : x_k(i) > x_m(i) + tol} + #{k ≠ m : |x_k(i) − x_m(i)| <= tol} / 2``.
        With ``tol = 0`` this is the "average" method of :func:`scipy.stats.rankdata` on the
        negated scores (the paper's ranks); for any ``tol`` the ranks at an image still sum
        to ``M (M + 1) / 2`` (each pair of models shares one point: 1 to the worse, or 1/2
        each when tied).
    """
    tolerance = _non_negative(rank_tolerance, "rank_tolerance")
    aligned = align_scores(scores_by_model)
    anomalous = aligned.anomalous_scores
    if tolerance == 0.0:
        ranks = scipy.stats.rankdata(-anomalous, method="average", axis=0)
    else:
        # difference[k, m, i] = x_k(i) - x_m(i)
        difference = anomalous[:, None, :] - anomalous[None, :, :]
        better = np.count_nonzero(difference > tolerance, axis=0)
        tied = np.count_nonzero(np.abs(difference) <= tolerance, axis=0) - 1
        ranks = 1.0 + better + 0.5 * tied
    return ImageRanks(
        models=aligned.models,
        ranks=np.asarray(ranks, dtype=np.float64),
        image_indices=aligned.anomalous_indices,
    )


def _non_negative(value: float, name: str) -> float:
    number = float(value)
    if not (math.isfinite(number) and number >= 0):
        raise PimoValueError(f"{name} must be a number >= 0, got {value!r}.")
    return number


def _check_test_options(alternative: str, zero_method: str) -> None:
    if alternative not in ALTERNATIVES:
        raise PimoValueError(
            f"alternative must be one of {list(ALTERNATIVES)}, got {alternative!r}: 'greater' "
            "(the paper's: A is better than B), 'two-sided' (A and B differ) or 'less'."
        )
    if zero_method not in ZERO_METHODS:
        raise PimoValueError(
            f"zero_method must be one of {list(ZERO_METHODS)}, got {zero_method!r} (scipy's "
            "handling of zero differences; the paper's is 'wilcox', which drops them)."
        )


def _paired_values(
    scores_a: ScoresLike, scores_b: ScoresLike
) -> tuple[np.ndarray, np.ndarray]:
    aligned = align_scores({"a": scores_a, "b": scores_b})
    anomalous = aligned.anomalous_scores
    return anomalous[0], anomalous[1]


def wilcoxon_confidence(
    scores_a: ScoresLike,
    scores_b: ScoresLike,
    *,
    zero_tolerance: float = DEFAULT_ZERO_TOLERANCE,
    alternative: Alternative = "greater",
    zero_method: ZeroMethod = "wilcox",
) -> float:
    """Confidence that model A is more often better than model B (one-sided Wilcoxon test).

    Parameters
    ----------
    scores_a, scores_b : 1-D arrays, lists or AupimoResults
        Paired per-image scores (NaN/None at the same normal images).
    zero_tolerance : float
        Differences ``|d_i| <= zero_tolerance`` count as ties and are set to zero (default
        1e-3, as in the paper).
    alternative : {"greater", "two-sided", "less"}
        The alternative hypothesis: A better than B (default, the paper's), A and B differ,
        or A worse than B. The confidence is ``1 − p`` of that test.
    zero_method : {"wilcox", "pratt", "zsplit"}
        scipy's handling of zero differences: drop them (default, the paper's), rank them
        then drop them (Pratt), or split their ranks between both signs.

    Returns
    -------
    float
        ``C = 1 − p``, where p is the p-value of :func:`scipy.stats.wilcoxon` on
        ``d_i = a_i − b_i`` (anomalous images) with ``alternative="greater"`` and
        ``zero_method="wilcox"`` (zero differences are dropped). When every difference is zero
        there is no evidence either way and ``C = 0``.

    Notes
    -----
    The zeroed differences are passed to scipy with their zeros, as the reference
    implementation does; scipy's default ``method="auto"`` then picks how the p-value is
    computed (exact distribution for small samples without zeros or ties, the normal
    approximation otherwise). On MVTec AD / Bottle this gives C = 84.3 % for PatchCore WR101
    over PatchCore WR50 (paper: 84 %).
    """
    _check_test_options(alternative, zero_method)
    values_a, values_b = _paired_values(scores_a, scores_b)
    return _wilcoxon_confidence(values_a - values_b, zero_tolerance, alternative, zero_method)


def _wilcoxon_confidence(differences: np.ndarray, zero_tolerance: float,
                         alternative: str = "greater", zero_method: str = "wilcox") -> float:
    _non_negative(zero_tolerance, "zero_tolerance")
    differences = np.array(differences, dtype=np.float64)
    differences[np.abs(differences) <= zero_tolerance] = 0.0
    if not np.any(differences):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scipy.stats.wilcoxon(differences, alternative=alternative,
                                      zero_method=zero_method)
    pvalue = float(result.pvalue)
    return 0.0 if math.isnan(pvalue) else 1.0 - pvalue


def ttest_confidence(scores_a: ScoresLike, scores_b: ScoresLike, *,
                     alternative: Alternative = "greater") -> float:
    """Confidence that model A scores higher on average than B (one-sided paired t-test).

    Parameters
    ----------
    scores_a, scores_b : 1-D arrays, lists or AupimoResults
        Paired per-image scores (NaN/None at the same normal images).

    Returns
    -------
    float
        ``C = 1 − p`` with p the p-value of :func:`scipy.stats.ttest_rel` (``alternative=
        "greater"``) on the anomalous images: ``t = mean(d) / (std(d, ddof=1) / sqrt(n))``,
        ``d_i = a_i − b_i``. No tolerance is applied (the test is about the mean difference).
        When the differences are all zero, or fewer than two images, ``C = 0``.
        ``alternative`` as in :func:`wilcoxon_confidence`.
    """
    _check_test_options(alternative, "wilcox")
    values_a, values_b = _paired_values(scores_a, scores_b)
    return _ttest_confidence(values_a, values_b, alternative)


def _ttest_confidence(values_a: np.ndarray, values_b: np.ndarray,
                      alternative: str = "greater") -> float:
    differences = values_a - values_b
    if differences.size < 2 or not np.any(differences):
        return 0.0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        pvalue = float(scipy.stats.ttest_rel(values_a, values_b,
                                             alternative=alternative).pvalue)
    return 0.0 if math.isnan(pvalue) else 1.0 - pvalue


@dataclass(frozen=True)
class PairwiseConfidence:
    """Confidence of every ordered pair of models (row better than column).

    Attributes
    ----------
    models : tuple of str
        Rows and columns of ``matrix``.
    matrix : ndarray of float64, shape (num_models, num_models)
        ``matrix[a, b]`` = confidence ``1 − p`` that model a beats model b; NaN on the diagonal.
    test : {"wilcoxon", "ttest"}
        The paired test used.
    zero_tolerance : float or None
        Tolerance of the Wilcoxon test (None for the t-test).
    alternative : str
        ``"greater"`` (row better than column, the paper's), ``"two-sided"`` or ``"less"``.
    zero_method : str or None
        scipy's zero handling of the Wilcoxon test (None for the t-test).
    """

    models: tuple[str, ...]
    matrix: np.ndarray
    test: str = "wilcoxon"
    zero_tolerance: float | None = DEFAULT_ZERO_TOLERANCE
    alternative: str = "greater"
    zero_method: str | None = "wilcox"

    def confidence(self, model_a: str, model_b: str) -> float:
        """Confidence that ``model_a`` beats ``model_b``."""
        return float(self.matrix[self.models.index(model_a), self.models.index(model_b)])

    def to_dict(self, order: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
        """``{model_a: {model_b: confidence}}`` for every ordered pair (diagonal left out)."""
        order = list(order) if order is not None else list(self.models)
        return {
            a: {b: self.confidence(a, b) for b in order if b != a} for a in order
        }


def pairwise_confidence(
    scores_by_model: Mapping[str, ScoresLike] | AlignedScores,
    *,
    test: TestName = "wilcoxon",
    zero_tolerance: float = DEFAULT_ZERO_TOLERANCE,
    alternative: Alternative = "greater",
    zero_method: ZeroMethod = "wilcox",
) -> PairwiseConfidence:
    """Run the paired test for every ordered pair of models.

    Parameters
    ----------
    scores_by_model : mapping of str to scores, or AlignedScores
        See :func:`align_scores`.
    test : {"wilcoxon", "ttest"}
        :func:`wilcoxon_confidence` (default, as in the paper) or :func:`ttest_confidence`.
    zero_tolerance : float
        Differences ``|d| <= zero_tolerance`` count as ties in the Wilcoxon test.
    alternative, zero_method : str
        See :func:`wilcoxon_confidence` (``zero_method`` only for the Wilcoxon test).

    Returns
    -------
    PairwiseConfidence
        ``matrix[a, b] = C(a beats b)``; both directions are tested, so ``C(a, b)`` and
        ``C(b, a)`` are reported separately (they do not always sum to 1).
    """
    if test not in ("wilcoxon", "ttest"):
        raise PimoValueError(f"test must be 'wilcoxon' or 'ttest', got {test!r}.")
    _check_test_options(alternative, zero_method)
    aligned = align_scores(scores_by_model)
    anomalous = aligned.anomalous_scores
    size = aligned.num_models
    matrix = np.full((size, size), np.nan)
    for a in range(size):
        for b in range(size):
            if a == b:
                continue
            if test == "wilcoxon":
                matrix[a, b] = _wilcoxon_confidence(anomalous[a] - anomalous[b], zero_tolerance,
                                                    alternative, zero_method)
            else:
                matrix[a, b] = _ttest_confidence(anomalous[a], anomalous[b], alternative)
    return PairwiseConfidence(
        models=aligned.models,
        matrix=matrix,
        test=test,
        zero_tolerance=zero_tolerance if test == "wilcoxon" else None,
        alternative=alternative,
        zero_method=zero_method if test == "wilcoxon" else None,
    )


def competition_ranks(
    values: Mapping[str, float | None], *, higher_is_better: bool = True
) -> dict[str, int | None]:
    """Rank figures across models: 1 = best, equal values share the best rank ("1, 1, 3").

    Models whose value is None or NaN get None.
    """
    present = {
        model: float(value) for model, value in values.items()
        if value is not None and not math.isnan(float(value))
    }
    ranks: dict[str, int | None] = {model: None for model in values}
    for model, value in present.items():
        better = sum(
            1 for other in present.values()
            if (other > value if higher_is_better else other < value)
        )
        ranks[model] = 1 + better
    return ranks


# =============================================================================================
# one dataset: the paper's per-dataset table
# =============================================================================================


@dataclass(frozen=True)
class ModelSummary:
    """One model on one dataset: AUPIMO statistics, average rank and set-level metrics.

    Attributes
    ----------
    model : str
        Model name.
    statistics : ScoreStatistics
        Statistics of its AUPIMO scores over the anomalous images.
    average_rank : float
        Its average image-wise rank among the compared models.
    set_metrics : dict of str to float or None
        AUROC, AUPRO, AUPRO 5 %, pixel AP, image-level metrics... (keys of
        :data:`SET_METRICS`), None when not available.
    num_images : int
        Images in the test set (normal ones included).
    """

    model: str
    statistics: ScoreStatistics
    average_rank: float
    set_metrics: dict[str, float | None]
    num_images: int

    def figure(self, name: str) -> float | None:
        """A figure by name: a statistic, ``"avg_rank"`` or a set metric."""
        if name == "avg_rank":
            return self.average_rank
        if name in SET_METRICS:
            return self.set_metrics.get(name)
        return float(getattr(self.statistics, name))

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable record (fractions, not percent)."""
        stats = self.statistics
        return {
            "mean": stats.mean, "std": stats.std, "p33": stats.p33, "median": stats.median,
            "q1": stats.q1, "q3": stats.q3, "min": stats.min, "max": stats.max,
            "avg_rank": self.average_rank,
            **{name: self.set_metrics.get(name) for name in SET_METRICS},
            "num_images": self.num_images,
            "num_anomalous": stats.count,
        }


@dataclass(frozen=True)
class DefectTypeSummary:
    """The models on the anomalous images of one defect type (paper, Sec. 5).

    Attributes
    ----------
    defect_type : str
        The defect type (the layout's folder name, e.g. ``"broken_large"``).
    num_anomalous : int
        Anomalous images of that type.
    mean, p33 : dict of str to float
        Per model, the mean and the 33rd percentile (linear interpolation) of its scores on
        those images.
    average_rank : dict of str to float
        Per model, the mean of its image-wise ranks (among all compared models) on those
        images.
    rank : dict of str to int
        Per model, its place by average rank on this defect type (1 = best, equal averages
        share the best place).
    """

    defect_type: str
    num_anomalous: int
    mean: dict[str, float]
    p33: dict[str, float]
    average_rank: dict[str, float]
    rank: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """``{"num_anomalous": n, "models": {model: {mean, p33, avg_rank, rank}}}``."""
        return {
            "num_anomalous": self.num_anomalous,
            "models": {
                model: {"mean": self.mean[model], "p33": self.p33[model],
                        "avg_rank": self.average_rank[model], "rank": self.rank[model]}
                for model in self.mean
            },
        }


def defect_types_of(
    scores_by_model: Mapping[str, ScoresLike] | AlignedScores,
    *,
    paths_by_model: Mapping[str, Sequence[str] | None] | None = None,
) -> list[str | None] | None:
    """Each image's defect type, from the score files (None when they do not tell).

    The ``defect_types`` field that ``pimo evaluate`` writes into ``aupimos.json`` is used
    when present; otherwise the name of the folder holding each image in ``paths`` (MVTec AD
    ``.../test/<defect>/000.png``), as the published score files have.
    """
    from pimo.data.layouts import defect_type_of_path

    if not isinstance(scores_by_model, AlignedScores):
        for scores in scores_by_model.values():
            if isinstance(scores, AupimoResult):
                stored = scores.extra.get("defect_types")
                if isinstance(stored, list) and len(stored) == scores.num_images:
                    return [None if value is None else str(value) for value in stored]
    aligned = align_scores(scores_by_model, paths_by_model=paths_by_model)
    if aligned.paths is None:
        return None
    return [defect_type_of_path(path) for path in aligned.paths]


def defect_type_breakdown(
    scores_by_model: Mapping[str, ScoresLike] | AlignedScores,
    defect_types: Sequence[str | None],
    *,
    ranks: ImageRanks | None = None,
) -> tuple[DefectTypeSummary, ...]:
    """Mean, P33 and rank of every model on the anomalous images of each defect type.

    Parameters
    ----------
    scores_by_model : mapping of str to scores, or AlignedScores
        See :func:`align_scores`.
    defect_types : sequence of str or None
        One per image (normal images' entries are not used). Anomalous images without a
        defect type (None) are left out of the breakdown.
    ranks : ImageRanks, optional
        The image-wise ranks, when already computed (:func:`image_ranks`).

    Returns
    -------
    tuple of DefectTypeSummary
        One per defect type, sorted by name.
    """
    aligned = align_scores(scores_by_model)
    if len(defect_types) != aligned.num_images:
        raise ImageListMismatchError(
            f"Got {len(defect_types)} defect types for {aligned.num_images} images; give one "
            "per image (normal images included)."
        )
    ranks = image_ranks(aligned) if ranks is None else ranks
    types_of_anomalous = [defect_types[int(index)] for index in ranks.image_indices]
    out = []
    for defect in sorted({d for d in types_of_anomalous if d is not None}):
        columns = np.array([d == defect for d in types_of_anomalous])
        scores = aligned.scores[:, ranks.image_indices[columns]]
        average = ranks.ranks[:, columns].mean(axis=1)
        by_model = dict(zip(aligned.models, average.tolist(), strict=True))
        out.append(DefectTypeSummary(
            defect_type=defect,
            num_anomalous=int(np.count_nonzero(columns)),
            mean=dict(zip(aligned.models, scores.mean(axis=1).tolist(), strict=True)),
            p33=dict(zip(aligned.models, np.percentile(scores, 33, axis=1).tolist(),
                         strict=True)),
            average_rank=by_model,
            rank={m: int(r) for m, r in competition_ranks(by_model,
                                                          higher_is_better=False).items()
                  if r is not None},
        ))
    return tuple(out)


@dataclass(frozen=True)
class DatasetComparison:
    """The comparison of several models on one dataset (one table of the paper, App. D.4).

    Attributes
    ----------
    models : tuple of str
        The compared models, best average rank first (ties: higher mean first, then name).
    summaries : dict of str to ModelSummary
        Per model.
    ranks : ImageRanks
        Image-wise ranks.
    confidence : PairwiseConfidence
        Pairwise tests.
    aligned : AlignedScores
        The checked scores.
    missing_models : tuple of str
        Models asked for but without scores for this dataset (left out of the table).
    defect_types : tuple of DefectTypeSummary
        Per defect type (:func:`defect_type_breakdown`), when the scores tell the images'
        defect types and the anomalous images have at least two; else empty.
    """

    models: tuple[str, ...]
    summaries: dict[str, ModelSummary]
    ranks: ImageRanks
    confidence: PairwiseConfidence
    aligned: AlignedScores
    missing_models: tuple[str, ...] = ()
    defect_types: tuple[DefectTypeSummary, ...] = ()

    @property
    def num_images(self) -> int:
        """Images in the test set."""
        return self.aligned.num_images

    @property
    def num_anomalous(self) -> int:
        """Anomalous images (those that are ranked and tested)."""
        return self.aligned.num_anomalous

    def figure_ranks(self, name: str) -> dict[str, int | None]:
        """Each model's rank on one figure (1 = best; avg_rank: lowest is best)."""
        values = {model: self.summaries[model].figure(name) for model in self.models}
        return competition_ranks(values, higher_is_better=name != "avg_rank")

    def samples(self, model: str, **options: Any) -> tuple[SelectedSample, ...]:
        """Sample selection (:func:`select_samples`) for one model on this dataset."""
        return select_samples(
            self.aligned.scores_of(model), paths=self.aligned.paths, **options
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"models": {...}, "confidence": {...}, ...}`` (see ``pimo compare --json``)."""
        return {
            "models": {model: self.summaries[model].to_dict() for model in self.models},
            "confidence": self.confidence.to_dict(order=self.models),
            "test": self.confidence.test,
            "alternative": self.confidence.alternative,
            "num_images": self.num_images,
            "num_anomalous": self.num_anomalous,
            "missing_models": list(self.missing_models),
            "defect_types": {summary.defect_type: summary.to_dict()
                             for summary in self.defect_types},
        }


def compare_models(
    scores_by_model: Mapping[str, ScoresLike] | AlignedScores,
    *,
    paths_by_model: Mapping[str, Sequence[str] | None] | None = None,
    set_metrics: Mapping[str, Mapping[str, float | None]] | None = None,
    test: TestName = "wilcoxon",
    zero_tolerance: float = DEFAULT_ZERO_TOLERANCE,
    alternative: Alternative = "greater",
    zero_method: ZeroMethod = "wilcox",
    rank_tolerance: float = 0.0,
    missing_models: Iterable[str] = (),
    defect_types: Sequence[str | None] | None = None,
) -> DatasetComparison:
    """Compare models on one dataset: statistics, average ranks, set metrics and pairwise tests.

    Parameters
    ----------
    scores_by_model : mapping of str to scores, or AlignedScores
        ``model -> per-image scores`` on the same images (see :func:`align_scores`).
    paths_by_model : mapping, optional
        Image paths per model, for plain arrays.
    set_metrics : mapping of str to mapping, optional
        ``model -> {"auroc": x, "aupro": y, "aupro_05": z}``; missing entries are None.
    test : {"wilcoxon", "ttest"}
        Paired test (see :func:`pairwise_confidence`).
    zero_tolerance : float
        Tie tolerance of the Wilcoxon test.
    alternative, zero_method : str
        Options of the paired test (see :func:`wilcoxon_confidence`); defaults: the paper's.
    rank_tolerance : float
        Scores closer than this tie in the image-wise ranks (see :func:`image_ranks`).
    missing_models : iterable of str
        Models that were asked for but have no scores on this dataset (only recorded).
    defect_types : sequence of str or None, optional
        Each image's defect type; by default read from the score files
        (:func:`defect_types_of`). With two or more types among the anomalous images the
        comparison has a per-defect-type breakdown.

    Returns
    -------
    DatasetComparison
    """
    aligned = align_scores(scores_by_model, paths_by_model=paths_by_model)
    _require_one_fpr_range(scores_by_model)
    if defect_types is None:
        defect_types = defect_types_of(scores_by_model, paths_by_model=paths_by_model)
    ranks = image_ranks(aligned, rank_tolerance=rank_tolerance)
    confidence = pairwise_confidence(aligned, test=test, zero_tolerance=zero_tolerance,
                                     alternative=alternative, zero_method=zero_method)
    summaries: dict[str, ModelSummary] = {}
    for index, model in enumerate(aligned.models):
        metrics = dict((set_metrics or {}).get(model, {}))
        summaries[model] = ModelSummary(
            model=model,
            statistics=score_statistics(aligned.scores[index]),
            average_rank=float(ranks.average_ranks[index]),
            set_metrics={name: _optional_float(metrics.get(name)) for name in SET_METRICS},
            num_images=aligned.num_images,
        )
    order = tuple(
        sorted(
            aligned.models,
            key=lambda m: (summaries[m].average_rank, -summaries[m].statistics.mean, m),
        )
    )
    breakdown: tuple[DefectTypeSummary, ...] = ()
    if defect_types is not None:
        anomalous_types = {defect_types[int(i)] for i in aligned.anomalous_indices} - {None}
        if len(anomalous_types) >= 2:
            breakdown = defect_type_breakdown(aligned, defect_types, ranks=ranks)
    return DatasetComparison(
        models=order,
        summaries=summaries,
        ranks=ranks,
        confidence=confidence,
        aligned=aligned,
        missing_models=tuple(missing_models),
        defect_types=breakdown,
    )


def _require_one_fpr_range(scores_by_model: Mapping[str, ScoresLike] | AlignedScores) -> None:
    """Raise when the models' AUPIMO scores were integrated over different FPR ranges."""
    if isinstance(scores_by_model, AlignedScores):
        return
    ranges = {str(model): tuple(float(bound) for bound in scores.fpr_bounds)
              for model, scores in scores_by_model.items() if isinstance(scores, AupimoResult)}
    if len(set(ranges.values())) > 1:
        shown = ", ".join(f"[{low:g}, {high:g}] for {model!r}"
                          for model, (low, high) in ranges.items())
        raise PimoValueError(
            f"The models' AUPIMO scores cover different shared-FPR ranges ({shown}): scores "
            "over different ranges are not comparable. Score every model over the same range "
            "(pimo evaluate --fpr-bounds L U; the paper's is 1e-5 1e-4)."
        )


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


# =============================================================================================
# several datasets: the cross-dataset summary (paper, Table 5)
# =============================================================================================


@dataclass(frozen=True)
class CrossDatasetSummary:
    """Means over datasets of each dataset-level figure, per model (paper, Table 5).

    Attributes
    ----------
    scope : str
        A collection name (``"mvtec"``) or ``"all"``.
    models : tuple of str
        Models, best (lowest) mean average rank first.
    values : dict of str to dict of str to float or None
        ``values[model][figure]`` for the figures of :data:`SUMMARY_FIGURES`: the mean over the
        datasets of the scope where the model was compared; None for a set metric that is
        missing on any of those datasets.
    num_datasets : dict of str to int
        Datasets each model's means are taken over.
    datasets : tuple of str
        The datasets of the scope.
    """

    scope: str
    models: tuple[str, ...]
    values: dict[str, dict[str, float | None]]
    num_datasets: dict[str, int]
    datasets: tuple[str, ...]

    def figure_ranks(self, name: str) -> dict[str, int | None]:
        """Each model's rank on one figure (1 = best; avg_rank: lowest is best)."""
        return competition_ranks(
            {model: self.values[model][name] for model in self.models},
            higher_is_better=name != "avg_rank",
        )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{model: {figure: value, ..., "num_datasets": n}}``."""
        return {
            model: {**self.values[model], "num_datasets": self.num_datasets[model]}
            for model in self.models
        }


def _collection_of(dataset: str) -> str:
    return dataset.split("/", 1)[0] if "/" in dataset else dataset


def summarize_comparisons(
    comparisons: Mapping[str, DatasetComparison],
) -> dict[str, CrossDatasetSummary]:
    """Average each dataset-level figure over the datasets of each collection and over all.

    Parameters
    ----------
    comparisons : mapping of str to DatasetComparison
        Keyed ``"<collection>/<dataset>"``; the collection is the part before the first "/".

    Returns
    -------
    dict of str to CrossDatasetSummary
        One entry per collection (sorted) and ``"all"`` (every dataset, collections
        confounded, as in the paper): for a model and a figure f,
        ``mean over datasets D where the model was compared of f(model, D)``.
    """
    scopes: dict[str, list[str]] = {}
    for dataset in sorted(comparisons):
        scopes.setdefault(_collection_of(dataset), []).append(dataset)
    scopes = dict(sorted(scopes.items()))
    scopes["all"] = sorted(comparisons)
    summaries: dict[str, CrossDatasetSummary] = {}
    for scope, datasets in scopes.items():
        per_model: dict[str, dict[str, list[float | None]]] = {}
        for dataset in datasets:
            comparison = comparisons[dataset]
            for model in comparison.models:
                figures = per_model.setdefault(model, {name: [] for name in SUMMARY_FIGURES})
                for name in SUMMARY_FIGURES:
                    figures[name].append(comparison.summaries[model].figure(name))
        values: dict[str, dict[str, float | None]] = {}
        for model, figures in per_model.items():
            values[model] = {
                name: (
                    None if any(v is None for v in series)
                    else float(np.mean(np.asarray(series, dtype=np.float64)))
                )
                for name, series in figures.items()
            }
        num_datasets = {model: len(figures["mean"]) for model, figures in per_model.items()}
        models = tuple(
            sorted(values, key=lambda m: (values[m]["avg_rank"], -(values[m]["mean"] or 0), m))
        )
        summaries[scope] = CrossDatasetSummary(
            scope=scope,
            models=models,
            values=values,
            num_datasets=num_datasets,
            datasets=tuple(datasets),
        )
    return summaries


# =============================================================================================
# files: the published layout <model>/<collection>/<dataset>/aupimo/aupimos.json
# =============================================================================================


@dataclass(frozen=True)
class DatasetFiles:
    """The score files of one model on one dataset.

    Attributes
    ----------
    aupimo : Path
        The per-image score file (``.../aupimo/aupimos.json``).
    set_metrics : dict of str to Path
        The ``{"value": x}`` files found beside it (``auroc.json``, ``aupro.json``,
        ``aupro_05.json``), keyed by metric.
    """

    aupimo: Path
    set_metrics: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def beside(cls, aupimo: str | Path) -> DatasetFiles:
        """Find the set-metric files of a score file.

        They are looked for in the dataset folder: the parent of ``aupimo/`` when the file
        sits in a folder named ``aupimo``, else the file's own folder.
        """
        path = Path(aupimo)
        folder = evaluation_folder(path)
        found = {
            name: folder / f"{name}.json" for name in SET_METRICS
            if (folder / f"{name}.json").is_file()
        }
        return cls(aupimo=path, set_metrics=found)


@dataclass(frozen=True)
class ScoreTree:
    """Which score files exist, per dataset and model.

    Attributes
    ----------
    files : dict of str to dict of str to DatasetFiles
        ``files["mvtec/bottle"]["patchcore_wr101"]``.
    models : tuple of str
        Every model found, sorted.
    """

    files: dict[str, dict[str, DatasetFiles]]
    models: tuple[str, ...]

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset found (``"<collection>/<dataset>"``), sorted."""
        return tuple(sorted(self.files))

    def missing_models(self, dataset: str) -> tuple[str, ...]:
        """Models of the tree without scores for ``dataset``."""
        return tuple(model for model in self.models if model not in self.files[dataset])

    def merged(self, other: ScoreTree) -> ScoreTree:
        """Both trees together; a model present in both is an error."""
        clash = sorted(set(self.models) & set(other.models))
        if clash:
            raise PimoValueError(
                f"Model name(s) {', '.join(map(repr, clash))} given twice; give each model a "
                "distinct name (with --model NAME=PATH)."
            )
        files = {dataset: dict(models) for dataset, models in self.files.items()}
        for dataset, models in other.files.items():
            files.setdefault(dataset, {}).update(models)
        return ScoreTree(files=files, models=tuple(sorted(self.models + other.models)))

    def select(
        self, *, datasets: Iterable[str] | None = None, models: Iterable[str] | None = None
    ) -> ScoreTree:
        """Keep some datasets and models.

        Parameters
        ----------
        datasets : iterable of str, optional
            Each item is a full key (``"mvtec/bottle"``), a dataset name (``"bottle"``) or a
            collection (``"visa"``).
        models : iterable of str, optional
            Model names.

        Raises
        ------
        PimoValueError
            A name that matches nothing (the available names are listed).
        """
        keep_datasets = set(self.files)
        if datasets is not None:
            wanted = [name.strip().strip("/") for name in datasets if name.strip()]
            keep_datasets = set()
            for name in wanted:
                matches = {
                    key for key in self.files
                    if name in (key, key.split("/")[-1], _collection_of(key))
                }
                if not matches:
                    raise PimoValueError(
                        f"No dataset matches {name!r}; available: {', '.join(self.datasets)} "
                        "(a full name, a dataset name or a collection)."
                    )
                keep_datasets |= matches
        keep_models = set(self.models)
        if models is not None:
            wanted_models = [name.strip() for name in models if name.strip()]
            unknown = [name for name in wanted_models if name not in self.models]
            if unknown:
                raise PimoValueError(
                    f"Unknown model(s) {', '.join(map(repr, unknown))}; available: "
                    f"{', '.join(self.models)}."
                )
            keep_models = set(wanted_models)
        files = {
            dataset: {m: f for m, f in by_model.items() if m in keep_models}
            for dataset, by_model in self.files.items() if dataset in keep_datasets
        }
        files = {dataset: by_model for dataset, by_model in files.items() if by_model}
        return ScoreTree(files=files, models=tuple(sorted(keep_models)))


def _tree_of_model_folder(model: str, folder: Path) -> dict[str, dict[str, DatasetFiles]]:
    files: dict[str, dict[str, DatasetFiles]] = {}
    for path in sorted(folder.glob("*/*/aupimo/aupimos.json")):
        dataset = f"{path.parents[2].name}/{path.parents[1].name}"
        files.setdefault(dataset, {})[model] = DatasetFiles.beside(path)
    return files


def find_score_files(root: str | Path) -> ScoreTree:
    """Find the score files of the published layout under ``root``.

    The layout is ``root/<model>/<collection>/<dataset>/aupimo/aupimos.json``, with optional
    ``{"value": x}`` files in ``<dataset>/`` for the metrics of :data:`SET_METRICS`
    (``auroc.json``, ``aupro.json``, ``aupro_05.json``, ``aupr.json``, ...).

    Raises
    ------
    EmptyInputError
        ``root`` is not a folder or holds no score file at that depth (with a hint when score
        files exist at another depth, e.g. the parent of ``benchmark/`` or an ``ablation/``
        tree).
    """
    folder = Path(root)
    if not folder.is_dir():
        raise EmptyInputError(
            f"{folder}: not a folder. Point to the root of the layout "
            "<model>/<collection>/<dataset>/aupimo/aupimos.json (e.g. paper-benchmark/benchmark)."
        )
    files: dict[str, dict[str, DatasetFiles]] = {}
    models: list[str] = []
    for model_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
        found = _tree_of_model_folder(model_folder.name, model_folder)
        if found:
            models.append(model_folder.name)
        for dataset, by_model in found.items():
            files.setdefault(dataset, {}).update(by_model)
    if not files:
        elsewhere = sorted(folder.rglob("aupimos.json"))
        hint = ""
        if elsewhere:
            example = elsewhere[0].relative_to(folder)
            hint = (
                f" Found {len(elsewhere)} aupimos.json at another depth (e.g. {example}); "
                "ROOT must hold <model>/<collection>/<dataset>/aupimo/aupimos.json"
            )
            if (folder / "benchmark").is_dir():
                hint += f" — did you mean {folder / 'benchmark'}?"
            else:
                hint += "; pass other layouts as --model NAME=PATH."
        raise EmptyInputError(
            f"{folder}: no score file found (expected "
            f"<model>/<collection>/<dataset>/aupimo/aupimos.json).{hint}"
        )
    if len(models) == 1:
        warnings.warn(
            f"{folder}: only one model folder ({models[0]!r}) holds scores, so there is nothing "
            "to compare it with. ROOT must hold <model>/<collection>/<dataset>/aupimo/"
            "aupimos.json; a tree in another order (e.g. the paper's ablation/<collection>/"
            "<dataset>/<run>/) is compared by naming each run with --model NAME=PATH.",
            UserWarning,
            stacklevel=2,
        )
    return ScoreTree(files=files, models=tuple(models))


def _dataset_key(files: Sequence[Path]) -> str:
    """A name for the dataset of explicit score files.

    The dataset folder of a file is the parent of ``aupimo/`` (or the file's folder); the key is
    made of the last (up to two) folder names that all dataset folders share, else the last two
    names of their common parent, else ``"scores"``.
    """
    folders = [
        (p.parent.parent if p.parent.name == "aupimo" else p.parent).resolve() for p in files
    ]
    parts = [folder.parts for folder in folders]
    shared_tail: list[str] = []
    for position in range(1, min(len(p) for p in parts) + 1):
        names = {p[-position] for p in parts}
        if len(names) != 1:
            break
        shared_tail.insert(0, names.pop())
        if len(shared_tail) == 2:
            break
    if shared_tail and len(folders) > 1:
        return "/".join(shared_tail)
    common: list[str] = []
    for names in zip(*parts, strict=False):
        if len(set(names)) != 1:
            break
        common.append(names[0])
    if len(folders) == 1:
        common = list(parts[0])
    tail = [name for name in common[-2:] if name not in ("", "/")]
    return "/".join(tail) if tail else "scores"


def explicit_score_tree(models: Mapping[str, str | Path]) -> ScoreTree:
    """Build a tree from ``name -> path`` pairs (``pimo compare --model NAME=PATH``).

    A path may be

    - a score file (``aupimos.json``): one dataset, named as its ``evaluation.json`` records
      it (``<layout>/<category>``) or, without one, after the files' folders (e.g.
      ``mvtec/bottle``; every file without ``evaluation.json`` must be for the same dataset);
    - a folder holding ``aupimo/aupimos.json`` (a dataset folder, e.g. one ablation run);
    - a model folder in the published layout, ``<collection>/<dataset>/aupimo/aupimos.json``.

    Set-metric files beside the score file are used.
    """
    single: dict[str, DatasetFiles] = {}
    files: dict[str, dict[str, DatasetFiles]] = {}
    for name, given in models.items():
        path = Path(given)
        if path.is_file():
            single[name] = DatasetFiles.beside(path)
        elif (path / "aupimo" / "aupimos.json").is_file():
            single[name] = DatasetFiles.beside(path / "aupimo" / "aupimos.json")
        elif path.is_dir():
            found = _tree_of_model_folder(name, path)
            if not found:
                raise EmptyInputError(
                    f"Model {name!r}: {path} holds neither aupimo/aupimos.json nor "
                    "<collection>/<dataset>/aupimo/aupimos.json."
                )
            for dataset, by_model in found.items():
                files.setdefault(dataset, {}).update(by_model)
        else:
            raise EmptyInputError(f"Model {name!r}: {path} does not exist.")
    if single:
        # a score file written by `pimo evaluate` says its dataset in evaluation.json; the
        # others are named after their folders
        unrecorded: dict[str, DatasetFiles] = {}
        for name, entry in single.items():
            key = recorded_dataset_key(evaluation_folder(entry.aupimo))
            if key is None:
                unrecorded[name] = entry
            else:
                files.setdefault(key, {})[name] = entry
        if unrecorded:
            key = _dataset_key([entry.aupimo for entry in unrecorded.values()])
            files.setdefault(key, {}).update(unrecorded)
    return ScoreTree(files=files, models=tuple(sorted(models)))


@dataclass(frozen=True)
class BenchmarkComparison:
    """Every dataset's comparison and the cross-dataset summaries.

    Attributes
    ----------
    datasets : dict of str to DatasetComparison
        Keyed ``"<collection>/<dataset>"``, sorted.
    summary : dict of str to CrossDatasetSummary
        Per collection and ``"all"``.
    notes : tuple of str
        Warnings raised while comparing (e.g. a model missing a dataset).
    """

    datasets: dict[str, DatasetComparison]
    summary: dict[str, CrossDatasetSummary]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``pimo compare --json`` payload (fractions, not percent)."""
        return {
            "datasets": {key: comparison.to_dict() for key, comparison in self.datasets.items()},
            "summary": {scope: summary.to_dict() for scope, summary in self.summary.items()},
        }


def _load_dataset(
    dataset: str, by_model: Mapping[str, DatasetFiles]
) -> tuple[dict[str, AupimoResult], dict[str, dict[str, float | None]]]:
    results: dict[str, AupimoResult] = {}
    metrics: dict[str, dict[str, float | None]] = {}
    for model, entry in by_model.items():
        result = load_aupimo(entry.aupimo)
        if result.num_anomalous == 0:
            raise NoAnomalousImageError(
                f"{entry.aupimo} (model {model!r}, dataset {dataset!r}) has no anomalous image: "
                f"all {result.num_images} scores are NaN/null. Check that the file was written "
                "for the test set with its anomalous images."
            )
        results[model] = result
        metrics[model] = {name: load_value(path) for name, path in entry.set_metrics.items()}
    return results, metrics


def compare_score_tree(
    tree: ScoreTree,
    *,
    test: TestName = "wilcoxon",
    zero_tolerance: float = DEFAULT_ZERO_TOLERANCE,
    alternative: Alternative = "greater",
    zero_method: ZeroMethod = "wilcox",
    rank_tolerance: float = 0.0,
) -> BenchmarkComparison:
    """Compare the models of a :class:`ScoreTree` on each dataset, then summarise.

    The test options are those of :func:`compare_models`.

    A model without scores for a dataset is left out of that dataset's table and a warning
    (``UserWarning``) names it; it is also listed in the comparison's ``missing_models``.

    Raises
    ------
    ScoreFileError, ImageListMismatchError, NoAnomalousImageError
        With the file (or model and dataset) at fault.
    """
    if not tree.files:
        raise EmptyInputError("Nothing to compare: no dataset is left after filtering.")
    comparisons: dict[str, DatasetComparison] = {}
    notes: list[str] = []
    for dataset in tree.datasets:
        by_model = tree.files[dataset]
        missing = tree.missing_models(dataset)
        if missing:
            note = (
                f"{dataset}: no scores for {', '.join(missing)}; left out of this dataset's "
                "table."
            )
            notes.append(note)
            warnings.warn(note, UserWarning, stacklevel=2)
        results, metrics = _load_dataset(dataset, by_model)
        try:
            comparisons[dataset] = compare_models(
                results,
                set_metrics=metrics,
                test=test,
                zero_tolerance=zero_tolerance,
                alternative=alternative,
                zero_method=zero_method,
                rank_tolerance=rank_tolerance,
                missing_models=missing,
            )
        except ImageListMismatchError as error:
            raise ImageListMismatchError(
                f"{dataset}: {error}", image_index=error.image_index, path=error.path
            ) from error
    score_files = {
        model: {dataset: by_model[model].aupimo for dataset, by_model in tree.files.items()
                if model in by_model}
        for model in tree.models
    }
    for note in [*run_consistency_notes(score_files), *settings_notes(score_files)]:
        notes.append(note)
        warnings.warn(note, UserWarning, stacklevel=2)
    return BenchmarkComparison(
        datasets=comparisons, summary=summarize_comparisons(comparisons), notes=tuple(notes)
    )
