"""End-to-end evaluation of map files against small datasets in each layout, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pimo
from pimo.data import DatasetError, open_dataset
from pimo.evaluate import evaluate_dataset

SIZE = (48, 40)  # (height, width) of images and masks
MAP_SIZE = (24, 20)  # maps are smaller: they are resized to the masks' size


def _save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _example(num_normal: int = 6, num_anomalous: int = 5, seed: int = 0):
    """Low-resolution maps and full-resolution masks, the anomalies visible in the maps."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(num_normal + num_anomalous, *MAP_SIZE)).astype(np.float32)
    masks = np.zeros((num_normal + num_anomalous, *SIZE), dtype=bool)
    for index in range(num_normal, num_normal + num_anomalous):
        top, left = rng.integers(0, SIZE[0] - 12), rng.integers(0, SIZE[1] - 12)
        masks[index, top : top + 10, left : left + 10] = True
        maps[index, top // 2 : top // 2 + 5, left // 2 : left // 2 + 5] += 2.5
    return maps, masks


def _image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 255, size=(*SIZE, 3), dtype=np.uint8)


def make_mvtec(root: Path, category: str = "bottle", seed: int = 0):
    """An MVTec-AD-style category; returns (maps, masks, relative paths) in sorted order."""
    maps, masks = _example(seed=seed)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(len(maps)):
        anomalous = bool(masks[index].any())
        defect = "crack" if anomalous else "good"
        name = f"{index:03d}"
        relative = f"{category}/test/{defect}/{name}.png"
        _save_png(root / relative, _image(rng))
        if anomalous:
            mask_path = root / category / "ground_truth" / defect / f"{name}_mask.png"
            _save_png(mask_path, masks[index].astype(np.uint8) * 255)
        paths.append(relative)
    order = np.argsort(paths)
    return maps[order], masks[order], [paths[i] for i in order]


