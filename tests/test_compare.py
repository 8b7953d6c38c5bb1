"""``pimo compare`` and the score-tree functions of pimo.stats.

The first part runs on the paper's published scores (``../shared/paper-benchmark``, or the folder
named by the environment variable PIMO_PAPER_BENCHMARK) and checks the worked example of
DESIGN.md §5 and rows of the paper's tables; it is skipped when the scores are absent. The second
part builds small score trees in a temporary folder to check the bad-input messages.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from pimo import stats
from pimo.cli import EXIT_BAD_INPUT, main

NAN = math.nan


def _paper_benchmark() -> Path | None:
    """The folder of the published scores, or None when it is not there."""
    configured = os.environ.get("PIMO_PAPER_BENCHMARK")
    base = (
        Path(configured) if configured
        else Path(__file__).resolve().parents[2] / "shared" / "paper-benchmark"
    )
    example = Path("patchcore_wr101", "mvtec", "bottle", "aupimo", "aupimos.json")
    for candidate in (base / "benchmark", base):
        if (candidate / example).is_file():
            return candidate
    return None


BENCHMARK = _paper_benchmark()
needs_benchmark = pytest.mark.skipif(
    BENCHMARK is None,
    reason="the paper's published scores are absent (expected ../shared/paper-benchmark/"
    "benchmark next to the repository, or set PIMO_PAPER_BENCHMARK)",
)


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run ``pimo compare ARGS``; return (exit code, stdout, stderr)."""
    code = main(["compare", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pct(value: float, decimals: int = 1) -> float:
    """A fraction in percent, rounded as the paper prints it."""
    return round(100 * value, decimals)


# ---------------------------------------------------------------------------------------------
# the published benchmark
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """All 13 models on all 27 datasets, through the command line, with JSON and CSV output."""
    assert BENCHMARK is not None
    folder = tmp_path_factory.mktemp("compare")
    code = main([
        "compare", str(BENCHMARK), "--json", str(folder / "out.json"),
        "--csv", str(folder / "csv"), "--quiet",
    ])
    assert code == 0
    return {
        "json": json.loads((folder / "out.json").read_text(encoding="utf-8")),
        "csv": folder / "csv",
    }


@needs_benchmark
def test_worked_example_of_the_design_notes(full_run: dict[str, Any]) -> None:
    bottle = full_run["json"]["datasets"]["mvtec/bottle"]
    assert len(bottle["models"]) == 13
    model = bottle["models"]["patchcore_wr101"]
    assert pct(model["mean"]) == 99.4
    assert pct(model["std"]) == 1.9
    assert pct(model["p33"]) == 100.0
    assert round(model["avg_rank"], 1) == 1.8
    assert (model["num_images"], model["num_anomalous"]) == (83, 63)
    assert model["auroc"] == pytest.approx(0.986870527267456)
    assert model["aupro_05"] is None  # no aupro_05.json in the published scores
    assert round(100 * bottle["confidence"]["patchcore_wr101"]["patchcore_wr50"]) == 84


@needs_benchmark
def test_the_whole_benchmark_is_compared(full_run: dict[str, Any]) -> None:
    payload = full_run["json"]
    assert len(payload["datasets"]) == 27
    assert sum(key.startswith("mvtec/") for key in payload["datasets"]) == 15
    assert all(len(entry["models"]) == 13 for entry in payload["datasets"].values())
    assert list(payload["summary"]) == ["mvtec", "visa", "all"]
    # every ordered pair of models has a confidence in [0, 1]
    confidence = payload["datasets"]["visa/pcb1"]["confidence"]
    assert len(confidence) == 13 and all(len(row) == 12 for row in confidence.values())
    assert all(0 <= v <= 1 for row in confidence.values() for v in row.values())


@needs_benchmark
def test_confidence_matrix_of_mvtec_bottle_as_in_the_paper(full_run: dict[str, Any]) -> None:
    # cells of the paper's Fig. 22 table (App. D.4), whole percent
    confidence = full_run["json"]["datasets"]["mvtec/bottle"]["confidence"]
    expected = {
        ("rd++_wr50_ext", "fastflow_cait_m48_448"): 12,
        ("simplenet_wr50_ext", "fastflow_cait_m48_448"): 92,
        ("efficientad_wr101_m_ext", "padim_wr50"): 70,
        ("padim_wr50", "efficientad_wr101_s_ext"): 85,
        ("uflow_ext", "fastflow_wr50"): 91,
        ("uflow_ext", "padim_r18"): 97,
        ("padim_r18", "fastflow_wr50"): 54,
        ("patchcore_wr50", "pyramidflow_r18_ext"): 100,
    }
    for (model_a, model_b), value in expected.items():
        assert round(100 * confidence[model_a][model_b]) == value, (model_a, model_b)
    assert confidence["rd++_wr50_ext"]["simplenet_wr50_ext"] < 0.01  # "<1%"


@needs_benchmark
def test_cross_dataset_summary_as_in_table_5(full_run: dict[str, Any]) -> None:
    summary = full_run["json"]["summary"]
    # paper, Table 5, PatchCore WR101: AUROC, AUPRO, avg. AUPIMO, P33 (in %), avg. rank
    expected = {
        "mvtec": (98.35, 93.53, 73.19, 66.12, 4.7),
        "visa": (98.70, 90.06, 48.72, 31.58, 5.5),
        "all": (98.51, 91.99, 62.31, 50.77, 5.1),
    }
    for scope, (auroc, aupro, mean, p33, avg_rank) in expected.items():
        row = summary[scope]["patchcore_wr101"]
        assert pct(row["auroc"], 2) == auroc
        assert pct(row["aupro"], 2) == aupro
        assert pct(row["mean"], 2) == mean
        assert pct(row["p33"], 2) == p33
        assert round(row["avg_rank"], 1) == avg_rank
    assert pct(summary["all"]["padim_r18"]["mean"], 2) == 21.61
    assert summary["all"]["padim_r18"]["num_datasets"] == 27


@needs_benchmark
def test_csv_tables(full_run: dict[str, Any]) -> None:
    folder = full_run["csv"]

    def rows(name: str) -> list[dict[str, str]]:
        with (folder / name).open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))

    models = rows("models.csv")
    assert len(models) == 13 * 27
    bottle = next(
        r for r in models if r["dataset"] == "bottle" and r["model"] == "patchcore_wr101"
    )
    assert (bottle["collection"], bottle["position"]) == ("mvtec", "1")
    assert pct(float(bottle["mean"])) == 99.4
    assert len(rows("confidence.csv")) == 13 * 12 * 27
    assert len(rows("summary.csv")) == 13 * 3
    samples = [r for r in rows("samples.csv")
               if r["dataset"] == "bottle" and r["model"] == "patchcore_wr101"]
    assert [r["statistic"] for r in samples] == [
        "mean", "whisker_low", "q1", "median", "q3", "whisker_high",
    ]
    assert samples[0]["path"].startswith("MVTec/bottle/test/")
    images = [r for r in rows("image_scores.csv") if r["dataset"] == "bottle"]
    assert len(images) == 63 * 13


