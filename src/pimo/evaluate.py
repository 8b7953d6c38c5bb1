"""Evaluate anomaly maps stored as files against a dataset on disk, streaming.

:func:`evaluate_dataset` is what ``pimo evaluate`` runs. It follows the paper's guidelines:
every map is resized to its mask's full resolution with bilinear interpolation (as torch's
``interpolate(mode="bilinear", align_corners=False)``), nothing is cropped, and the per-image
AUPIMO scores are kept with the images' paths.

How it reads the data
---------------------
1. *List*: the layout lists the test images and masks; the maps are matched to the images
   (:func:`pimo.data.match_maps`). Missing or extra files are problems.
2. *Check*: every image is decoded (truncated files are found here, and the image size is the
   size a normal image's map is resized to) and every mask is read, binarised and compared
   with its image's size. An all-zero mask makes its image normal.
3. *Normal images*: each map is read, checked for NaN/inf, resized and added to the streaming
   AUPIMO (and set-metric) accumulators. A float64 map whose values are all float32 numbers
   is read as float32. The set metrics order the scores in one dtype: when a genuinely
   float64 map follows float32 ones, their accumulated state is re-keyed in float64
   (float32 scores widen exactly, so nothing is rounded).
4. *Anomalous images*: each map and mask is read again, resized and added.

One image is in memory at a time (plus a few being decoded by a small thread pool), so peak
memory does not grow with the number of images. Nothing is skipped silently: problems are
collected over the whole set and reported together (:class:`~pimo.data.DatasetError`);
with ``skip_missing=True`` images whose map, mask or image file is missing (and maps or masks
without image) are left out and listed in :attr:`EvaluationResult.skipped`.

Output (:meth:`EvaluationResult.save`)
--------------------------------------
``aupimo/aupimos.json``
    Per-image AUPIMO in the paper's format, with ``paths`` and each image's defect type
    (``defect_types``, from the layout's folders; readers ignore unknown fields).
``auroc.json``, ``aupro.json``, ``aupro_05.json``, ``aupr.json``, ``f1max.json``
    ``{"value": x}``: pixel AUROC, AUPRO up to FPR 0.3 and up to FPR 0.05, pixel average
    precision and pixel F1-max (``f1max.json`` also holds its ``"threshold"``), as
    :func:`pimo.set_metrics`.
``image_auroc.json``, ``image_ap.json``, ``image_f1max.json``
    ``{"value": x}``: image AUROC, AP and F1-max (with its ``"threshold"``) of the maps'
    maxima (:func:`pimo.image_metrics`).
``evaluation.json``
    What is needed to find the data again and redraw curves (see :meth:`EvaluationResult.to_dict`).
    It is written last, and records the run (:class:`~pimo._outputs.EvaluationRun`).

A run owns its folder: pimo's own files there (:data:`pimo._outputs.OWN_FILE_PATTERNS`) that
it does not rewrite, e.g. ``auroc.json`` of an earlier run when the set metrics are off, are
removed, and :attr:`SavedFiles.removed` lists them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pimo._io import dump_json
from pimo._outputs import AUPIMO_FILE, EVALUATION_FILE, EvaluationRun, remove_stale_files
from pimo._progress import ProgressHook
from pimo._validate import (
    NoAnomalousImageError,
    NoNormalImageError,
    UnreachableFprError,
    validate_fpr_bounds,
)
from pimo.data._pool import default_workers, ordered_map
from pimo.data.ignore import IgnoreMasks, open_ignore_masks
from pimo.data.images import FileProblemError, read_image_size, read_mask
from pimo.data.layouts import DatasetLayout, Sample, Scan, open_dataset
from pimo.data.maps import (
    MAP_EXTENSIONS,
    MapEntry,
    MapSource,
    entries_of_category,
    match_maps,
    open_maps,
)
from pimo.data.problems import DatasetError, Problem
from pimo.data.resize import resize_bilinear, resize_nearest
from pimo.imagemetrics import ImageMetricsResult, image_metrics
from pimo.results import AupimoResult, save_value
from pimo.setmetrics import (
    AP_FILE,
    AUROC_FILE,
    F1_MAX_FILE,
    SetMetricsAccumulator,
    SetMetricsResult,
    aupro_filename,
)

__all__ = [
    "EVALUATION_FILE",
    "F1_MAX_THRESHOLD",
    "SET_METRIC_FILES",
    "EvaluatedImage",
    "EvaluationResult",
    "ProgressHook",
    "SavedFiles",
    "default_model_name",
    "evaluate_dataset",
]

#: The set metrics of an evaluation (keys of :attr:`EvaluationResult.set_metrics`) and their
#: ``{"value": x}`` files: the names are the files' stems.
SET_METRIC_FILES = {
    Path(filename).stem: filename
    for filename in (AUROC_FILE, aupro_filename(0.3), aupro_filename(0.05), AP_FILE, F1_MAX_FILE)
}
#: The key of :attr:`EvaluationResult.set_metrics` holding the threshold reaching F1-max (kept
#: in ``f1max.json`` as ``"threshold"``).
F1_MAX_THRESHOLD = "f1max_threshold"
SET_METRIC_LIMITS = (0.3, 0.05)
# The set-metric accumulator's settings (the figures of SET_METRIC_FILES).
SET_METRICS_SETTINGS: dict[str, Any] = {"fpr_limits": SET_METRIC_LIMITS, "ap": True,
                                        "f1_max": True}
_FORMAT = "pimo-evaluation"
_FORMAT_VERSION = 1


_STACKED_SUFFIXES = (".npz", ".pt", ".pth", ".npy")


def default_model_name(maps_location: str | os.PathLike[str], category: str = "") -> str:
    """The model name recorded when none is given: the maps folder's name.

    A stacked file gives its name without suffix. A folder or file named like the category
    (``maps/patchcore/bottle``) gives its parent's name (``patchcore``).
    """
    location = Path(maps_location)
    name = location.stem if location.suffix.lower() in _STACKED_SUFFIXES else location.name
    if name == category and location.parent.name:
        name = location.parent.name
    return name or "model"


class SavedFiles(dict[str, Path]):
    """The files :meth:`EvaluationResult.save` wrote, by name; ``removed``: stale files removed."""

    def __init__(self, written: dict[str, Path], removed: list[Path]) -> None:
        super().__init__(written)
        self.removed = removed


@dataclass(frozen=True)
class EvaluatedImage:
    """Where one evaluated image's files are.

    Attributes
    ----------
    path : str
        The image's path relative to the dataset root (the ``paths`` entry of the scores).
    mask : str or None
        The mask's path relative to the dataset root (None for images without a mask file).
    map : str
        The map: its path relative to the maps folder, or the path stored in a stacked file.
    map_row : int or None
        The row in a stacked file.
    anomalous : bool
        Whether the mask has anomalous pixels.
    size : tuple of int
        ``(height, width)`` of the image.
    defect_type : str or None
        The image's defect type from the layout (see :class:`pimo.data.layouts.Sample`).
    ignore_mask : str or None
        Its ignore mask, relative to the ignore masks' folder (or the one file's name); None
        when no ignore masks were given.
    """

    path: str
    mask: str | None
    map: str
    map_row: int | None
    anomalous: bool
    size: tuple[int, int]
    defect_type: str | None = None
    ignore_mask: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record."""
        record: dict[str, Any] = {"path": self.path, "mask": self.mask, "map": self.map}
        if self.map_row is not None:
            record["map_row"] = self.map_row
        record["anomalous"] = self.anomalous
        record["size"] = list(self.size)
        record["defect_type"] = self.defect_type
        if self.ignore_mask is not None:
            record["ignore_mask"] = self.ignore_mask
        return record