def write_maps(folder: Path, maps: np.ndarray, paths: list[str], ext: str = ".npy") -> None:
    for anomaly_map, relative in zip(maps, paths, strict=True):
        target = folder / Path(relative).with_suffix(ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        if ext == ".npy":
            np.save(target, anomaly_map)
        elif ext == ".npz":
            np.savez(target, anomaly_map=anomaly_map)
        elif ext == ".tiff":
            import tifffile

            tifffile.imwrite(target, anomaly_map)
        else:
            raise ValueError(ext)


def _reference(maps: np.ndarray, masks: np.ndarray):
    from pimo.data import resize_bilinear

    full = np.stack([resize_bilinear(m, SIZE) for m in maps])
    scores = pimo.aupimo(full, masks, fpr_bounds=(1e-3, 1e-2))
    return scores, pimo.set_metrics(full, masks, fpr_limits=(0.3, 0.05))


def _check_same(result, maps, masks, paths) -> None:
    reference, set_reference = _reference(maps, masks)
    assert result.paths == paths
    np.testing.assert_allclose(result.aupimo.aupimos, reference.aupimos, rtol=0, atol=1e-12,
                               equal_nan=True)
    assert result.set_metrics is not None
    assert result.set_metrics["auroc"] == pytest.approx(set_reference.auroc, abs=1e-12)
    assert result.set_metrics["aupro"] == pytest.approx(set_reference.aupro[0.3], abs=1e-12)
    assert result.set_metrics["aupro_05"] == pytest.approx(set_reference.aupro[0.05], abs=1e-12)


@pytest.mark.parametrize("ext", [".npy", ".npz", ".tiff"])
def test_mvtec_same_scores_as_arrays(tmp_path: Path, ext: str) -> None:
    maps, masks, paths = make_mvtec(tmp_path / "data")
    write_maps(tmp_path / "maps", maps, paths, ext)
    result = evaluate_dataset(f"mvtec:{tmp_path / 'data'}", tmp_path / "maps", category="bottle",
                              fpr_bounds=(1e-3, 1e-2))
    _check_same(result, maps, masks, paths)


@pytest.mark.parametrize("bits", [8, 16])
def test_png_maps_are_scaled(tmp_path: Path, bits: int) -> None:
    maps, masks, paths = make_mvtec(tmp_path / "data")
    top = 2**bits - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    quantised = np.round((maps - maps.min()) / np.ptp(maps) * top).astype(dtype)
    for anomaly_map, relative in zip(quantised, paths, strict=True):
        _save_png(tmp_path / "maps" / Path(relative).with_suffix(".png"), anomaly_map)
    result = evaluate_dataset(f"mvtec:{tmp_path / 'data'}", tmp_path / "maps",
                              fpr_bounds=(1e-3, 1e-2))
    _check_same(result, quantised.astype(np.float32) / np.float32(top), masks, paths)


def test_pt_map_files(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    maps, masks, paths = make_mvtec(tmp_path / "data")
    for anomaly_map, relative in zip(maps, paths, strict=True):
        target = tmp_path / "maps" / Path(relative).with_suffix(".pt")
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(torch.from_numpy(anomaly_map)[None], target)  # (1, H, W)
    result = evaluate_dataset(f"mvtec:{tmp_path / 'data'}", tmp_path / "maps",
                              fpr_bounds=(1e-3, 1e-2))
    _check_same(result, maps, masks, paths)


def test_save_writes_published_layout(tmp_path: Path) -> None:
    maps, masks, paths = make_mvtec(tmp_path / "data")
    write_maps(tmp_path / "maps", maps, paths)
    result = evaluate_dataset(f"mvtec:{tmp_path / 'data'}", tmp_path / "maps", category="bottle",
                              fpr_bounds=(1e-3, 1e-2))
    result.save(tmp_path / "out")
    scores = pimo.load_aupimo(tmp_path / "out" / "aupimo" / "aupimos.json")
    assert list(scores.paths) == paths
    for name in ("auroc", "aupro", "aupro_05"):
        assert pimo.load_value(tmp_path / "out" / f"{name}.json") == result.set_metrics[name]
    info = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert info["dataset"]["layout"] == "mvtec"
    assert info["dataset"]["category"] == "bottle"
    assert info["fpr_bounds"] == [1e-3, 1e-2]
    assert len(info["thresh_bounds"]) == 2
    assert [image["path"] for image in info["images"]] == paths
    assert info["images"][0]["mask"].endswith("_mask.png")
    assert info["images"][0]["map"] == Path(paths[0]).with_suffix(".npy").as_posix()[7:]
    assert info["maps"]["location"] == str((tmp_path / "maps" / "bottle").resolve())
    image_auroc = pimo.load_value(tmp_path / "out" / "image_auroc.json")
    from pimo.data import resize_bilinear

    full = np.stack([resize_bilinear(m, SIZE) for m in maps])
    assert image_auroc == pytest.approx(pimo.image_metrics(full, masks).auroc, abs=1e-12)
    assert info["files"]["image_auroc"] == "image_auroc.json"
    image_level = pimo.image_metrics(full, masks)
    assert pimo.load_value(tmp_path / "out" / "image_ap.json") == pytest.approx(image_level.ap)
    f1_file = json.loads((tmp_path / "out" / "image_f1max.json").read_text())
    assert f1_file["value"] == pytest.approx(image_level.f1_max)
    assert f1_file["threshold"] == image_level.f1_max_threshold
    expected_types = [path.split("/")[2] for path in paths]  # bottle/test/<defect>/...
    assert [image["defect_type"] for image in info["images"]] == expected_types
    assert scores.extra["defect_types"] == expected_types


def test_stacked_npz(tmp_path: Path) -> None:
    maps, masks, paths = make_mvtec(tmp_path / "data")
    np.savez(tmp_path / "stacked.npz", asmaps=maps, paths=np.array(paths))
    result = evaluate_dataset(f"mvtec:{tmp_path / 'data'}", tmp_path / "stacked.npz",
                              fpr_bounds=(1e-3, 1e-2))
    _check_same(result, maps, masks, paths)


def test_stacked_pt(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    maps, masks, paths = make_mvtec(tmp_path / "data")
    torch.save({"asmaps": torch.from_numpy(maps), "paths": paths}, tmp_path / "stacked.pt")
    result = evaluate_dataset(f"mvtec:{tmp_path / 'data'}", tmp_path / "stacked.pt",
                              fpr_bounds=(1e-3, 1e-2))
    _check_same(result, maps, masks, paths)


def test_visa_csv_layout(tmp_path: Path) -> None:
    maps, masks = _example(seed=1)
    rng = np.random.default_rng(1)
    root = tmp_path / "visa"
    rows = ["object,split,label,image,mask"]
    paths = []
    for index in range(len(maps)):
        anomalous = bool(masks[index].any())
        kind = "Anomaly" if anomalous else "Normal"
        image = f"candle/Data/Images/{kind}/{index:04d}.JPG"
        path = root / image
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(rng)).save(path, format="JPEG")
        mask = ""
        if anomalous:
            mask = f"candle/Data/Masks/Anomaly/{index:04d}.png"
            _save_png(root / mask, masks[index].astype(np.uint8) * (index % 3 + 1))
        rows.append(f"candle,test,{'anomaly' if anomalous else 'normal'},{image},{mask}")
        paths.append(image)
    rows.append("candle,train,normal,candle/Data/Images/Normal/9999.JPG,")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    order = np.argsort(paths)
    maps, masks, paths = maps[order], masks[order], [paths[i] for i in order]
    write_maps(tmp_path / "maps", maps, paths)
    result = evaluate_dataset(f"visa:{root}", tmp_path / "maps", category="candle",
                              fpr_bounds=(1e-3, 1e-2))
    _check_same(result, maps, masks, paths)
    # the per-category layout (no split file) lists the same images
    (root / "split_csv" / "1cls.csv").unlink()
    result = evaluate_dataset(f"visa:{root}", tmp_path / "maps", category="candle",
                              fpr_bounds=(1e-3, 1e-2))
    _check_same(result, maps, masks, paths)


def test_folder_layout(tmp_path: Path) -> None:
    maps, masks = _example(seed=2)
    rng = np.random.default_rng(2)
    root = tmp_path / "folder"
    paths = []
    for index in range(len(maps)):
        relative = f"images/part{index % 2}/{index:02d}.png"
        _save_png(root / relative, _image(rng))
        if masks[index].any():
            _save_png(root / f"masks/part{index % 2}/{index:02d}.png",
                      masks[index].astype(np.uint8))
        paths.append(relative)
    order = np.argsort(paths)
    maps, masks, paths = maps[order], masks[order], [paths[i] for i in order]
    write_maps(tmp_path / "maps", maps, paths)
    result = evaluate_dataset(f"folder:{root}", tmp_path / "maps", fpr_bounds=(1e-3, 1e-2))
    _check_same(result, maps, masks, paths)
    assert [image.defect_type for image in result.images] == [p.split("/")[1] for p in paths]


def test_fixed_resolution(tmp_path: Path) -> None:
    maps, masks, paths = make_mvtec(tmp_path / "data")
    write_maps(tmp_path / "maps", maps, paths)
    result = evaluate_dataset(f"mvtec:{tmp_path / 'data'}", tmp_path / "maps",
                              fpr_bounds=(1e-3, 1e-2), resolution=(24, 20), set_metrics=False)
    from pimo.data import resize_nearest

    small_masks = np.stack([resize_nearest(m, (24, 20)) for m in masks])
    np.testing.assert_allclose(result.aupimo.aupimos, pimo.aupimo(maps, small_masks,
                               fpr_bounds=(1e-3, 1e-2)).aupimos, atol=1e-12, equal_nan=True)
    assert result.to_dict()["resolution"] == [24, 20]


# ---------------------------------------------------------------------------- bad input
def _evaluate(tmp_path: Path, **kwargs):
    return evaluate_dataset(f"mvtec:{tmp_path / 'data'}", tmp_path / "maps",
                            fpr_bounds=(1e-3, 1e-2), **kwargs)


@pytest.fixture
def dataset(tmp_path: Path):
    maps, masks, paths = make_mvtec(tmp_path / "data")
    write_maps(tmp_path / "maps", maps, paths)
    return maps, masks, paths


def test_missing_map(tmp_path: Path, dataset) -> None:
    paths = dataset[2]
    (tmp_path / "maps" / Path(paths[0]).with_suffix(".npy")).unlink()
    (tmp_path / "maps" / Path(paths[-1]).with_suffix(".npy")).unlink()
    with pytest.raises(DatasetError, match="2 problems") as info:
        _evaluate(tmp_path)
    assert paths[0] in str(info.value) and paths[-1] in str(info.value)
    assert "--skip-missing" in str(info.value)
    result = _evaluate(tmp_path, skip_missing=True)
    assert result.paths == paths[1:-1]
    skipped = result.to_dict()["skipped"]
    assert [item["path"] for item in skipped] == [paths[0], paths[-1]]


def test_map_without_image(tmp_path: Path, dataset) -> None:
    np.save(tmp_path / "maps" / "bottle" / "test" / "good" / "999.npy", dataset[0][0])
    with pytest.raises(DatasetError, match=r"good/999.npy in .*matches no test image"):
        _evaluate(tmp_path)
    assert len(_evaluate(tmp_path, skip_missing=True).skipped) == 1


def test_mask_of_another_size(tmp_path: Path, dataset) -> None:
    mask = next((tmp_path / "data").rglob("*_mask.png"))
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(mask)
    with pytest.raises(DatasetError, match="10x10 pixels but its image") as info:
        _evaluate(tmp_path)
    assert str(mask) in str(info.value)


def test_truncated_image(tmp_path: Path, dataset) -> None:
    image = tmp_path / "data" / dataset[2][0]
    image.write_bytes(image.read_bytes()[:100])
    with pytest.raises(DatasetError, match="truncated") as info:
        _evaluate(tmp_path)
    assert str(image) in str(info.value)


def test_nan_in_map(tmp_path: Path, dataset) -> None:
    maps, _, paths = dataset
    bad = maps[3].copy()
    bad[0, 0] = np.nan
    np.save(tmp_path / "maps" / Path(paths[3]).with_suffix(".npy"), bad)
    with pytest.raises(DatasetError, match="1 NaN value") as info:
        _evaluate(tmp_path)
    assert "test/crack/009.npy in " + str(tmp_path / "maps" / "bottle") in str(info.value)


def test_float64_map_among_float32_maps(tmp_path: Path, dataset) -> None:
    maps, masks, paths = dataset
    exact = maps[-1].astype(np.float64)  # float32 values stored as float64: accepted
    np.save(tmp_path / "maps" / Path(paths[-1]).with_suffix(".npy"), exact)
    _check_same(_evaluate(tmp_path), maps, masks, paths)
    # a genuine float64 map after float32 ones: the set metrics are redone in float64
    widened = exact + 1e-9 * np.abs(exact)
    assert not np.array_equal(widened.astype(np.float32), widened)
    np.save(tmp_path / "maps" / Path(paths[-1]).with_suffix(".npy"), widened)
    mixed = [*maps[:-1], widened]
    _check_same(_evaluate(tmp_path), mixed, masks, paths)
    assert _evaluate(tmp_path, set_metrics=False).set_metrics is None


def test_float64_map_first_then_float32_maps(tmp_path: Path, dataset) -> None:
    maps, masks, paths = dataset
    first_normal = next(i for i, mask in enumerate(masks) if not mask.any())
    widened = maps[first_normal].astype(np.float64) * (1 + 1e-9)
    np.save(tmp_path / "maps" / Path(paths[first_normal]).with_suffix(".npy"), widened)
    mixed = list(maps)
    mixed[first_normal] = widened
    _check_same(_evaluate(tmp_path), mixed, masks, paths)


def test_non_binary_mask(tmp_path: Path, dataset) -> None:
    mask = next((tmp_path / "data").rglob("*_mask.png"))
    values = np.asarray(Image.open(mask)).copy()
    values[values > 0] = 200
    values[0, :5] = [10, 20, 30, 40, 50]
    Image.fromarray(values).save(mask)
    with pytest.raises(DatasetError, match="--mask-threshold") as info:
        _evaluate(tmp_path)
    assert str(mask) in str(info.value)
    assert _evaluate(tmp_path, mask_threshold=127).paths == dataset[2]


def test_empty_category(tmp_path: Path) -> None:
    (tmp_path / "data" / "bottle" / "test" / "good").mkdir(parents=True)
    (tmp_path / "maps").mkdir()
    with pytest.raises(DatasetError, match="has no test image"):
        _evaluate(tmp_path)


def test_unknown_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Unknown dataset layout 'kitti'"):
        open_dataset(f"kitti:{tmp_path}")
    with pytest.raises(DatasetError, match="does not have the mvtec layout"):
        open_dataset(f"mvtec:{tmp_path}")


def test_unknown_category(tmp_path: Path, dataset) -> None:
    with pytest.raises(DatasetError, match="Available categories: bottle"):
        _evaluate(tmp_path, category="cable")


def test_pt_map_without_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("no torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from pimo.data import read_map_file

    (tmp_path / "map.pt").write_bytes(b"x")
    with pytest.raises(DatasetError, match="needs PyTorch"):
        read_map_file(tmp_path / "map.pt")


def test_folder_masks_with_upper_case_extensions_are_found(tmp_path: Path) -> None:
    """``masks/bad/000.TIF`` is the mask of ``images/bad/000.png`` (never an orphan whose
    image would then count as normal)."""
    maps, masks = _example(seed=4)
    rng = np.random.default_rng(4)
    root = tmp_path / "folder"
    paths = []
    extensions = [".TIF", ".Png", ".PNG", ".tiff", ".JPEG"]
    for index in range(len(maps)):
        relative = f"images/{'bad' if masks[index].any() else 'good'}/{index:03d}.png"
        _save_png(root / relative, _image(rng))
        if masks[index].any():
            ext = extensions[index % len(extensions)]
            mask = masks[index].astype(np.uint8) * 255
            target = root / f"masks/bad/{index:03d}{ext}"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(target, format="TIFF" if "TIF" in ext.upper() else
                                       "JPEG" if "JP" in ext.upper() else "PNG",
                                       **({"quality": 100} if "JP" in ext.upper() else {}))
        paths.append(relative)
    maps, masks = maps[np.argsort(paths)], masks[np.argsort(paths)]
    paths = sorted(paths)
    write_maps(tmp_path / "maps", maps, paths)
    result = evaluate_dataset(f"folder:{root}", tmp_path / "maps", fpr_bounds=(1e-3, 1e-2),
                              mask_threshold=127)
    assert [image.anomalous for image in result.images] == [bool(m.any()) for m in masks]
    _check_same(result, maps, masks, paths)


def test_mvtec_mask_of_a_good_image_is_a_problem(tmp_path: Path, dataset) -> None:
    paths = dataset[2]
    good = next(path for path in paths if "/good/" in path)
    mask = tmp_path / "data" / "bottle" / "ground_truth" / "good" / f"{Path(good).stem}_mask.png"
    _save_png(mask, np.full(SIZE, 255, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"ground_truth/good/.*is for a normal image"):
        _evaluate(tmp_path)


@pytest.mark.parametrize("scale", [1, 2])
def test_transposed_maps_are_a_problem(tmp_path: Path, dataset, scale: int) -> None:
    """Maps saved as (W, H), at the image's size or smaller, are refused (they would be
    stretched onto the wrong pixels); square maps of these non-square images are not."""
    maps, _, paths = dataset
    full = np.stack([np.asarray(Image.fromarray(m).resize(SIZE[::-1])) for m in maps])
    for anomaly_map, relative in zip(full, paths, strict=True):
        np.save(tmp_path / "maps" / Path(relative).with_suffix(".npy"),
                anomaly_map.T[::scale, ::scale])
    with pytest.raises(DatasetError, match=r"turned by 90 degrees.*anomaly_map\.T") as info:
        _evaluate(tmp_path)
    assert f"is {SIZE[0] // scale}x{SIZE[1] // scale} (width x height)" in str(info.value)
    for anomaly_map, relative in zip(full, paths, strict=True):
        np.save(tmp_path / "maps" / Path(relative).with_suffix(".npy"), anomaly_map[:32, :32])
    assert len(_evaluate(tmp_path).paths) == len(paths)


def test_a_map_from_another_folder_is_not_matched_by_its_name(tmp_path: Path) -> None:
    """Unique file names let a map match by name alone; but when the maps follow the
    images' folders, one found in another folder (another image's, or a stray one) is a
    problem, not its image's map. Flat maps (no folders) still match by name."""
    maps, masks = _example(seed=6)
    rng = np.random.default_rng(6)
    root = tmp_path / "folder"
    paths = []
    for index in range(len(maps)):
        folder = "bad" if masks[index].any() else "good"
        relative = f"images/{folder}/img{index}.png"
        _save_png(root / relative, _image(rng))
        if masks[index].any():
            _save_png(root / f"masks/bad/img{index}.png", masks[index].astype(np.uint8) * 255)
        paths.append(relative)
    order = np.argsort(paths)
    maps, masks, paths = maps[order], masks[order], [paths[i] for i in order]
    write_maps(tmp_path / "maps", maps, [p.removeprefix("images/") for p in paths])
    moved = tmp_path / "maps" / "good" / "img0.npy"
    moved.rename(tmp_path / "maps" / "bad" / "img0.npy")
    with pytest.raises(DatasetError, match=r"bad/img0.npy .* matches the image "
                                           r"images/good/img0.png by its name only"):
        evaluate_dataset(f"folder:{root}", tmp_path / "maps", fpr_bounds=(1e-3, 1e-2),
                         mask_threshold=0)
    flat = tmp_path / "flat"
    write_maps(flat, maps, [Path(p).name for p in paths])
    result = evaluate_dataset(f"folder:{root}", flat, fpr_bounds=(1e-3, 1e-2), mask_threshold=0)
    _check_same(result, maps, masks, paths)