@needs_benchmark
def test_markdown_table_of_mvtec_bottle(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, BENCHMARK, "--datasets", "mvtec/bottle", "--markdown")
    assert code == 0
    assert (
        "| 1 | patchcore_wr101 | 98.7% (5) | 78.7% (5) | 94.1% (7) | 99.4% (1) | 1.9% | 100.0% (1) "
        "| 1.8 (1) |" in out  # the published aupr.json (pixel AP, 0.787) is read
    )
    matrix_row = next(line for line in out.splitlines()
                      if line.startswith("| 1 | patchcore_wr101 (1.8)"))
    assert "**84%**" in matrix_row  # below 95 %: highlighted
    assert "| 100% |" in matrix_row
    assert "Summary" not in out  # a single dataset has no cross-dataset summary


@needs_benchmark
def test_rich_and_latex_output_with_filters(capsys: pytest.CaptureFixture[str]) -> None:
    models = "patchcore_wr101,patchcore_wr50,padim_r18"
    code, out, _ = run(capsys, BENCHMARK, "--datasets", "bottle", "--datasets", "visa/candle",
                       "--models", models)
    assert code == 0
    assert "mvtec/bottle — 83 images (63 anomalous), 3 models" in out
    assert "visa/candle" in out and "mvtec/cable" not in out
    assert "84%*" in out  # without colours, highlighted cells are starred
    assert "Summary over collection mvtec" in out and "Summary over all datasets" in out
    assert "uflow_ext" not in out
    code, out, _ = run(capsys, BENCHMARK, "--datasets", "bottle", "--models", models, "--latex")
    assert code == 0
    assert "\\begin{tabular}" in out and "\\textbf{84\\%}" in out
    assert "patchcore\\_wr101" in out


