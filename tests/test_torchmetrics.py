"""torchmetrics wrappers: one process and two synced processes give the numbers of one accumulator.

The plumbing (states, reductions, sync, batch formats) is tested with a small accumulator
following the protocol (tests/toy_accumulator.py).
"""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="pimo.torchmetrics needs torch (pimo[torch])")
pytest.importorskip("torchmetrics", reason="pimo.torchmetrics needs torchmetrics (pimo[torch])")

import pimo  # noqa: E402
from pimo.torchmetrics import AUPIMO, AUPRO, AUROC, AccumulatorMetric, SetMetrics  # noqa: E402
from tests.test_ignore_masks import draw_ignore_masks  # noqa: E402
from tests.toy_accumulator import ToyAccumulator, ToyResult  # noqa: E402


class ToyMetric(AccumulatorMetric):
    def __init__(self, bins: int = 8, **kwargs: Any) -> None:
        super().__init__({"bins": bins}, **kwargs)

    @classmethod
    def accumulator_class(cls) -> type:
        return ToyAccumulator

    def value(self, result: ToyResult) -> torch.Tensor:
        return torch.tensor(result.mean(), dtype=torch.float64)


def toy_data(num_images: int = 14, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, H, W) float32 maps and (N, 1, H, W) masks, normal and anomalous shuffled."""
    rng = np.random.default_rng(seed)
    maps = rng.random((num_images, 1, 12, 10)).astype(np.float32)
    masks = np.zeros_like(maps, dtype=np.uint8)
    for index in rng.permutation(num_images)[: num_images // 2]:
        masks[index, 0, 3:7, 2:6] = 1
    return torch.from_numpy(maps), torch.from_numpy(masks)


def random_batches(num_images: int, rng: np.random.Generator) -> list[slice]:
    """Consecutive batches of random sizes (1 to 5) covering 0..num_images-1."""
    batches, start = [], 0
    while start < num_images:
        stop = min(num_images, start + int(rng.integers(1, 6)))
        batches.append(slice(start, stop))
        start = stop
    return batches


def reference(maps: Any, masks: Any, **settings: Any) -> ToyResult:
    accumulator = ToyAccumulator(**settings)
    accumulator.update(maps, masks)
    return accumulator.compute()


def assert_toy_equal(result: ToyResult, expected: ToyResult) -> None:
    np.testing.assert_array_equal(result.max_scores, expected.max_scores)
    assert result.max_per_mille.dtype == np.int16  # travelled as int32, back to int16
    np.testing.assert_array_equal(result.max_per_mille, expected.max_per_mille)
    np.testing.assert_array_equal(result.anomalous, expected.anomalous)
    np.testing.assert_array_equal(result.sizes, expected.sizes)
    np.testing.assert_array_equal(result.histogram, expected.histogram)


# --------------------------------------------------------------------------------------
# one process
# --------------------------------------------------------------------------------------
def test_states_follow_the_accumulator_protocol():
    from torchmetrics.utilities.data import dim_zero_cat, dim_zero_sum

    metric = ToyMetric(bins=5)
    assert metric._reductions == {"max_score": dim_zero_cat, "anomalous": dim_zero_cat,
                                  "sizes": dim_zero_cat, "histogram": dim_zero_sum,
                                  "max_per_mille": dim_zero_cat}
    assert metric.max_score == [] and metric.sizes == []
    assert metric.histogram.shape == (5,) and metric.histogram.dtype == torch.int64
    state = metric.state_arrays()  # empty: the accumulator's empty state, dtypes and shapes
    assert state["sizes"].shape == (0, 2) and state["sizes"].dtype == np.int64
    assert state["anomalous"].dtype == np.uint8
    assert state["max_per_mille"].dtype == np.int16


@pytest.mark.parametrize("seed", range(3))
def test_random_batches_equal_one_accumulator(seed):
    maps, masks = toy_data(seed=seed)
    rng = np.random.default_rng(seed)
    metric = ToyMetric(bins=6)
    for batch in random_batches(len(maps), rng):
        metric.update(maps[batch], masks[batch])
    expected = reference(maps, masks, bins=6)
    assert_toy_equal(metric.result(), expected)
    assert float(metric.compute()) == pytest.approx(expected.mean(), abs=1e-12)
    metric.reset()
    assert metric.max_score == [] and int(metric.histogram.sum()) == 0
    assert metric._last_result is None


def test_anomalib_batches_dicts_and_forward():
    maps, masks = toy_data()
    by_object, by_dict, by_call = ToyMetric(), ToyMetric(), ToyMetric()
    for batch in (slice(0, 5), slice(5, 14)):
        by_object.update(SimpleNamespace(anomaly_map=maps[batch], gt_mask=masks[batch][:, 0]))
        by_dict.update({"anomaly_map": maps[batch], "gt_mask": masks[batch]})
        assert by_call(maps[batch], masks[batch]) is None  # forward only updates
    expected = reference(maps, masks)
    for metric in (by_object, by_dict, by_call):
        assert_toy_equal(metric.result(), expected)


def test_batch_without_fields_is_refused():
    with pytest.raises(pimo.PimoTypeError, match=r"'gt_mask'.*update\(anomaly_maps, masks\)"):
        ToyMetric().update({"anomaly_map": torch.zeros(1, 4, 4)})
    with pytest.raises(pimo.PimoTypeError, match="'anomaly_map' and 'gt_mask'"):
        ToyMetric().update(object())


def test_state_key_clashing_with_metric_attribute_is_refused(monkeypatch):
    monkeypatch.setitem(ToyAccumulator.STATE_REDUCTIONS, "device", "cat")
    original = ToyAccumulator.state_dict
    monkeypatch.setattr(ToyAccumulator, "state_dict",
                        lambda self: {**original(self), "device": np.empty(0)})
    with pytest.raises(pimo.PimoValueError, match=r"'device'.*clash"):
        ToyMetric()


def test_unknown_reduction_is_refused(monkeypatch):
    monkeypatch.setitem(ToyAccumulator.STATE_REDUCTIONS, "histogram", "max")
    with pytest.raises(pimo.PimoValueError, match="'max'; expected 'cat' or 'sum'"):
        ToyMetric()


def example(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small evaluation set, normal and anomalous images shuffled."""
    maps, masks = pimo.make_example(7, 7, (48, 40), seed=seed)
    order = np.random.default_rng(seed).permutation(len(maps))
    return maps[order], masks[order]


