"""Bad input and faults never give a silently wrong result or a traceback.

Each test feeds one fault (a reused output folder, a malformed file, an extreme value, a file of
the wrong kind, ...) and checks that pimo either computes the right thing or stops with a
:class:`pimo.PimoError` that names the file or image and the fix (exit code 2 on the command
line).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import pimo
from pimo.cli import EXIT_BAD_INPUT, main
from tests.test_evaluate import make_mvtec, write_maps

BOUNDS = ("--fpr-bounds", "1e-3", "1e-2")


@pytest.fixture
def mvtec(tmp_path: Path) -> list[str]:
    """Two MVTec-style categories (bottle, cable) and their maps; returns bottle's paths."""
    maps, _, paths = make_mvtec(tmp_path / "data", "bottle", seed=0)
    write_maps(tmp_path / "maps", maps, paths)
    other = make_mvtec(tmp_path / "data", "cable", seed=3)
    write_maps(tmp_path / "maps", other[0], other[2])
    return paths


def _evaluate(tmp_path: Path, *extra: str, maps: Path | None = None,
              out: Path | None = None) -> list[str]:
    return ["evaluate", "--dataset", f"mvtec:{tmp_path / 'data'}", "--maps",
            str(maps or tmp_path / "maps"), "-o", str(out or tmp_path / "out"), *BOUNDS, *extra]


def _other_model_maps(tmp_path: Path) -> Path:
    """A second model's maps: the first model's, shifted per image (different scores)."""
    folder = tmp_path / "maps_b"
    for path in sorted((tmp_path / "maps").rglob("*.npy")):
        target = folder / path.relative_to(tmp_path / "maps")
        target.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(len(str(path)))
        np.save(target, np.load(path) + rng.normal(size=np.load(path).shape).astype(np.float32))
    return folder


# =============================================================================================
# silent wrong results
# =============================================================================================


def test_rerun_into_used_folder_removes_the_previous_runs_files(
    tmp_path: Path, mvtec, capsys
) -> None:
    out = tmp_path / "out"
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q")) == 0
    assert (out / "auroc.json").is_file() and (out / "aupro_05.json").is_file()
    (out / "notes.txt").write_text("mine")  # not pimo's: must stay
    capsys.readouterr()
    maps_b = _other_model_maps(tmp_path)
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q", "--no-set-metrics",
                          maps=maps_b)) == 0
    for name in ("auroc.json", "aupro.json", "aupro_05.json"):
        assert not (out / name).exists(), name
    assert (out / "notes.txt").read_text() == "mine"
    err = capsys.readouterr().err
    assert "removed" in err and "auroc.json" in err
    # compare now shows no AUROC of the first model beside the second model's AUPIMO
    info = json.loads((out / "evaluation.json").read_text())
    assert info["files"] == {"aupimo": "aupimo/aupimos.json", "image_auroc": "image_auroc.json",
                             "image_ap": "image_ap.json", "image_f1max": "image_f1max.json"}


def test_categories_of_one_run_share_a_run_id(tmp_path: Path, mvtec) -> None:
    assert main(_evaluate(tmp_path, "--categories", "all", "-q")) == 0
    runs = [
        json.loads((tmp_path / "out" / "mvtec" / c / "evaluation.json").read_text())["run"]
        for c in ("bottle", "cable")
    ]
    assert runs[0] == runs[1]
    assert runs[0]["categories"] == ["bottle", "cable"] and len(runs[0]["id"]) == 32


