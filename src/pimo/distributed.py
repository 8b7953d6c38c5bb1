r"""Evaluate on a Dask cluster: one category, or a sweep of models x categories in one call.

Needs the ``dask`` extra (``pip install pimo[dask]``). :func:`evaluate` takes the arguments of
:func:`pimo.evaluate_dataset` plus ``scheduler``; :func:`sweep` evaluates several models' maps
(``maps={"name": folder, ...}``) on several categories at once, so every worker stays busy.

How the work is split
---------------------
1. *Plan* (one task per model and category): the maps are matched to the images, the images
   and masks are checked (:func:`pimo.evaluate_dataset`'s steps 1-2, the same code).
2. *Summarise* (one task per chunk of ``images_per_task`` images, in score order): the chunk's
   maps and masks are read and resized as :func:`pimo.evaluate_dataset` reads them, fed to a
   fresh :class:`pimo.AupimoAccumulator` (and :class:`pimo.SetMetricsAccumulator`), and the
   task returns their ``state_dict()`` — small per-image summaries, not the maps.
3. *Reduce*: the chunks' states are merged in a tree (``merge_fan_in`` states per task,
   neighbours only, so images keep their order); the merge is associative, so the tree gives
   what one accumulator fed every image in order gives.
4. *Compute* (one task per model and category) and write the same files as the
   single-process path (:meth:`pimo.EvaluationResult.save`).

Workers read the files themselves: the dataset and the maps must be reachable from every
worker at the same paths (a shared file system; on one machine, always).

Examples
--------
>>> from pimo import distributed  # doctest: +SKIP
>>> result = distributed.evaluate("mvtec:/data/mvtec", "maps/", category="bottle",
...                               scheduler="local")  # doctest: +SKIP
>>> results = distributed.sweep("mvtec:/data/mvtec", {"a": "maps_a/", "b": "maps_b/"},
...                             categories=["bottle", "cable"],
...                             scheduler="tcp://10.0.0.1:8786")  # doctest: +SKIP
>>> results["a"]["bottle"].save("out/a/mvtec/bottle")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pimo._validate import PimoValueError, validate_fpr_bounds
from pimo.data._pool import ordered_map
from pimo.data.ignore import IgnoreMasks, open_ignore_masks
from pimo.data.layouts import DatasetLayout
from pimo.data.maps import MapSource, open_maps
from pimo.data.problems import Problem
from pimo.evaluate import (
    SET_METRICS_SETTINGS,
    EvaluationResult,
    ProgressHook,
    _describe_category,
    _evaluated_image,
    _Job,
    _load_job,
    _Loaded,
    _open_category,
    _parse_resolution,
    _plan_jobs,
    _raise_problems,
    _set_metric_values,
    _with_image_level,
)

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = [
    "DEFAULT_IMAGES_PER_TASK",
    "DEFAULT_MERGE_FAN_IN",
    "AccumulatorSpec",
    "evaluate",
    "merge_states",
    "open_client",
    "reduce_states",
    "sweep",
]

DEFAULT_IMAGES_PER_TASK = 8
DEFAULT_MERGE_FAN_IN = 4
States = dict[str, dict[str, np.ndarray]]


class _Accumulator(Protocol):
    """The accumulator protocol (:class:`pimo.AupimoAccumulator`, ...)."""

    STATE_REDUCTIONS: dict[str, str]

    def update(self, anomaly_maps: Any, masks: Any, *, paths: Any = None) -> None:
        """Add a batch; an accumulator used with ignore masks also takes ``ignore_masks=``."""

    def merge(self, other: Any) -> Any: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray], **settings: Any) -> Any: ...


@dataclass(frozen=True)
class AccumulatorSpec:
    """How to make an accumulator: its class and its settings (constructor keywords).

    Tasks carry specs, not accumulators, and exchange ``state_dict()`` arrays.
    """

    cls: type
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def new(self) -> _Accumulator:
        """An empty accumulator."""
        return self.cls(**self.settings)

    def restore(self, state: Mapping[str, np.ndarray]) -> _Accumulator:
        """The accumulator whose ``state_dict()`` is ``state``."""
        return self.cls.from_state_dict(dict(state), **self.settings)


# --------------------------------------------------------------------------------------
# the reduction, generic over the accumulator protocol
# --------------------------------------------------------------------------------------
@dataclass
class _Partial:
    """What a summarise or merge task returns: named accumulator states and file problems."""

    states: States
    problems: list[Problem]
    image_scores: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))


def merge_states(specs: Mapping[str, AccumulatorSpec], *states: Mapping[str, Any]) -> States:
    """Merge named accumulator states, in order: ``states[0]`` merged with the next ones.

    Parameters
    ----------
    specs : mapping of str to AccumulatorSpec
        One accumulator per name.
    *states : mapping of str to state dict
        ``{name: accumulator.state_dict()}`` of each part, in image order.

    Returns
    -------
    dict of str to state dict
        ``{name: merged.state_dict()}``, where ``merged = a0.merge(a1).merge(a2)...``.
    """
    if not states:
        raise PimoValueError("merge_states needs at least one state to merge.")
    merged = {}
    for name, spec in specs.items():
        accumulator = spec.restore(states[0][name])
        for state in states[1:]:
            accumulator.merge(spec.restore(state[name]))
        merged[name] = accumulator.state_dict()
    return merged


def _merge_partials(specs: Mapping[str, AccumulatorSpec], *partials: _Partial) -> _Partial:
    problems = [problem for partial in partials for problem in partial.problems]
    if problems:  # the result will not be computed: carry the problems only
        return _Partial({}, problems)
    return _Partial(merge_states(specs, *(p.states for p in partials)), [],
                    np.concatenate([p.image_scores for p in partials]))


def reduce_states(
    client: Client,
    parts: Sequence[Future],
    merge: Callable[..., Any],
    *,
    fan_in: int = DEFAULT_MERGE_FAN_IN,
    key: str = "pimo-merge",
) -> Future:
    """Tree-reduce ``parts`` (futures, in order) with ``merge(*group)`` on the cluster.

    Each level merges runs of ``fan_in`` neighbours, so the order of the parts is kept: with an
    associative ``merge``, the result is ``merge(parts[0], ..., parts[-1])``. Returns the
    future of the root.
    """
    if not parts:
        raise PimoValueError("Nothing to reduce: no part was given.")
    if fan_in < 2:
        raise PimoValueError(f"fan_in must be at least 2, got {fan_in}.")
    level = list(parts)
    depth = 0
    while len(level) > 1:
        level = [
            client.submit(merge, *level[start:start + fan_in], pure=False,
                          key=f"{key}-{depth}-{start}-{os.urandom(4).hex()}")
            if len(level[start:start + fan_in]) > 1 else level[start]
            for start in range(0, len(level), fan_in)
        ]
        depth += 1
    return level[0]


# --------------------------------------------------------------------------------------
# the tasks
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Request:
    """One evaluation of a sweep: a model's maps on one category."""

    model: str | None
    maps: str
    category: str | None


