"""``pimo evaluate`` on the command line: files written, exit codes, messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import pimo
from pimo.cli import main
from tests.test_evaluate import make_mvtec, write_maps


@pytest.fixture
def mvtec(tmp_path: Path):
    maps, _, paths = make_mvtec(tmp_path / "data", "bottle", seed=0)
    write_maps(tmp_path / "maps", maps, paths)
    other = make_mvtec(tmp_path / "data", "cable", seed=3)
    write_maps(tmp_path / "maps", other[0], other[2])
    return paths


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return ["evaluate", "--dataset", f"mvtec:{tmp_path / 'data'}", "--maps",
            str(tmp_path / "maps"), "-o", str(tmp_path / "out"), "--fpr-bounds", "1e-3", "1e-2",
            *extra]


def test_writes_published_layout(tmp_path: Path, mvtec, capsys) -> None:
    assert main(_args(tmp_path, "--category", "bottle")) == 0
    out = tmp_path / "out"
    for name in ("aupimo/aupimos.json", "auroc.json", "aupro.json", "aupro_05.json",
                 "evaluation.json"):
        assert (out / name).is_file(), name
    assert list(pimo.load_aupimo(out / "aupimo" / "aupimos.json").paths) == mvtec
    assert f"bottle: results in {out}" in capsys.readouterr().out


def test_all_categories(tmp_path: Path, mvtec) -> None:
    assert main(_args(tmp_path, "--categories", "all", "--quiet")) == 0
    for category in ("bottle", "cable"):
        info = json.loads((tmp_path / "out" / "mvtec" / category / "evaluation.json").read_text())
        assert info["dataset"]["category"] == category


def _stack_all_maps(tmp_path: Path, extra: list[str] = ()) -> Path:
    """One stacked .npz file with the maps of both categories (and optional extra rows)."""
    files = sorted((tmp_path / "maps").rglob("*.npy"))
    paths = [f"/experiments/mvtec/{f.relative_to(tmp_path / 'maps').with_suffix('.png')}"
             for f in files]
    maps = [np.load(f) for f in files]
    for path in extra:
        paths.append(path)
        maps.append(maps[0])
    stacked = tmp_path / "asmaps.npz"
    np.savez(stacked, asmaps=np.stack(maps), paths=np.array(paths))
    return stacked


def test_all_categories_from_one_stacked_file(tmp_path: Path, mvtec) -> None:
    assert main(_args(tmp_path, "--categories", "all", "--quiet")) == 0
    from_folders = {
        category: pimo.load_aupimo(tmp_path / "out" / "mvtec" / category / "aupimo" /
                                   "aupimos.json").aupimos
        for category in ("bottle", "cable")
    }
    stacked = _stack_all_maps(tmp_path)
    args = _args(tmp_path, "--categories", "all", "--quiet")
    args[args.index("--maps") + 1] = str(stacked)
    args[args.index("-o") + 1] = str(tmp_path / "stacked")
    assert main(args) == 0
    for category, expected in from_folders.items():
        folder = tmp_path / "stacked" / "mvtec" / category
        scores = pimo.load_aupimo(folder / "aupimo" / "aupimos.json")
        np.testing.assert_array_equal(scores.aupimos, expected)
        assert all(path.startswith(f"{category}/") for path in scores.paths)


def test_maps_of_all_categories_under_a_collection_folder(tmp_path: Path, mvtec) -> None:
    nested = tmp_path / "nested" / "mvtec"
    nested.parent.mkdir()
    shutil.copytree(tmp_path / "maps", nested)
    args = _args(tmp_path, "--categories", "all", "--quiet")
    args[args.index("--maps") + 1] = str(tmp_path / "nested")
    assert main(args) == 0
    for category in ("bottle", "cable"):
        assert (tmp_path / "out" / "mvtec" / category / "aupimo" / "aupimos.json").is_file()


def test_stray_map_of_the_category_in_a_stacked_file_is_reported(
    tmp_path: Path, mvtec, capsys
) -> None:
    stacked = _stack_all_maps(tmp_path, extra=["/experiments/mvtec/bottle/test/crack/999.png"])
    args = _args(tmp_path, "--category", "bottle", "--quiet")
    args[args.index("--maps") + 1] = str(stacked)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "bottle/test/crack/999.png" in err and "matches no test image" in err
    assert "cable" not in err  # the other category's maps are not orphans of this one


def test_bad_input_exit_2(tmp_path: Path, mvtec, capsys) -> None:
    (tmp_path / "maps" / Path(mvtec[0]).with_suffix(".npy")).unlink()
    assert main(_args(tmp_path, "--category", "bottle", "--quiet")) == 2
    assert "no anomaly map for the image bottle/test/crack/006.png" in capsys.readouterr().err
    assert main(_args(tmp_path, "--category", "bottle", "--quiet", "--skip-missing")) == 0
    assert "skipped (missing-map)" in capsys.readouterr().err
    info = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert info["skipped"][0]["path"] == mvtec[0]


def test_unknown_layout_exit_2(tmp_path: Path, capsys) -> None:
    shutil.rmtree(tmp_path, ignore_errors=True)
    tmp_path.mkdir()
    code = main(["evaluate", "--dataset", f"kitti:{tmp_path}", "--maps", str(tmp_path),
                 "-o", str(tmp_path / "out")])
    assert code == 2
    assert "Unknown dataset layout" in capsys.readouterr().err


def test_resolution_note(tmp_path: Path, mvtec, capsys) -> None:
    assert main(_args(tmp_path, "--category", "bottle", "--resolution", "24x20", "-q")) == 0
    assert "NOT comparable" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text())["resolution"] == [24, 20]
    np.testing.assert_equal(main(_args(tmp_path, "--resolution", "abc")), 2)


def test_progress_is_one_line_per_stage_in_logs(tmp_path: Path, mvtec, capsys) -> None:
    assert main(_args(tmp_path, "--categories", "all", "--model-name", "knn")) == 0
    captured = capsys.readouterr()  # not a terminal: plain lines, no live bar
    lines = captured.err.splitlines()
    for category in ("bottle", "cable"):
        assert f"knn/{category}: checking images and masks ({len(mvtec)} images)" in lines
        assert any(line.startswith(f"knn/{category}: normal images (") for line in lines)
        assert any(line.startswith(f"knn/{category}: done in ") for line in lines)
    assert "\r" not in captured.err and "\x1b" not in captured.err
    assert "pimo evaluate: knn" in captured.out  # the summary names the model
    assert json.loads((tmp_path / "out" / "mvtec" / "bottle" / "evaluation.json")
                      .read_text())["model"] == "knn"


def test_progress_display_follows_the_terminal(monkeypatch) -> None:
    from pimo.cli import evaluate_cmd

    monkeypatch.setattr(evaluate_cmd, "is_interactive", lambda: False)
    assert isinstance(evaluate_cmd.progress_for("x"), evaluate_cmd.LineProgress)
    monkeypatch.setattr(evaluate_cmd, "is_interactive", lambda: True)
    assert isinstance(evaluate_cmd.progress_for("x"), evaluate_cmd.RichProgress)
    quiet = evaluate_cmd.progress_for("x", quiet=True)
    assert isinstance(quiet, evaluate_cmd.RichProgress) and quiet._progress.disable
