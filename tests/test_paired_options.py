"""Options of the paired comparison: alternatives, scipy's zero handling, rank tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from pimo import stats

A = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.3, 0.45])
B = np.array([0.85, 0.8, 0.6, 0.65, 0.4, 0.9, 0.3005, 0.2])


@pytest.mark.parametrize("alternative", ["greater", "two-sided", "less"])
@pytest.mark.parametrize("zero_method", ["wilcox", "pratt", "zsplit"])
def test_wilcoxon_options_are_scipys(alternative, zero_method):
    differences = A - B
    differences[np.abs(differences) <= 1e-3] = 0.0  # the paper's tie tolerance
    expected = 1 - scipy.stats.wilcoxon(differences, alternative=alternative,
                                        zero_method=zero_method).pvalue
    value = stats.wilcoxon_confidence(A, B, alternative=alternative, zero_method=zero_method)
    assert value == pytest.approx(expected, abs=1e-12)


def test_defaults_are_the_papers():
    assert stats.wilcoxon_confidence(A, B) == stats.wilcoxon_confidence(
        A, B, alternative="greater", zero_method="wilcox")
    assert stats.ttest_confidence(A, B) == pytest.approx(
        1 - scipy.stats.ttest_rel(A, B, alternative="greater").pvalue)
    assert stats.ttest_confidence(A, B, alternative="two-sided") == pytest.approx(
        1 - scipy.stats.ttest_rel(A, B).pvalue)


def test_pairwise_records_the_options():
    result = stats.pairwise_confidence({"a": A, "b": B}, alternative="two-sided",
                                       zero_method="pratt")
    assert result.alternative == "two-sided" and result.zero_method == "pratt"
    # two-sided is symmetric
    assert result.confidence("a", "b") == pytest.approx(result.confidence("b", "a"))


def test_bad_options_are_named():
    with pytest.raises(stats.PimoValueError, match="alternative must be one of"):
        stats.wilcoxon_confidence(A, B, alternative="bigger")
    with pytest.raises(stats.PimoValueError, match="zero_method must be one of"):
        stats.pairwise_confidence({"a": A, "b": B}, zero_method="drop")
    with pytest.raises(stats.PimoValueError, match="rank_tolerance must be"):
        stats.image_ranks({"a": A, "b": B}, rank_tolerance=-1)


def test_rank_tolerance_by_hand():
    scores = {"a": [0.50], "b": [0.505], "c": [0.9]}
    plain = stats.image_ranks(scores).ranks[:, 0]
    assert list(plain) == [3.0, 2.0, 1.0]
    tolerant = stats.image_ranks(scores, rank_tolerance=0.01).ranks[:, 0]
    assert list(tolerant) == [2.5, 2.5, 1.0]


def brute_ranks(column: np.ndarray, tolerance: float) -> np.ndarray:
    out = []
    for m, x in enumerate(column):
        better = sum(1 for k, y in enumerate(column) if k != m and y - x > tolerance)
        tied = sum(1 for k, y in enumerate(column) if k != m and abs(y - x) <= tolerance)
        out.append(1 + better + tied / 2)
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.lists(st.sampled_from([0.0, 0.1, 0.105, 0.2, 0.5, 0.51, 1.0]),
                             min_size=3, max_size=3), min_size=2, max_size=5),
    tolerance=st.sampled_from([0.0, 0.006, 0.02, 0.5]),
)
def test_rank_tolerance_matches_brute_force(scores, tolerance):
    array = np.array(scores)  # (models, images)
    ranks = stats.image_ranks({f"m{i}": row for i, row in enumerate(array)},
                              rank_tolerance=tolerance).ranks
    for image in range(array.shape[1]):
        np.testing.assert_allclose(ranks[:, image], brute_ranks(array[:, image], tolerance))
    models = array.shape[0]
    np.testing.assert_allclose(ranks.sum(axis=0), models * (models + 1) / 2)


def test_compare_cli_options(tmp_path, capsys):
    import json

    from pimo.cli import main
    from pimo.results import AupimoResult

    for model, values in (("a", A), ("b", B)):
        AupimoResult(values, np.ones(values.size, dtype=np.int8)).save(
            tmp_path / model / "mvtec" / "toy" / "aupimo" / "aupimos.json")
    code = main(["compare", str(tmp_path), "--alternative", "two-sided", "--zero-method",
                 "zsplit", "--rank-tolerance", "0.06", "--json", str(tmp_path / "out.json"),
                 "--markdown"])
    out = capsys.readouterr().out
    assert code == 0 and "differs from the column model" in out
    payload = json.loads((tmp_path / "out.json").read_text())["datasets"]["mvtec/toy"]
    assert payload["alternative"] == "two-sided"
    expected = stats.compare_models({"a": A, "b": B}, alternative="two-sided",
                                    zero_method="zsplit", rank_tolerance=0.06)
    expected_confidence = expected.confidence.confidence("a", "b")
    assert payload["confidence"]["a"]["b"] == pytest.approx(expected_confidence)
    assert payload["models"]["a"]["avg_rank"] == pytest.approx(expected.summaries["a"].average_rank)
