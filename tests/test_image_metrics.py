"""Image-level metrics against scikit-learn, with ties, and their input checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

import pimo


@settings(max_examples=80, deadline=None)
@given(
    labels=st.lists(st.integers(0, 1), min_size=2, max_size=40),
    levels=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_given_scores_equal_sklearn(labels, levels, seed):
    labels = np.array(labels)
    if labels.min() == labels.max():
        labels[0] = 1 - labels[0]
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels + 1, size=labels.size) / levels  # heavy ties
    result = pimo.image_metrics(scores, labels)
    assert result.auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result.score == "given"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_map_maximum_equals_sklearn(dtype):
    maps, masks = pimo.make_example(8, 7, (32, 32), seed=5)
    maps = maps.astype(dtype)
    maps[3] = maps[9].max()  # a tie between a normal and an anomalous image score
    result = pimo.image_metrics(maps, masks)
    scores = maps.reshape(len(maps), -1).max(axis=1)
    labels = masks.reshape(len(masks), -1).any(axis=1)
    assert result.auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    np.testing.assert_array_equal(result.scores, scores)
    mean = pimo.image_metrics(list(maps), labels.astype(int), score="mean")
    means = maps.reshape(len(maps), -1).mean(axis=1, dtype=np.float64)
    assert mean.auroc == pytest.approx(roc_auc_score(labels, means), abs=1e-12)


def test_hand_computed_with_ties():
    # normal 0.2, 0.5; anomalous 0.5, 0.9: pairs (0.2<0.5)=1, (0.2<0.9)=1, (0.5=0.5)=1/2,
    # (0.5<0.9)=1 -> 3.5 / 4
    result = pimo.image_metrics([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1])
    assert result.auroc == 0.875


def test_count_mismatch_names_both_counts():
    with pytest.raises(pimo.ShapeMismatchError, match="3 image scores but 4 masks"):
        pimo.image_metrics([0.1, 0.2, 0.3], np.zeros((4, 8, 8)))
    with pytest.raises(pimo.ShapeMismatchError, match="3 image scores but 2 image labels"):
        pimo.image_metrics([0.1, 0.2, 0.3], [0, 1])


def test_bad_input():
    with pytest.raises(pimo.MaskValueError, match=r"image 1 is 2;"):
        pimo.image_metrics([0.1, 0.2], [0, 2])
    with pytest.raises(pimo.NonFiniteScoreError, match="image 0"):
        pimo.image_metrics([np.nan, 0.2], [0, 1])
    maps, masks = pimo.make_example(2, 2, (16, 16), seed=0)
    maps[2, 1, 1] = -np.inf  # below the maximum: still refused
    with pytest.raises(pimo.NonFiniteScoreError, match=r"image 2 holds -inf at pixel \(1, 1\)"):
        pimo.image_metrics(maps, masks)
    with pytest.raises(pimo.NoAnomalousImageError):
        pimo.image_metrics([0.1, 0.2], [0, 0])
    with pytest.raises(pimo.PimoValueError, match="score must be one of"):
        pimo.image_metrics(maps, masks, score="p99")
