"""Comparisons refuse scores over different FPR ranges and note models evaluated with different
settings (ignore masks, resolution, mask threshold)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pimo
from pimo import stats
from pimo.cli import main
from tests.test_evaluate import SIZE
from tests.test_evaluate_models import make_two_models


def test_scores_over_different_fpr_ranges_are_not_compared():
    maps, masks = pimo.make_example(4, 4, (64, 64), seed=2)
    narrow = pimo.aupimo(maps, masks, fpr_bounds=(1e-3, 1e-2))
    wide = pimo.aupimo(maps, masks, fpr_bounds=(1e-3, 1e-1))
    with pytest.raises(pimo.PimoValueError, match=r"different shared-FPR ranges \(\[0.001, "
                                                  r"0.01\] for 'a', \[0.001, 0.1\] for 'b'\)"):
        stats.compare_models({"a": narrow, "b": wide})
    stats.compare_models({"a": narrow, "b": narrow})  # same range: fine


def test_models_evaluated_with_different_settings_are_noted(tmp_path: Path) -> None:
    args = make_two_models(tmp_path)
    border = np.zeros(SIZE, dtype=np.uint8)
    border[:4] = 255
    Image.fromarray(border).save(tmp_path / "border.png")
    assert main([*args, "--maps", str(tmp_path / "maps_a"), "--ignore-masks",
                 str(tmp_path / "border.png"), "-o", str(tmp_path / "out" / "a")]) == 0
    assert main([*args, "--maps", str(tmp_path / "maps_b"), "-o",
                 str(tmp_path / "out" / "b")]) == 0
    found = stats.find_score_files(tmp_path / "out")
    with pytest.warns(UserWarning, match="evaluated with different settings") as record:
        result = stats.compare_score_tree(found)
    notes = [note for note in result.notes if "different settings" in note]
    assert len(notes) == 2  # one per category
    assert f"ignore masks: {(tmp_path / 'border.png').resolve()} for 'a', none for 'b'" \
        in notes[0]
    assert len(record) == 2
    # the same settings: no note
    assert main([*args, "--maps", str(tmp_path / "maps_b"), "--ignore-masks",
                 str(tmp_path / "border.png"), "-o", str(tmp_path / "out" / "b")]) == 0
    result = stats.compare_score_tree(stats.find_score_files(tmp_path / "out"))
    assert not [note for note in result.notes if "different settings" in note]
