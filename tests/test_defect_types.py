"""Per-defect-type breakdown: from the layout into the score files, and into compare/report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pimo import stats
from pimo.cli import main
from pimo.data.layouts import defect_type_of_path
from pimo.results import AupimoResult
from tests.paths import paper_benchmark_root

ROOT = paper_benchmark_root()

PATHS = ["good/0.png", "crack/0.png", "crack/1.png", "hole/0.png", "good/1.png", "hole/1.png"]


def results() -> dict[str, AupimoResult]:
    nan = np.nan
    scores = {
        "a": [nan, 0.9, 0.5, 0.2, nan, 0.4],
        "b": [nan, 0.8, 0.6, 0.3, nan, 0.4],
    }
    return {
        model: AupimoResult(np.array(values), (~np.isnan(values)).astype(np.int8), paths=PATHS)
        for model, values in scores.items()
    }


def test_defect_type_of_path():
    assert defect_type_of_path("MVTec/bottle/test/broken_large/000.png") == "broken_large"
    assert defect_type_of_path("a\\b\\c.png") == "b"
    assert defect_type_of_path("000.png") is None


def test_breakdown_hand_computed():
    comparison = stats.compare_models(results())
    by_type = {d.defect_type: d for d in comparison.defect_types}
    assert set(by_type) == {"crack", "hole"}
    crack = by_type["crack"]
    assert crack.num_anomalous == 2
    assert crack.mean == pytest.approx({"a": 0.7, "b": 0.7})
    assert crack.p33["a"] == pytest.approx(0.5 + 0.33 * 0.4)
    # ranks on crack: a (1, 2), b (2, 1) -> both 1.5, both first
    assert crack.average_rank == {"a": 1.5, "b": 1.5} and crack.rank == {"a": 1, "b": 1}
    hole = by_type["hole"]
    assert hole.average_rank == {"a": 1.75, "b": 1.25} and hole.rank == {"b": 1, "a": 2}
    payload = comparison.to_dict()["defect_types"]
    assert payload["hole"]["models"]["b"]["rank"] == 1


def test_defect_types_field_wins_over_paths_and_single_type_gives_no_breakdown():
    scored = results()
    one_type = {m: AupimoResult(r.aupimos, r.image_classes, paths=r.paths,
                                extra={"defect_types": ["good", *["x"] * 4, "x"]})
                for m, r in scored.items()}
    assert stats.compare_models(one_type).defect_types == ()
    assert stats.defect_types_of(one_type)[1] == "x"


def test_defect_types_length_mismatch_is_named():
    with pytest.raises(stats.ImageListMismatchError, match="3 defect types for 6 images"):
        stats.defect_type_breakdown(results(), ["a", "b", "c"])


def test_compare_cli_shows_defect_types(tmp_path, capsys):
    for model, result in results().items():
        result.save(tmp_path / model / "mvtec" / "toy" / "aupimo" / "aupimos.json")
    code = main(["compare", str(tmp_path), "--markdown", "--csv", str(tmp_path / "csv")])
    out = capsys.readouterr().out
    assert code == 0
    assert "per defect type" in out and "hole (2)" in out
    csv_text = (tmp_path / "csv" / "defect_types.csv").read_text()
    assert "mvtec,toy,hole,2,b," in csv_text


@pytest.mark.skipif(ROOT is None, reason="published benchmark not available")
def test_published_mvtec_files_give_defect_types():
    assert ROOT is not None
    BENCHMARK = ROOT / "benchmark"
    folder = BENCHMARK / "patchcore_wr101" / "mvtec" / "bottle" / "aupimo" / "aupimos.json"
    other = BENCHMARK / "patchcore_wr50" / "mvtec" / "bottle" / "aupimo" / "aupimos.json"
    from pimo import load_aupimo

    comparison = stats.compare_models({"wr101": load_aupimo(folder), "wr50": load_aupimo(other)})
    names = {d.defect_type for d in comparison.defect_types}
    assert names == {"broken_large", "broken_small", "contamination"}
    assert json.dumps(comparison.to_dict())  # JSON-ready


def test_report_defect_type_table():
    from pimo.report import _defect_type_table

    html = _defect_type_table("mvtec/toy", stats.compare_models(results()))
    assert "hole (2)" in html and "crack (2)" in html
    assert "70.0 / 63.2 (1)" in html  # model a on crack: mean 70 %, P33 63.2 %, rank 1
