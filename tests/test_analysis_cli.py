"""``pimo analyze`` end to end on tiny datasets: files written, numbers, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pimo
from pimo.analysis import region_sizes, tiny_region_table
from pimo.cli import main
from tests.test_evaluate import SIZE, make_mvtec, write_maps


@pytest.fixture
def mvtec(tmp_path: Path) -> Path:
    for category, seed in (("bottle", 0), ("cable", 3)):
        maps, _, paths = make_mvtec(tmp_path / "data", category, seed=seed)
        write_maps(tmp_path / "maps", maps, paths)
    return tmp_path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_sizes_of_two_categories(mvtec: Path, capsys) -> None:
    out = mvtec / "out"
    code = main(["analyze", "sizes", "--dataset", f"mvtec:{mvtec / 'data'}", "--categories",
                 "all", "-o", str(out)])
    assert code == 0
    summary = json.loads((out / "sizes.json").read_text())
    assert set(summary["datasets"]) == {"mvtec/bottle", "mvtec/cable"}
    bottle = summary["datasets"]["mvtec/bottle"]["summary"]
    assert bottle["num_images"] == 11 and bottle["num_regions"] == 5  # one 10x10 square each
    rows = _rows(out / "sizes.csv")
    assert len(rows) == 10
    assert {float(r["relative_size"]) for r in rows} == {100 / (SIZE[0] * SIZE[1])}
    assert (out / "sizes.png").read_bytes()[:4] == b"\x89PNG"
    assert "Tiny regions" in capsys.readouterr().out


def test_sizes_of_stacks_match_the_library(tmp_path: Path) -> None:
    masks = np.zeros((3, 600, 600), dtype=np.uint8)
    masks[0, 0, 0] = masks[0, 5, 5:8] = 1           # tiny: fewer than 5.5 pixels
    masks[1, 100:120, 100:120] = 1
    np.save(tmp_path / "visa_like.npy", masks)
    assert main(["analyze", "sizes", "--masks", str(tmp_path / "visa_like.npy"), "-o",
                 str(tmp_path / "out"), "--without-tiny"]) == 0
    saved = json.loads((tmp_path / "out" / "sizes.json").read_text())
    expected = tiny_region_table(region_sizes(masks)).to_dict()
    assert saved["datasets"]["visa_like"]["tiny_regions"] == expected
    assert expected["regions_by_size"]["1-9"] == 2


def test_fp_regions_pools_categories(mvtec: Path) -> None:
    out = mvtec / "out"
    code = main(["analyze", "fp-regions", "--dataset", f"mvtec:{mvtec / 'data'}",
                 "--categories", "bottle,cable", "--maps", str(mvtec / "maps"), "-o", str(out),
                 "--fpr-range", "1e-3", "1e-1", "--levels", "5", "--seed", "3"])
    assert code == 0
    summary = json.loads((out / "fp_regions.json").read_text())
    assert summary["num_images"] == 12 and summary["num_points"] == 60  # 6 normal per category
    rows = _rows(out / "fp_regions.csv")
    assert {r["dataset"] for r in rows} == {"mvtec/bottle", "mvtec/cable"}
    assert all("/good/" in r["path"] for r in rows)
    again = mvtec / "again"
    main(["analyze", "fp-regions", "--dataset", f"mvtec:{mvtec / 'data'}", "--categories",
          "bottle,cable", "--maps", str(mvtec / "maps"), "-o", str(again), "--fpr-range", "1e-3",
          "1e-1", "--levels", "5", "--seed", "3"])
    assert (again / "fp_regions.csv").read_text() == (out / "fp_regions.csv").read_text()


def test_robustness_with_own_statistics(mvtec: Path, capsys) -> None:
    statistics = mvtec / "noise.json"
    statistics.write_text(json.dumps({"count_bins": [[1, 2]], "count_weights": [1],
                                      "size_bins": [[1, 3]], "size_weights": [1]}))
    out = mvtec / "out"
    code = main(["analyze", "robustness", "--dataset", f"mvtec:{mvtec / 'data'}", "--category",
                 "bottle", "--maps", str(mvtec / "maps"), "-o", str(out), "--statistics",
                 str(statistics), "--draws", "2", "--fpr-bounds", "1e-3", "1e-2"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "robustness.json").read_text())["datasets"]["mvtec/bottle"]
    assert summary["num_draws"] == 2 and summary["num_anomalous_images"] == 5
    assert 1 <= summary["added_regions_mean"] <= 2
    rows = _rows(out / "robustness.csv")
    assert len(rows) == 10
    for row in rows:
        assert float(row["difference"]) == pytest.approx(
            float(row["aupimo_clean"]) - float(row["aupimo_noisy"]))
    assert "AUPRO 30%" in capsys.readouterr().out


def _make_videos(root: Path) -> None:
    rng = np.random.default_rng(0)
    frames = {"Test002": [1, 2, 3, 5, 6], "Test010": [2, 4, 6, 8]}
    maps_root = root / "maps"
    for video, numbers in frames.items():
        for number in numbers:
            name = f"{video}/{number:03d}"
            image = rng.integers(0, 255, (32, 32), dtype=np.uint8)
            (root / "data" / "images" / video).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "data" / "images" / f"{name}.png")
            anomaly_map = rng.normal(size=(32, 32)).astype(np.float32)
            if number % 2 == 0:
                mask = np.zeros((32, 32), dtype=np.uint8)
                mask[8:16, 8:16] = 255
                (root / "data" / "masks" / video).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(root / "data" / "masks" / f"{name}.png")
                anomaly_map[8:16, 8:16] += 3
            (maps_root / "images" / video).mkdir(parents=True, exist_ok=True)
            np.save(maps_root / "images" / f"{name}.npy", anomaly_map)


def test_video_from_a_folder_dataset_and_from_scores(tmp_path: Path) -> None:
    _make_videos(tmp_path)
    out = tmp_path / "out"
    code = main(["analyze", "video", "--dataset", f"folder:{tmp_path / 'data'}", "--maps",
                 str(tmp_path / "maps"), "-o", str(out), "--fpr-bounds", "1e-3", "1e-2"])
    assert code == 0
    videos = json.loads((out / "video.json").read_text())["videos"]
    assert [v["video"] for v in videos] == ["images/Test002", "images/Test010"]
    assert [v["num_missing"] for v in videos] == [1, 3]
    assert [v["num_anomalous"] for v in videos] == [2, 4]
    rows = _rows(out / "video.csv")
    assert [int(r["frame"]) for r in rows] == [1, 2, 3, 5, 6, 2, 4, 6, 8]
    # the same from a score file
    scores = pimo.aupimo(*_stack_of(rows, tmp_path), fpr_bounds=(1e-3, 1e-2),
                         paths=[r["path"] for r in rows])
    scores.save(tmp_path / "aupimos.json")
    again = tmp_path / "again"
    assert main(["analyze", "video", "--scores", str(tmp_path / "aupimos.json"), "-o",
                 str(again)]) == 0
    assert _rows(again / "video.csv") == rows


def _stack_of(rows: list[dict[str, str]], root: Path) -> tuple[list[np.ndarray],
                                                                list[np.ndarray]]:
    maps, masks = [], []
    for row in rows:
        relative = Path(row["path"])
        maps.append(np.load(root / "maps" / relative.with_suffix(".npy")))
        mask_file = root / "data" / "masks" / relative.relative_to("images")
        masks.append(np.asarray(Image.open(mask_file)) > 0 if mask_file.exists()
                     else np.zeros((32, 32), dtype=bool))
    return maps, masks


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["analyze", "sizes", "-o", str(tmp_path / "out")]) == 2
    assert "--dataset" in capsys.readouterr().err
    np.save(tmp_path / "masks.npy", np.full((2, 8, 8), 3, dtype=np.uint8))
    assert main(["analyze", "sizes", "--masks", str(tmp_path / "masks.npy"), "-o",
                 str(tmp_path / "out")]) == 2
    assert "values other than 0 and 1" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    np.save(tmp_path / "other" / "masks.npy", np.zeros((2, 8, 8), dtype=bool))
    assert main(["analyze", "sizes", "--masks", str(tmp_path / "masks.npy"), "--masks",
                 str(tmp_path / "other" / "masks.npy"), "-o", str(tmp_path / "out")]) == 2
    assert "rename" in capsys.readouterr().err
    np.save(tmp_path / "maps.npy", np.zeros((2, 8, 8)))
    assert main(["analyze", "video", "--masks", str(tmp_path / "masks.npy"), "--maps",
                 str(tmp_path / "maps.npy"), "-o", str(tmp_path / "out")]) == 2


def test_report_gets_analysis_pages(mvtec: Path, capsys) -> None:
    data, maps = f"mvtec:{mvtec / 'data'}", str(mvtec / "maps")
    assert main(["evaluate", "--dataset", data, "--category", "bottle", "--maps", maps, "-o",
                 str(mvtec / "eval"), "--fpr-bounds", "1e-3", "1e-2", "-q"]) == 0
    analysis = mvtec / "analysis"
    assert main(["analyze", "sizes", "--dataset", data, "--category", "bottle", "-o",
                 str(analysis)]) == 0
    assert main(["analyze", "fp-regions", "--dataset", data, "--category", "bottle", "--maps",
                 maps, "--fpr-range", "1e-3", "1e-1", "-o", str(analysis)]) == 0
    target = mvtec / "report.html"
    assert main(["report", str(mvtec / "eval"), "-o", str(target), "--no-curves",
                 "--analysis", str(analysis)]) == 0
    text = target.read_text()
    assert "Sizes of the ground-truth regions" in text
    assert "False-positive regions vs image FPR" in text
    assert "Robustness to noisy annotations" not in text      # not run
    assert text.count('src="data:image/png;base64,') >= 2
    capsys.readouterr()
    assert main(["report", str(mvtec / "eval"), "-o", str(target), "--no-curves",
                 "--analysis", str(mvtec / "eval")]) == 2
    assert "holds no analysis output" in capsys.readouterr().err