@needs_benchmark
def test_explicit_model_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert BENCHMARK is not None
    wr101 = BENCHMARK / "patchcore_wr101" / "mvtec" / "bottle" / "aupimo" / "aupimos.json"
    wr50 = BENCHMARK / "patchcore_wr50" / "mvtec" / "bottle" / "aupimo" / "aupimos.json"
    out_json = tmp_path / "out.json"
    code, _, _ = run(capsys, "--model", f"a={wr101}", "--model", f"b={wr50}",
                     "--json", out_json, "--quiet")
    assert code == 0
    payload = json.loads(out_json.read_text(encoding="utf-8"))
    dataset = payload["datasets"]["mvtec/bottle"]  # named after the files' folders
    assert pct(dataset["models"]["a"]["mean"]) == 99.4
    assert dataset["models"]["a"]["auroc"] == pytest.approx(0.986870527267456)  # found beside
    assert round(100 * dataset["confidence"]["a"]["b"]) == 84
    # a model folder added to ROOT, and a name clash
    code, _, err = run(capsys, BENCHMARK, "--model", f"patchcore_wr101={wr101}", "--quiet")
    assert code == EXIT_BAD_INPUT and "given twice" in err


# ---------------------------------------------------------------------------------------------
# small synthetic trees: bad input
# ---------------------------------------------------------------------------------------------

PATHS = ["bad/000.png", "bad/001.png", "bad/002.png", "good/000.png"]