@dataclass(frozen=True)
class EvaluationResult:
    """The scores of one category, and where the data they come from is.

    Attributes
    ----------
    aupimo : AupimoResult
        Per-image AUPIMO, in the order of :attr:`images` (sorted relative paths).
    set_metrics : dict of str to float, or None
        ``auroc``, ``aupro`` (FPR up to 0.3), ``aupro_05`` (up to 0.05), ``aupr`` (pixel
        average precision), ``f1max`` (pixel F1-max) and ``f1max_threshold`` (the highest
        threshold reaching it), as :func:`pimo.set_metrics`; None when they were not computed
        (see :attr:`set_metrics_note`).
    set_metrics_note : str or None
        Why the set metrics were not computed.
    layout, dataset_root, category : str, Path, str
        The dataset.
    maps_location : Path
        The maps folder or stacked file; ``maps_kind`` is ``"files"`` or ``"stacked"``.
    images : list of EvaluatedImage
        The evaluated images, in score order.
    skipped : list of Problem
        What ``skip_missing`` left out.
    resolution : tuple of int or None
        None: full resolution (each mask's own size). ``(H, W)``: every map and mask was
        resized to that size, and the numbers are not comparable with full-resolution ones.
    mask_threshold : float or None
        The binarisation threshold of the masks (None: ``> 0`` on clean masks).
    model : str or None
        The model's name (``pimo evaluate --model-name``); None: :attr:`model_name` falls
        back to :func:`default_model_name` of the maps' location.
    image_metrics : ImageMetricsResult or None
        Image-level metrics of the maps' maxima (:func:`pimo.image_metrics`).
    ignore_masks : Path or None
        The ignore masks' folder or file: their pixels were left out of every metric.
    """

    aupimo: AupimoResult
    set_metrics: dict[str, float] | None
    set_metrics_note: str | None
    layout: str
    dataset_root: Path
    category: str
    maps_location: Path
    maps_kind: str
    images: list[EvaluatedImage]
    skipped: list[Problem] = field(default_factory=list)
    resolution: tuple[int, int] | None = None
    mask_threshold: float | None = None
    model: str | None = None

    @property
    def model_name(self) -> str:
        """:attr:`model`, or the maps folder's name when none was given."""
        return self.model or default_model_name(self.maps_location, self.category)
    image_metrics: ImageMetricsResult | None = None
    ignore_masks: Path | None = None

    @property
    def paths(self) -> list[str]:
        """The evaluated images' relative paths (score order)."""
        return [image.path for image in self.images]

    def summary(self) -> dict[str, Any]:
        """AUPIMO statistics over anomalous images, and the set metrics when computed."""
        summary: dict[str, Any] = {"category": self.category, **self.aupimo.summary()}
        for name in SET_METRIC_FILES:
            summary[name] = None if self.set_metrics is None else self.set_metrics.get(name)
        if self.image_metrics is not None:
            summary.update(self.image_metrics.values())
        return summary

    def to_dict(self, run: EvaluationRun | None = None) -> dict[str, Any]:
        """The ``evaluation.json`` payload.

        Fields: ``format``/``version``; ``model`` (:attr:`model_name`); ``dataset``
        (``layout``, absolute ``root``, ``category``); ``maps`` (absolute ``location``,
        ``kind``); ``resolution`` (``"full"`` or ``[H, W]``); ``mask_threshold``;
        ``ignore_masks`` (absolute path, or null); ``fpr_bounds``; ``thresh_bounds``
        (thresholds at shared FPR = U and = L); ``files``
        (the score files, relative to the folder);
        ``set_metrics``; ``images`` (per image, in score order: ``path`` and ``mask``
        relative to the dataset root, ``map`` relative to the maps folder or as stored in the
        stacked file with ``map_row``, ``anomalous``, ``size``, ``defect_type``); ``skipped``;
        ``run`` (``id`` and ``categories`` of the run, see
        :class:`~pimo._outputs.EvaluationRun`; a run of this category alone when ``run`` is
        None).
        """
        run = run or EvaluationRun.new([self.category])
        files = {"aupimo": AUPIMO_FILE}
        if self.set_metrics is not None:
            files.update({name: filename for name, filename in SET_METRIC_FILES.items()
                          if name in self.set_metrics})
        image_level = None if self.image_metrics is None else self.image_metrics.values()
        files.update({name: f"{name}.json" for name in image_level or {}})
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "model": self.model_name,
            "dataset": {
                "layout": self.layout,
                "root": str(self.dataset_root.resolve()),
                "category": self.category,
            },
            "maps": {"location": str(self.maps_location.resolve()), "kind": self.maps_kind},
            "resolution": "full" if self.resolution is None else list(self.resolution),
            "mask_threshold": self.mask_threshold,
            "ignore_masks": None if self.ignore_masks is None else str(
                self.ignore_masks.resolve()),
            "fpr_bounds": [float(b) for b in self.aupimo.fpr_bounds],
            "thresh_bounds": [float(b) for b in self.aupimo.thresh_bounds],
            "files": files,
            "set_metrics": self.set_metrics,
            "set_metrics_note": self.set_metrics_note,
            "image_metrics": image_level,
            "images": [image.to_dict() for image in self.images],
            "skipped": [problem.to_dict() for problem in self.skipped],
            "run": run.to_dict(),
        }

    def save(
        self, directory: str | os.PathLike[str], *, run: EvaluationRun | None = None
    ) -> SavedFiles:
        """Write the score files, then ``evaluation.json``, into ``directory`` (atomically).

        The folder belongs to this result afterwards: pimo's own files in it that were not
        rewritten (those of an earlier run) are removed, any other file is left alone.
        ``evaluation.json`` comes last, so a folder with the new scores but the old record (or
        none) shows an interrupted save.

        Parameters
        ----------
        directory : path
            The output folder (created when missing).
        run : EvaluationRun, optional
            The run this category belongs to (its id is shared by the categories evaluated
            together); default: a run of this category alone.

        Returns
        -------
        SavedFiles
            ``aupimo``; ``auroc``, ``aupro``, ``aupro_05``, ``aupr``, ``f1max`` (when
            computed); ``image_auroc``, ``image_ap``, ``image_f1max``; ``evaluation``;
            ``removed`` lists the stale files removed.
        """
        directory = Path(directory)
        # the old record goes first: an interrupted save leaves a folder without one
        (directory / EVALUATION_FILE).unlink(missing_ok=True)
        written = {"aupimo": self.aupimo.save(directory / AUPIMO_FILE)}
        if self.set_metrics is not None:
            for name, filename in SET_METRIC_FILES.items():
                if name not in self.set_metrics:
                    continue
                extra = ({"threshold": self.set_metrics.get(F1_MAX_THRESHOLD)}
                         if filename == F1_MAX_FILE else {})
                written[name] = save_value(directory / filename, self.set_metrics[name], **extra)
        if self.image_metrics is not None:
            written.update(self.image_metrics.save(directory))
        removed = remove_stale_files(directory, [*written.values(), directory / EVALUATION_FILE])
        written["evaluation"] = dump_json(directory / EVALUATION_FILE, self.to_dict(run))
        return SavedFiles(written, removed)


