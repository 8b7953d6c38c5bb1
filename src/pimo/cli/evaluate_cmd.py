"""``pimo evaluate``: score anomaly-map files against a dataset on disk (MVTec AD, VisA, folder).

Writes, per category, the published layout: ``aupimo/aupimos.json`` (per-image AUPIMO with the
images' paths), ``auroc.json``, ``aupro.json`` (FPR up to 0.3), ``aupro_05.json`` (up to 0.05),
and ``evaluation.json`` (where the data is, see :meth:`pimo.evaluate.EvaluationResult.to_dict`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click

from pimo._progress import ProgressHook

if TYPE_CHECKING:
    from pimo.evaluate import EvaluationResult

__all__ = [
    "LineProgress",
    "RichProgress",
    "evaluate_command",
    "is_interactive",
    "parse_maps_options",
    "print_summary",
    "progress_for",
    "run_evaluations",
]

FULL_RESOLUTION_NOTE = (
    "Evaluated at a fixed resolution of {h}x{w}: these numbers are NOT comparable with "
    "full-resolution results (the paper's protocol evaluates at each mask's own size)."
)


class RichProgress(ProgressHook):
    """A rich progress bar on stderr, one task per stage (a context manager)."""

    def __init__(self, label: str, *, enabled: bool = True) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.label = label
        self._progress = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=Console(stderr=True), transient=True,
            disable=not enabled,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._progress.stop()

    def start(self, stage: str, total: int) -> None:
        """Begin a new bar for ``stage``."""
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(f"{self.label}: {stage}", total=total)

    def advance(self, count: int = 1) -> None:
        """Advance the current bar."""
        if self._task is not None:
            self._progress.advance(self._task, count)


class LineProgress(ProgressHook):
    """Progress as plain lines on stderr, for logs and CI (a context manager).

    One line when a stage starts (``"bottle: normal images (83 images)"``) and one when the work
    is done (``"bottle: done in 12.3 s"``); no line per image, no control characters.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self._started = 0.0

    def __enter__(self) -> LineProgress:
        self._started = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            elapsed = time.perf_counter() - self._started
            click.echo(f"{self.label}: done in {elapsed:.1f} s", err=True)

    def start(self, stage: str, total: int) -> None:
        """Say that ``stage`` begins, with its number of images."""
        click.echo(f"{self.label}: {stage} ({total} images)", err=True)


def is_interactive() -> bool:
    """Whether stdout and stderr are both terminals (then a live progress bar is drawn)."""
    return all(stream is not None and stream.isatty() for stream in (sys.stdout, sys.stderr))


def progress_for(label: str, *, quiet: bool = False) -> RichProgress | LineProgress:
    """The progress display of one piece of work.

    A live bar on a terminal; one line per stage when the output goes to a log or a pipe
    (CI); nothing with ``quiet``.
    """
    if quiet or is_interactive():
        return RichProgress(label, enabled=not quiet)
    return LineProgress(label)