def write_scores(
    folder: Path, scores: list[float], *, paths: list[str] | None = PATHS, auroc: float | None = 0.9
) -> Path:
    """Write one model's files for one dataset as the official code does (bare NaN)."""
    target = folder / "aupimo" / "aupimos.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "shared_fpr_metric": "mean-per-image-fpr", "fpr_lower_bound": 1e-5,
        "fpr_upper_bound": 1e-4, "num_threshs": None, "thresh_lower_bound": 1.0,
        "thresh_upper_bound": 2.0, "aupimos": scores,
    }
    if paths is not None:
        payload["paths"] = paths
    target.write_text(json.dumps(payload, allow_nan=True), encoding="utf-8")
    if auroc is not None:
        (folder / "auroc.json").write_text(json.dumps({"value": auroc}), encoding="utf-8")
    return target


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Three models on mvtec/a and mvtec/b; model3 lacks mvtec/b."""
    root = tmp_path / "benchmark"
    write_scores(root / "model1" / "mvtec" / "a", [0.9, 0.5, 0.1, NAN], auroc=0.95)
    write_scores(root / "model2" / "mvtec" / "a", [0.8, 0.6, 0.1, NAN], auroc=0.90)
    write_scores(root / "model3" / "mvtec" / "a", [0.1, 0.2, 0.3, NAN], auroc=None)
    write_scores(root / "model1" / "mvtec" / "b", [0.7, 0.7, 0.7, NAN])
    write_scores(root / "model2" / "mvtec" / "b", [0.2, 0.3, 0.4, NAN])
    return root


def test_small_tree_json(capsys: pytest.CaptureFixture[str], tree: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "out.json"
    code, out, err = run(capsys, tree, "--json", out_json)
    assert code == 0
    assert "warning: mvtec/b: no scores for model3; left out" in err
    assert "Left out (no scores for this dataset): model3." in out
    payload = json.loads(out_json.read_text(encoding="utf-8"))
    dataset_a = payload["datasets"]["mvtec/a"]
    # image ranks on mvtec/a: (1, 2, 3), (2, 1, 3), (2.5, 2.5, 1) -> averages 11/6, 11/6, 14/6
    assert dataset_a["models"]["model1"]["avg_rank"] == pytest.approx(5.5 / 3)
    assert dataset_a["models"]["model3"]["avg_rank"] == pytest.approx(7 / 3)
    assert dataset_a["models"]["model1"]["mean"] == pytest.approx(0.5)
    assert dataset_a["models"]["model3"]["auroc"] is None
    assert dataset_a["missing_models"] == []
    dataset_b = payload["datasets"]["mvtec/b"]
    assert list(dataset_b["models"]) == ["model1", "model2"]
    assert dataset_b["missing_models"] == ["model3"]
    summary = payload["summary"]["all"]
    assert summary["model1"]["mean"] == pytest.approx((0.5 + 0.7) / 2)
    assert summary["model1"]["num_datasets"] == 2
    assert summary["model3"]["num_datasets"] == 1
    assert summary["model3"]["auroc"] is None


def test_models_with_different_image_lists(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    other = ["bad/000.png", "bad/001.png", "bad/007.png", "good/000.png"]
    write_scores(tree / "model2" / "mvtec" / "a", [0.8, 0.6, 0.1, NAN], paths=other)
    code, _, err = run(capsys, tree)
    assert code == EXIT_BAD_INPUT
    assert "mvtec/a" in err and "image 2" in err
    assert "'bad/002.png'" in err and "'bad/007.png'" in err


def test_models_with_different_image_counts(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    write_scores(tree / "model2" / "mvtec" / "a", [0.8, 0.6, NAN], paths=None)
    code, _, err = run(capsys, tree)
    assert code == EXIT_BAD_INPUT and "has 3 scores" in err and "4" in err


def test_a_file_without_anomalous_image(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    write_scores(tree / "model2" / "mvtec" / "b", [NAN, NAN, NAN, NAN])
    code, _, err = run(capsys, tree)
    assert code == EXIT_BAD_INPUT
    assert "no anomalous image" in err and "model2" in err and "aupimos.json" in err


def test_a_nan_where_an_anomalous_score_should_be(
    capsys: pytest.CaptureFixture[str], tree: Path
) -> None:
    write_scores(tree / "model3" / "mvtec" / "a", [0.1, NAN, 0.3, NAN])
    code, _, err = run(capsys, tree)
    assert code == EXIT_BAD_INPUT
    assert "'model3'" in err and "no score" in err and "'bad/001.png'" in err


def test_an_empty_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, tmp_path)
    assert code == EXIT_BAD_INPUT
    assert "no score file found" in err and "aupimo/aupimos.json" in err


def test_root_one_level_too_high(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, _, err = run(capsys, tree.parent)
    assert code == EXIT_BAD_INPUT and "did you mean" in err and "benchmark" in err


def test_an_ablation_tree_as_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # ablation/<collection>/<dataset>/<model>/aupimo/aupimos.json: one level deeper
    ablation = tmp_path / "ablation"
    small = ablation / "mvtec" / "capsule" / "small"
    medium = ablation / "mvtec" / "capsule" / "medium"
    write_scores(small, [0.1, 0.2, 0.3, NAN])
    write_scores(medium, [0.3, 0.2, 0.4, NAN])
    # at the benchmark's depth, the collection reads as a model: a lone model is flagged
    code, _, err = run(capsys, ablation, "--quiet")
    assert code == 0 and "only one model folder ('mvtec')" in err and "--model" in err
    # one level down, nothing is at the expected depth
    code, _, err = run(capsys, ablation / "mvtec" / "capsule")
    assert code == EXIT_BAD_INPUT and "another depth" in err and "--model" in err
    # runs compare as explicit folders
    code, out, _ = run(capsys, "--model", f"small={small}", "--model", f"medium={medium}",
                       "--markdown")
    assert code == 0 and "### mvtec/capsule — 4 images (3 anomalous), 2 models" in out


def test_unknown_filters(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, _, err = run(capsys, tree, "--models", "model1,nope")
    assert code == EXIT_BAD_INPUT and "'nope'" in err and "model1, model2, model3" in err
    code, _, err = run(capsys, tree, "--datasets", "zzz")
    assert code == EXIT_BAD_INPUT and "mvtec/a, mvtec/b" in err


def test_usage_errors(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, _, err = run(capsys)
    assert code == 2 and "ROOT" in err
    code, _, err = run(capsys, tree, "--markdown", "--latex")
    assert code == 2 and "one of --markdown and --latex" in err
    code, _, err = run(capsys, "--model", "nonsense")
    assert code == 2 and "NAME=PATH" in err


def test_ttest_option(capsys: pytest.CaptureFixture[str], tree: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "t.json"
    code, out, _ = run(capsys, tree, "--test", "ttest", "--json", out_json)
    assert code == 0 and "paired t-test" in out
    payload = json.loads(out_json.read_text(encoding="utf-8"))
    assert payload["datasets"]["mvtec/a"]["test"] == "ttest"


def test_library_functions_on_a_tree(tree: Path) -> None:
    found = stats.find_score_files(tree)
    assert found.models == ("model1", "model2", "model3")
    assert found.datasets == ("mvtec/a", "mvtec/b")
    assert found.missing_models("mvtec/b") == ("model3",)
    assert set(found.files["mvtec/a"]["model1"].set_metrics) == {"auroc"}
    selected = found.select(datasets=["a"], models=["model1", "model2"])
    with pytest.warns(UserWarning, match="model3") as record:
        stats.compare_score_tree(found)
    assert len(record) == 1
    result = stats.compare_score_tree(selected)
    assert list(result.datasets) == ["mvtec/a"]
    assert result.datasets["mvtec/a"].models == ("model1", "model2")