# --------------------------------------------------------------------------------------
# the passes
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Checked:
    """What the check pass learnt about one image."""

    size: tuple[int, int] | None
    anomalous: bool
    problems: tuple[Problem, ...]


@dataclass
class _Job:
    """One image to evaluate."""

    index: int
    sample: Sample
    entry: MapEntry
    size: tuple[int, int] = (0, 0)
    anomalous: bool = False
    ignore: str | None = None  # its ignore mask, as IgnoreMasks.match names it


def _check_sample(
    sample: Sample, *, mask_threshold: float | None, label_masks: bool, verify_images: bool
) -> _Checked:
    problems: list[Problem] = []
    size: tuple[int, int] | None = None
    try:
        size = read_image_size(sample.image_path, name=sample.relative_path, verify=verify_images)
    except FileProblemError as error:
        problems.append(error.problem)
    anomalous = False
    if sample.mask_path is not None:
        try:
            mask = read_mask(
                sample.mask_path,
                name=sample.relative_path,
                threshold=mask_threshold,
                label_masks=label_masks,
            )
        except FileProblemError as error:
            problems.append(error.problem)
        else:
            anomalous = bool(mask.any())
            if size is not None and mask.shape != size:
                problems.append(
                    Problem(
                        "mask-size",
                        sample.relative_path,
                        f"the mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} pixels "
                        f"but its image {sample.image_path} is {size[1]}x{size[0]}; masks must "
                        "have their image's size.",
                    )
                )
    return _Checked(size, anomalous, tuple(problems))


