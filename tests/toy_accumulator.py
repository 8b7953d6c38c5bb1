"""A small accumulator following pimo's accumulator protocol, to test the plumbing around it.

State: per image its maximum score, whether it is anomalous and its pixel counts ("cat"), and
a fixed-size histogram of every pixel's score ("sum"). Settings: the number of bins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pimo import PimoValueError


def _as_images(batch: Any) -> list[np.ndarray]:
    if hasattr(batch, "detach"):  # a torch tensor
        batch = batch.detach().cpu().numpy()
    if isinstance(batch, list | tuple):
        return [np.asarray(item.detach().cpu().numpy() if hasattr(item, "detach") else item)
                for item in batch]
    array = np.asarray(batch)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    return list(array)


@dataclass(frozen=True)
class ToyResult:
    max_scores: np.ndarray
    max_per_mille: np.ndarray
    anomalous: np.ndarray
    sizes: np.ndarray
    histogram: np.ndarray

    def mean(self) -> float:
        return float(self.max_scores[self.anomalous == 1].mean())


class ToyAccumulator:
    """Per-image maximum scores and a histogram of all scores in [0, 1] (``bins`` bins)."""

    STATE_REDUCTIONS: ClassVar[dict[str, str]] = {
        "max_score": "cat", "anomalous": "cat", "sizes": "cat", "histogram": "sum",
        "max_per_mille": "cat",
    }

    def __init__(self, bins: int = 8) -> None:
        self.bins = int(bins)
        self._state = {
            "max_score": np.empty(0, dtype=np.float64),
            "anomalous": np.empty(0, dtype=np.uint8),
            "sizes": np.empty((0, 2), dtype=np.int64),
            "histogram": np.zeros(self.bins, dtype=np.int64),
            "max_per_mille": np.empty(0, dtype=np.int16),  # a dtype gloo cannot gather
        }

    def update(self, anomaly_maps: Any, masks: Any, *, paths: Any = None) -> None:
        maps, masks = _as_images(anomaly_maps), _as_images(masks)
        if len(maps) != len(masks):
            raise PimoValueError(f"{len(maps)} maps but {len(masks)} masks")
        for anomaly_map, mask in zip(maps, masks, strict=True):
            mask = mask.reshape(anomaly_map.shape).astype(bool)
            counts = np.histogram(np.clip(anomaly_map, 0, 1), bins=self.bins, range=(0, 1))[0]
            self._state["histogram"] = self._state["histogram"] + counts
            self._state["max_score"] = np.append(self._state["max_score"], anomaly_map.max())
            self._state["max_per_mille"] = np.append(
                self._state["max_per_mille"], np.int16(round(1000 * anomaly_map.max())))
            self._state["anomalous"] = np.append(self._state["anomalous"], np.uint8(mask.any()))
            self._state["sizes"] = np.concatenate(
                [self._state["sizes"], [[anomaly_map.size, int(mask.sum())]]]
            )

    def merge(self, other: ToyAccumulator) -> ToyAccumulator:
        if other.bins != self.bins:
            raise PimoValueError(f"bins differ: {self.bins} and {other.bins}")
        for key, reduction in self.STATE_REDUCTIONS.items():
            if reduction == "cat":
                self._state[key] = np.concatenate([self._state[key], other._state[key]])
            else:
                self._state[key] = self._state[key] + other._state[key]
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        return {key: value.copy() for key, value in self._state.items()}

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray], **settings: Any) -> ToyAccumulator:
        accumulator = cls(**settings)
        for key, value in state.items():
            accumulator._state[key] = np.asarray(value, dtype=accumulator._state[key].dtype)
        return accumulator

    def compute(self) -> ToyResult:
        if not self._state["max_score"].size:
            raise PimoValueError("no image")
        return ToyResult(**{
            "max_scores": self._state["max_score"], "anomalous": self._state["anomalous"],
            "max_per_mille": self._state["max_per_mille"],
            "sizes": self._state["sizes"], "histogram": self._state["histogram"],
        })
