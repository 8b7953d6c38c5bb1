"""Result dataclasses and the per-image score file format.

The score file is the paper's per-image JSON format (App. D), fields in this order::

    {
      "shared_fpr_metric": "mean-per-image-fpr",
      "fpr_lower_bound": 1e-05,
      "fpr_upper_bound": 0.0001,
      "num_threshs": 123,                 # points used inside the integral (null allowed)
      "thresh_lower_bound": 1.81,         # threshold at shared FPR = U (the lower threshold)
      "thresh_upper_bound": 1.84,         # threshold at shared FPR = L (the upper threshold)
      "aupimos": [1.0, 0.98, null, ...],  # one per image, null for normal images
      "paths": ["broken_large/000.png", ...]   # optional
    }

Official files write normal images as the bare token ``NaN``; :func:`load_aupimo` reads them,
and :meth:`AupimoResult.save` writes strict JSON (``null``). Unknown fields are ignored.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pimo._io import dump_json, read_json
from pimo._validate import ScoreFileError

__all__ = [
    "AuimoResult",
    "AupimoResult",
    "PimoCurves",
    "load_auimo",
    "load_aupimo",
    "load_value",
    "save_value",
]

SHARED_FPR_METRIC = "mean-per-image-fpr"


@dataclass(frozen=True, eq=False)
class AupimoResult:
    """Per-image AUPIMO scores and how they were obtained.

    Attributes
    ----------
    aupimos : ndarray of float64, shape (N,)
        AUPIMO of each image in [0, 1]; NaN for normal images (they have no AUPIMO).
    image_classes : ndarray of int8, shape (N,)
        0 = normal image (all-zero mask), 1 = anomalous image. (The official implementation
        stores the inverse convention in some places; pimo always uses 1 = anomalous.)
    fpr_bounds : tuple of float
        ``(L, U)``, the shared-FPR integration range.
    thresh_bounds : tuple of float
        ``(thresh_lower_bound, thresh_upper_bound)``: the anomaly-score thresholds at shared
        FPR = U and at shared FPR = L. Pixels scoring at or above ``thresh_upper_bound`` are
        detected over the whole integration range; below ``thresh_lower_bound`` never.
    num_thresholds : int or None
        Number of curve points used inside the integral.
    mode : {"exact", "grid"}
        How the curve was built (see :func:`pimo.aupimo`).
    paths : list of str or None
        Image paths, relative to the dataset root when known.
    """

    aupimos: np.ndarray
    image_classes: np.ndarray
    fpr_bounds: tuple[float, float] = (1e-5, 1e-4)
    thresh_bounds: tuple[float, float] = (math.nan, math.nan)
    num_thresholds: int | None = None
    mode: str = "exact"
    paths: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    scores_key: ClassVar[str] = "aupimos"
    metric_name: ClassVar[str] = "AUPIMO"

    def __post_init__(self) -> None:
        scores = np.asarray(self.aupimos, dtype=np.float64)
        classes = np.asarray(self.image_classes, dtype=np.int8)
        object.__setattr__(self, "aupimos", scores)
        object.__setattr__(self, "image_classes", classes)
        if scores.ndim != 1 or classes.shape != scores.shape:
            raise ScoreFileError(
                f"scores and image_classes must be 1-D of the same length, got {scores.shape} "
                f"and {classes.shape}."
            )
        if self.paths is not None and len(self.paths) != len(scores):
            raise ScoreFileError(
                f"Got {len(self.paths)} paths for {len(scores)} scores; one path per image."
            )

    def __eq__(self, other: object) -> bool:
        """Equal when every field is equal (NaN scores compare equal to NaN)."""
        if type(other) is not type(self):
            return NotImplemented
        return (
            np.array_equal(self.scores, other.scores, equal_nan=True)
            and np.array_equal(self.image_classes, other.image_classes)
            and tuple(self.fpr_bounds) == tuple(other.fpr_bounds)
            and np.array_equal(self.thresh_bounds, other.thresh_bounds, equal_nan=True)
            and self.num_thresholds == other.num_thresholds
            and self.mode == other.mode
            and self.paths == other.paths
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    # -- views -----------------------------------------------------------------------------
    @property
    def scores(self) -> np.ndarray:
        """The per-image scores (alias of the metric-specific attribute)."""
        return self.aupimos

    @property
    def num_images(self) -> int:
        """Number of images, normal ones included."""
        return int(self.scores.shape[0])

    @property
    def num_anomalous(self) -> int:
        """Number of anomalous images (those with a score)."""
        return int(np.count_nonzero(self.image_classes == 1))

    @property
    def anomalous_scores(self) -> np.ndarray:
        """Scores of the anomalous images, in image order."""
        return self.scores[self.image_classes == 1]

    @property
    def thresh_lower_bound(self) -> float:
        """Threshold at shared FPR = U (the lower of the two thresholds)."""
        return float(self.thresh_bounds[0])

    @property
    def thresh_upper_bound(self) -> float:
        """Threshold at shared FPR = L (the upper of the two thresholds)."""
        return float(self.thresh_bounds[1])

    # -- summaries -------------------------------------------------------------------------
    def mean(self) -> float:
        """Mean score over anomalous images."""
        return float(np.mean(self.anomalous_scores))

    def std(self) -> float:
        """Population standard deviation (``ddof=0``) over anomalous images."""
        return float(np.std(self.anomalous_scores))

    def percentile(self, q: float) -> float:
        """``q``-th percentile (0-100, linear interpolation) over anomalous images."""
        return float(np.percentile(self.anomalous_scores, q))

    def summary(self) -> dict[str, float | int]:
        """Mean, std, P33, median, min, max and counts over anomalous images."""
        scores = self.anomalous_scores
        return {
            "mean": self.mean(),
            "std": self.std(),
            "p33": self.percentile(33),
            "median": self.percentile(50),
            "min": float(scores.min()),
            "max": float(scores.max()),
            "num_images": self.num_images,
            "num_anomalous": self.num_anomalous,
        }

    # -- files -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The score-file payload, fields in the paper's order (NaN written as null)."""
        payload: dict[str, Any] = {
            "shared_fpr_metric": SHARED_FPR_METRIC,
            "fpr_lower_bound": float(self.fpr_bounds[0]),
            "fpr_upper_bound": float(self.fpr_bounds[1]),
            "num_threshs": self.num_thresholds,
            "thresh_lower_bound": float(self.thresh_bounds[0]),
            "thresh_upper_bound": float(self.thresh_bounds[1]),
            self.scores_key: [None if math.isnan(s) else float(s) for s in self.scores.tolist()],
        }
        if self.paths is not None:
            payload["paths"] = list(self.paths)
        payload["mode"] = self.mode
        payload.update(self.extra)
        return payload

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the score file (strict JSON, atomically) and return its path."""
        return dump_json(path, self.to_dict())

    @classmethod
    def from_dict(
        cls, payload: dict[str, Any], *, source: str = "score file"
    ) -> AupimoResult:
        """Build a result from a score-file payload (ours or the official one).

        Raises
        ------
        ScoreFileError
            Naming ``source`` and the field: scores not numbers in [0, 1] or null, ``paths``
            not one string per score, bounds that are not numbers or not
            ``0 < fpr_lower_bound < fpr_upper_bound <= 1``, ``thresh_lower_bound`` above
            ``thresh_upper_bound``, ``num_threshs`` not a non-negative integer or null, another
            ``shared_fpr_metric``.
        """
        if not isinstance(payload, dict):
            raise ScoreFileError(f"{source}: expected a JSON object, got {type(payload).__name__}.")
        if cls.scores_key not in payload:
            raise ScoreFileError(
                f"{source}: missing the field {cls.scores_key!r} (the per-image scores)."
            )
        raw = payload[cls.scores_key]
        if not isinstance(raw, list):
            raise ScoreFileError(f"{source}: {cls.scores_key!r} must be a list.")
        values = []
        for index, value in enumerate(raw):
            if value is None:
                values.append(math.nan)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                if math.isfinite(value) and not (0.0 <= value <= 1.0):
                    raise ScoreFileError(
                        f"{source}: score {index} is {value}, outside [0, 1]."
                    )
                if math.isinf(value):
                    raise ScoreFileError(f"{source}: score {index} is infinite.")
                values.append(float(value))
            else:
                raise ScoreFileError(
                    f"{source}: score {index} is {value!r}; expected a number or null."
                )
        scores = np.array(values, dtype=np.float64)
        classes = (~np.isnan(scores)).astype(np.int8)
        paths = payload.get("paths")
        if paths is not None:
            if not isinstance(paths, list) or len(paths) != len(values):
                raise ScoreFileError(
                    f"{source}: 'paths' must be a list with one entry per score "
                    f"({len(values)}), got {len(paths) if isinstance(paths, list) else paths!r}."
                )
            bad = next((i for i, p in enumerate(paths) if not isinstance(p, str)), None)
            if bad is not None:
                raise ScoreFileError(
                    f"{source}: 'paths' entry {bad} is {paths[bad]!r}; expected the image's "
                    "path as a string."
                )

        def number(key: str, default: float) -> float:
            value = payload.get(key, default)
            if value is None:
                return math.nan
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ScoreFileError(
                    f"{source}: {key!r} is {value!r}; expected a number (or null)."
                )
            return float(value)

        lower, upper = number("fpr_lower_bound", 1e-5), number("fpr_upper_bound", 1e-4)
        if not 0.0 < lower < upper <= 1.0:  # also False for NaN
            raise ScoreFileError(
                f"{source}: 'fpr_lower_bound' = {lower!r} and 'fpr_upper_bound' = {upper!r} "
                "must satisfy 0 < fpr_lower_bound < fpr_upper_bound <= 1 (the shared-FPR "
                "integration range, e.g. 1e-05 and 0.0001); the file is damaged or not a "
                "per-image score file."
            )
        thresh_low = number("thresh_lower_bound", math.nan)
        thresh_high = number("thresh_upper_bound", math.nan)
        if thresh_low > thresh_high:  # False when either is NaN (unknown)
            raise ScoreFileError(
                f"{source}: 'thresh_lower_bound' = {thresh_low!r} is above "
                f"'thresh_upper_bound' = {thresh_high!r}; the threshold at FPR = U (lower "
                "bound) cannot exceed the one at FPR = L. Were the two fields swapped?"
            )
        num = payload.get("num_threshs")
        if num is not None and (
            isinstance(num, bool) or not isinstance(num, int | float)
            or not float(num).is_integer() or num < 0
        ):
            raise ScoreFileError(
                f"{source}: 'num_threshs' is {num!r}; expected a non-negative integer (the "
                "number of curve points in the integral) or null."
            )
        metric = payload.get("shared_fpr_metric", SHARED_FPR_METRIC)
        if metric != SHARED_FPR_METRIC:
            raise ScoreFileError(
                f"{source}: 'shared_fpr_metric' is {metric!r}; pimo reads scores computed with "
                f"the shared FPR {SHARED_FPR_METRIC!r} (the mean of the normal images' FPRs)."
            )
        known = {
            "shared_fpr_metric", "fpr_lower_bound", "fpr_upper_bound", "num_threshs",
            "thresh_lower_bound", "thresh_upper_bound", cls.scores_key, "paths", "mode",
        }
        return cls(
            scores,
            classes,
            fpr_bounds=(lower, upper),
            thresh_bounds=(thresh_low, thresh_high),
            num_thresholds=None if num is None else int(num),
            mode=str(payload.get("mode", "unknown")),
            paths=paths,
            extra={k: v for k, v in payload.items() if k not in known},
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AupimoResult:
        """Read a score file (see :func:`load_aupimo`)."""
        return cls.from_dict(_read_json_file(path, "score file"), source=str(path))


@dataclass(frozen=True, eq=False)
class AuimoResult(AupimoResult):
    """Per-image AUIMO scores (IoU instead of TPR, paper App. C.4); same layout as AUPIMO.

    The score file uses the key ``"auimos"`` instead of ``"aupimos"``.
    """

    scores_key: ClassVar[str] = "auimos"
    metric_name: ClassVar[str] = "AUIMO"

    @property
    def auimos(self) -> np.ndarray:
        """AUIMO of each image; NaN for normal images."""
        return self.aupimos


def load_aupimo(path: str | os.PathLike[str]) -> AupimoResult:
    """Read a per-image AUPIMO score file (ours, or the official one with bare ``NaN``).

    Image classes are inferred from the scores: null/NaN = normal (0), a number = anomalous (1).
    """
    return AupimoResult.load(path)


def load_auimo(path: str | os.PathLike[str]) -> AuimoResult:
    """Read a per-image AUIMO score file written by :meth:`AuimoResult.save`."""
    return AuimoResult.load(path)  # type: ignore[return-value]


def save_value(path: str | os.PathLike[str], value: float, **extra: Any) -> Path:
    """Write a set-level metric in the published layout, ``{"value": float}`` (atomically)."""
    return dump_json(path, {"value": float(value), **extra})


def _read_json_file(path: str | os.PathLike[str], what: str) -> Any:
    """Read a JSON file; a missing, unreadable or malformed one is a :class:`ScoreFileError`."""
    try:
        return read_json(path)
    except FileNotFoundError as error:
        raise ScoreFileError(f"{path}: the {what} does not exist.", path=str(path)) from error
    except OSError as error:
        raise ScoreFileError(
            f"{path}: the {what} cannot be read ({error.strerror or error}).", path=str(path)
        ) from error
    except ValueError as error:  # JSONDecodeError (empty or truncated file), UnicodeDecodeError
        raise ScoreFileError(
            f"{path}: the {what} is not valid JSON, e.g. empty or truncated ({error}). Write it "
            "again, or remove it.",
            path=str(path),
        ) from error


def load_value(path: str | os.PathLike[str]) -> float:
    """Read a ``{"value": float}`` file (``auroc.json``, ``aupro.json``, ...).

    Raises
    ------
    ScoreFileError
        Naming the file: missing, unreadable, not JSON (empty, truncated), no ``value``
        number.
    """
    payload = _read_json_file(path, "metric file")
    if not isinstance(payload, dict) or "value" not in payload:
        raise ScoreFileError(
            f"{path}: expected a JSON object with a 'value' field.", path=str(path)
        )
    value = payload["value"]
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ScoreFileError(
            f"{path}: 'value' is {value!r}; expected a number.", path=str(path)
        )
    return float(value)


@dataclass(frozen=True)
class PimoCurves:
    """PIMO curves on a common threshold axis.

    Attributes
    ----------
    thresholds : ndarray of float64, shape (K,)
        Thresholds in descending order (so ``shared_fpr`` ascends).
    shared_fpr : ndarray of float64, shape (K,)
        ``F_sh(t) = mean over normal images of |(a >= t) & ~y| / |~y|`` at each threshold.
    tprs : ndarray of float64, shape (N, K)
        ``T_i(t) = |(a_i >= t) & y_i| / |y_i|`` for each image; rows of normal images are NaN.
    image_classes : ndarray of int8, shape (N,)
        0 = normal, 1 = anomalous.
    fpr_bounds : tuple of float
        The integration range ``(L, U)``.
    mode : {"exact", "grid"}
        Exact mode keeps every distinct normal score in the plotted range; grid mode the K
        linearly spaced thresholds.
    paths : list of str or None
        Image paths when known.
    """

    thresholds: np.ndarray
    shared_fpr: np.ndarray
    tprs: np.ndarray
    image_classes: np.ndarray
    fpr_bounds: tuple[float, float]
    mode: str = "exact"
    paths: Sequence[str] | None = None

    @property
    def anomalous_indices(self) -> np.ndarray:
        """Indices of the anomalous images (rows of ``tprs`` that are curves)."""
        return np.flatnonzero(self.image_classes == 1)
