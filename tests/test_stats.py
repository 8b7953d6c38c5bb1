"""Unit tests of pimo.stats with hand-computed values (no score files needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pimo import AupimoResult, NoAnomalousImageError, PimoError, PimoValueError, stats
from pimo.stats import ImageListMismatchError

NAN = math.nan


# ---------------------------------------------------------------------------------------------
# statistics of one model
# ---------------------------------------------------------------------------------------------


def test_score_statistics_by_hand() -> None:
    # anomalous scores 0.1, 0.5, 0.3, 0.9 -> sorted 0.1 0.3 0.5 0.9 (n = 4)
    result = stats.score_statistics([0.1, NAN, 0.5, 0.3, None, 0.9])
    assert result.count == 4
    assert result.mean == pytest.approx(0.45)
    # deviations -0.35 -0.15 0.05 0.45 -> squares sum to 0.35 -> population variance 0.0875
    assert result.std == pytest.approx(math.sqrt(0.0875))
    # linear interpolation at h = (n - 1) q / 100
    assert result.median == pytest.approx(0.4)  # h = 1.5: 0.3 + 0.5 * 0.2
    assert result.q1 == pytest.approx(0.25)  # h = 0.75: 0.1 + 0.75 * 0.2
    assert result.q3 == pytest.approx(0.6)  # h = 2.25: 0.5 + 0.25 * 0.4
    assert result.p33 == pytest.approx(0.298)  # h = 0.99: 0.1 + 0.99 * 0.2
    assert (result.min, result.max) == (0.1, 0.9)


def test_score_statistics_is_population_std_not_sample_std() -> None:
    result = stats.score_statistics([0.0, 1.0])
    assert result.std == pytest.approx(0.5)  # the sample std (ddof=1) would be 0.7071


def test_score_statistics_accepts_an_aupimo_result() -> None:
    result = AupimoResult(np.array([0.2, NAN, 0.4]), np.array([1, 0, 1]))
    assert stats.score_statistics(result).mean == pytest.approx(0.3)


def test_score_statistics_without_anomalous_image_raises() -> None:
    with pytest.raises(NoAnomalousImageError, match="no anomalous image"):
        stats.score_statistics([NAN, None, NAN])


def test_infinite_score_is_rejected() -> None:
    with pytest.raises(PimoValueError, match="infinite value at image 1"):
        stats.score_statistics([0.5, math.inf])


def test_two_dimensional_scores_are_rejected() -> None:
    with pytest.raises(PimoValueError, match="1-D"):
        stats.score_statistics(np.zeros((2, 2)))


# ---------------------------------------------------------------------------------------------
# boxplot statistics and sample selection
# ---------------------------------------------------------------------------------------------

# n = 9 anomalous scores, sorted: 0.0 0.40 0.50 0.52 0.55 0.57 0.60 0.62 1.0
# Q1 = x(2) = 0.50, median = x(4) = 0.55, Q3 = x(6) = 0.60, IQR = 0.10, fences 0.35 and 0.75
# whiskers 0.40 and 0.62; outliers 0.0 and 1.0; mean = 4.76 / 9
BOX_SCORES = [0.62, 0.0, NAN, 0.4, 0.5, 0.52, 1.0, 0.55, 0.57, 0.6]


def test_boxplot_statistics_by_hand() -> None:
    box = stats.boxplot_statistics(BOX_SCORES)
    assert box.q1 == pytest.approx(0.50)
    assert box.median == pytest.approx(0.55)
    assert box.q3 == pytest.approx(0.60)
    assert box.whisker_low == pytest.approx(0.40)
    assert box.whisker_high == pytest.approx(0.62)
    assert box.mean == pytest.approx(4.76 / 9)
    assert box.outlier_indices_low.tolist() == [1]
    assert box.outlier_indices_high.tolist() == [6]


def test_select_samples_picks_the_closest_image_to_each_statistic() -> None:
    paths = [f"img{i}.png" for i in range(len(BOX_SCORES))]
    samples = stats.select_samples(BOX_SCORES, paths=paths)
    chosen = {s.statistic: (s.image_index, s.score) for s in samples}
    assert chosen == {
        "whisker_low": (3, 0.4),
        "q1": (4, 0.5),
        "mean": (5, 0.52),  # |0.52 - 0.5289| < |0.55 - 0.5289|
        "median": (7, 0.55),
        "q3": (9, 0.6),
        "whisker_high": (0, 0.62),
    }
    assert [s.statistic for s in samples] == [
        "whisker_low", "q1", "mean", "median", "q3", "whisker_high",
    ]
    assert samples[0].path == "img3.png"
    assert all(not math.isnan(BOX_SCORES[s.image_index]) for s in samples)


# anomalous scores 0.8 (images 0, 4, 5), 0.2 (image 1), 0.9 (image 3); image 2 is normal.
# Q1 = median = Q3 = 0.8, IQR = 0, both whiskers 0.8; outliers 0.2 and 0.9; mean 3.5 / 5 = 0.7
REPEAT_SCORES = [0.8, 0.2, NAN, 0.9, 0.8, 0.8]


def test_select_samples_avoids_picking_an_image_twice() -> None:
    samples = stats.select_samples(REPEAT_SCORES)
    # order of assignment: mean (0.7), then the 0.8 group in boxplot order
    assert [(s.statistic, s.image_index) for s in samples] == [
        ("mean", 0),  # 0.8 at distance 0.1 (lowest index among images 0, 4, 5)
        ("whisker_low", 4),
        ("q1", 5),
        ("median", 3),  # the 0.8 images are taken: next closest is 0.9
        ("q3", 1),  # then 0.2
        ("whisker_high", 0),  # every image is taken: the closest is repeated
    ]


def test_select_samples_with_a_repeat_tolerance() -> None:
    samples = stats.select_samples(REPEAT_SCORES, repeat_tolerance=0.01)
    # 0.9 is 0.1 away from the median (> 0.01), so the closest image (0) is repeated
    assert [s.image_index for s in samples] == [0, 4, 5, 0, 0, 0]


def test_select_samples_with_outliers() -> None:
    samples = stats.select_samples(REPEAT_SCORES, outliers="both")
    assert [(s.statistic, s.image_index) for s in samples] == [
        ("outlier_low", 1), ("mean", 0), ("whisker_low", 4), ("q1", 5), ("median", 3),
        ("q3", 0), ("whisker_high", 0), ("outlier_high", 3),
    ]
    only_low = stats.select_samples(REPEAT_SCORES, outliers="low")
    assert [s.statistic for s in only_low].count("outlier_low") == 1
    assert "outlier_high" not in [s.statistic for s in only_low]


def test_select_samples_rejects_an_unknown_outlier_policy() -> None:
    with pytest.raises(PimoValueError, match="outliers must be"):
        stats.select_samples(REPEAT_SCORES, outliers="some")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# ranks
# ---------------------------------------------------------------------------------------------

RANK_SCORES = {
    "A": [0.9, NAN, 0.5, 0.2, 0.7],
    "B": [0.9, NAN, 0.6, 0.2, 0.1],
    "C": [0.3, NAN, 0.6, 0.2, 0.8],
}


def test_image_ranks_with_ties_averaged() -> None:
    ranks = stats.image_ranks(RANK_SCORES)
    assert ranks.image_indices.tolist() == [0, 2, 3, 4]
    # image 0: A = B > C; image 2: B = C > A; image 3: all equal; image 4: C > A > B
    np.testing.assert_array_equal(
        ranks.ranks,
        [[1.5, 3.0, 2.0, 2.0], [1.5, 1.5, 2.0, 3.0], [3.0, 1.5, 2.0, 1.0]],
    )
    assert ranks.average_rank("A") == pytest.approx(8.5 / 4)
    assert ranks.average_rank("B") == pytest.approx(8.0 / 4)
    assert ranks.average_rank("C") == pytest.approx(7.5 / 4)


def test_competition_ranks() -> None:
    values = {"a": 0.9, "b": 0.9, "c": 0.5, "d": None}
    assert stats.competition_ranks(values) == {"a": 1, "b": 1, "c": 3, "d": None}
    assert stats.competition_ranks(values, higher_is_better=False) == {
        "a": 2, "b": 2, "c": 1, "d": None,
    }


# ---------------------------------------------------------------------------------------------
# paired tests
# ---------------------------------------------------------------------------------------------


def test_wilcoxon_exact_by_hand() -> None:
    # d = 0.5 0.3 -0.1 0.2 0.4: ranks of |d| 5 3 1 2 4, T+ = 14; under H0 the 32 sign
    # patterns are equally likely and T+ >= 14 for 2 of them -> p = 2/32
    d = np.array([0.5, 0.3, -0.1, 0.2, 0.4])
    assert stats.wilcoxon_confidence(d, np.zeros(5)) == pytest.approx(1 - 2 / 32)
    # the other direction: T+ = 1, P(T+ >= 1) = 31/32
    assert stats.wilcoxon_confidence(np.zeros(5), d) == pytest.approx(1 / 32)


def test_wilcoxon_zeroes_small_differences_and_drops_them() -> None:
    # 4 real differences (0.5, 0.3, -0.1, 0.2) and 10 differences of 5e-4 (<= 1e-3 -> zero)
    a = np.r_[0.6, 0.4, 0.0, 0.3, np.full(10, 0.5005)]
    b = np.r_[0.1, 0.1, 0.1, 0.1, np.full(10, 0.5)]
    # zeros dropped: n = 4, T+ = 4 + 3 + 2 = 9; zeros were present, so scipy uses the normal
    # approximation: mean n(n+1)/4 = 5, variance n(n+1)(2n+1)/24 = 7.5
    z = (9 - 5) / math.sqrt(7.5)
    expected = 0.5 * (1 + math.erf(z / math.sqrt(2)))  # 1 - p = Phi(z)
    assert stats.wilcoxon_confidence(a, b) == pytest.approx(expected, abs=1e-12)
    # without the tolerance the ten small positive differences count and raise the confidence
    assert stats.wilcoxon_confidence(a, b, zero_tolerance=0.0) > expected + 0.05


def test_wilcoxon_all_differences_within_tolerance_gives_zero_confidence() -> None:
    a = np.array([0.5, 0.7, 0.9])
    assert stats.wilcoxon_confidence(a, a - 5e-4) == 0.0
    assert stats.wilcoxon_confidence(a - 5e-4, a) == 0.0
    assert stats.wilcoxon_confidence(a, a) == 0.0
    # the bound is inclusive: |d| = 1e-3 exactly is a tie
    assert stats.wilcoxon_confidence([1e-3] * 3, [0.0] * 3) == 0.0
    assert stats.wilcoxon_confidence([2e-3] * 3, [0.0] * 3) > 0.5


def test_wilcoxon_ignores_normal_images() -> None:
    a = [0.5, NAN, 0.3, -0.1, 0.2, 0.4, NAN]
    b = [0.0, NAN, 0.0, 0.0, 0.0, 0.0, NAN]
    assert stats.wilcoxon_confidence(a, b) == pytest.approx(1 - 2 / 32)


def test_ttest_by_hand() -> None:
    # d = 0.1 0.2 0.3: mean 0.2, sample std 0.1, t = 0.2 / (0.1 / sqrt 3) = 2 sqrt 3, df = 2;
    # Student-t with 2 df: CDF(t) = 1/2 + t / (2 sqrt(2 + t^2)) = 1/2 + sqrt(3/14)
    confidence = stats.ttest_confidence([0.1, 0.2, 0.3], [0.0, 0.0, 0.0])
    assert confidence == pytest.approx(0.5 + math.sqrt(3 / 14))
    assert stats.ttest_confidence([0.4, 0.4], [0.4, 0.4]) == 0.0


def test_pairwise_confidence_covers_every_ordered_pair() -> None:
    scores = {
        "good": [0.5, 0.3, -0.1, 0.2, 0.4],
        "zero": [0.0] * 5,
        "same": [0.0] * 5,
    }
    result = stats.pairwise_confidence(scores)
    assert result.confidence("good", "zero") == pytest.approx(1 - 2 / 32)
    assert result.confidence("zero", "good") == pytest.approx(1 / 32)
    assert result.confidence("zero", "same") == 0.0
    assert np.isnan(np.diag(result.matrix)).all()
    nested = result.to_dict()
    assert set(nested) == {"good", "zero", "same"}
    assert set(nested["good"]) == {"zero", "same"}
    ttest = stats.pairwise_confidence(scores, test="ttest")
    assert ttest.test == "ttest" and ttest.zero_tolerance is None
    with pytest.raises(PimoValueError, match="test must be"):
        stats.pairwise_confidence(scores, test="sign")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# alignment checks
# ---------------------------------------------------------------------------------------------


def test_align_scores_names_the_first_differing_path() -> None:
    scores = [0.5, 0.6, NAN]
    first = AupimoResult(np.array(scores), np.array([1, 1, 0]), paths=["a/0.png", "a/1.png",
                                                                      "good/2.png"])
    second = AupimoResult(np.array(scores), np.array([1, 1, 0]), paths=["a/0.png", "b/1.png",
                                                                       "good/2.png"])
    with pytest.raises(ImageListMismatchError, match=r"image 1, 'a/1.png' .* 'b/1.png'") as info:
        stats.align_scores({"m1": first, "m2": second})
    assert info.value.image_index == 1
    assert isinstance(info.value, PimoError) and isinstance(info.value, ValueError)


def test_align_scores_matches_paths_with_different_prefixes() -> None:
    scores = [0.5, NAN]
    ours = AupimoResult(np.array(scores), np.array([1, 0]), paths=["crack/000.png", "good/0.png"])
    official = AupimoResult(
        np.array(scores), np.array([1, 0]),
        paths=["MVTec/bottle/test/crack/000.png", "MVTec/bottle/test/good/0.png"],
    )
    aligned = stats.align_scores({"ours": ours, "official": official})
    assert aligned.num_images == 2 and aligned.num_anomalous == 1


def test_align_scores_refuses_bare_names_shared_by_several_images() -> None:
    """'000.png' ends both 'crack/000.png' and 'hole/000.png': pairing by position could set
    two different images side by side, so bare names are refused when they are ambiguous
    (and still accepted when every name is unique)."""
    scores = [0.5, 0.6, NAN]
    ours = AupimoResult(np.array(scores), np.array([1, 1, 0]),
                        paths=["crack/000.png", "hole/000.png", "good/001.png"])
    bare = AupimoResult(np.array([0.6, 0.5, NAN]), np.array([1, 1, 0]),
                        paths=["000.png", "000.png", "001.png"])
    with pytest.raises(ImageListMismatchError,
                       match=r"image 0 is '000.png' .* any of 2 images \('crack/000.png', "
                             r"'hole/000.png'\)") as info:
        stats.align_scores({"ours": ours, "bare": bare})
    assert info.value.image_index == 0
    unique = AupimoResult(np.array(scores), np.array([1, 1, 0]),
                          paths=["crack/000.png", "hole/002.png", "good/001.png"])
    aligned = stats.align_scores({"unique": unique, "bare": AupimoResult(
        np.array(scores), np.array([1, 1, 0]), paths=["000.png", "002.png", "001.png"])})
    assert aligned.num_anomalous == 2


def test_align_scores_rejects_different_lengths() -> None:
    with pytest.raises(ImageListMismatchError, match="'b' has 2 scores but 'a' has 3"):
        stats.align_scores({"a": [0.1, 0.2, 0.3], "b": [0.1, 0.2]})


def test_align_scores_names_a_nan_where_an_anomalous_score_should_be() -> None:
    scores = {"a": [0.1, 0.2, NAN], "b": [0.3, NAN, NAN], "c": [0.2, 0.4, NAN]}
    with pytest.raises(ImageListMismatchError, match=r"'b' have no score .* image 1") as info:
        stats.align_scores(scores, paths_by_model={"a": ["x.png", "y.png", "z.png"]})
    assert info.value.image_index == 1 and info.value.path == "y.png"


def test_align_scores_checks_given_image_classes() -> None:
    with pytest.raises(ImageListMismatchError, match="image 1 is anomalous but its score is NaN"):
        stats.align_scores({"a": [0.1, NAN]}, image_classes=[1, 1])
    with pytest.raises(ImageListMismatchError, match="image 1 is normal but has a score"):
        stats.align_scores({"a": [0.1, 0.2]}, image_classes=[1, 0])


def test_align_scores_without_any_anomalous_image() -> None:
    with pytest.raises(NoAnomalousImageError):
        stats.align_scores({"a": [NAN, NAN], "b": [NAN, NAN]})


def test_align_scores_without_model() -> None:
    with pytest.raises(PimoValueError, match="empty"):
        stats.align_scores({})


# ---------------------------------------------------------------------------------------------
# one dataset and several
# ---------------------------------------------------------------------------------------------


def test_compare_models_orders_by_average_rank_and_keeps_set_metrics() -> None:
    comparison = stats.compare_models(
        RANK_SCORES,
        set_metrics={"A": {"auroc": 0.9, "aupro": 0.8}, "B": {"auroc": 0.95}},
        missing_models=["D"],
    )
    assert comparison.models == ("C", "B", "A")  # 1.875, 2.0, 2.125
    record = comparison.summaries["A"].to_dict()
    assert record["mean"] == pytest.approx((0.9 + 0.5 + 0.2 + 0.7) / 4)
    assert record["avg_rank"] == pytest.approx(2.125)
    assert (record["auroc"], record["aupro"], record["aupro_05"]) == (0.9, 0.8, None)
    assert (record["num_images"], record["num_anomalous"]) == (5, 4)
    assert comparison.figure_ranks("auroc") == {"C": None, "B": 1, "A": 2}
    assert comparison.figure_ranks("avg_rank") == {"C": 1, "B": 2, "A": 3}
    payload = comparison.to_dict()
    assert list(payload["models"]) == ["C", "B", "A"]
    assert payload["missing_models"] == ["D"]
    assert set(payload["confidence"]["C"]) == {"B", "A"}


def _comparison(means: dict[str, float], auroc: dict[str, float]) -> stats.DatasetComparison:
    # one anomalous image: each model's mean is its score; ranks follow the scores
    return stats.compare_models(
        {model: [value, NAN] for model, value in means.items()},
        set_metrics={model: {"auroc": value} for model, value in auroc.items()},
    )


def test_summarize_comparisons_averages_over_datasets() -> None:
    comparisons = {
        "c1/d1": _comparison({"A": 0.8, "B": 0.4}, {"A": 0.9, "B": 0.8}),
        "c1/d2": _comparison({"A": 0.2, "B": 0.6}, {"A": 0.7, "B": 0.6}),
        "c2/d3": _comparison({"A": 0.5}, {"A": 0.5}),
    }
    summary = stats.summarize_comparisons(comparisons)
    assert list(summary) == ["c1", "c2", "all"]
    c1 = summary["c1"].values
    assert c1["A"]["mean"] == pytest.approx(0.5)
    assert c1["B"]["mean"] == pytest.approx(0.5)
    assert c1["A"]["avg_rank"] == pytest.approx(1.5)  # rank 1 on d1, 2 on d2
    assert c1["A"]["auroc"] == pytest.approx(0.8)
    assert c1["A"]["aupro"] is None  # never given
    everything = summary["all"]
    assert everything.values["A"]["mean"] == pytest.approx(0.5)  # (0.8 + 0.2 + 0.5) / 3
    assert everything.values["A"]["auroc"] == pytest.approx(0.7)
    assert everything.values["A"]["avg_rank"] == pytest.approx(4 / 3)  # (1 + 2 + 1) / 3
    assert everything.num_datasets == {"A": 3, "B": 2}
    assert everything.models == ("A", "B")
    assert everything.to_dict()["B"]["num_datasets"] == 2
