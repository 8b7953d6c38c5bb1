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


@pytest.mark.parametrize("stacked", [False, True])
def test_maps_naming_no_category_are_not_reused_for_every_category(
    tmp_path: Path, mvtec, capsys, stacked: bool
) -> None:
    """bottle's maps alone, as test/<defect>/<name>: with --categories all, cable would be
    scored with bottle's maps (same names). Refused, naming the map and both categories."""
    flat = tmp_path / "flat"
    shutil.copytree(tmp_path / "maps" / "bottle", flat)
    location = flat
    if stacked:
        files = sorted(flat.rglob("*.npy"))
        location = tmp_path / "flat.npz"
        np.savez(location, asmaps=np.stack([np.load(f) for f in files]),
                 paths=np.array([f.relative_to(flat).with_suffix(".png").as_posix()
                                 for f in files]))
    args = _args(tmp_path, "--categories", "all", "--quiet")
    args[args.index("--maps") + 1] = str(location)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "was matched to images of two categories" in err
    assert "bottle/test/" in err and "cable/test/" in err and "MAPS/<category>/" in err
    assert not (tmp_path / "out" / "mvtec").exists()  # nothing written
    args = _args(tmp_path, "--category", "bottle", "--quiet")  # one category: its own maps
    args[args.index("--maps") + 1] = str(location)
    assert main(args) == 0


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


def test_pixel_and_image_ap_and_f1max_files(tmp_path: Path, capsys) -> None:
    from pimo.data import resize_bilinear
    from tests.test_evaluate import SIZE

    maps, masks, _ = make_mvtec(tmp_path / "data", "bottle", seed=1)
    write_maps(tmp_path / "maps", maps, _)
    args = _args(tmp_path, "--categories", "all", "--model-name", "m1")
    args[args.index("-o") + 1] = str(tmp_path / "runs" / "m1")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "AP" in printed and "F1max" in printed
    table = [line for line in printed.splitlines() if "results in" not in line]
    assert max(len(line) for line in table) <= 80
    out = tmp_path / "runs" / "m1" / "mvtec" / "bottle"
    full = np.stack([resize_bilinear(m, SIZE) for m in maps])
    pixel = pimo.set_metrics(full, masks, fpr_limits=(0.3, 0.05))
    image = pimo.image_metrics(full, masks)
    expected = {
        "auroc.json": (pixel.auroc, None), "aupro.json": (pixel.aupro[0.3], None),
        "aupro_05.json": (pixel.aupro[0.05], None), "aupr.json": (pixel.ap, None),
        "f1max.json": (pixel.f1_max, pixel.f1_max_threshold),
        "image_auroc.json": (image.auroc, None), "image_ap.json": (image.ap, None),
        "image_f1max.json": (image.f1_max, image.f1_max_threshold),
    }
    for name, (value, threshold) in expected.items():
        payload = json.loads((out / name).read_text())
        assert payload["value"] == pytest.approx(value, abs=1e-12), name
        if threshold is not None:
            assert payload["threshold"] == pytest.approx(threshold, abs=1e-6), name
    info = json.loads((out / "evaluation.json").read_text())
    assert info["set_metrics"]["aupr"] == pytest.approx(pixel.ap, abs=1e-12)
    assert info["set_metrics"]["f1max"] == pytest.approx(pixel.f1_max, abs=1e-12)
    assert info["files"]["aupr"] == "aupr.json" and info["files"]["f1max"] == "f1max.json"
    assert info["image_metrics"]["image_ap"] == pytest.approx(image.ap, abs=1e-12)

    # pimo compare reads them back
    assert main(["compare", str(tmp_path / "runs"), "--json", str(tmp_path / "c.json"),
                 "--quiet"]) == 0
    model = json.loads((tmp_path / "c.json").read_text())["datasets"]["mvtec/bottle"][
        "models"]["m1"]
    for name in ("aupr", "f1max", "image_auroc", "image_ap", "image_f1max"):
        assert model[name] == pytest.approx(json.loads((out / f"{name}.json").read_text())[
            "value"]), name
