"""Score files: the paper's per-image JSON format, written atomically as strict JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import pimo
from pimo.results import AupimoResult

from .paths import paper_benchmark_root

OFFICIAL_SNIPPET = """{
    "shared_fpr_metric": "mean-per-image-fpr",
    "fpr_lower_bound": 1e-05,
    "fpr_upper_bound": 0.0001,
    "num_threshs": null,
    "thresh_lower_bound": 1.81,
    "thresh_upper_bound": 1.83,
    "aupimos": [1.0, 0.5, NaN, NaN, 0.25],
    "paths": ["a/0.png", "a/1.png", "good/0.png", "good/1.png", "b/0.png"],
    "some_future_field": 3
}"""


def test_reads_official_format_with_bare_nan(tmp_path):
    path = tmp_path / "aupimos.json"
    path.write_text(OFFICIAL_SNIPPET)
    result = pimo.load_aupimo(path)
    np.testing.assert_array_equal(result.image_classes, [1, 1, 0, 0, 1])
    assert result.mean() == pytest.approx((1.0 + 0.5 + 0.25) / 3)
    assert result.thresh_bounds == (1.81, 1.83)
    assert result.num_thresholds is None
    assert result.paths[4] == "b/0.png"


def test_round_trip_writes_strict_json_in_paper_order(tmp_path):
    result = AupimoResult(np.array([np.nan, 0.75, 1.0]), np.array([0, 1, 1]),
                          thresh_bounds=(0.1, 0.2), num_thresholds=42, paths=["g", "d1", "d2"])
    path = result.save(tmp_path / "sub" / "aupimos.json")
    text = path.read_text()
    assert "NaN" not in text
    payload = json.loads(text)
    assert list(payload)[:8] == ["shared_fpr_metric", "fpr_lower_bound", "fpr_upper_bound",
                                 "num_threshs", "thresh_lower_bound", "thresh_upper_bound",
                                 "aupimos", "paths"]
    assert payload["aupimos"] == [None, 0.75, 1.0]
    again = pimo.load_aupimo(path)
    np.testing.assert_array_equal(again.aupimos, result.aupimos)
    assert again == result
    assert not list(tmp_path.glob("sub/.*tmp"))  # no temporary file left behind


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "aupimos.json"
    target.write_text("old")
    result = AupimoResult(np.array([0.5]), np.array([1]))

    def broken_replace(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("pimo._io.Path.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        result.save(target)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["aupimos.json"]


def test_engine_result_round_trip(tmp_path):
    maps, masks = pimo.make_example(4, 4, (200, 200), seed=0)
    result = pimo.aupimo(maps, masks, paths=[f"img{i}.png" for i in range(8)])
    loaded = pimo.load_aupimo(result.save(tmp_path / "s.json"))
    np.testing.assert_array_equal(loaded.aupimos, result.aupimos)
    assert loaded.thresh_bounds == result.thresh_bounds
    assert loaded.num_thresholds == result.num_thresholds
    assert loaded.mode == "exact"
    auimo = pimo.auimo(maps, masks)
    loaded_iou = pimo.load_auimo(auimo.save(tmp_path / "i.json"))
    np.testing.assert_array_equal(loaded_iou.auimos, auimo.auimos)
    assert "auimos" in json.loads((tmp_path / "i.json").read_text())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "JSON object"),
        ('{"aupimos": "x"}', "must be a list"),
        ('{"aupimos": [0.5, 2.0]}', "outside"),
        ('{"aupimos": [0.5, "a"]}', "expected a number"),
        ('{"other": []}', "missing the field"),
        ('{"aupimos": [0.5], "paths": ["a", "b"]}', "one entry per score"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(pimo.ScoreFileError, match=message):
        pimo.load_aupimo(path)


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = pimo.save_value(tmp_path / "auroc.json", 0.5)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_value_files(tmp_path):
    path = pimo.save_value(tmp_path / "auroc.json", 0.987)
    assert json.loads(path.read_text()) == {"value": 0.987}
    assert pimo.load_value(path) == 0.987


def test_every_published_score_file_loads():
    root = paper_benchmark_root()
    if root is None:
        pytest.skip("the paper's published scores (../shared/paper-benchmark) are not here")
    files = sorted(root.rglob("aupimos.json"))
    assert len(files) > 300
    for path in files:
        result = pimo.load_aupimo(path)
        assert result.num_anomalous > 0, path
        assert np.all((result.anomalous_scores >= 0) & (result.anomalous_scores <= 1)), path
    bottle = pimo.load_aupimo(
        root / "benchmark" / "patchcore_wr101" / "mvtec" / "bottle" / "aupimo" / "aupimos.json"
    )
    assert round(100 * bottle.mean(), 1) == 99.4
    assert round(100 * bottle.std(), 1) == 1.9
    assert round(100 * bottle.percentile(33), 1) == 100.0
    assert math.isnan(bottle.aupimos[-1])
