"""The `pimo` command: version, help, and `pimo aupimo` on .npy/.npz stacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import pimo
from pimo.cli import main


def run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version_and_help(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and pimo.__version__ in out
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "aupimo" in out


def test_aupimo_on_npy_files(tmp_path, capsys):
    maps, masks = pimo.make_example(4, 4, (200, 200), seed=1)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "masks.npy", masks)
    output = tmp_path / "out" / "aupimos.json"
    code, out, _ = run(["aupimo", str(tmp_path / "maps.npy"), str(tmp_path / "masks.npy"),
                        "-o", str(output)], capsys)
    assert code == 0
    expected = pimo.aupimo(maps, masks)
    assert f"{100 * expected.mean():.1f} %" in out
    assert f"{100 * expected.percentile(33):.1f} %" in out
    saved = pimo.load_aupimo(output)
    np.testing.assert_array_equal(saved.aupimos, expected.aupimos)


def test_aupimo_on_npz_with_paths_and_grid(tmp_path, capsys):
    maps, masks = pimo.make_example(4, 4, (200, 200), seed=1)
    paths = np.array([f"x/{i}.png" for i in range(8)])
    np.savez(tmp_path / "maps.npz", asmaps=maps, paths=paths)
    np.savez(tmp_path / "masks.npz", masks=masks)
    output = tmp_path / "s.json"
    code, _, _ = run(["aupimo", str(tmp_path / "maps.npz"), str(tmp_path / "masks.npz"),
                        "--num-thresholds", "2000", "--fpr-bounds", "1e-4", "1e-3", "-o",
                        str(output)], capsys)
    assert code == 0
    payload = json.loads(output.read_text())
    assert payload["paths"][3] == "x/3.png"
    assert payload["fpr_lower_bound"] == 1e-4
    assert payload["mode"] == "grid"


def test_bad_input_exit_code_2(tmp_path, capsys):
    maps, masks = pimo.make_example(2, 2, (64, 64), seed=1)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "masks.npy", masks[:3])
    code, _, err = run(["aupimo", str(tmp_path / "maps.npy"), str(tmp_path / "masks.npy")],
                       capsys)
    assert code == 2
    assert "4 anomaly maps but 3 masks" in err
    code, _, err = run(["aupimo", str(tmp_path / "nope.npy"), str(tmp_path / "masks.npy")],
                       capsys)
    assert code == 2 and "does not exist" in err
    code, _, err = run(["aupimo", str(tmp_path / "maps.txt"), str(tmp_path / "masks.npy")],
                       capsys)
    assert code == 2 and "must be .npy or .npz" in err


def test_usage_errors(capsys):
    code, _, err = run(["aupimo"], capsys)
    assert code == 2 and "MAPS and MASKS" in err


@pytest.mark.slow
def test_console_script_example(tmp_path):
    output = tmp_path / "example.json"
    completed = subprocess.run(
        [sys.executable, "-m", "pimo", "aupimo", "--example", "-o", str(output)],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "mean" in completed.stdout
    assert len(json.loads(output.read_text())["aupimos"]) == 40


def test_mask_threshold_binarises_0_255_and_soft_masks(tmp_path, capsys):
    maps, masks = pimo.make_example(4, 4, (64, 64), seed=2)
    expected = pimo.aupimo(maps, masks, fpr_bounds=(1e-3, 1e-2))
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "masks255.npy", masks.astype(np.uint8) * 255)
    code, _, err = run(["aupimo", str(tmp_path / "maps.npy"), str(tmp_path / "masks255.npy")],
                       capsys)
    assert code == 2 and "--mask-threshold 0" in err  # the advice names the option
    output = tmp_path / "s.json"
    code, _, _ = run(["aupimo", str(tmp_path / "maps.npy"), str(tmp_path / "masks255.npy"),
                      "--mask-threshold", "0", "--fpr-bounds", "1e-3", "1e-2", "-o", str(output)],
                     capsys)
    assert code == 0
    np.testing.assert_array_equal(pimo.load_aupimo(output).aupimos, expected.aupimos)
    # soft masks: 0.9 inside the defects, 0.2 on a halo that is not part of them
    soft = np.where(masks, 0.9, 0.0).astype(np.float32)
    soft[:, :2, :] = np.maximum(soft[:, :2, :], 0.2)
    np.save(tmp_path / "soft.npy", soft)
    code, _, err = run(["aupimo", str(tmp_path / "maps.npy"), str(tmp_path / "soft.npy")],
                       capsys)
    assert code == 2 and "--mask-threshold" in err
    code, _, _ = run(["aupimo", str(tmp_path / "maps.npy"), str(tmp_path / "soft.npy"),
                      "--mask-threshold", "0.5", "--fpr-bounds", "1e-3", "1e-2", "-o",
                      str(output)], capsys)
    assert code == 0
    np.testing.assert_array_equal(pimo.load_aupimo(output).aupimos, expected.aupimos)


def test_resize_brings_maps_to_the_masks_size(tmp_path, capsys):
    from pimo.data.resize import resize_bilinear

    maps, masks = pimo.make_example(4, 4, (64, 64), seed=3)
    small = maps[:, ::2, ::2].copy()  # (N, 32, 32) maps for (N, 64, 64) masks
    np.save(tmp_path / "small.npy", small)
    np.save(tmp_path / "masks.npy", masks)
    code, _, err = run(["aupimo", str(tmp_path / "small.npy"), str(tmp_path / "masks.npy")],
                       capsys)
    assert code == 2 and "--resize" in err  # the advice names the option
    output = tmp_path / "s.json"
    code, _, _ = run(["aupimo", str(tmp_path / "small.npy"), str(tmp_path / "masks.npy"),
                      "--resize", "--fpr-bounds", "1e-3", "1e-2", "-o", str(output)], capsys)
    assert code == 0
    expected = pimo.aupimo([resize_bilinear(m, (64, 64)) for m in small], masks,
                           fpr_bounds=(1e-3, 1e-2))
    np.testing.assert_array_equal(pimo.load_aupimo(output).aupimos, expected.aupimos)
    # counts that differ are still reported as such
    np.save(tmp_path / "three.npy", masks[:3])
    code, _, err = run(["aupimo", str(tmp_path / "small.npy"), str(tmp_path / "three.npy"),
                        "--resize"], capsys)
    assert code == 2 and "8 anomaly maps but 3 masks" in err
