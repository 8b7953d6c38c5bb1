"""3-D volumes (D, H, W): every metric and analysis on a synthetic set with known answers.

The set: 4 normal volumes with scores in [0, 1), and 2 anomalous volumes whose background
scores -20 (below everything):

- A: R1, a 2x2x2 block scoring 10, plus one voxel v scoring -10 that touches R1 only at a
  corner (so R1 + v is one 26-connected region of 9 voxels, but two 6-connected regions), and
  R2, a 3x3 plate of 9 voxels scoring -10, far away.
- B: a 3x3x3 block scoring 10.

Within the normal scores, A's TPR is 8/18 and B's is 1; PRO is (8/9 + 0 + 1) / 3 with
26-connectivity and (1 + 0 + 0 + 1) / 4 with 6-connectivity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pimo
from pimo.analysis import (
    NoiseStatistics,
    fp_regions_vs_fpr,
    noisy_annotation_robustness,
    region_sizes,
)
from pimo.cli import main

SHAPE = (4, 16, 16)
BOUNDS = (1e-3, 1e-2)


def volume_set() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    maps = np.empty((6, *SHAPE))
    maps[:4] = rng.uniform(0.0, 0.5, size=(4, *SHAPE))
    maps[0, 0, 0, 0], maps[0, 3, 15, 15] = 0.99, 0.98      # two far-apart top voxels
    maps[1, 1, 1, 1], maps[1, 2, 2, 2] = 0.99, 0.98        # two corner-touching top voxels
    maps[4:] = -20.0
    masks = np.zeros(maps.shape, dtype=bool)
    masks[4, 0:2, 0:2, 0:2] = True                         # R1
    maps[4, 0:2, 0:2, 0:2] = 10.0
    masks[4, 2, 2, 2] = True                               # v, corner-touching R1
    maps[4, 2, 2, 2] = -10.0
    masks[4, 3, 10:13, 10:13] = True                       # R2
    maps[4, 3, 10:13, 10:13] = -10.0
    masks[5, 1:4, 5:8, 5:8] = True                         # B
    maps[5, 1:4, 5:8, 5:8] = 10.0
    return maps, masks


def test_region_counts_use_26_connectivity():
    _, masks = volume_set()
    assert pimo.label_regions(masks[4])[1] == 2
    assert pimo.label_regions(masks[4], connectivity=6)[1] == 3
    sizes = region_sizes(masks)
    assert sizes.image_index.tolist() == [4, 4, 5]
    assert sizes.pixels.tolist() == [9, 9, 27]
    assert sizes.relative.tolist() == [9 / 1024, 9 / 1024, 27 / 1024]


def test_aupimo_and_auimo_of_volumes():
    maps, masks = volume_set()
    result = pimo.aupimo(maps, masks, fpr_bounds=BOUNDS)
    assert np.all(np.isnan(result.aupimos[:4]))
    assert result.aupimos[4:].tolist() == pytest.approx([8 / 18, 1.0], abs=1e-12)
    iou = pimo.auimo(maps, masks, fpr_bounds=BOUNDS)
    assert iou.aupimos[4:].tolist() == pytest.approx([8 / 18, 1.0], abs=1e-12)
    with pytest.warns(pimo.PimoWarning, match="Grid mode"):  # few grid points in the range
        grid = pimo.aupimo(maps, masks, fpr_bounds=BOUNDS, num_thresholds=1000)
    assert grid.aupimos[5] == pytest.approx(1.0, abs=1e-9)


def test_auroc_and_aupro_of_volumes():
    maps, masks = volume_set()
    normal_voxels = int((~masks).sum())                   # 4096 + 1006 + 997
    low_normals = int((~masks[4:]).sum())                 # the -20 background
    assert normal_voxels == 6099 and low_normals == 2003
    expected_auroc = (35 * normal_voxels + 10 * low_normals) / (45 * normal_voxels)
    assert pimo.auroc(maps, masks) == pytest.approx(expected_auroc, abs=1e-12)
    assert pimo.aupro(maps, masks, fpr_limit=0.3) == pytest.approx(17 / 27, abs=1e-12)
    assert pimo.aupro(maps, masks, fpr_limit=0.3, connectivity=6) == pytest.approx(0.5,
                                                                                  abs=1e-12)
    both = pimo.set_metrics(maps, masks, fpr_limits=(0.3, 0.05))
    assert both.num_regions == 3
    assert both.aupro[0.05] == pytest.approx(17 / 27, abs=1e-12)


def test_fp_regions_of_volumes():
    maps, masks = volume_set()
    result = fp_regions_vs_fpr(maps, masks, fpr_range=(2 / 1024, 2 / 1024), num_levels=1,
                               jitter=0.0)
    assert result.image_index.tolist() == [0, 1, 2, 3]
    assert result.fpr.tolist() == [2 / 1024] * 4
    assert result.num_regions[:2].tolist() == [2, 1]      # far apart; corner-touching
    assert result.connectivity == 26


def test_noisy_annotations_of_volumes():
    maps, masks = volume_set()
    small = NoiseStatistics(((2, 3),), (1.0,), ((1, 4),), (1.0,))
    result = noisy_annotation_robustness(maps, masks, statistics=small, fpr_bounds=BOUNDS,
                                         num_draws=2, seed=1)
    assert np.all(result.added_regions[:, 4:] >= 2)
    # noise voxels score -20 (the background) and are never detected in the range
    tpr_a = 8 / (18 + result.added_pixels[:, 4])
    tpr_b = 27 / (27 + result.added_pixels[:, 5])
    assert result.aupimo_noisy[:, 4].tolist() == pytest.approx(tpr_a.tolist(), abs=1e-12)
    assert result.aupimo_noisy[:, 5].tolist() == pytest.approx(tpr_b.tolist(), abs=1e-12)
    regions = 3 + result.added_regions[:, 4:].sum(axis=1)
    detected = (8 / 9 + 1)
    assert result.aupro_noisy[:, 0].tolist() == pytest.approx((detected / regions).tolist(),
                                                              abs=1e-12)


def test_command_line_on_volume_stacks(tmp_path: Path):
    maps, masks = volume_set()
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "masks.npy", masks)
    assert main(["aupimo", str(tmp_path / "maps.npy"), str(tmp_path / "masks.npy"),
                 "--fpr-bounds", *map(str, BOUNDS), "-o", str(tmp_path / "aupimos.json")]) == 0
    assert pimo.load_aupimo(tmp_path / "aupimos.json").aupimos[4] == pytest.approx(8 / 18)
    assert main(["analyze", "sizes", "--masks", str(tmp_path / "masks.npy"), "-o",
                 str(tmp_path / "sizes")]) == 0
    summary = json.loads((tmp_path / "sizes" / "sizes.json").read_text())
    assert summary["datasets"]["masks"]["summary"]["num_regions"] == 3
    assert main(["analyze", "fp-regions", "--masks", str(tmp_path / "masks.npy"), "--maps",
                 str(tmp_path / "maps.npy"), "--fpr-range", "2e-3", "2e-2", "--levels", "3",
                 "-o", str(tmp_path / "fp")]) == 0
    assert json.loads((tmp_path / "fp" / "fp_regions.json").read_text())["num_points"] == 12


def test_streams_accept_volumes():
    from pimo.setmetrics import SetMetricsAccumulator
    from pimo.streaming import AupimoStream

    maps, masks = volume_set()
    stream = AupimoStream(4, fpr_bounds=BOUNDS)
    for index in range(4):
        stream.add_normal(index, maps[index])
    for index in (4, 5):
        stream.add_anomalous(index, maps[index], masks[index])
    assert stream.result().aupimos[4:].tolist() == pytest.approx([8 / 18, 1.0], abs=1e-12)
    accumulator = SetMetricsAccumulator((0.3,))
    for index in (5, 0, 4, 1, 2, 3):
        accumulator.update(maps[index:index + 1], masks[index:index + 1])  # (1, D, H, W)
    assert accumulator.compute().aupro[0.3] == pytest.approx(17 / 27, abs=1e-12)