def test_interrupted_multi_category_run_is_reported_by_compare_and_report(
    tmp_path: Path, mvtec, capsys
) -> None:
    root = tmp_path / "models"
    for model, maps in (("a", tmp_path / "maps"), ("b", _other_model_maps(tmp_path))):
        assert main(_evaluate(tmp_path, "--categories", "all", "-q", maps=maps,
                              out=root / model)) == 0
    capsys.readouterr()
    assert main(["compare", str(root), "-q"]) == 0
    assert "mix evaluation runs" not in capsys.readouterr().err
    # a rerun of model a stopped after bottle: cable still holds the previous run's files
    record = root / "a" / "mvtec" / "bottle" / "evaluation.json"
    info = json.loads(record.read_text())
    info["run"]["id"] = "f" * 32
    record.write_text(json.dumps(info))
    assert main(["compare", str(root), "-q"]) == 0
    err = capsys.readouterr().err
    assert "model 'a'" in err and "mix evaluation runs" in err and "mvtec/cable" in err
    # a run stopped before writing cable's evaluation.json
    (root / "a" / "mvtec" / "cable" / "evaluation.json").unlink()
    assert main(["compare", str(root), "-q"]) == 0
    assert "has no evaluation.json" in capsys.readouterr().err
    from pimo.report import build_report

    html = build_report([root], tmp_path / "report.html", curves=False).read_text()
    assert "mix evaluation runs" in html


def test_compare_model_names_datasets_after_evaluation_json(
    tmp_path: Path, mvtec, capsys
) -> None:
    assert main(_evaluate(tmp_path, "--categories", "all", "-q")) == 0
    # two categories copied to folders whose names say nothing about them
    for index, category in enumerate(("bottle", "cable")):
        shutil.copytree(tmp_path / "out" / "mvtec" / category, tmp_path / f"run{index}" / "x")
    capsys.readouterr()
    code = main(["compare", "--model", f"m1={tmp_path / 'run0' / 'x'}",
                 "--model", f"m2={tmp_path / 'run1' / 'x' / 'aupimo' / 'aupimos.json'}",
                 "--json", str(tmp_path / "c.json"), "-q"])
    assert code == 0, capsys.readouterr().err
    datasets = json.loads((tmp_path / "c.json").read_text())["datasets"]
    assert sorted(datasets) == ["mvtec/bottle", "mvtec/cable"]


def test_int64_maps_beyond_2_pow_53_are_refused() -> None:
    maps, masks = pimo.make_example(4, 4, (16, 16), seed=0)
    big = (maps.astype(np.float64) * 1e6).astype(np.int64) + 2**60
    with pytest.raises(pimo.PimoError, match=r"image 0.*2\*\*53"):
        pimo.aupimo(big, masks)
    with pytest.raises(pimo.PimoError, match=r"2\*\*53"):
        pimo.aupimo(big.astype(np.uint64), masks)
    small = (maps.astype(np.float64) * 1e6).astype(np.int64)  # exact in float64: accepted
    bounds = (1e-2, 1e-1)
    expected = pimo.aupimo(small.astype(np.float64), masks, fpr_bounds=bounds).aupimos
    np.testing.assert_array_equal(pimo.aupimo(small, masks, fpr_bounds=bounds).aupimos, expected)


def test_int64_map_files_beyond_2_pow_53_are_refused(tmp_path: Path, mvtec, capsys) -> None:
    target = tmp_path / "maps" / Path(mvtec[0]).with_suffix(".npy")
    np.save(target, np.full((24, 20), 2**60 + 1, dtype=np.int64))
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "2**53" in err and "006.npy" in err


def test_skip_missing_reports_a_directory_in_place_of_a_map_as_unreadable(
    tmp_path: Path, mvtec, capsys
) -> None:
    # Tests run as root, for whom nothing is permission-denied: a directory where the map file
    # should be is the unreadable file here (it used to be taken for a missing map and skipped).
    target = tmp_path / "maps" / Path(mvtec[0]).with_suffix(".npy")
    target.unlink()
    target.mkdir()
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q", "--skip-missing")) == 2
    err = capsys.readouterr().err
    assert "unreadable" in err or "cannot be read" in err
    assert "006.npy" in err and "directory" in err
    assert "skipped (missing-map)" not in err