def _parse_resolution(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        sides = [int(part) for part in parts]
    except ValueError:
        sides = []
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or min(sides) < 1:
        raise click.BadParameter(f"expected SIZE or HxW (e.g. 256 or 256x320), got {text!r}.",
                                 param_hint="--resolution")
    return sides[0], sides[1]


def print_summary(results: Sequence[EvaluationResult], *, title: str = "pimo evaluate") -> None:
    """A rich table: one row per category (AUPIMO statistics, pixel AUROC, AUPRO, AP, F1-max).

    In percent, within 80 columns.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0),
                  caption="in %; AUPIMO over anomalous images; AUPRO to FPR 30 %, 5 %; "
                          "pixel AP, F1")
    for column in ("category", "images", "anom.", "AUPIMO", "std", "median", "AUROC", "AUPRO",
                   "AUPRO5", "AP", "F1max"):
        table.add_column(column, justify="left" if column == "category" else "right")

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    for result in results:
        summary = result.summary()
        table.add_row(
            result.category, str(summary["num_images"]), str(summary["num_anomalous"]),
            percent(summary["mean"]), percent(summary["std"]), percent(summary["median"]),
            percent(summary["auroc"]), percent(summary["aupro"]), percent(summary["aupro_05"]),
            percent(summary["aupr"]), percent(summary["f1max"]),
        )
    Console().print(table)
    if any(result.set_metrics is None for result in results):
        notes = {result.set_metrics_note for result in results if result.set_metrics_note}
        why = "; ".join(sorted(notes)) or "not computed"
        Console().print(f"AUROC, AUPRO, AP and F1-max {why}.")


def _category_folders(
    layout_name: str, output: Path, categories: Sequence[str] | None, category: str | None
) -> list[tuple[str | None, Path]]:
    if categories is None:
        return [(category, output)]
    return [(name, output / layout_name / name) for name in categories]


def run_evaluations(
    dataset: str,
    maps: Path | Mapping[str, Path],
    output: Path,
    *,
    categories: Sequence[str] | None = None,
    category: str | None = None,
    fpr_bounds: tuple[float, float] = (1e-5, 1e-4),
    resolution: tuple[int, int] | None = None,
    mask_threshold: float | None = None,
    skip_missing: bool = False,
    set_metrics: bool = True,
    workers: int | None = None,
    quiet: bool = False,
    model_name: str | None = None,
    scheduler: str | None = None,
    ignore_masks: Path | None = None,
) -> list[tuple[EvaluationResult, Path]]:
    """Evaluate categories and save each into its folder.

    With ``categories=None``, ``category`` (optional when the dataset has only one) is written
    directly into ``output``; with a list, each category goes to
    ``output/<layout>/<category>/``. ``model_name`` is recorded in ``evaluation.json``
    (default: the maps folder's name, see :func:`pimo.evaluate.default_model_name`).
    ``maps`` may name several models' maps (``{name: location}``): each model's results then
    go under ``output/<name>/`` and record ``name``. ``scheduler`` (``"local"`` or a Dask
    scheduler address) runs everything on a Dask cluster in one sweep
    (:func:`pimo.distributed.sweep`); None evaluates in this process. ``ignore_masks`` (a
    folder or one file) leaves pixels out of every metric (see
    :func:`pimo.evaluate_dataset`).

    Returns
    -------
    list of (EvaluationResult, Path)
        Each result and the folder it was written to (models, then categories, in order).
    """
    from pimo._io import check_output_folder
    from pimo._outputs import EvaluationRun
    from pimo.cli import skip_numba_blas_probe
    from pimo.data import open_dataset
    from pimo.evaluate import evaluate_dataset

    skip_numba_blas_probe()
    layout = open_dataset(dataset)
    named = isinstance(maps, Mapping)
    models: dict[str | None, Path] = (
        {name: Path(location) for name, location in maps.items()} if named
        else {model_name: Path(maps)}
    )
    per_category = _category_folders(layout.name, output, categories, category)
    plan = [  # (model, maps, category, folder)
        (model, location, category_name,
         output / model / folder.relative_to(output) if named else folder)
        for model, location in models.items()
        for category_name, folder in per_category
    ]
    for *_, folder in plan:  # a bad -o is refused before any work
        check_output_folder(folder)
    runs = {model: EvaluationRun.new([name or layout.categories()[0] for name, _ in per_category])
            for model in models}
    options: dict[str, Any] = {
        "fpr_bounds": fpr_bounds, "resolution": resolution, "mask_threshold": mask_threshold,
        "skip_missing": skip_missing, "set_metrics": set_metrics, "workers": workers,
        "ignore_masks": ignore_masks,
    }
    results: list[EvaluationResult] = []
    if scheduler is None:
        for model, location, category_name, _ in plan:
            label = "/".join(p for p in (model, category_name or layout.name) if p)
            with progress_for(label, quiet=quiet) as progress:
                results.append(evaluate_dataset(layout, location, category=category_name,
                                                progress=progress, **options))
    else:
        from pimo.distributed import sweep

        keys = {model: model or "maps" for model in models}
        with progress_for(f"Dask {scheduler}", quiet=quiet) as progress:
            swept = sweep(dataset, {keys[m]: location for m, location in models.items()},
                          categories=[name for name, _ in per_category], scheduler=scheduler,
                          progress=progress, **options)
        for model, _, category_name, _ in plan:
            by_category = swept[keys[model]]
            results.append(by_category[category_name] if category_name is not None
                           else next(iter(by_category.values())))
    _refuse_maps_shared_by_categories(results, [model for model, *_ in plan])
    done = []
    for result, (model, _, category_name, folder) in zip(results, plan, strict=True):
        result = dataclasses.replace(result, model=model)  # None: the maps folder's name
        saved = result.save(folder, run=runs[model])
        if saved.removed:
            label = "/".join(p for p in (model, category_name or layout.name) if p)
            names = ", ".join(path.relative_to(folder).as_posix() for path in saved.removed)
            click.echo(f"{label}: removed {len(saved.removed)} file(s) of an earlier run from "
                       f"{folder}, which this run did not rewrite: {names}", err=True)
        for problem in result.skipped:
            click.echo(f"skipped ({problem.kind}): {problem.message}", err=True)
        done.append((result, folder))
    return done


def _refuse_maps_shared_by_categories(results: Sequence[EvaluationResult],
                                      models: Sequence[str | None]) -> None:
    """Refuse one map file (or stacked row) matched to images of two categories of a model.

    That happens when the maps name no category (no ``MAPS/<category>/`` folder, no category
    in their paths): every category then reads the same maps, and each but one is scored with
    another category's maps.

    Raises
    ------
    DatasetError
        Naming the map, both categories and an image of each.
    """
    from pimo.data import DatasetError

    seen: dict[tuple[str | None, str, str, int | None], tuple[str, str]] = {}
    for result, model in zip(results, models, strict=True):
        location = str(Path(result.maps_location).resolve())
        for image in result.images:
            key = (model, location, image.map, image.map_row)
            first = seen.setdefault(key, (result.category, image.path))
            if first[0] != result.category:
                row = f" (row {image.map_row})" if image.map_row is not None else ""
                raise DatasetError(
                    f"The map {image.map}{row} in {result.maps_location} was matched to images "
                    f"of two categories: {first[1]} ({first[0]!r}) and {image.path} "
                    f"({result.category!r}). These maps name no category, so every category "
                    "would be scored with the same maps. Put each category's maps in "
                    "MAPS/<category>/ (or store paths that name the category), or evaluate "
                    "one category at a time with its own --maps.",
                    path=str(result.maps_location),
                )


def parse_maps_options(values: Sequence[str]) -> Path | dict[str, Path]:
    """``--maps`` values: one ``DIR`` (as is), or ``NAME=DIR`` per model.

    A value is ``NAME=DIR`` when it holds ``=``, the part before it is a plain name (no path
    separator) and the whole value is not an existing path.
    """
    named: dict[str, Path] = {}
    plain: list[Path] = []
    for value in values:
        name, equals, location = value.partition("=")
        if equals and name and location and "/" not in name and os.sep not in name \
                and not Path(value).exists():
            if name in named:
                raise click.BadParameter(f"the model name {name!r} is given twice.",
                                         param_hint="--maps")
            named[name] = Path(location)
        else:
            plain.append(Path(value))
    if plain and (named or len(plain) > 1):
        raise click.BadParameter(
            "several --maps need a model name each: --maps NAME=DIR (results go to "
            "OUT/NAME/).", param_hint="--maps")
    return plain[0] if plain else named


@click.command("evaluate")
@click.option("--dataset", "dataset", required=True, metavar="LAYOUT:ROOT",
              help="The dataset: mvtec:ROOT, visa:ROOT or folder:ROOT (a bare ROOT is "
                   "recognised).")
@click.option("--category", default=None, help="The category to evaluate (needed when the "
              "dataset has several).")
@click.option("--categories", "categories", default=None, metavar="all|A,B,...",
              help="Evaluate several categories (`all`: every one) into OUT/<layout>/<category>/.")
@click.option("--maps", "maps", required=True, multiple=True, metavar="[NAME=]MAPS",
              help="A folder of anomaly-map files (.npy/.npz/.tiff/.tif/.png/.pt) mirroring the "
                   "images' paths (a sub-folder per category is used when present), or a "
                   "stacked .pt/.npz file {'asmaps': (N, H, W), 'paths': [...]}; either may "
                   "hold every category's maps. Repeat as --maps NAME=MAPS to evaluate several "
                   "models (results in OUT/NAME/).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The output folder.")
@click.option("--fpr-bounds", nargs=2, type=float, default=(1e-5, 1e-4), show_default=True,
              metavar="L U", help="AUPIMO's shared-FPR integration range.")
@click.option("--resolution", default=None, metavar="SIZE|HxW",
              help="Evaluate at this fixed size (maps bilinear, masks nearest) instead of the "
                   "masks' full resolution; the numbers are then not comparable with "
                   "full-resolution results.")
@click.option("--mask-threshold", type=float, default=None,
              help="Mask pixels > T are anomalous (for masks saved with lossy compression); "
                   "by default > 0, and masks must be binary.")
@click.option("--ignore-masks", type=click.Path(path_type=Path), default=None,
              metavar="DIR|FILE",
              help="Pixels to leave out of every metric (non-zero = left out): a folder of "
                   "PNG/TIFF/.npy masks mirroring the images' paths as --maps does (one per "
                   "image), or one mask file for every image (e.g. a fixed border).")
@click.option("--skip-missing", is_flag=True,
              help="Leave out images whose map, mask or image file is missing (and maps or "
                   "masks without image), listing them on stderr and in evaluation.json, "
                   "instead of failing.")
@click.option("--no-set-metrics", is_flag=True,
              help="Skip pixel AUROC, AUPRO, AP and F1-max (one pass less).")
@click.option("--workers", type=int, default=None, help="Decoding threads (default: up to 4; "
              "with --scheduler, per task, default 1).")
@click.option("--scheduler", default=None, metavar="local|ADDRESS",
              help="Run on a Dask cluster: `local` starts one on this machine (a worker per "
                   "core), an address such as tcp://10.0.0.1:8786 uses a running one (the "
                   "workers must see the files at the same paths). Needs pimo[dask].")
@click.option("--model-name", default=None, metavar="NAME",
              help="The model's name, recorded in evaluation.json and used by `pimo report` "
                   "(default: the maps folder's name).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary table.")
def evaluate_command(
    dataset: str, category: str | None, categories: str | None, maps: tuple[str, ...],
    output: Path, fpr_bounds: tuple[float, float], resolution: str | None,
    mask_threshold: float | None, skip_missing: bool, no_set_metrics: bool, workers: int | None,
    scheduler: str | None, model_name: str | None, quiet: bool, ignore_masks: Path | None,
) -> int:
    """Score anomaly-map files against a dataset's masks: per-image AUPIMO, AUROC, AUPRO.

    Maps are resized to each mask's full resolution (bilinear, as torch's interpolate with
    align_corners=False). Example:

        pimo evaluate --dataset mvtec:/data/mvtec --category bottle --maps maps/ -o out/

    Several models on every category, on a local Dask cluster:

        pimo evaluate --dataset mvtec:/data/mvtec --categories all --maps a=maps_a/
        --maps b=maps_b/ --scheduler local -o out/
    """
    from pimo.data import open_dataset

    size = _parse_resolution(resolution)
    if category is not None and categories is not None:
        raise click.UsageError("Give --category or --categories, not both.")
    selected: list[str] | None = None
    if categories is not None:
        available = open_dataset(dataset).categories()
        if categories.strip().lower() == "all":
            selected = available
        else:
            selected = [name.strip() for name in categories.split(",") if name.strip()]
        if not selected:
            raise click.UsageError(f"No category to evaluate in {dataset}.")
    models = parse_maps_options(maps)
    done = run_evaluations(
        dataset, models, output, categories=selected, category=category,
        fpr_bounds=fpr_bounds, resolution=size, mask_threshold=mask_threshold,
        skip_missing=skip_missing, set_metrics=not no_set_metrics, workers=workers,
        quiet=quiet, model_name=model_name, scheduler=scheduler, ignore_masks=ignore_masks,
    )
    if size is not None:
        click.echo(FULL_RESOLUTION_NOTE.format(h=size[0], w=size[1]), err=True)
    if not quiet:
        if isinstance(models, dict):  # one table per model (results come model by model)
            per_model = len(done) // len(models)
            for position, name in enumerate(models):
                print_summary([result for result, _ in
                               done[position * per_model:(position + 1) * per_model]],
                              title=f"pimo evaluate: {name}")
        else:
            print_summary([result for result, _ in done],
                          title=f"pimo evaluate: {done[0][0].model_name}")
        for result, folder in done:
            click.echo(f"{result.category}: results in {folder}")
    sys.stdout.flush()
    return 0
