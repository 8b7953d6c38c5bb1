"""`pimo aupimo --ignore-masks` and `pimo threshold --ignore-masks`: the library's numbers."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import pimo
from pimo.cli import main
from pimo.data.resize import resize_bilinear, resize_nearest

SHAPE = (64, 64)


def run(args, capsys):
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def example_with_bright_border(seed: int = 2):
    """Maps whose 3-pixel border scores high on the normal images: leaving it out matters."""
    maps, masks = pimo.make_example(5, 5, SHAPE, seed=seed)
    maps = maps.copy()
    border = np.ones(SHAPE, dtype=bool)
    border[3:-3, 3:-3] = False
    maps[:5, border] += 3.0 * maps.max()
    return maps, masks.astype(bool), border


@pytest.fixture
def files(tmp_path):
    maps, masks, border = example_with_bright_border()
    paths = np.array([f"{'good' if i < 5 else 'bad'}/{i}.png" for i in range(len(maps))])
    np.savez(tmp_path / "maps.npz", anomaly_maps=maps, paths=paths)
    np.save(tmp_path / "masks.npy", masks)
    np.save(tmp_path / "border.npy", border)                      # one (H, W) mask
    stack = np.broadcast_to(border, maps.shape).copy()
    stack[7, 10:14, 10:14] = True                                 # and one image's own patch
    np.save(tmp_path / "stack.npy", stack)
    return tmp_path, maps, masks, border, stack, [str(p) for p in paths]


def test_aupimo_with_a_stack_equals_the_library_and_records_the_file(files, capsys):
    folder, maps, masks, _, stack, paths = files
    output = folder / "out" / "aupimos.json"
    code, out, err = run(["aupimo", folder / "maps.npz", folder / "masks.npy", "--ignore-masks",
                          folder / "stack.npy", "--fpr-bounds", "1e-3", "1e-2", "-o", output],
                         capsys)
    assert code == 0, err
    expected = pimo.aupimo(maps, masks, ignore_masks=stack, fpr_bounds=(1e-3, 1e-2),
                           paths=paths)
    without = pimo.aupimo(maps, masks, fpr_bounds=(1e-3, 1e-2))
    assert not np.allclose(expected.anomalous_scores, without.anomalous_scores)
    saved = pimo.load_aupimo(output)
    assert saved == expected
    assert saved.extra == {"ignore_masks": str(folder / "stack.npy")}
    assert json.loads(output.read_text())["ignore_masks"] == str(folder / "stack.npy")
    assert f"{100 * expected.mean():.1f} %" in out
    assert "without the pixels of" in out


@pytest.mark.parametrize("stored", ["npy", "npz", "stack_of_one"])
def test_aupimo_with_one_mask_for_every_image(files, capsys, stored):
    folder, maps, masks, border, *_ = files
    ignore_file = folder / f"single.{'npz' if stored == 'npz' else 'npy'}"
    if stored == "npz":
        np.savez(ignore_file, ignore=border)
    else:
        np.save(ignore_file, border[None] if stored == "stack_of_one" else border)
    output = folder / "aupimos.json"
    code, _, err = run(["aupimo", folder / "maps.npz", folder / "masks.npy", "--ignore-masks",
                        ignore_file, "--fpr-bounds", "1e-3", "1e-2", "-o", output], capsys)
    assert code == 0, err
    every = np.broadcast_to(border, maps.shape)
    expected = pimo.aupimo(maps, masks, ignore_masks=every, fpr_bounds=(1e-3, 1e-2))
    np.testing.assert_array_equal(pimo.load_aupimo(output).aupimos, expected.aupimos)
    # the same as giving each image the pixels that remain, by hand
    kept = [image[~border] for image in maps]
    by_hand = pimo.aupimo(kept, [mask[~border] for mask in masks], fpr_bounds=(1e-3, 1e-2))
    np.testing.assert_allclose(expected.aupimos, by_hand.aupimos, rtol=0, atol=1e-12,
                               equal_nan=True)


@pytest.mark.filterwarnings("ignore:Grid mode:pimo.PimoWarning")
def test_aupimo_resizes_and_binarises_ignore_masks_like_the_masks(tmp_path, capsys):
    maps, masks, _ = example_with_bright_border(seed=3)
    small_maps = np.stack([resize_bilinear(image, (32, 32)) for image in maps])
    masks_0_255 = masks.astype(np.uint8) * 255
    small_border = np.zeros((32, 32), dtype=np.uint8)
    small_border[:2] = small_border[-2:] = small_border[:, :2] = small_border[:, -2:] = 255
    np.save(tmp_path / "maps.npy", small_maps)
    np.save(tmp_path / "masks.npy", masks_0_255)
    np.save(tmp_path / "border.npy", small_border)
    per_image = np.broadcast_to(small_border, (len(maps), 32, 32))
    np.save(tmp_path / "stack.npy", per_image)
    resized_maps = [resize_bilinear(image, SHAPE) for image in small_maps]
    ignore = resize_nearest(small_border > 0, SHAPE)
    assert ignore.sum() == 64 * 64 - 56 * 56  # a 4-pixel border at 64x64
    expected = pimo.auimo(resized_maps, masks, ignore_masks=[ignore] * len(maps),
                          fpr_bounds=(1e-3, 1e-2), num_thresholds=500)
    for ignore_file in ("border.npy", "stack.npy"):
        output = tmp_path / f"from_{ignore_file}.json"
        code, _, err = run(["aupimo", tmp_path / "maps.npy", tmp_path / "masks.npy",
                            "--ignore-masks", tmp_path / ignore_file, "--resize",
                            "--mask-threshold", "0", "--auimo", "--num-thresholds", "500",
                            "--fpr-bounds", "1e-3", "1e-2", "-o", output], capsys)
        assert code == 0, err
        np.testing.assert_array_equal(pimo.load_auimo(output).auimos, expected.auimos)
    # without --mask-threshold a 0/255 ignore mask is refused like a 0/255 mask
    np.save(tmp_path / "binary_masks.npy", masks)
    code, _, err = run(["aupimo", tmp_path / "maps.npy", tmp_path / "binary_masks.npy",
                        "--ignore-masks", tmp_path / "stack.npy", "--resize"], capsys)
    assert code == 2
    assert err.startswith("error: The ignore mask of image 0 holds values other than 0 and 1")
    assert "--mask-threshold" in err


def test_threshold_with_ignore_masks_equals_the_library(files, capsys):
    folder, maps, masks, border, stack, paths = files
    output = folder / "threshold.json"
    for ignore_file, ignore in (("stack.npy", stack), ("border.npy", border)):
        code, out, err = run(["threshold", folder / "maps.npz", folder / "masks.npy", "--fpr",
                              "1e-3", "--ignore-masks", folder / ignore_file, "-o", output],
                             capsys)
        assert code == 0, err
        expected = pimo.threshold_at(maps, masks, fpr=1e-3, paths=paths,
                                     ignore_masks=np.broadcast_to(ignore, maps.shape))
        assert repr(expected.threshold) in out
        loaded = pimo.load_threshold(output)
        assert loaded.threshold == expected.threshold
        for name in ("tpr", "fpr", "iou", "f1", "fp_regions"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(expected, name))
        assert loaded.extra == {"ignore_masks": str(folder / ignore_file)}
        assert json.loads(output.read_text())["ignore_masks"] == str(folder / ignore_file)
    assert expected.threshold != pimo.threshold_at(maps, masks, fpr=1e-3).threshold


def test_operating_threshold_keeps_extra_fields_and_writes_its_own_first(tmp_path):
    maps, masks, _ = example_with_bright_border()
    result = pimo.threshold_at(maps, masks, fpr=1e-2)
    assert result.extra == {}
    tagged = replace(result, extra={"ignore_masks": "border.npy", "threshold": -1.0})
    payload = tagged.to_dict()
    assert payload["threshold"] == result.threshold  # an extra field never overrides one
    assert list(payload)[-1] == "ignore_masks"
    again = pimo.load_threshold(tagged.save(tmp_path / "t.json"))
    assert again.extra == {"ignore_masks": "border.npy"}


# --------------------------------------------------------------------------------------
# errors: `error: ...` on stderr and exit code 2, naming the image
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["aupimo"], ["threshold", "--fpr", "1e-3"]])
def test_bad_ignore_masks_are_named(files, capsys, command):
    folder, maps, masks, *_ = files
    name, *options = command

    def fails(ignore, message):
        np.save(folder / "bad.npy", ignore)
        code, _, err = run([name, folder / "maps.npz", folder / "masks.npy", *options,
                            "--ignore-masks", folder / "bad.npy"], capsys)
        assert code == 2
        assert err.startswith("error: ")
        assert message in err, err

    fails(np.zeros((3, *SHAPE), dtype=bool),
          "Got 3 ignore masks for 10 images; pass one ignore mask per image, in the same "
          "order (a single mask file applies to every image)")
    soft = np.zeros(maps.shape)
    soft[6, 5, 5] = 0.5
    fails(soft, "The ignore mask of image 6 ('bad/6.png') holds values other than 0 and 1")
    covered = np.zeros(maps.shape, dtype=bool)
    covered[2] = True
    fails(covered, "The ignore mask of image 2 ('good/2.png') covers all its 4096 pixels")
    defect = np.zeros(maps.shape, dtype=bool)
    defect[8] = masks[8]
    fails(defect, "The ignore mask of image 8 ('bad/8.png') covers all")
    fails(np.zeros((5, 5), dtype=bool), "has shape (5, 5) but the masks have shape (64, 64)")
    code, _, err = run([name, folder / "maps.npz", folder / "masks.npy", *options,
                        "--ignore-masks", folder / "nope.npy"], capsys)
    assert code == 2 and "ignore masks file" in err and "does not exist" in err
    np.savez(folder / "listed.npz", ignore=np.zeros(maps.shape, dtype=bool),
             paths=np.array([f"other/{i}.png" for i in range(len(maps))]))
    code, _, err = run([name, folder / "maps.npz", folder / "masks.npy", *options,
                        "--ignore-masks", folder / "listed.npz"], capsys)
    assert code == 2 and ("lists other images than the maps, or in another order: its entry 0 "
                          "is 'other/0.png'") in err
    # masks listing the same images in another order: refused, never paired by row
    order = np.r_[1:len(maps), 0]
    np.savez(folder / "shuffled.npz", masks=masks[order],
             paths=np.array([f"{'good' if i < 5 else 'bad'}/{i}.png" for i in order]))
    code, _, err = run([name, folder / "maps.npz", folder / "shuffled.npz", *options], capsys)
    assert code == 2 and "Masks file" in err and "its entry 0 is 'good/1.png'" in err, err


@pytest.mark.parametrize("command", [["aupimo", "--fpr-bounds", "1e-3", "1e-2"],
                                     ["threshold", "--fpr", "1e-3"]])
def test_a_binary_ignore_mask_survives_the_mask_threshold(files, capsys, command, tmp_path):
    """0/255 masks binarised at 127 and a bool (or 0/1) ignore mask: the ignore mask is
    already binary and stays as it is (thresholding it at 127 would ignore nothing)."""
    folder, maps, masks, border, *_ = files
    name, *options = command
    np.save(folder / "masks255.npy", masks.astype(np.uint8) * 255)
    for ignore in (border, border.astype(np.uint8)):
        np.save(folder / "border.npy", ignore)
        output = tmp_path / f"{name}.json"
        code, _, err = run([name, folder / "maps.npz", folder / "masks255.npy", *options,
                            "--mask-threshold", "127", "--ignore-masks", folder / "border.npy",
                            "-o", output], capsys)
        assert code == 0, err
        ignore_masks = np.broadcast_to(border, maps.shape)
        if name == "aupimo":
            expected = pimo.aupimo(maps, masks, fpr_bounds=(1e-3, 1e-2),
                                   ignore_masks=ignore_masks)
            np.testing.assert_array_equal(pimo.load_aupimo(output).aupimos, expected.aupimos)
        else:
            expected = pimo.threshold_at(maps, masks, fpr=1e-3, ignore_masks=ignore_masks)
            assert pimo.load_threshold(output).threshold == expected.threshold


def test_a_single_mask_of_the_wrong_size_suggests_resize(files, capsys):
    folder, *_ = files
    np.save(folder / "small.npy", np.zeros((32, 32), dtype=bool))
    code, _, err = run(["aupimo", folder / "maps.npz", folder / "masks.npy", "--ignore-masks",
                        folder / "small.npy"], capsys)
    assert code == 2 and "or add --resize to resize it (nearest)" in err