@dataclass(frozen=True)
class _Options:
    """The evaluation options every task needs (see :func:`pimo.evaluate_dataset`)."""

    fpr_bounds: tuple[float, float]
    target_size: tuple[int, int] | None
    mask_threshold: float | None
    skip_missing: bool
    verify_images: bool
    set_metrics: bool
    workers: int
    ignore_masks: str | None = None

    def specs(self, num_normal: int | None = None) -> dict[str, AccumulatorSpec]:
        """The accumulators of one evaluation of ``num_normal`` normal images.

        Each chunk's AUPIMO accumulator sees a few images only: ``expected_num_normal`` tells
        it how many normal images the whole category has, which sizes what it keeps of each.
        """
        from pimo import AupimoAccumulator, SetMetricsAccumulator

        specs = {"aupimo": AccumulatorSpec(AupimoAccumulator, {
            "fpr_bounds": self.fpr_bounds, "expected_num_normal": num_normal,
        })}
        if self.set_metrics:
            specs["set_metrics"] = AccumulatorSpec(SetMetricsAccumulator, SET_METRICS_SETTINGS)
        return specs


@dataclass
class _Plan:
    """What the plan task learnt: the images to evaluate, in score order."""

    layout: DatasetLayout
    category: str
    maps_location: Path
    maps_kind: str
    jobs: list[_Job]
    skipped: list[Problem]
    ignore_masks: IgnoreMasks | None = None