def test_skip_missing_reports_a_permission_denied_map_as_unreadable(
    tmp_path: Path, mvtec, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root every file is readable: simulate a permission-denied map by making np.load fail
    # the way it does for a file without read permission.
    denied = str(Path(mvtec[0]).with_suffix(".npy").name)
    real_load = np.load

    def load(file, *args, **kwargs):
        if str(file).endswith(denied):
            raise PermissionError(13, "Permission denied", str(file))
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", load)
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q", "--skip-missing")) == 2
    err = capsys.readouterr().err
    assert "permission denied" in err.lower() and denied in err
    assert "skipped" not in err


def test_report_on_truncated_evaluation_json_names_the_file(tmp_path: Path, mvtec) -> None:
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q")) == 0
    record = tmp_path / "out" / "evaluation.json"
    record.write_text(record.read_text()[:100])
    with pytest.raises(pimo.PimoError, match=r"evaluation\.json.*not valid JSON"):
        from pimo.report import build_report

        build_report([tmp_path / "out"], tmp_path / "r.html")
    code = main(["report", str(tmp_path / "out"), "-o", str(tmp_path / "r.html")])
    assert code == EXIT_BAD_INPUT


def _score_file(tmp_path: Path, **changes) -> Path:
    payload = {
        "shared_fpr_metric": "mean-per-image-fpr", "fpr_lower_bound": 1e-5,
        "fpr_upper_bound": 1e-4, "num_threshs": 10, "thresh_lower_bound": 0.1,
        "thresh_upper_bound": 0.2, "aupimos": [None, 0.5, 1.0],
    }
    payload.update(changes)
    path = tmp_path / "aupimos.json"
    path.write_text(json.dumps(payload))
    return path


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"fpr_lower_bound": 1e-3, "fpr_upper_bound": 1e-4}, "fpr_lower_bound"),
        ({"fpr_lower_bound": 0.0}, "fpr_lower_bound"),
        ({"fpr_upper_bound": 2.0}, "fpr_upper_bound"),
        ({"num_threshs": 2.5}, "num_threshs"),
        ({"num_threshs": "ten"}, "num_threshs"),
        ({"num_threshs": True}, "num_threshs"),
        ({"num_threshs": -3}, "num_threshs"),
        ({"fpr_lower_bound": "1e-5"}, "fpr_lower_bound"),
        ({"thresh_lower_bound": "low"}, "thresh_lower_bound"),
        ({"thresh_lower_bound": 0.3, "thresh_upper_bound": 0.2}, "thresh_lower_bound"),
        ({"paths": "a.png"}, "paths"),
    ],
)
def test_malformed_score_file_fields_are_refused(tmp_path: Path, changes, field) -> None:
    path = _score_file(tmp_path, **changes)
    with pytest.raises(pimo.ScoreFileError, match=field) as caught:
        pimo.load_aupimo(path)
    assert str(path) in str(caught.value)


def test_well_formed_score_file_is_accepted(tmp_path: Path) -> None:
    result = pimo.load_aupimo(_score_file(tmp_path, num_threshs=None,
                                          thresh_lower_bound=None))
    assert result.num_thresholds is None and result.num_anomalous == 2


def test_skip_missing_reports_a_directory_in_place_of_a_mask_as_unreadable(
    tmp_path: Path, mvtec, capsys
) -> None:
    mask = tmp_path / "data" / "bottle" / "ground_truth" / "crack" / "006_mask.png"
    mask.unlink()
    mask.mkdir()
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q", "--skip-missing")) == 2
    err = capsys.readouterr().err
    assert "006_mask.png" in err and "a directory, not a regular file" in err


@pytest.mark.timeout(60)
def test_fifo_in_place_of_a_map_is_refused_without_hanging(tmp_path: Path, mvtec, capsys) -> None:
    target = tmp_path / "maps" / Path(mvtec[0]).with_suffix(".npy")
    target.unlink()
    os.mkfifo(target)
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "006.npy" in err and "named pipe" in err


# =============================================================================================
# errors of the wrong kind: each is a PimoError naming the file or image, exit code 2
# =============================================================================================


@pytest.fixture
def stacks(tmp_path: Path) -> tuple[Path, Path]:
    """maps.npy and masks.npy for `pimo aupimo` (20 + 20 images of 32x32)."""
    maps, masks = pimo.make_example(20, 20, (32, 32), seed=0)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "masks.npy", masks)
    return tmp_path / "maps.npy", tmp_path / "masks.npy"


