"""The Dask backend: the tree reduction keeps the images' order and equals one accumulator;
evaluate and sweep on a two-worker cluster write the files the single-process path writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed", reason="pimo.distributed needs dask.distributed (pimo[dask])")

import cloudpickle
from distributed import Client, LocalCluster

import pimo
import tests.toy_accumulator as toy
from pimo import distributed as pimo_distributed
from pimo.distributed import AccumulatorSpec, merge_states, reduce_states

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
def _json_files(folder: Path) -> dict[str, object]:
    return {
        path.relative_to(folder).as_posix(): json.loads(path.read_text())
        for path in sorted(folder.rglob("*.json"))
    }