def _plan_task(dataset: str | DatasetLayout, request: _Request, options: _Options) -> _Plan:
    layout, scan, category = _open_category(dataset, request.category)
    ignore = (None if options.ignore_masks is None
              else open_ignore_masks(options.ignore_masks, category))
    source = open_maps(request.maps, category)
    try:
        jobs, skipped = _plan_jobs(
            layout, scan, category, source, mask_threshold=options.mask_threshold,
            skip_missing=options.skip_missing, verify_images=options.verify_images,
            workers=options.workers, progress=ProgressHook(), ignore_masks=ignore,
        )
        return _Plan(layout, category, source.location, source.kind, jobs, skipped, ignore)
    finally:
        source.close()


def _summarise_task(plan: _Plan, jobs: list[_Job], options: _Options,
                    specs: Mapping[str, AccumulatorSpec]) -> _Partial:
    """Read a chunk of images and return the accumulators' states (or the files' problems)."""
    accumulators = {name: spec.new() for name, spec in specs.items()}
    problems: list[Problem] = []
    image_scores = np.zeros(len(jobs), dtype=np.float64)  # each map's maximum
    source = open_maps(plan.maps_location)
    try:
        def load(job: _Job) -> _Loaded | Problem:
            return _load_job(source, job, target_size=options.target_size,
                             mask_threshold=options.mask_threshold,
                             label_masks=plan.layout.label_masks,
                             ignore_masks=plan.ignore_masks)

        for position, (job, loaded) in enumerate(
            zip(jobs, ordered_map(load, jobs, options.workers), strict=True)
        ):
            if isinstance(loaded, Problem):
                problems.append(loaded)
                continue
            if problems:
                continue
            for accumulator in accumulators.values():
                loaded.add_to(accumulator, job.sample.relative_path)
            image_scores[position] = loaded.image_score  # (checked by the accumulators)
    finally:
        source.close()
    if problems:
        return _Partial({}, problems)
    return _Partial({name: acc.state_dict() for name, acc in accumulators.items()}, [],
                    image_scores)


@dataclass
class _Computed:
    aupimo: Any
    set_metrics: dict[str, float] | None
    problems: list[Problem]
    image_scores: np.ndarray


def _compute_task(partial: _Partial, specs: Mapping[str, AccumulatorSpec]) -> _Computed:
    if partial.problems:
        return _Computed(None, None, partial.problems, partial.image_scores)
    aupimo = specs["aupimo"].restore(partial.states["aupimo"]).compute()
    metrics = None
    if "set_metrics" in specs:
        metrics = _set_metric_values(
            specs["set_metrics"].restore(partial.states["set_metrics"]).compute()
        )
    return _Computed(aupimo, metrics, [], partial.image_scores)