def _aupimo(stacks: tuple[Path, Path], *extra: str | Path) -> list[str]:
    return ["aupimo", str(stacks[0]), str(stacks[1]), "--fpr-bounds", "1e-2", "1e-1",
            *map(str, extra)]


def test_corrupt_npz_names_the_file(tmp_path: Path, stacks, capsys) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip archive")
    code = main(["aupimo", str(bad), str(stacks[1])])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "bad.npz" in err and "truncated or not a valid .npz" in err


@pytest.mark.parametrize("content", ["", '{"value": 0.9', "[1, 2]", '{"value": "high"}'])
def test_corrupt_metric_file_names_the_file(tmp_path: Path, content: str, capsys) -> None:
    path = tmp_path / "auroc.json"
    path.write_text(content)
    with pytest.raises(pimo.ScoreFileError, match=r"auroc\.json"):
        pimo.load_value(path)
    # the same file beside two models' scores, in compare
    for model in ("a", "b"):
        folder = tmp_path / "root" / model / "mvtec" / "bottle"
        (folder / "aupimo").mkdir(parents=True)
        pimo.AupimoResult(np.array([np.nan, 0.5, 0.7]), np.array([0, 1, 1])).save(
            folder / "aupimo" / "aupimos.json"
        )
    (tmp_path / "root" / "a" / "mvtec" / "bottle" / "auroc.json").write_text(content)
    assert main(["compare", str(tmp_path / "root"), "-q"]) == EXIT_BAD_INPUT
    assert "root/a/mvtec/bottle/auroc.json" in capsys.readouterr().err


def test_output_that_is_a_folder_is_refused_before_computing(tmp_path: Path, stacks,
                                                             capsys) -> None:
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(_aupimo(stacks, "-o", folder)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "a_folder" in err and "is a folder" in err
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".*tmp"))


def test_output_under_a_file_is_refused(tmp_path: Path, stacks, capsys) -> None:
    (tmp_path / "a_file").write_text("x")
    target = tmp_path / "a_file" / "scores.json"
    assert main(_aupimo(stacks, "-o", target)) == EXIT_BAD_INPUT
    assert "a_file is a file, not a folder" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), "--json", str(target)]) == EXIT_BAD_INPUT
    assert "a_file is a file" in capsys.readouterr().err


