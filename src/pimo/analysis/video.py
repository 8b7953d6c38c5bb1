"""Per-frame AUPIMO along time in videos (paper App. C.3, Fig. 11).

The frames of all videos are evaluated as one dataset (as in the paper); this module then
splits the per-image scores back into videos. A frame's *video* is the folder of its path; its
*frame index* is the last number in its file name (``frame_0042.png`` -> 42), or, when a frame
of that video has no number, its position (from 0) in the natural order of the names
(``2.png`` before ``10.png``). Indices between the first and the last frame of a video that
have no frame are *missing* (e.g. a video sampled every other frame).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from pimo._validate import PimoValueError
from pimo.results import AupimoResult

__all__ = ["VideoTimeline", "frame_number", "natural_key", "video_timelines"]

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders the numbers inside names by value (``f2`` < ``f10``)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower())
                 for part in _DIGITS.split(text) if part)


def frame_number(name: str) -> int | None:
    """The last number in a file name without its extension, or None when it has none."""
    numbers = _DIGITS.findall(PurePosixPath(name).stem)
    return int(numbers[-1]) if numbers else None


@dataclass(frozen=True)
class VideoTimeline:
    """The frames of one video in time order.

    Attributes
    ----------
    name : str
        The video (its folder, relative to the dataset root).
    frame_indices : ndarray of int64, shape (F,)
        Increasing frame indices.
    aupimos : ndarray of float64, shape (F,)
        AUPIMO of each frame (NaN for a normal frame).
    anomalous : ndarray of bool, shape (F,)
        Whether each frame has an anomaly.
    paths : list of str
        The frames' paths.
    """

    name: str
    frame_indices: np.ndarray
    aupimos: np.ndarray
    anomalous: np.ndarray
    paths: list[str]

    @property
    def missing_frames(self) -> np.ndarray:
        """Indices between the first and the last frame that have no frame, int64."""
        if self.frame_indices.size == 0:
            return np.zeros(0, dtype=np.int64)
        span = np.arange(self.frame_indices[0], self.frame_indices[-1] + 1, dtype=np.int64)
        return np.setdiff1d(span, self.frame_indices)

    def states(self) -> tuple[np.ndarray, np.ndarray]:
        """Every index from the first to the last frame and its state.

        Returns
        -------
        indices : ndarray of int64
        states : ndarray of str
            ``"normal"``, ``"anomalous"`` or ``"missing"`` per index.
        """
        if self.frame_indices.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype="<U9")
        indices = np.arange(self.frame_indices[0], self.frame_indices[-1] + 1, dtype=np.int64)
        states = np.full(indices.size, "missing", dtype="<U9")
        position = self.frame_indices - indices[0]
        states[position] = np.where(self.anomalous, "anomalous", "normal")
        return indices, states

    def summary(self) -> dict[str, Any]:
        """Frame counts and the mean AUPIMO of the anomalous frames."""
        scores = self.aupimos[self.anomalous]
        return {
            "video": self.name,
            "num_frames": int(self.frame_indices.size),
            "num_anomalous": int(np.count_nonzero(self.anomalous)),
            "num_missing": int(self.missing_frames.size),
            "first_frame": int(self.frame_indices[0]) if self.frame_indices.size else None,
            "last_frame": int(self.frame_indices[-1]) if self.frame_indices.size else None,
            "mean_aupimo": float(scores.mean()) if scores.size else None,
        }


def _timeline(name: str, paths: list[str], scores: np.ndarray, classes: np.ndarray
              ) -> VideoTimeline:
    order = sorted(range(len(paths)), key=lambda k: natural_key(PurePosixPath(paths[k]).name))
    numbers = [frame_number(paths[k]) for k in order]
    if any(number is None for number in numbers):
        indices = np.arange(len(order), dtype=np.int64)
    else:
        indices = np.array(numbers, dtype=np.int64)
        by_index = np.argsort(indices, kind="stable")
        order = [order[k] for k in by_index]
        indices = indices[by_index]
        repeated = np.flatnonzero(np.diff(indices) == 0)
        if repeated.size:
            first = int(repeated[0])
            raise PimoValueError(
                f"Two frames of the video {name!r} have the frame number {indices[first]}: "
                f"{paths[order[first]]} and {paths[order[first + 1]]}. Give each frame a "
                "distinct number in its file name."
            )
    return VideoTimeline(
        name=name,
        frame_indices=indices,
        aupimos=np.asarray(scores[order], dtype=np.float64),
        anomalous=np.asarray(classes[order] == 1),
        paths=[paths[k] for k in order],
    )


def video_timelines(
    scores: AupimoResult | Sequence[float] | np.ndarray,
    paths: Sequence[str] | None = None,
    image_classes: Sequence[int] | np.ndarray | None = None,
) -> list[VideoTimeline]:
    """Split per-frame AUPIMO scores into videos, each in time order.

    Parameters
    ----------
    scores : AupimoResult or array of float
        Per-frame AUPIMO of all frames of all videos (NaN for normal frames).
    paths : sequence of str, optional
        The frames' paths, ``<video folder>/<frame file>`` (default: the result's paths).
    image_classes : array of int, optional
        1 for an anomalous frame (default: the result's classes, or finite scores).

    Returns
    -------
    list of VideoTimeline
        One per video folder, in natural order of the folder names.

    Raises
    ------
    PimoValueError
        No paths, or two frames of a video with the same frame number.
    """
    if isinstance(scores, AupimoResult):
        paths = paths if paths is not None else scores.paths
        image_classes = image_classes if image_classes is not None else scores.image_classes
        values = np.asarray(scores.aupimos, dtype=np.float64)
    else:
        values = np.asarray(scores, dtype=np.float64)
    if paths is None:
        raise PimoValueError(
            "Video timelines need the frames' paths (<video>/<frame file>): pass paths, or a "
            "score file written with paths (as `pimo evaluate` writes it)."
        )
    path_list = [str(p) for p in paths]
    if len(path_list) != values.size:
        raise PimoValueError(f"Got {len(path_list)} paths for {values.size} scores.")
    classes = (np.isfinite(values).astype(np.int8) if image_classes is None
               else np.asarray(image_classes))
    groups: dict[str, list[int]] = {}
    for position, path in enumerate(path_list):
        groups.setdefault(str(PurePosixPath(path).parent), []).append(position)
    timelines = []
    for name in sorted(groups, key=natural_key):
        members = groups[name]
        timelines.append(_timeline(name, [path_list[k] for k in members], values[members],
                                   classes[members]))
    return timelines
