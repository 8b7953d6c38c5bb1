"""`evaluate_dataset(..., ignore_masks=)` and `pimo evaluate --ignore-masks`: a folder of masks
mirroring the images' paths, or one file for every image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pimo
from pimo.cli import main
from pimo.data import DatasetError, resize_bilinear, resize_nearest
from pimo.evaluate import evaluate_dataset
from tests.test_evaluate import SIZE, make_mvtec, write_maps

BOUNDS = (1e-3, 1e-2)


def random_ignore_masks(masks: np.ndarray, seed: int = 0) -> np.ndarray:
    """Scattered blocks of ignored pixels that leave a part of every defect in place."""
    rng = np.random.default_rng(seed)
    ignore = np.zeros(masks.shape, dtype=bool)
    for index in range(masks.shape[0]):
        for _ in range(3):
            top, left = rng.integers(0, SIZE[0] - 6), rng.integers(0, SIZE[1] - 6)
            ignore[index, top:top + 6, left:left + 6] = True
        defect = np.flatnonzero(masks[index])
        if defect.size:
            ignore[index].flat[defect[: defect.size // 2]] = False  # half of it stays
    return ignore


def save_ignore_masks(folder: Path, ignore: np.ndarray, paths: list[str], ext: str) -> None:
    for mask, relative in zip(ignore, paths, strict=True):
        target = folder / Path(relative).with_suffix(ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        if ext == ".png":
            Image.fromarray(mask.astype(np.uint8) * 255).save(target)
        else:
            np.save(target, mask)


def reference(maps: np.ndarray, masks: np.ndarray, ignore: np.ndarray):
    full = np.stack([resize_bilinear(m, SIZE) for m in maps])
    return (pimo.aupimo(full, masks, fpr_bounds=BOUNDS, ignore_masks=ignore),
            pimo.set_metrics(full, masks, fpr_limits=(0.3, 0.05), ignore_masks=ignore),
            pimo.image_metrics(full, masks, ignore_masks=ignore))


def check_equal(result, maps, masks, ignore) -> None:
    aupimo, set_metrics, image_level = reference(maps, masks, ignore)
    np.testing.assert_allclose(result.aupimo.aupimos, aupimo.aupimos, atol=1e-12,
                               equal_nan=True)
    assert result.set_metrics["auroc"] == pytest.approx(set_metrics.auroc, abs=1e-12)
    assert result.set_metrics["aupro"] == pytest.approx(set_metrics.aupro[0.3], abs=1e-12)
    assert result.set_metrics["aupr"] == pytest.approx(set_metrics.ap, abs=1e-12)
    assert result.image_metrics.auroc == pytest.approx(image_level.auroc, abs=1e-12)
    np.testing.assert_array_equal(result.image_metrics.scores, image_level.scores)


@pytest.fixture
def dataset(tmp_path: Path):
    maps, masks, paths = make_mvtec(tmp_path / "data")
    write_maps(tmp_path / "maps", maps, paths)
    return maps, masks, paths


def evaluate(tmp_path: Path, ignore_masks, **kwargs):
    return evaluate_dataset(f"mvtec:{tmp_path / 'data'}", tmp_path / "maps", fpr_bounds=BOUNDS,
                            ignore_masks=ignore_masks, **kwargs)


@pytest.mark.parametrize("ext", [".png", ".npy"])
def test_a_folder_of_ignore_masks(tmp_path: Path, dataset, ext: str) -> None:
    maps, masks, paths = dataset
    ignore = random_ignore_masks(masks)
    # MVTec-style relative paths start with the category: bottle/test/...; the category's
    # sub-folder is used, as for maps
    save_ignore_masks(tmp_path / "ignore", ignore, paths, ext)
    result = evaluate(tmp_path, tmp_path / "ignore")
    check_equal(result, maps, masks, ignore)
    without = evaluate(tmp_path, None)
    assert without.set_metrics["auroc"] != result.set_metrics["auroc"]
    result.save(tmp_path / "out")
    info = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert info["ignore_masks"] == str((tmp_path / "ignore" / "bottle").resolve())
    assert info["images"][0]["ignore_mask"] == Path(paths[0][len("bottle/"):]).with_suffix(
        ext).as_posix()
    assert "ignore_masks" in without.to_dict() and without.to_dict()["ignore_masks"] is None


def test_one_file_for_every_image(tmp_path: Path, dataset) -> None:
    maps, masks, _ = dataset
    border = np.zeros(SIZE, dtype=bool)
    border[:3] = border[-3:] = True
    border[:, :2] = border[:, -2:] = True
    Image.fromarray(border.astype(np.uint8) * 255).save(tmp_path / "border.png")
    result = evaluate(tmp_path, tmp_path / "border.png")
    check_equal(result, maps, masks, np.broadcast_to(border, masks.shape))
    assert result.images[0].ignore_mask == "border.png"


def test_with_a_fixed_resolution_ignore_masks_are_resized_like_masks(tmp_path: Path,
                                                                      dataset) -> None:
    maps, masks, paths = dataset
    ignore = random_ignore_masks(masks, seed=3)
    save_ignore_masks(tmp_path / "ignore", ignore, paths, ".png")
    result = evaluate(tmp_path, tmp_path / "ignore", resolution=(24, 20), set_metrics=False)
    small = [resize_nearest(m, (24, 20)) for m in masks]
    small_ignore = [resize_nearest(i, (24, 20)) for i in ignore]
    expected = pimo.aupimo(maps, small, fpr_bounds=BOUNDS, ignore_masks=small_ignore)
    np.testing.assert_allclose(result.aupimo.aupimos, expected.aupimos, atol=1e-12,
                               equal_nan=True)


def test_a_missing_ignore_mask_is_a_problem_unless_skipped(tmp_path: Path, dataset) -> None:
    _, masks, paths = dataset
    ignore = random_ignore_masks(masks)
    save_ignore_masks(tmp_path / "ignore", ignore, paths, ".png")
    (tmp_path / "ignore" / Path(paths[1]).with_suffix(".png")).unlink()
    with pytest.raises(DatasetError, match=rf"no ignore mask for the image {paths[1]}") as info:
        evaluate(tmp_path, tmp_path / "ignore")
    assert "--skip-missing" in str(info.value)
    result = evaluate(tmp_path, tmp_path / "ignore", skip_missing=True)
    assert result.paths == [paths[0], *paths[2:]]
    assert [problem.kind for problem in result.skipped] == ["missing-ignore-mask"]


def test_bad_ignore_masks_are_reported(tmp_path: Path, dataset) -> None:
    _, masks, paths = dataset
    ignore = random_ignore_masks(masks)
    save_ignore_masks(tmp_path / "ignore", ignore, paths, ".png")
    wrong_size = tmp_path / "ignore" / Path(paths[0]).with_suffix(".png")
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(wrong_size)
    grey = tmp_path / "ignore" / Path(paths[2]).with_suffix(".png")
    Image.fromarray(np.arange(SIZE[0] * SIZE[1], dtype=np.uint8).reshape(SIZE) % 3).save(grey)
    with pytest.raises(DatasetError) as info:
        evaluate(tmp_path, tmp_path / "ignore")
    message = str(info.value)
    assert f"is 12x10 pixels but the image {paths[0]} is 40x48" in message
    assert "is not binary: it holds 3 distinct values" in message
    with pytest.raises(DatasetError, match=r"The ignore masks .*nowhere do not exist"):
        evaluate(tmp_path, tmp_path / "nowhere")


def test_an_ignore_mask_covering_an_image_names_it(tmp_path: Path, dataset) -> None:
    _, masks, paths = dataset
    ignore = np.zeros(masks.shape, dtype=bool)
    ignore[4] = True
    save_ignore_masks(tmp_path / "ignore", ignore, paths, ".npy")
    with pytest.raises(pimo.IgnoreMaskError, match=rf"image 4 \('{paths[4]}'.* covers all its"):
        evaluate(tmp_path, tmp_path / "ignore")


def test_cli_evaluate_with_ignore_masks(tmp_path: Path, dataset) -> None:
    maps, masks, paths = dataset
    ignore = random_ignore_masks(masks, seed=5)
    save_ignore_masks(tmp_path / "ignore", ignore, paths, ".png")
    assert main([
        "evaluate", "--dataset", f"mvtec:{tmp_path / 'data'}", "--maps", str(tmp_path / "maps"),
        "--ignore-masks", str(tmp_path / "ignore"), "--fpr-bounds", "1e-3", "1e-2",
        "-o", str(tmp_path / "out"), "-q",
    ]) == 0
    scores = pimo.load_aupimo(tmp_path / "out" / "aupimo" / "aupimos.json")
    np.testing.assert_allclose(scores.aupimos, reference(maps, masks, ignore)[0].aupimos,
                               atol=1e-12, equal_nan=True)


def test_report_curves_leave_the_ignored_pixels_out_too(tmp_path: Path, dataset) -> None:
    from pimo.report._evaluation import EvaluationRecord

    maps, masks, paths = dataset
    ignore = random_ignore_masks(masks, seed=7)
    save_ignore_masks(tmp_path / "ignore", ignore, paths, ".png")
    result = evaluate(tmp_path, tmp_path / "ignore")
    result.save(tmp_path / "out")
    record = EvaluationRecord.load(tmp_path / "out" / "evaluation.json")
    anomalous = int(np.flatnonzero(result.aupimo.image_classes == 1)[0])
    source = record.open_maps()
    curves = record.curves_for(source, result.aupimo, [anomalous])
    source.close()
    full = np.stack([resize_bilinear(m, SIZE) for m in maps])
    expected = pimo.pimo_curves(full, masks, fpr_bounds=BOUNDS, ignore_masks=ignore)
    np.testing.assert_array_equal(curves.thresholds, expected.thresholds)
    np.testing.assert_allclose(curves.tprs[anomalous], expected.tprs[anomalous], atol=1e-12)
    np.testing.assert_array_equal(record.load_ignore_mask(anomalous), ignore[anomalous])
    (tmp_path / "ignore" / Path(paths[0]).with_suffix(".png")).unlink()
    with pytest.raises(pimo.PimoError, match=r"does not exist"):
        record.load_ignore_mask(0)


def test_heatmaps_grey_out_the_ignored_pixels_in_the_report_and_show(tmp_path: Path,
                                                                      dataset) -> None:
    from pimo.plots import compose_heatmap

    maps, masks, paths = dataset
    ignore = random_ignore_masks(masks, seed=8)
    full = resize_bilinear(maps[7], SIZE)
    thresholds = (float(np.quantile(full, 0.5)), float(np.quantile(full, 0.9)))
    picture = compose_heatmap(None, full, masks[7], thresholds, ignore=ignore[7])
    coloured = compose_heatmap(None, full, masks[7], thresholds)
    grey = picture[ignore[7] & (full >= thresholds[0])]  # would be coloured if kept
    assert grey.shape[0] > 0
    assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()
    assert not (picture == coloured).all()
    save_ignore_masks(tmp_path / "ignore", ignore, paths, ".png")
    evaluate(tmp_path, tmp_path / "ignore").save(tmp_path / "out")
    assert main(["report", str(tmp_path / "out"), "-o", str(tmp_path / "report.html")]) == 0
    anomalous = paths[7][len("bottle/test/"):]
    assert main(["show", str(tmp_path / "out"), anomalous, "-o",
                 str(tmp_path / "show.png")]) == 0
    assert (tmp_path / "show.png").stat().st_size > 0