def test_output_not_writable_is_refused(tmp_path: Path, stacks, capsys,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # As root every folder is writable: simulate a read-only folder through os.access.
    import os as os_module

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os_module.access
    monkeypatch.setattr(
        os_module, "access",
        lambda path, mode: False if Path(path) == locked else real_access(path, mode),
    )
    assert main(_aupimo(stacks, "-o", locked / "scores.json")) == EXIT_BAD_INPUT
    assert "no permission to write in" in capsys.readouterr().err


def test_evaluate_output_that_is_a_file_is_refused(tmp_path: Path, mvtec, capsys) -> None:
    (tmp_path / "out").write_text("x")
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "out is a file, not a folder" in err


def test_torch_tensors_with_grad_and_bfloat16() -> None:
    torch = pytest.importorskip("torch")
    maps, masks = pimo.make_example(6, 6, (32, 32), seed=1)
    maps = maps.astype(np.float32)
    bounds = (1e-2, 1e-1)
    expected = pimo.aupimo(maps, masks, fpr_bounds=bounds).aupimos
    with_grad = torch.tensor(maps, requires_grad=True)
    np.testing.assert_array_equal(
        pimo.aupimo(with_grad, torch.tensor(masks), fpr_bounds=bounds).aupimos, expected
    )
    np.testing.assert_array_equal(
        pimo.aupimo(list(with_grad), list(torch.tensor(masks)), fpr_bounds=bounds).aupimos,
        expected,
    )
    half = torch.tensor(maps).bfloat16()
    widened = half.float().numpy()  # bfloat16 -> float32 is exact
    np.testing.assert_array_equal(
        pimo.aupimo(half, masks, fpr_bounds=bounds).aupimos,
        pimo.aupimo(widened, masks, fpr_bounds=bounds).aupimos,
    )
    np.testing.assert_array_equal(
        pimo.aupimo(list(half), masks, fpr_bounds=bounds).aupimos,
        pimo.aupimo(widened, masks, fpr_bounds=bounds).aupimos,
    )


def test_huge_num_thresholds_says_the_memory_it_needs() -> None:
    maps, masks = pimo.make_example(4, 4, (16, 16), seed=0)
    with pytest.raises(pimo.PimoError, match=r"needs at least .* GiB"):
        pimo.aupimo(maps, masks, fpr_bounds=(1e-2, 1e-1), num_thresholds=10**15)


def test_channel_axis_says_drop_it_not_resize() -> None:
    maps, masks = pimo.make_example(4, 4, (16, 16), seed=0)
    with pytest.raises(pimo.ShapeMismatchError, match="Drop the channel axis") as caught:
        pimo.aupimo(maps[:, None], masks)
    assert "Resize" not in str(caught.value)
    with pytest.raises(pimo.ShapeMismatchError, match="Drop the channel axis"):
        pimo.aupimo(maps, masks[:, None])
    with pytest.raises(pimo.ShapeMismatchError, match="Resize"):
        pimo.aupimo(maps[:, :8], masks)


def test_fifo_stack_is_refused_without_hanging(tmp_path: Path, stacks, capsys) -> None:
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    assert main(["aupimo", str(fifo), str(stacks[1])]) == EXIT_BAD_INPUT
    assert "named pipe" in capsys.readouterr().err


_INTERRUPTED = """
import sys, time
import pimo.cli
import pimo.cli.aupimo_cmd

def long_call(*args, **kwargs):  # stands for a long numba call
    print("started", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.01)

pimo.aupimo = long_call
sys.exit(pimo.cli.main(["aupimo", "--example"]))
"""


def test_ctrl_c_ends_with_aborted_and_exit_130(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip() == "Aborted."


# =============================================================================================
# messages speak the command line
# =============================================================================================


def test_cli_messages_name_options(stacks, capsys) -> None:
    code = main(["aupimo", str(stacks[0]), str(stacks[1]), "--fpr-bounds", "1e-2", "1e-3"])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--fpr-bounds" in err and "fpr_bounds" not in err
    code = main([*_aupimo(stacks), "--num-thresholds", "1"])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--num-thresholds" in err and "num_thresholds" not in err and "None" not in err
    code = main(["aupimo", str(stacks[0]), str(stacks[1])])  # L = 1e-5 unreachable on 20 images
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--fpr-bounds" in err and "fpr_bounds" not in err


def test_cli_missing_map_hint_names_the_option(tmp_path: Path, mvtec, capsys) -> None:
    (tmp_path / "maps" / Path(mvtec[0]).with_suffix(".npy")).unlink()
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--skip-missing" in err and "skip_missing" not in err


def test_no_map_matched_says_what_was_looked_for(tmp_path: Path, mvtec, capsys) -> None:
    wrong = tmp_path / "wrong" / "run1"
    wrong.mkdir(parents=True)
    np.save(wrong / "heatmap_a.npy", np.zeros((4, 4), np.float32))
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q",
                          maps=tmp_path / "wrong")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "skip-missing" not in err
    assert "matches any of the 11 test images" in err
    assert ".npy, .npz" in err and "run1/heatmap_a.npy" in err
    assert "test/good/000.npy" in err and "closest existing folder" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q", maps=empty)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "skip-missing" not in err and "No map file is there" in err


def test_constant_normal_maps_error_names_category_and_files(
    tmp_path: Path, mvtec, capsys
) -> None:
    for path in mvtec:
        if "/good/" in path:
            np.save(tmp_path / "maps" / Path(path).with_suffix(".npy"),
                    np.full((24, 20), 0.5, np.float32))
    assert main(_evaluate(tmp_path, "--category", "bottle", "-q")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "constant" in err and "'bottle'" in err and "test/good/000.npy" in err