# --------------------------------------------------------------------------------------
# the public functions
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def open_client(scheduler: Any = "local") -> Iterator[Client]:
    """A Dask client for ``scheduler``, closed on exit when it was opened here.

    Parameters
    ----------
    scheduler : distributed.Client, str
        A client (used as is), ``"local"`` (a :class:`distributed.LocalCluster` of one
        single-threaded worker process per CPU core, shut down on exit) or a scheduler's
        address such as ``"tcp://10.0.0.1:8786"``.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:  # pragma: no cover - the dask extra is missing
        raise ImportError(
            "pimo's Dask backend needs the dask extra: pip install 'pimo[dask]'."
        ) from error
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if not isinstance(scheduler, str) or not scheduler:
        raise PimoValueError(
            f"scheduler must be a distributed.Client, 'local' or a scheduler address such as "
            f"'tcp://10.0.0.1:8786', got {scheduler!r}."
        )
    if scheduler == "local":
        cluster = LocalCluster(threads_per_worker=1, processes=True, dashboard_address=None)
        with cluster, Client(cluster) as client:
            yield client
        return
    with Client(scheduler) as client:
        yield client


def _run(
    client: Client,
    dataset: str | DatasetLayout,
    requests: Sequence[_Request],
    options: _Options,
    *,
    images_per_task: int,
    merge_fan_in: int,
    progress: ProgressHook,
) -> list[EvaluationResult]:
    from distributed import as_completed

    if images_per_task < 1:
        raise PimoValueError(f"images_per_task must be at least 1, got {images_per_task}.")
    options.specs()  # fails here, not on the workers, when the settings are bad
    plans_by_future = {
        client.submit(_plan_task, dataset, request, options, pure=False): position
        for position, request in enumerate(requests)
    }
    plans: list[_Plan | None] = [None] * len(requests)
    computed: list[Future | None] = [None] * len(requests)
    chunk_futures: dict[Future, int] = {}
    for future in as_completed(plans_by_future):
        position = plans_by_future[future]
        plan = future.result()
        plans[position] = plan
        specs = options.specs(sum(not job.anomalous for job in plan.jobs))
        chunks = [
            client.submit(_summarise_task, plan, plan.jobs[start:start + images_per_task],
                          options, specs, pure=False)
            for start in range(0, len(plan.jobs), images_per_task)
        ]
        for start, chunk in zip(range(0, len(plan.jobs), images_per_task), chunks, strict=True):
            chunk_futures[chunk] = len(plan.jobs[start:start + images_per_task])
        root = reduce_states(client, chunks, functools.partial(_merge_partials, specs),
                             fan_in=merge_fan_in)
        computed[position] = client.submit(_compute_task, root, specs, pure=False)
    progress.start("images", sum(chunk_futures.values()))
    for future in as_completed(list(chunk_futures)):
        progress.advance(chunk_futures[future])
    results = []
    for plan, future in zip(plans, computed, strict=True):
        assert plan is not None and future is not None
        outcome: _Computed = future.result()
        what = _describe_category(plan.layout, plan.category)
        _raise_problems(outcome.problems, what=what, skip_missing=options.skip_missing)
        paths = [job.sample.relative_path for job in plan.jobs]
        aupimo, image_level = _with_image_level(
            dataclasses.replace(outcome.aupimo, paths=paths), plan.jobs, outcome.image_scores
        )
        results.append(EvaluationResult(
            aupimo=aupimo,
            set_metrics=outcome.set_metrics,
            set_metrics_note=None if options.set_metrics else "not computed: disabled",
            layout=plan.layout.name,
            dataset_root=plan.layout.root,
            category=plan.category,
            maps_location=plan.maps_location,
            maps_kind=plan.maps_kind,
            images=[_evaluated_image(job, plan.layout) for job in plan.jobs],
            skipped=plan.skipped,
            resolution=options.target_size,
            mask_threshold=options.mask_threshold,
            image_metrics=image_level,
            ignore_masks=None if plan.ignore_masks is None else plan.ignore_masks.location,
        ))
    return results


def _options(
    fpr_bounds: tuple[float, float], resolution: int | Sequence[int] | None,
    mask_threshold: float | None, skip_missing: bool, verify_images: bool, set_metrics: bool,
    workers: int | None, ignore_masks: str | os.PathLike[str] | None,
) -> _Options:
    if ignore_masks is not None:
        open_ignore_masks(ignore_masks)  # fails here, not on the workers, when it is missing
    return _Options(
        fpr_bounds=validate_fpr_bounds(fpr_bounds), target_size=_parse_resolution(resolution),
        mask_threshold=mask_threshold, skip_missing=skip_missing, verify_images=verify_images,
        set_metrics=set_metrics, workers=1 if workers is None else max(1, int(workers)),
        ignore_masks=None if ignore_masks is None else os.fspath(ignore_masks),
    )


def _maps_location(maps: str | os.PathLike[str] | MapSource) -> str:
    if isinstance(maps, MapSource):  # workers open the maps themselves, from their location
        return str(maps.location)
    return os.fspath(maps)


def evaluate(
    dataset: str | os.PathLike[str] | DatasetLayout,
    maps: str | os.PathLike[str] | MapSource,
    *,
    category: str | None = None,
    fpr_bounds: tuple[float, float] = (1e-5, 1e-4),
    resolution: int | Sequence[int] | None = None,
    mask_threshold: float | None = None,
    skip_missing: bool = False,
    verify_images: bool = True,
    set_metrics: bool = True,
    workers: int | None = None,
    progress: ProgressHook | None = None,
    ignore_masks: str | os.PathLike[str] | None = None,
    scheduler: Any = "local",
    images_per_task: int = DEFAULT_IMAGES_PER_TASK,
    merge_fan_in: int = DEFAULT_MERGE_FAN_IN,
) -> EvaluationResult:
    """:func:`pimo.evaluate_dataset` on a Dask cluster: the same result, the same files.

    Parameters
    ----------
    dataset, maps, category, fpr_bounds, resolution, mask_threshold, skip_missing, \
