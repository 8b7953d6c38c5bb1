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
