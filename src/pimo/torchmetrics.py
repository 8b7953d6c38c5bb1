r"""torchmetrics metrics: AUPIMO, AUROC, AUPRO inside training loops, synced across processes.

Needs the ``torch`` extra (``pip install pimo[torch]``); ``import pimo`` never imports torch.

Each metric is a :class:`torchmetrics.Metric` whose states ARE the arrays of a pimo accumulator
(:class:`pimo.AupimoAccumulator`, :class:`pimo.SetMetricsAccumulator`): one state per key of
``state_dict()``, reduced across processes as the accumulator's ``STATE_REDUCTIONS`` says
(``"cat"``: per-image records, concatenated; ``"sum"``: fixed-size histograms, added).
``update()`` summarises the batch with a fresh accumulator (on the batch's device for torch
tensors) and appends or adds its state arrays (int16 arrays travel as int32, which every
distributed backend gathers; they get their dtype back at ``compute()``); ``compute()``
rebuilds one accumulator from the (synced) states with ``from_state_dict`` and returns a
tensor. The numbers equal the one-shot
functions (:func:`pimo.aupimo`, :func:`pimo.set_metrics`) on all images of all processes:
concatenating the "cat" states and adding the "sum" states is the accumulators' merge.

Usage (anomalib-style batches with ``anomaly_map`` and ``gt_mask`` fields, or two arguments)::

    from pimo.torchmetrics import AUPIMO, AUPRO
    aupimo = AUPIMO(fpr_bounds=(1e-5, 1e-4)).to(device)
    for batch in loader:              # any order of normal and anomalous images
        aupimo.update(batch)          # or aupimo.update(anomaly_maps, masks)
    aupimo.compute()                  # tensor: mean AUPIMO over anomalous images
    aupimo.result()                   # AupimoResult: per-image scores (images in arrival order;
                                      # under DDP: rank 0's images, then rank 1's, ...)

Calling a metric (``metric(batch)``, torchmetrics' ``forward``) only updates it and returns
None: these metrics are defined on the whole set (AUPIMO needs the normal images' shared FPR),
so a per-batch value would be meaningless.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torchmetrics import Metric

from pimo._validate import PimoTypeError, PimoValueError

__all__ = ["AUPIMO", "AUPRO", "AUROC", "AccumulatorMetric", "SetMetrics"]

_REDUCTIONS = ("cat", "sum")
# Integer dtypes that gloo or NCCL cannot gather, and the wider ones their values travel in
# (every value fits, so the state arrays get their own dtype back exactly).
_TRANSPORT_DTYPES = {
    np.dtype(np.int16): np.dtype(np.int32),
    np.dtype(np.uint16): np.dtype(np.int32),
    np.dtype(np.uint32): np.dtype(np.int64),
    np.dtype(np.bool_): np.dtype(np.uint8),
}


def _transport(array: np.ndarray) -> torch.Tensor:
    """``array`` as a tensor every distributed backend can gather (values unchanged)."""
    array = np.ascontiguousarray(array)
    wider = _TRANSPORT_DTYPES.get(array.dtype)
    return torch.from_numpy(array if wider is None else array.astype(wider))


def _batch_fields(batch: Any) -> tuple[Any, Any]:
    """``(anomaly_map, gt_mask)`` of an anomalib-style batch (object or mapping)."""
    if isinstance(batch, Mapping):
        found = {name: batch.get(name) for name in ("anomaly_map", "gt_mask")}
    else:
        found = {name: getattr(batch, name, None) for name in ("anomaly_map", "gt_mask")}
    missing = [name for name, value in found.items() if value is None]
    if missing:
        raise PimoTypeError(
            f"update() got one argument of type {type(batch).__name__} without "
            f"{' and '.join(repr(m) for m in missing)}: pass a batch with the fields "
            "'anomaly_map' and 'gt_mask', or call update(anomaly_maps, masks)."
        )
    return found["anomaly_map"], found["gt_mask"]


class AccumulatorMetric(Metric):
    """A :class:`torchmetrics.Metric` whose states are an accumulator's ``state_dict()`` arrays.

    Subclasses set :meth:`accumulator_class` (a class following the accumulator protocol:
    ``update``, ``state_dict``, ``from_state_dict``, ``STATE_REDUCTIONS``, ``compute``) and
    :meth:`value` (the tensor ``compute()`` returns from the accumulator's result).

    Parameters
    ----------
    settings : mapping
        The accumulator's constructor keywords (they are not states: every process must use
        the same).
    **kwargs
        :class:`torchmetrics.Metric`'s keywords (``process_group``, ``sync_on_compute``,
        ``dist_sync_fn``, ``compute_on_cpu``, ...).
    """

    is_differentiable: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    full_state_update: ClassVar[bool] = False

    def __init__(self, settings: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = dict(settings)
        cls = self.accumulator_class()
        empty = cls(**self._settings).state_dict()
        reductions = dict(cls.STATE_REDUCTIONS)
        if set(empty) != set(reductions):
            raise PimoValueError(
                f"{cls.__name__}'s state_dict() keys {sorted(empty)} differ from its "
                f"STATE_REDUCTIONS keys {sorted(reductions)}."
            )
        self._reductions_by_key = reductions
        self._empty_state = {key: np.ascontiguousarray(value) for key, value in empty.items()}
        self._last_result: Any = None
        for key, value in self._empty_state.items():
            reduction = reductions[key]
            if reduction not in _REDUCTIONS:
                raise PimoValueError(
                    f"{cls.__name__}.STATE_REDUCTIONS[{key!r}] is {reduction!r}; expected "
                    "'cat' or 'sum'."
                )
            if hasattr(self, key):
                raise PimoValueError(
                    f"{cls.__name__}'s state key {key!r} is also an attribute of "
                    f"{type(self).__name__}; state keys must not clash with Metric attributes."
                )
            if reduction == "cat":
                self.add_state(key, default=[], dist_reduce_fx="cat")
            else:
                self.add_state(key, default=_transport(value.copy()), dist_reduce_fx="sum")

    # -- what subclasses define ----------------------------------------------------------
    @classmethod
    def accumulator_class(cls) -> type:
        """The accumulator class whose states this metric holds."""
        raise NotImplementedError(f"{cls.__name__} must define accumulator_class()")

    def value(self, result: Any) -> Any:
        """The tensor (or dict of tensors) :meth:`compute` returns for ``result``."""
        raise NotImplementedError(f"{type(self).__name__} must define value()")

    # -- torchmetrics ---------------------------------------------------------------------
    def update(self, anomaly_maps: Any, masks: Any = None, ignore_masks: Any = None) -> None:
        """Add a batch: ``update(batch)`` (fields ``anomaly_map``, ``gt_mask``) or
        ``update(anomaly_maps, masks)``; ``update(batch, ignore_masks=...)`` with ignore masks
        (anomalib batches have no such field).

        Maps ``(B, H, W)``, ``(B, 1, H, W)``, ``(B, D, H, W)`` or a list of maps of mixed sizes,
        numpy or torch on any device (summarised there); masks binary, same layout. Normal
        images (all-zero masks) and anomalous ones may come in any order. ``ignore_masks``
        (optional, same layout, 1 = pixel left out) leaves pixels out of every metric.
        """
        if masks is None:
            anomaly_maps, masks = _batch_fields(anomaly_maps)
        accumulator = self.accumulator_class()(**self._settings)
        if ignore_masks is None:
            accumulator.update(_detach(anomaly_maps), _detach(masks))
        else:
            accumulator.update(_detach(anomaly_maps), _detach(masks),
                               ignore_masks=_detach(ignore_masks))
        for key, array in accumulator.state_dict().items():
            tensor = _transport(array).to(self.device)
            if self._reductions_by_key[key] == "cat":
                getattr(self, key).append(tensor)
            else:
                setattr(self, key, getattr(self, key) + tensor)

    def compute(self) -> Any:
        """Rebuild the accumulator from the (synced) states; the metric's value as a tensor."""
        self._last_result = self.accumulator().compute()
        return self.value(self._last_result)

    def forward(self, *args: Any, **kwargs: Any) -> None:
        """Update with the batch; returns None (the metric is defined on the whole set)."""
        self.update(*args, **kwargs)

    def reset(self) -> None:
        """Forget every image."""
        super().reset()
        self._last_result = None

    def _sync_dist(self, dist_sync_fn: Callable | None = None, process_group: Any = None) -> None:
        # A process without any batch holds empty "cat" lists: give them the right dtype and
        # trailing shape, so that every process gathers tensors of one kind.
        for key, reduction in self._reductions_by_key.items():
            if reduction == "cat" and isinstance(getattr(self, key), list) \
                    and not getattr(self, key):
                setattr(self, key, [_transport(self._empty_state[key]).to(self.device)])
        kwargs: dict[str, Any] = {"process_group": process_group}
        if dist_sync_fn is not None:
            kwargs["dist_sync_fn"] = dist_sync_fn
        super()._sync_dist(**kwargs)

    # -- pimo ---------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The current states as the accumulator's ``state_dict()`` (this process's, unless
        called inside a sync)."""
        state = {}
        for key, reduction in self._reductions_by_key.items():
            value = getattr(self, key)
            if reduction == "cat" and isinstance(value, list):
                value = torch.cat(value) if value else _transport(self._empty_state[key])
            state[key] = value.detach().cpu().numpy().astype(self._empty_state[key].dtype,
                                                             copy=False)
        return state

    def accumulator(self) -> Any:
        """One accumulator holding every image of the states."""
        return self.accumulator_class().from_state_dict(self.state_arrays(), **self._settings)

    def result(self) -> Any:
        """The full result (synced across processes like :meth:`compute`)."""
        self.compute()
        return self._last_result


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, list | tuple):
        return [_detach(item) for item in value]
    return value


def _scalar(value: float | None) -> torch.Tensor:
    return torch.tensor(float("nan") if value is None else float(value), dtype=torch.float64)


class AUPIMO(AccumulatorMetric):
    """Per-image AUPIMO; ``compute()`` gives the mean over anomalous images.

    Parameters
    ----------
    fpr_bounds : (float, float)
        ``(L, U)``, the shared-FPR integration range.
    expected_num_normal : int, optional
        The number of normal images of the whole set (all processes), as
        :class:`pimo.AupimoAccumulator` takes it: it sizes what each normal image keeps.
    **kwargs
        :class:`torchmetrics.Metric`'s keywords.

    ``result()`` gives the :class:`pimo.AupimoResult` (per image, in arrival order).
    """

    def __init__(self, fpr_bounds: tuple[float, float] = (1e-5, 1e-4), *,
                 expected_num_normal: int | None = None, **kwargs: Any) -> None:
        settings: dict[str, Any] = {"fpr_bounds": tuple(fpr_bounds)}
        if expected_num_normal is not None:
            settings["expected_num_normal"] = expected_num_normal
        super().__init__(settings, **kwargs)

    @classmethod
    def accumulator_class(cls) -> type:
        from pimo import AupimoAccumulator

        return AupimoAccumulator

    def value(self, result: Any) -> torch.Tensor:
        return _scalar(result.mean())


class SetMetrics(AccumulatorMetric):
    """Every set metric at once; ``compute()`` gives a dict of scalar tensors.

    Keys: ``auroc``, ``aupro_<limit>`` per FPR limit (e.g. ``aupro_0.3``), ``ap`` and
    ``f1_max`` when computed. ``result()`` gives the :class:`pimo.SetMetricsResult`.

    Parameters
    ----------
    fpr_limits : tuple of float
        AUPRO's FPR limits.
    **settings_and_kwargs
        :class:`pimo.SetMetricsAccumulator`'s keywords (``auroc``, ``connectivity``,
        ``dtype``, ...) and :class:`torchmetrics.Metric`'s.

    The state's layout depends on the maps' dtype: every batch of every process must have
    one dtype, or pass ``dtype=np.float64`` to widen float32 batches into a float64 state.
    """

    _ACCUMULATOR_KEYWORDS: ClassVar[tuple[str, ...]] = (
        "auroc", "ap", "f1_max", "curves", "connectivity", "max_state_bytes", "dtype",
    )

    def __init__(self, fpr_limits: tuple[float, ...] = (0.3, 0.05), **kwargs: Any) -> None:
        settings: dict[str, Any] = {"fpr_limits": tuple(fpr_limits)}
        for name in self._ACCUMULATOR_KEYWORDS:
            if name in kwargs:
                settings[name] = kwargs.pop(name)
        super().__init__(settings, **kwargs)

    @classmethod
    def accumulator_class(cls) -> type:
        from pimo import SetMetricsAccumulator

        return SetMetricsAccumulator

    def value(self, result: Any) -> dict[str, torch.Tensor]:
        values = {}
        if result.auroc is not None:
            values["auroc"] = _scalar(result.auroc)
        for limit, area in result.aupro.items():
            values[f"aupro_{limit:g}"] = _scalar(area)
        for name in ("ap", "f1_max"):
            if getattr(result, name, None) is not None:
                values[name] = _scalar(getattr(result, name))
        return values


class AUROC(SetMetrics):
    """Pixel AUROC over all pixels of all images; ``compute()`` gives the scalar.

    ``result()`` gives the :class:`pimo.SetMetricsResult`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fpr_limits=(), auroc=True, ap=False, f1_max=False, **kwargs)

    def value(self, result: Any) -> torch.Tensor:
        return _scalar(result.auroc)


class AUPRO(SetMetrics):
    """AUPRO up to set FPR ``fpr_limit`` (default 0.3); ``compute()`` gives the scalar.

    Parameters
    ----------
    fpr_limit : float
        The FPR limit of the PRO curve (the area is divided by it).
    connectivity : int, optional
        Region connectivity (default: 8 in 2-D, 26 in 3-D).
    **kwargs
        :class:`torchmetrics.Metric`'s keywords.
    """

    def __init__(self, fpr_limit: float = 0.3, **kwargs: Any) -> None:
        super().__init__(fpr_limits=(float(fpr_limit),), auroc=False, ap=False, f1_max=False,
                         **kwargs)
        self.fpr_limit = float(fpr_limit)

    def value(self, result: Any) -> torch.Tensor:
        return _scalar(result.aupro[self.fpr_limit])
