"""Image-level metrics against scikit-learn, with ties, and their input checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

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
    assert result.ap == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    f1_max, threshold = brute_f1_max(scores, labels)
    assert result.f1_max == pytest.approx(f1_max, abs=1e-12)
    assert result.f1_max_threshold == threshold
    assert result.score == "given"


def brute_f1_max(scores, labels):
    """Largest F1 of ``scores >= t`` over the distinct scores, and the highest such t."""
    best, best_t = -1.0, None
    for t in np.unique(scores)[::-1]:
        predicted = scores >= t
        tp = np.count_nonzero(predicted & (labels == 1))
        f1 = 2 * tp / (np.count_nonzero(predicted) + np.count_nonzero(labels == 1))
        if f1 > best:
            best, best_t = f1, float(t)
    return best, best_t


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_map_maximum_equals_sklearn(dtype):
    maps, masks = pimo.make_example(8, 7, (32, 32), seed=5)
    maps = maps.astype(dtype)
    maps[3] = maps[9].max()  # a tie between a normal and an anomalous image score
    result = pimo.image_metrics(maps, masks)
    scores = maps.reshape(len(maps), -1).max(axis=1)
    labels = masks.reshape(len(masks), -1).any(axis=1)
    assert result.auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result.ap == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    np.testing.assert_array_equal(result.scores, scores)
    mean = pimo.image_metrics(list(maps), labels.astype(int), score="mean")
    means = maps.reshape(len(maps), -1).mean(axis=1, dtype=np.float64)
    assert mean.auroc == pytest.approx(roc_auc_score(labels, means), abs=1e-12)


def test_hand_computed_with_ties():
    # normal 0.2, 0.5; anomalous 0.5, 0.9: pairs (0.2<0.5)=1, (0.2<0.9)=1, (0.5=0.5)=1/2,
    # (0.5<0.9)=1 -> 3.5 / 4
    result = pimo.image_metrics([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1])
    assert result.auroc == 0.875
    # t = 0.9: P = 1, R = 1/2; t = 0.5: P = 2/3, R = 1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert result.ap == pytest.approx(5 / 6, abs=1e-15)
    # F1 at 0.9: 2/3; at 0.5: 2*2/(3+2) = 0.8; at 0.2: 2*2/(4+2) = 2/3
    assert result.f1_max == pytest.approx(0.8) and result.f1_max_threshold == 0.5


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


def test_function_not_shadowed_by_its_module():
    # a fresh interpreter: importing the module behind pimo.image_metrics (as pimo.evaluate
    # does) must leave the package attribute the function
    code = ("import pimo, pimo.evaluate; "
            "assert pimo.image_metrics([0.1, 0.9], [0, 1]).auroc == 1.0")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
