"""The Dask backend: the tree reduction keeps the images' order and equals one accumulator;
evaluate and sweep on a two-worker cluster write the files the single-process path writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed", reason="pimo.distributed needs dask.distributed (pimo[dask])")

import cloudpickle
from distributed import Client, LocalCluster

import pimo
import tests.toy_accumulator as toy
from pimo import distributed as pimo_distributed
from pimo._outputs import EvaluationRun
from pimo.cli import main
from pimo.distributed import AccumulatorSpec, merge_states, reduce_states
from pimo.evaluate import evaluate_dataset
from tests.test_evaluate import make_mvtec, write_maps
from tests.test_evaluate_models import json_files, make_two_models

# the workers get the toy accumulator by value (the tests folder need not be importable there)
cloudpickle.register_pickle_by_value(toy)


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def _toy_images(num_images: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    maps = [rng.random((int(rng.integers(3, 9)), 5)) for _ in range(num_images)]
    masks = [(rng.random(m.shape) < 0.3).astype(np.uint8) for m in maps]
    return maps, masks


def _toy_state(maps: list[np.ndarray], masks: list[np.ndarray], bins: int) -> dict:
    accumulator = toy.ToyAccumulator(bins=bins)
    accumulator.update(maps, masks)
    return {"toy": accumulator.state_dict()}


# --------------------------------------------------------------------------------------
# the reduction
# --------------------------------------------------------------------------------------
def test_merge_states_equals_one_accumulator():
    maps, masks = _toy_images(9, seed=1)
    specs = {"toy": AccumulatorSpec(toy.ToyAccumulator, {"bins": 4})}
    parts = [_toy_state(maps[a:b], masks[a:b], 4) for a, b in ((0, 2), (2, 3), (3, 9))]
    merged = merge_states(specs, *parts)
    expected = _toy_state(maps, masks, 4)
    for key, value in expected["toy"].items():
        np.testing.assert_array_equal(merged["toy"][key], value)
    with pytest.raises(pimo.PimoValueError, match="at least one state"):
        merge_states(specs)


@pytest.mark.parametrize(("num_chunks", "fan_in"), [(1, 2), (2, 2), (7, 2), (10, 3), (5, 8)])
def test_tree_reduction_keeps_order(client, num_chunks, fan_in):
    rng = np.random.default_rng(num_chunks * 10 + fan_in)
    maps, masks = _toy_images(23, seed=num_chunks)
    cuts = np.sort(rng.choice(np.arange(1, 23), size=num_chunks - 1, replace=False))
    bounds = list(zip([0, *cuts], [*cuts, 23], strict=True))
    specs = {"toy": AccumulatorSpec(toy.ToyAccumulator, {"bins": 5})}
    parts = [client.submit(_toy_state, maps[a:b], masks[a:b], 5, pure=False)
             for a, b in bounds]
    root = reduce_states(client, parts, lambda *states: merge_states(specs, *states),
                         fan_in=fan_in)
    reduced = root.result()["toy"]
    expected = _toy_state(maps, masks, 5)["toy"]
    for key, value in expected.items():
        np.testing.assert_array_equal(reduced[key], value)


def test_reduce_refuses_nothing_and_small_fan_in(client):
    with pytest.raises(pimo.PimoValueError, match="Nothing to reduce"):
        reduce_states(client, [], print)
    with pytest.raises(pimo.PimoValueError, match="fan_in must be at least 2"):
        reduce_states(client, [client.submit(int, 1)], print, fan_in=1)


def test_bad_scheduler_is_refused():
    with pytest.raises(pimo.PimoValueError, match="scheduler must be"), \
            pimo_distributed.open_client(3):
        pass


def test_open_client_uses_a_given_client(client):
    with pimo_distributed.open_client(client) as given:
        assert given is client
    assert client.status == "running"  # not closed: it was not opened there


# --------------------------------------------------------------------------------------
# evaluate and sweep
# --------------------------------------------------------------------------------------




def _dataset(tmp_path: Path) -> tuple[str, Path, list[str]]:
    maps, _, paths = make_mvtec(tmp_path / "data", "bottle", seed=0)
    write_maps(tmp_path / "maps", maps, paths)
    other_maps, _, other_paths = make_mvtec(tmp_path / "data", "cable", seed=3)
    write_maps(tmp_path / "maps", other_maps, other_paths)
    return f"mvtec:{tmp_path / 'data'}", tmp_path / "maps", paths


@pytest.mark.parametrize("images_per_task", [1, 4, 100])
def test_evaluate_writes_the_files_of_one_process(client, tmp_path, images_per_task):
    dataset, maps, paths = _dataset(tmp_path)
    expected = evaluate_dataset(dataset, maps, category="bottle", fpr_bounds=(1e-3, 1e-2))
    result = pimo_distributed.evaluate(dataset, maps, category="bottle",
                                       fpr_bounds=(1e-3, 1e-2), scheduler=client,
                                       images_per_task=images_per_task, merge_fan_in=2)
    assert result.paths == paths
    expected.save(tmp_path / "one")
    result.save(tmp_path / "dask")
    assert json_files(tmp_path / "dask") == json_files(tmp_path / "one")


@pytest.mark.parametrize("single_file", [False, True])
def test_evaluate_with_ignore_masks_writes_the_files_of_one_process(client, tmp_path,
                                                                    single_file):
    from tests.test_evaluate_ignore import random_ignore_masks, save_ignore_masks

    dataset, maps, paths = _dataset(tmp_path)
    _, masks, _ = make_mvtec(tmp_path / "unused", "bottle", seed=0)
    ignore = random_ignore_masks(masks, seed=2)
    if single_file:
        location = tmp_path / "border.npy"
        np.save(location, ignore[0] & ~masks.any(0))
    else:
        location = tmp_path / "ignore"
        save_ignore_masks(location, ignore, paths, ".png")
    options = {"category": "bottle", "fpr_bounds": (1e-3, 1e-2), "ignore_masks": location}
    expected = evaluate_dataset(dataset, maps, **options)
    result = pimo_distributed.evaluate(dataset, maps, scheduler=client, images_per_task=3,
                                       **options)
    expected.save(tmp_path / "one")
    result.save(tmp_path / "dask")
    assert json_files(tmp_path / "dask") == json_files(tmp_path / "one")
    assert expected.ignore_masks is not None
    without = evaluate_dataset(dataset, maps, category="bottle", fpr_bounds=(1e-3, 1e-2))
    assert without.set_metrics != expected.set_metrics


def test_stacked_maps_and_skipped_files(client, tmp_path):
    dataset, maps, paths = _dataset(tmp_path)
    files = sorted((maps / "bottle").rglob("*.npy"))
    stacked = tmp_path / "asmaps.npz"
    np.savez(stacked, asmaps=np.stack([np.load(f) for f in files[1:]]),
             paths=np.array([f.relative_to(maps).with_suffix(".png").as_posix()
                             for f in files[1:]]))
    options = {"category": "bottle", "fpr_bounds": (1e-3, 1e-2), "skip_missing": True}
    expected = evaluate_dataset(dataset, stacked, **options)
    result = pimo_distributed.evaluate(dataset, stacked, scheduler=client, images_per_task=3,
                                       **options)
    assert [p.path for p in result.skipped] == [paths[0]]
    expected.save(tmp_path / "one")
    result.save(tmp_path / "dask")
    assert json_files(tmp_path / "dask") == json_files(tmp_path / "one")


def test_file_problems_are_listed_as_in_one_process(client, tmp_path):
    dataset, maps, paths = _dataset(tmp_path)
    for index in (2, 8):
        target = maps / Path(paths[index]).with_suffix(".npy")
        bad = np.load(target)
        bad[1, 1] = np.nan
        np.save(target, bad)
    with pytest.raises(pimo.DatasetError) as expected:
        evaluate_dataset(dataset, maps, category="bottle")
    with pytest.raises(pimo.DatasetError) as got:
        pimo_distributed.evaluate(dataset, maps, category="bottle", scheduler=client,
                                  images_per_task=2)
    assert "2 problems" in str(got.value)
    assert sorted(p.path for p in got.value.problems) == sorted(
        p.path for p in expected.value.problems)
    (tmp_path / "empty").mkdir()
    with pytest.raises(pimo.DatasetError, match="matches any of the 11 test images"):
        pimo_distributed.evaluate(dataset, tmp_path / "empty", category="bottle",
                                  scheduler=client)


def test_sweep_and_cli_on_a_cluster(client, tmp_path):
    args = make_two_models(tmp_path)
    models = {"a": tmp_path / "maps_a", "b": tmp_path / "maps_b"}
    swept = pimo_distributed.sweep(f"mvtec:{tmp_path / 'data'}", models, scheduler=client,
                                   fpr_bounds=(1e-3, 1e-2), images_per_task=3)
    assert list(swept) == ["a", "b"] and all(list(r) == ["bottle", "cable"]
                                             for r in swept.values())
    named = [f"--maps={name}={location}" for name, location in models.items()]
    assert main([*args, *named, "-o", str(tmp_path / "one")]) == 0
    assert main([*args, *named, "--scheduler", client.scheduler.address,
                 "-o", str(tmp_path / "dask")]) == 0
    one = json_files(tmp_path / "one")
    assert len(one) == 2 * 2 * 10  # aupimos, evaluation, 5 pixel and 3 image metric files
    assert json_files(tmp_path / "dask") == one
    for name, by_category in swept.items():
        run = EvaluationRun.new(list(by_category))  # one run per model, as the CLI writes
        for category, result in by_category.items():
            result.save(tmp_path / "swept" / name / "mvtec" / category, run=run)
    assert json_files(tmp_path / "swept") == one