BOUNDS = (1e-3, 1e-2)


def real_metrics() -> dict[str, AccumulatorMetric]:
    """Every pimo metric: AUPIMO, AUROC, AUPRO 30 % and 5 %, and all set metrics."""
    return {"aupimo": AUPIMO(fpr_bounds=BOUNDS), "auroc": AUROC(), "aupro": AUPRO(),
            "aupro_05": AUPRO(fpr_limit=0.05), "set": SetMetrics()}


def check_real_metrics(values: dict[str, Any], results: dict[str, Any], maps: np.ndarray,
                       masks: np.ndarray, ignore_masks: Any = None) -> None:
    """The metrics' values and results equal the one-shot functions on (maps, masks)."""
    assert set(values) == {"aupimo", "auroc", "aupro", "aupro_05", "set"}
    check_aupimo(values, results, maps, masks, ignore_masks)
    check_set_metrics(values, results, maps, masks, ignore_masks)


def check_aupimo(values: dict[str, Any], results: dict[str, Any], maps: np.ndarray,
                 masks: np.ndarray, ignore_masks: Any = None) -> None:
    expected = pimo.aupimo(maps, masks, fpr_bounds=BOUNDS, ignore_masks=ignore_masks)
    np.testing.assert_allclose(results["aupimo"].aupimos, expected.aupimos, rtol=0,
                               atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(results["aupimo"].image_classes, expected.image_classes)
    assert results["aupimo"].thresh_bounds == expected.thresh_bounds
    assert float(values["aupimo"]) == pytest.approx(expected.mean(), abs=1e-12)


def check_set_metrics(values: dict[str, Any], results: dict[str, Any], maps: np.ndarray,
                      masks: np.ndarray, ignore_masks: Any = None) -> None:
    one_shot = pimo.set_metrics(maps, masks, fpr_limits=(0.3, 0.05), ignore_masks=ignore_masks)
    assert float(values["auroc"]) == pytest.approx(
        pimo.auroc(maps, masks, ignore_masks=ignore_masks), abs=1e-12)
    assert float(values["aupro"]) == pytest.approx(
        pimo.aupro(maps, masks, ignore_masks=ignore_masks), abs=1e-12)
    assert float(values["aupro_05"]) == pytest.approx(
        pimo.aupro(maps, masks, fpr_limit=0.05, ignore_masks=ignore_masks), abs=1e-12)
    every = {name: float(value) for name, value in values["set"].items()}
    assert every == pytest.approx({"auroc": one_shot.auroc, "aupro_0.3": one_shot.aupro[0.3],
                                   "aupro_0.05": one_shot.aupro[0.05], "ap": one_shot.ap,
                                   "f1_max": one_shot.f1_max}, abs=1e-12)
    assert results["set"].num_regions == one_shot.num_regions


def test_metrics_equal_the_one_shot_functions():
    maps, masks = example()
    metrics = real_metrics()
    rng = np.random.default_rng(3)
    for batch in random_batches(len(maps), rng):
        for metric in metrics.values():  # (B, 1, H, W) maps, (B, H, W) masks, torch
            metric.update({"anomaly_map": torch.from_numpy(maps[batch])[:, None],
                           "gt_mask": torch.from_numpy(masks[batch])})
    values = {name: metric.compute() for name, metric in metrics.items()}
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for k, v in values.items()
               if k != "set")
    check_real_metrics(values, {name: m.result() for name, m in metrics.items()}, maps, masks)


