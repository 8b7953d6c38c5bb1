"""``pimo evaluate`` with several models' maps (``--maps NAME=DIR``), in this process."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest

from pimo.cli import main
from pimo.cli.evaluate_cmd import parse_maps_options
from tests.test_evaluate import make_mvtec, write_maps


def test_parse_maps_options(tmp_path: Path) -> None:
    assert parse_maps_options(["maps/"]) == Path("maps/")
    assert parse_maps_options(["a=maps_a", "b=/x/y=z"]) == {"a": Path("maps_a"),
                                                            "b": Path("/x/y=z")}
    existing = tmp_path / "run=1"
    existing.mkdir()
    assert parse_maps_options([str(existing)]) == existing  # an existing path stays a path
    assert parse_maps_options(["dir/a=b"]) == Path("dir/a=b")  # not a plain name
    with pytest.raises(click.BadParameter, match="need a model name each"):
        parse_maps_options(["maps_a", "maps_b"])
    with pytest.raises(click.BadParameter, match="need a model name each"):
        parse_maps_options(["maps_a", "b=maps_b"])
    with pytest.raises(click.BadParameter, match="'a' is given twice"):
        parse_maps_options(["a=x", "a=y"])


def make_two_models(tmp_path: Path) -> list[str]:
    """Two categories and two models' maps (the second model's maps are noisier)."""
    maps = {}
    for category, seed in (("bottle", 0), ("cable", 3)):
        category_maps, _, paths = make_mvtec(tmp_path / "data", category, seed=seed)
        maps[category] = (category_maps, paths)
    noise = np.random.default_rng(9)
    for model, scale in (("a", 0.0), ("b", 1.0)):
        for category_maps, paths in maps.values():
            noisy = category_maps + scale * noise.normal(size=category_maps.shape)
            write_maps(tmp_path / f"maps_{model}", noisy.astype(np.float32), paths)
    return ["evaluate", "--dataset", f"mvtec:{tmp_path / 'data'}", "--fpr-bounds", "1e-3",
            "1e-2", "--categories", "all", "--quiet"]


def json_files(folder: Path) -> dict[str, object]:
    """Every JSON file under ``folder``, parsed, by relative path (without the random run id
    of ``evaluation.json``, which differs from run to run)."""
    files = {}
    for path in sorted(folder.rglob("*.json")):
        content = json.loads(path.read_text())
        if isinstance(content.get("run"), dict):
            content["run"].pop("id", None)
        files[path.relative_to(folder).as_posix()] = content
    return files


def test_named_models_go_to_their_folders(tmp_path: Path) -> None:
    args = make_two_models(tmp_path)
    assert main([*args, "--maps", f"a={tmp_path / 'maps_a'}", "--maps",
                 f"b={tmp_path / 'maps_b'}", "-o", str(tmp_path / "out")]) == 0
    for model in ("a", "b"):
        assert main([*args, "--maps", str(tmp_path / f"maps_{model}"), "-o",
                     str(tmp_path / f"alone_{model}")]) == 0
        alone = json_files(tmp_path / f"alone_{model}")
        assert sorted(alone) == sorted(
            f"mvtec/{c}/{f}" for c in ("bottle", "cable")
            for f in ("aupimo/aupimos.json", "auroc.json", "aupro.json", "aupro_05.json",
                      "aupr.json", "f1max.json", "image_auroc.json", "image_ap.json",
                      "image_f1max.json", "evaluation.json")
        )
        named = json_files(tmp_path / "out" / model)
        for name, content in alone.items():  # the named run records the name given
            if name.endswith("evaluation.json"):
                assert named[name].pop("model") == model
                assert content.pop("model") == f"maps_{model}"  # the folder's name
                named[name].pop("model", None)
        assert named == alone
    assert json_files(tmp_path / "out" / "a") != json_files(tmp_path / "out" / "b")
