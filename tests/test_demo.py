"""``pimo demo`` at a small size: deterministic data, every detector evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import pimo
from pimo.cli import main
from pimo.data.demo import make_demo_dataset


def test_demo_small(tmp_path: Path, capsys) -> None:
    assert main(["demo", str(tmp_path / "demo"), "--size", "128", "--images", "8",
                 "--fpr-bounds", "1e-4", "1e-3"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    folders = [Path(line.strip()) for line in out.splitlines()
               if line.startswith(f"  {tmp_path}")]
    assert len(folders) == 9  # 3 detectors x 3 categories
    # it says which detector runs; progress is one line per stage (output is not a terminal)
    assert "Detector 1/3: patch_knn" in out and "Detector 3/3: local_contrast" in out
    assert "patch_gaussian/wood: normal images (8 images)" in captured.err
    assert "local_contrast/tiles: done in" in captured.err
    assert "report: mvtec/wood (3/3)" in captured.err
    assert "\r" not in captured.err and "\x1b" not in captured.err
    mean_by_detector: dict[str, list[float]] = {}
    for folder in folders:
        info = json.loads((folder / "evaluation.json").read_text())
        assert info["dataset"]["layout"] == "mvtec"
        assert len(info["images"]) == 16
        scores = pimo.load_aupimo(folder / "aupimo" / "aupimos.json")
        assert np.isfinite(scores.anomalous_scores).all()
        assert (folder / "aupro_05.json").is_file()
        assert pimo.load_value(folder / "auroc.json") > 0.6  # every detector does something
        mean_by_detector.setdefault(folder.parts[-3], []).append(scores.mean())
    assert set(mean_by_detector) == {"patch_knn", "patch_gaussian", "local_contrast"}
    # the memory-bank detector is clearly the best on average
    best = np.mean(mean_by_detector.pop("patch_knn"))
    assert all(best > np.mean(means) + 0.15 for means in mean_by_detector.values())
    # the report is written and the suggested comparison runs on the results
    assert (tmp_path / "demo" / "report.html").stat().st_size > 0
    results = tmp_path / "demo" / "results"
    assert f"pimo compare {results}" in out
    assert main(["compare", str(results), "-q", "--json", str(tmp_path / "compare.json")]) == 0
    comparison = json.loads((tmp_path / "compare.json").read_text())
    assert set(comparison["datasets"]) == {"mvtec/fabric", "mvtec/tiles", "mvtec/wood"}
    assert set(comparison["summary"]["all"]) == {"patch_knn", "patch_gaussian", "local_contrast"}


def test_demo_dataset_is_deterministic(tmp_path: Path) -> None:
    first = make_demo_dataset(tmp_path / "a", size=48, num_normal=3, num_anomalous=3,
                              num_train=2, categories=("tiles",))
    second = make_demo_dataset(tmp_path / "b", size=48, num_normal=3, num_anomalous=3,
                               num_train=2, categories=("tiles",))
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert len(files) == 2 + 3 + 3 + 3
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes()
    masks = list(first.rglob("*_mask.png"))
    assert all(np.asarray(__import__("PIL.Image").Image.open(m)).any() for m in masks)