@pytest.mark.parametrize("layout", ["tensors", "channel_axis", "numpy_lists", "anomalib_batch"])
def test_metrics_with_ignore_masks_equal_the_functions_with_ignore_masks(layout):
    maps, masks = example(seed=6)
    ignore_masks = np.stack(draw_ignore_masks(maps, masks, seed=6, density=0.3))
    metrics = real_metrics()
    rng = np.random.default_rng(6)
    for batch in random_batches(len(maps), rng):
        if layout == "numpy_lists":
            arguments = (list(maps[batch]), list(masks[batch]), list(ignore_masks[batch]))
        else:
            arguments = tuple(torch.from_numpy(array[batch])
                              for array in (maps, masks, ignore_masks))
            if layout == "channel_axis":  # (B, 1, H, W) maps and ignore masks, (B, H, W) masks
                arguments = (arguments[0][:, None], arguments[1], arguments[2][:, None])
            if layout == "anomalib_batch":  # update(batch, ignore_masks=...)
                arguments = (SimpleNamespace(anomaly_map=arguments[0][:, None],
                                             gt_mask=arguments[1]), None, arguments[2])
        for metric in metrics.values():
            metric.update(arguments[0], arguments[1], ignore_masks=arguments[2])
    values = {name: metric.compute() for name, metric in metrics.items()}
    results = {name: metric.result() for name, metric in metrics.items()}
    check_real_metrics(values, results, maps, masks, ignore_masks)
    without = pimo.set_metrics(maps, masks)  # the ignore masks change every metric
    assert float(values["auroc"]) != pytest.approx(without.auroc, abs=1e-9)
    assert float(values["aupro"]) != pytest.approx(without.aupro[0.3], abs=1e-9)


def test_an_ignore_mask_covering_a_defect_is_refused_by_update():
    maps, masks = example(seed=6)
    anomalous = int(np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))[0])
    ignore_masks = np.zeros(masks.shape, dtype=bool)
    ignore_masks[anomalous] = masks[anomalous]
    message = rf"image {anomalous}\b.* covers all \d+ anomalous pixels"
    for metric in (AUPIMO(fpr_bounds=BOUNDS), AUPRO()):
        with pytest.raises(pimo.IgnoreMaskError, match=message):
            metric.update(torch.from_numpy(maps), torch.from_numpy(masks),
                          ignore_masks=torch.from_numpy(ignore_masks))


# --------------------------------------------------------------------------------------
# two processes (torch.distributed, gloo)
# --------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _halves(num_images: int) -> list[slice]:
    return [slice(0, num_images // 2), slice(num_images // 2, num_images)]


def _ddp_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        maps, masks = toy_data(num_images=17, seed=5)
        mine = _halves(len(maps))[rank]
        maps, masks = maps[mine], masks[mine]
        rng = np.random.default_rng(rank)
        halves, alone = ToyMetric(bins=7), ToyMetric(bins=7)
        for batch in random_batches(len(maps), rng):
            halves.update(maps[batch], masks[batch])
            if rank == 0:  # rank 1 never updates this one: empty "cat" lists on rank 1
                alone.update(maps[batch], masks[batch])
        real_maps, real_masks = example(seed=4)
        real = real_metrics()
        mine = _halves(len(real_maps))[rank]
        for batch in random_batches(len(real_maps[mine]), rng):
            for metric in real.values():
                metric.update(torch.from_numpy(real_maps[mine][batch]),
                              torch.from_numpy(real_masks[mine][batch]))
        outputs = {
            "real": ({name: metric.compute() for name, metric in real.items()},
                     {name: metric.result() for name, metric in real.items()}),
            "halves": (float(halves.compute()), halves.result()),
            "alone": (float(alone.compute()), alone.result()),
            "local": len(halves.max_score),  # states are back to this rank's after compute
        }
        with Path(out, f"rank{rank}.pkl").open("wb") as handle:
            pickle.dump(outputs, handle)
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    maps, masks = toy_data(num_images=17, seed=5)
    expected = reference(maps, masks, bins=7)
    first_half = _halves(len(maps))[0]
    expected_alone = reference(maps[first_half], masks[first_half], bins=7)
    for rank in (0, 1):
        with (tmp_path / f"rank{rank}.pkl").open("rb") as handle:
            outputs = pickle.load(handle)
        value, result = outputs["halves"]
        assert value == pytest.approx(expected.mean(), abs=1e-12)
        assert_toy_equal(result, expected)  # rank 0's images, then rank 1's
        value, result = outputs["alone"]
        assert value == pytest.approx(expected_alone.mean(), abs=1e-12)
        assert_toy_equal(result, expected_alone)
        assert outputs["local"] >= 1
        # rank 0's images, then rank 1's
        check_real_metrics(*outputs["real"], *example(seed=4))