verify_images, set_metrics, progress, ignore_masks
        As in :func:`pimo.evaluate_dataset` (a :class:`~pimo.data.maps.MapSource` is reopened
        by each worker from its location).
    workers : int, optional
        Decoding threads inside each task (default 1: the cluster's workers are the
        parallelism).
    scheduler : distributed.Client or str
        A client, ``"local"`` (start a :class:`distributed.LocalCluster` for this call) or a
        scheduler address; see :func:`open_client`.
    images_per_task : int
        Images read and summarised per task.
    merge_fan_in : int
        States merged per reduction task.

    Returns
    -------
    EvaluationResult
        Equal to :func:`pimo.evaluate_dataset`'s (images in the same order).
    """
    options = _options(fpr_bounds, resolution, mask_threshold, skip_missing, verify_images,
                       set_metrics, workers, ignore_masks)
    request = _Request(None, _maps_location(maps), category)
    dataset = dataset if isinstance(dataset, DatasetLayout) else os.fspath(dataset)
    with open_client(scheduler) as client:
        (result,) = _run(client, dataset, [request], options, images_per_task=images_per_task,
                         merge_fan_in=merge_fan_in, progress=progress or ProgressHook())
    return result


def sweep(
    dataset: str | os.PathLike[str] | DatasetLayout,
    maps: Mapping[str, str | os.PathLike[str]],
    *,
    categories: Sequence[str | None] | None = None,
    fpr_bounds: tuple[float, float] = (1e-5, 1e-4),
    resolution: int | Sequence[int] | None = None,
    mask_threshold: float | None = None,
    skip_missing: bool = False,
    verify_images: bool = True,
    set_metrics: bool = True,
    workers: int | None = None,
    progress: ProgressHook | None = None,
    ignore_masks: str | os.PathLike[str] | None = None,
    scheduler: Any = "local",
    images_per_task: int = DEFAULT_IMAGES_PER_TASK,
    merge_fan_in: int = DEFAULT_MERGE_FAN_IN,
) -> dict[str, dict[str, EvaluationResult]]:
    """Evaluate several models on several categories in one call (every task at once).

    Parameters
    ----------
    dataset : str, path or DatasetLayout
        As in :func:`pimo.evaluate_dataset`.
    maps : mapping of str to path
        ``{model name: maps folder or stacked file}``; each holds that model's maps (a
        sub-folder per category is used when present, as :func:`pimo.evaluate_dataset` does).
    categories : sequence of str, optional
        The categories (default: every category of the dataset).
    scheduler, images_per_task, merge_fan_in, ...
        As in :func:`evaluate`.

    Returns
    -------
    dict of str to dict of str to EvaluationResult
        ``results[model][category]``, in the order given; each result records its model's
        name (:attr:`pimo.EvaluationResult.model`).
    """
    if not maps:
        raise PimoValueError("maps is empty: give {model name: maps folder or stacked file}.")
    options = _options(fpr_bounds, resolution, mask_threshold, skip_missing, verify_images,
                       set_metrics, workers, ignore_masks)
    dataset = dataset if isinstance(dataset, DatasetLayout) else os.fspath(dataset)
    if categories is None:
        from pimo.data.layouts import open_dataset

        layout = dataset if isinstance(dataset, DatasetLayout) else open_dataset(dataset)
        categories = layout.categories()
    requests = [
        _Request(str(model), _maps_location(location), category)
        for model, location in maps.items()
        for category in categories
    ]
    with open_client(scheduler) as client:
        results = _run(client, dataset, requests, options, images_per_task=images_per_task,
                       merge_fan_in=merge_fan_in, progress=progress or ProgressHook())
    swept: dict[str, dict[str, EvaluationResult]] = {}
    for request, result in zip(requests, results, strict=True):  # each records its model
        named = dataclasses.replace(result, model=str(request.model))
        swept.setdefault(str(request.model), {})[result.category] = named
    return swept