def _looks_transposed(map_shape: tuple[int, ...], image_size: tuple[int, int]) -> bool:
    """A map whose height/width is the image's width/height (within 2 %, rounding), for a
    non-square image: a (W, H) array. A square map of a non-square image (the usual model
    input) is not."""
    height, width = image_size
    map_height, map_width = map_shape
    if min(height, width, map_height, map_width) <= 0:
        return False
    map_ratio, image_ratio = map_height / map_width, height / width
    return (abs(map_ratio * image_ratio - 1.0) <= 0.02
            and abs(map_ratio / image_ratio - 1.0) > 0.02)


def _load_map(source: MapSource, job: _Job, target: tuple[int, int]) -> np.ndarray:
    anomaly_map = source.load(job.entry)
    finite = np.isfinite(anomaly_map)
    if not finite.all():
        bad = int(anomaly_map.size - np.count_nonzero(finite))
        kinds = "NaN" if np.isnan(anomaly_map).any() else "infinite"
        raise FileProblemError(
            Problem(
                "non-finite-map",
                job.sample.relative_path,
                f"the map {job.entry.name} in {source.location} (image "
                f"{job.sample.relative_path}) has {bad} {kinds} value(s); anomaly maps must be "
                "finite.",
            )
        )
    if anomaly_map.ndim == 2 and _looks_transposed(anomaly_map.shape, job.size):
        map_height, map_width = anomaly_map.shape
        raise FileProblemError(
            Problem(
                "map-shape",
                job.sample.relative_path,
                f"the map {job.entry.name} in {source.location} is {map_width}x{map_height} "
                f"(width x height) but its image {job.sample.relative_path} is "
                f"{job.size[1]}x{job.size[0]}: the map's aspect ratio is the image's turned "
                "by 90 degrees, so it was saved as (W, H) instead of (H, W), and resizing "
                "would stretch it onto the wrong pixels. Save the maps as (H, W) arrays "
                "(anomaly_map.T for these).",
            )
        )
    if anomaly_map.dtype == np.float64:  # float32 scores stored as float64: read as float32
        narrowed = anomaly_map.astype(np.float32)
        if np.array_equal(narrowed, anomaly_map):
            anomaly_map = narrowed
    return resize_bilinear(anomaly_map, target)


def _raise_problems(problems: Sequence[Problem], *, what: str, skip_missing: bool) -> None:
    if not problems:
        return
    skippable = [p for p in problems if p.skippable]
    hint = None
    if skippable and not skip_missing:
        hint = (
            "Fix the files, or pass --skip-missing (skip_missing=True) to leave out the "
            f"{len(skippable)} image(s) with a missing file; they are then listed in the "
            "output."
        )
    raise DatasetError(f"Cannot evaluate {what}.", problems, hint=hint)


def _with_normal_maps(
    error: UnreachableFprError, what: str, normal: Sequence[_Job], source: MapSource
) -> UnreachableFprError:
    """The same error, saying which category and which normal images' map files."""
    shown = ", ".join(job.entry.name for job in normal[:5])
    more = f" and {len(normal) - 5} more" if len(normal) > 5 else ""
    return type(error)(
        f"{what}: {error} The normal images' maps are {shown}{more} in {source.location}."
    )


def _closest_folder(path: Path) -> Path:
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def _nothing_matched(
    samples: Sequence[Sample], entries: Sequence[MapEntry], source: MapSource
) -> DatasetError:
    """No map matches any image: say what was looked for and what is there instead.

    ``--skip-missing`` is not suggested: it would leave nothing to evaluate.
    """
    example = samples[len(samples) // 2].relative_path
    stem = Path(example).with_suffix("")
    expected = Path(source.location) / stem.with_suffix(".npy")
    found = (
        f"The maps found there are named like {', '.join(e.name for e in entries[:3])}."
        if entries else "No map file is there (none of these extensions)."
    )
    closest = ""
    if source.kind == "files":
        folders = [Path(source.location, *stem.parent.parts[i:])
                   for i in range(len(stem.parent.parts))]
        best = max((_closest_folder(f) for f in folders), key=lambda f: len(f.parts))
        closest = f" The closest existing folder to {expected.parent} is {best}."
    return DatasetError(
        f"No anomaly map in {source.location} matches any of the {len(samples)} test images. "
        "A map matches an image when the end of its path, without extension, is the image's: "
        f"for the image {example}, e.g. {expected}, or any path ending in "
        f"{'/'.join([*stem.parent.parts[-2:], stem.name])}.<ext>, with <ext> one of "
        f"{', '.join(MAP_EXTENSIONS)}. {found}{closest} Point the maps location "
        "(--maps) to the folder that mirrors the images' paths.",
        path=str(source.location),
    )


def _parse_resolution(resolution: int | Sequence[int] | None) -> tuple[int, int] | None:
    if resolution is None:
        return None
    sides = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if len(sides) != 2 or any(int(s) != s or s < 1 for s in sides):
        raise DatasetError(
            f"resolution must be a positive int or (height, width), got {resolution!r}."
        )
    return int(sides[0]), int(sides[1])


def _open_category(
    dataset: str | os.PathLike[str] | DatasetLayout, category: str | None
) -> tuple[DatasetLayout, Scan, str]:
    """The dataset's layout, the scan of ``category`` and the category's name."""
    layout = dataset if isinstance(dataset, DatasetLayout) else open_dataset(dataset)
    scan = layout.scan(category)
    return layout, scan, category or layout.categories()[0]


def _describe_category(layout: DatasetLayout, category: str) -> str:
    return f"category {category!r} of {layout.describe()}"


def _plan_jobs(
    layout: DatasetLayout,
    scan: Scan,
    category: str,
    source: MapSource,
    *,
    mask_threshold: float | None,
    skip_missing: bool,
    verify_images: bool,
    workers: int,
    progress: ProgressHook,
    ignore_masks: IgnoreMasks | None = None,
) -> tuple[list[_Job], list[Problem]]:
    """Steps 1-2: match maps to images, check images and masks; the images to evaluate.

    Returns the kept jobs (numbered in score order, ``size`` and ``anomalous`` filled in) and
    what ``skip_missing`` left out. Raises :class:`DatasetError` listing every problem, or
    when the kept images lack normal or anomalous ones.
    """
    what = _describe_category(layout, category)
    # 1. list
    entries = entries_of_category(source.entries(), category, layout.categories())
    matches, map_problems = match_maps(
        [s.relative_path for s in scan.samples], entries, where=str(source.location)
    )
    ignores: list[str | None] = [None] * len(scan.samples)
    if ignore_masks is not None:
        ignores, ignore_problems = ignore_masks.match(
            [s.relative_path for s in scan.samples], category, layout.categories())
        map_problems = [*map_problems, *ignore_problems]
    problems = [*scan.problems, *map_problems]
    skipped = [p for p in problems if p.skippable] if skip_missing else []
    fatal = [p for p in problems if not (skip_missing and p.skippable)]
    if scan.samples and not any(matches):
        raise _nothing_matched(scan.samples, entries, source)
    _raise_problems(fatal, what=what, skip_missing=skip_missing)
    jobs = [
        _Job(-1, sample, entry, ignore=ignore)
        for sample, entry, ignore in zip(scan.samples, matches, ignores, strict=True)
        if entry is not None and (ignore_masks is None or ignore is not None)
    ]
    if not jobs:
        raise DatasetError(f"Nothing to evaluate in {what}: no image has a map.", skipped)

    # 2. check images and masks
    progress.start("checking images and masks", len(jobs))
    check_problems: list[Problem] = []
    kept: list[_Job] = []

    def check(job: _Job) -> _Checked:
        return _check_sample(
            job.sample,
            mask_threshold=mask_threshold,
            label_masks=layout.label_masks,
            verify_images=verify_images,
        )

    for job, checked in zip(jobs, ordered_map(check, jobs, workers), strict=True):
        progress.advance()
        usable = True
        for problem in checked.problems:
            if skip_missing and problem.skippable:
                skipped.append(problem)
            else:
                check_problems.append(problem)
            usable = False
        if usable and checked.size is not None:
            job.size, job.anomalous = checked.size, checked.anomalous
            kept.append(job)
    _raise_problems(check_problems, what=what, skip_missing=skip_missing)
    for index, job in enumerate(kept):
        job.index = index
    if not any(not job.anomalous for job in kept):
        raise NoNormalImageError(
            f"{what} has no normal image among the {len(kept)} evaluated: AUPIMO's shared "
            "FPR is measured on normal images (e.g. MVTec AD's test/good/)."
        )
    if not any(job.anomalous for job in kept):
        raise NoAnomalousImageError(
            f"{what} has no anomalous image among the {len(kept)} evaluated (every mask is "
            "empty or missing), so there is nothing to score."
        )
    return kept, skipped


@dataclass(frozen=True)
class _Loaded:
    """One image read for the metrics."""

    anomaly_map: np.ndarray
    mask: np.ndarray | None  # None for a normal image
    ignore: np.ndarray | None  # its ignore mask (True = left out), None without

    @property
    def image_score(self) -> float:
        """The map's maximum over its kept pixels (the image-level score)."""
        if self.ignore is None:
            return float(self.anomaly_map.max())
        return float(self.anomaly_map[~self.ignore].max())

    def add_to(self, accumulator: Any, path: str) -> None:
        """``accumulator.update`` with this image (an all-zero mask for a normal image)."""
        mask = np.zeros(self.anomaly_map.shape, dtype=bool) if self.mask is None else self.mask
        if self.ignore is None:
            accumulator.update([self.anomaly_map], [mask], paths=[path])
        else:
            accumulator.update([self.anomaly_map], [mask], paths=[path],
                               ignore_masks=[self.ignore])


def _load_ignore_mask(ignore_masks: IgnoreMasks, job: _Job,
                      target_size: tuple[int, int] | None) -> np.ndarray:
    assert job.ignore is not None
    ignore = ignore_masks.load(job.ignore, image=job.sample.relative_path)
    if ignore.shape != job.size:
        raise FileProblemError(Problem(
            "ignore-mask-size", job.sample.relative_path,
            f"the ignore mask {job.ignore} in {ignore_masks.location} is "
            f"{ignore.shape[1]}x{ignore.shape[0]} pixels but the image "
            f"{job.sample.relative_path} is {job.size[1]}x{job.size[0]}; ignore masks must "
            "have their image's size.",
        ))
    return ignore if target_size is None else resize_nearest(ignore, target_size)


def _load_job(
    source: MapSource,
    job: _Job,
    *,
    target_size: tuple[int, int] | None,
    mask_threshold: float | None,
    label_masks: bool,
    ignore_masks: IgnoreMasks | None = None,
) -> _Loaded | Problem:
    """Steps 3-4 for one image: its resized map, (anomalous images) mask and ignore mask, or
    its problem."""
    try:
        anomaly_map = _load_map(source, job, target_size or job.size)
        ignore = (None if ignore_masks is None
                  else _load_ignore_mask(ignore_masks, job, target_size))
        if not job.anomalous:
            return _Loaded(anomaly_map, None, ignore)
        assert job.sample.mask_path is not None
        mask = read_mask(
            job.sample.mask_path,
            name=job.sample.relative_path,
            threshold=mask_threshold,
            label_masks=label_masks,
        )
    except FileProblemError as error:
        return error.problem
    if target_size is not None:
        mask = resize_nearest(mask, target_size)
    return _Loaded(anomaly_map, mask, ignore)


def _set_metric_values(computed: SetMetricsResult) -> dict[str, float]:
    """The :data:`SET_METRIC_FILES` values of a set-metrics result."""
    return {
        "auroc": float(computed.auroc),
        "aupro": float(computed.aupro[0.3]),
        "aupro_05": float(computed.aupro[0.05]),
        "aupr": float(computed.ap),
        "f1max": float(computed.f1_max),
        F1_MAX_THRESHOLD: float(computed.f1_max_threshold),
    }


def _with_image_level(aupimo: AupimoResult, jobs: Sequence[_Job], image_scores: np.ndarray
                      ) -> tuple[AupimoResult, ImageMetricsResult]:
    """The per-image scores with each image's defect type, and the image-level metrics.

    ``image_scores`` holds each map's maximum, in the order of ``jobs``.
    """
    paths = [job.sample.relative_path for job in jobs]
    image_level = image_metrics(image_scores, [int(job.anomalous) for job in jobs], paths=paths)
    defect_types = [job.sample.defect_type for job in jobs]
    if any(defect is not None for defect in defect_types):
        aupimo = replace(aupimo, extra={**aupimo.extra, "defect_types": defect_types})
    return aupimo, image_level


def _evaluated_image(job: _Job, layout: DatasetLayout) -> EvaluatedImage:
    return EvaluatedImage(
        path=job.sample.relative_path,
        mask=(
            None
            if job.sample.mask_path is None
            else job.sample.mask_path.relative_to(layout.root).as_posix()
        ),
        map=job.entry.name,
        map_row=job.entry.row if job.entry.row >= 0 else None,
        anomalous=job.anomalous,
        size=job.size,
        defect_type=job.sample.defect_type,
        ignore_mask=job.ignore,
    )


def evaluate_dataset(
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
) -> EvaluationResult:
    """Score one category's anomaly-map files: per-image AUPIMO, AUROC, AUPRO.

    Parameters
    ----------
    dataset : str, path or DatasetLayout
        ``"mvtec:ROOT"``, ``"visa:ROOT"``, ``"folder:ROOT"`` or a bare root (layout
        recognised), see :func:`pimo.data.open_dataset`.
    maps : str, path or MapSource
        A folder of map files (a sub-folder named like the category is used when present) or
        a stacked ``.pt``/``.npz`` file, see :mod:`pimo.data.maps`.
    category : str, optional
        Required when the dataset has several categories.
    fpr_bounds : (float, float)
        AUPIMO's shared-FPR integration range ``(L, U)``.
    resolution : int or (int, int), optional
        Evaluate at this fixed size instead of each mask's full resolution (maps bilinear,
        masks nearest). The numbers are then not comparable with full-resolution ones.
    mask_threshold : float, optional
        Mask pixels ``> mask_threshold`` are anomalous (for lossy masks); by default ``> 0``
        and masks must be clean.
    skip_missing : bool
        Leave out images whose map, mask or image file is missing (and ignore maps or masks
        without image), listing them in :attr:`EvaluationResult.skipped`, instead of failing.
    verify_images : bool
        Decode every image to detect truncated files (otherwise only headers are read).
    set_metrics : bool
        Compute AUROC and AUPRO too.
    workers : int, optional
        Decoding threads (default: up to 4).
    progress : ProgressHook, optional
        Receives progress events.
    ignore_masks : str or path, optional
        Pixels to leave out of every metric (non-zero = left out): a folder that mirrors the
        images' paths as the maps folder does (a sub-folder named like the category is used
        when present; every image needs its file), or one mask file for every image (e.g. a
        fixed border). PNG/TIFF (0/255 or 0/1) or ``.npy``/``.npz`` arrays, each of its
        image's size (resized like the masks with ``resolution``); see
        :func:`pimo.aupimo` for what leaving pixels out means.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    DatasetError
        With the full list of problems: missing/extra/duplicate map files, missing masks,
        unreadable or truncated images, masks, maps, masks of another size than their image,
        non-binary masks, NaN or infinite map values, unknown layout or category, empty
        category.
    PimoError
        From the metrics (e.g. :class:`~pimo.UnreachableFprError`).
    """
    from pimo.streaming import AupimoStream

    bounds = validate_fpr_bounds(fpr_bounds)
    target_size = _parse_resolution(resolution)
    progress = progress or ProgressHook()
    workers = default_workers() if workers is None else max(1, int(workers))
    layout, scan, category = _open_category(dataset, category)
    what = _describe_category(layout, category)
    ignore = None if ignore_masks is None else open_ignore_masks(ignore_masks, category)
    source = maps if isinstance(maps, MapSource) else open_maps(maps, category)
    try:
        kept, skipped = _plan_jobs(
            layout, scan, category, source, mask_threshold=mask_threshold,
            skip_missing=skip_missing, verify_images=verify_images, workers=workers,
            progress=progress, ignore_masks=ignore,
        )
        normal = [job for job in kept if not job.anomalous]
        anomalous = [job for job in kept if job.anomalous]

        # 3-4. stream normal, then anomalous images, once (the set metrics accumulate too; a
        # float64 map after float32 ones re-keys their state in float64, exactly)
        paths = [job.sample.relative_path for job in kept]
        aupimo_stream = AupimoStream(len(normal), fpr_bounds=bounds)
        set_accumulator = (
            SetMetricsAccumulator(**SET_METRICS_SETTINGS)
            if set_metrics else None
        )
        stream_problems: list[Problem] = []
        image_scores = np.zeros(len(kept), dtype=np.float64)  # each map's maximum

        def load(job: _Job) -> _Loaded | Problem:
            return _load_job(source, job, target_size=target_size,
                             mask_threshold=mask_threshold, label_masks=layout.label_masks,
                             ignore_masks=ignore)

        def stream(stage: str, group: list[_Job]) -> None:
            progress.start(stage, len(group))
            for job, loaded in zip(group, ordered_map(load, group, workers), strict=True):
                progress.advance()
                if isinstance(loaded, Problem):
                    stream_problems.append(loaded)
                    continue
                if stream_problems:
                    continue
                path = job.sample.relative_path
                if loaded.mask is None:
                    aupimo_stream.add_normal(job.index, loaded.anomaly_map, path=path,
                                             ignore_mask=loaded.ignore)
                else:
                    aupimo_stream.add_anomalous(job.index, loaded.anomaly_map, loaded.mask,
                                                path=path, ignore_mask=loaded.ignore)
                if set_accumulator is not None:
                    loaded.add_to(set_accumulator, path)
                image_scores[job.index] = loaded.image_score  # (checked by the metrics)

        stream("normal images", normal)
        try:
            stream("anomalous images", anomalous)
        except UnreachableFprError as error:  # constant normal maps among them
            raise _with_normal_maps(error, what, normal, source) from error
        _raise_problems(stream_problems, what=what, skip_missing=skip_missing)
        aupimo, image_level = _with_image_level(aupimo_stream.result(paths), kept,
                                                image_scores)
        metrics, note = None, None
        if set_accumulator is not None:
            computed = set_accumulator.compute()
            metrics = _set_metric_values(computed)
        else:
            note = "not computed: disabled"
    finally:
        if not isinstance(maps, MapSource):
            source.close()
    images = [_evaluated_image(job, layout) for job in kept]
    return EvaluationResult(
        aupimo=aupimo,
        set_metrics=metrics,
        set_metrics_note=note,
        layout=layout.name,
        dataset_root=layout.root,
        category=category,
        maps_location=source.location,
        maps_kind=source.kind,
        images=images,
        skipped=skipped,
        resolution=target_size,
        mask_threshold=mask_threshold,
        image_metrics=image_level,
        ignore_masks=None if ignore is None else ignore.location,
    )
