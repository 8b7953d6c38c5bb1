"""One self-contained HTML report of AUPIMO comparisons (``pimo report``).

:func:`build_report` reads score files, from ``pimo evaluate`` output folders and/or a
``pimo compare`` root in the published layout (``<model>/<collection>/<dataset>/aupimo/
aupimos.json``), compares the models of each dataset with :mod:`pimo.stats` and writes one HTML
file: per dataset, the paper's table (ranks in parentheses), the pairwise confidence matrix,
AUPIMO boxplots, the average-rank diagram and, when ``evaluation.json`` lets the maps be found
again, the PIMO curves and heatmaps of the images selected by statistic for the best model;
then a cross-dataset summary (paper, Table 5). Figures are embedded as data URIs (charts as
SVG, sharp at any zoom and in print; heatmaps as JPEG at twice their size on screen), CSS and
JavaScript are inline: the file needs nothing else to be read.
"""

from __future__ import annotations

import base64
import html
import io
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib.figure import Figure

from pimo import __version__
from pimo._io import atomic_write_text, check_output_file
from pimo._validate import PimoError, PimoValueError, PimoWarning
from pimo.report._evaluation import EVALUATION_FILE, EvaluationRecord, find_evaluation
from pimo.results import AupimoResult, load_aupimo
from pimo.stats import (
    BenchmarkComparison,
    DatasetComparison,
    DatasetFiles,
    ScoreTree,
    compare_score_tree,
    find_score_files,
)

__all__ = [
    "ReportSources",
    "build_report",
    "collect_sources",
    "figure_to_data_uri",
    "picture_to_data_uri",
]

REPORT_FILE = "report.html"

#: Columns of the per-dataset table: (figure name, header).
TABLE_FIGURES: tuple[tuple[str, str], ...] = (
    ("avg_rank", "Avg. rank"),
    ("mean", "Mean"),
    ("std", "Std"),
    ("p33", "P33"),
    ("median", "Median"),
    ("q1", "Q1"),
    ("q3", "Q3"),
    ("min", "Min"),
    ("max", "Max"),
    ("image_auroc", "Image AUROC"),
    ("image_ap", "Image AP"),
    ("image_f1max", "Image F1-max"),
    ("auroc", "AUROC"),
    ("aupr", "AUPR"),
    ("f1max", "F1-max"),
    ("aupro", "AUPRO"),
    ("aupro_05", "AUPRO 5%"),
)

#: Columns of the cross-dataset summary (paper, Table 5).
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("avg_rank", "Avg. rank"),
    ("mean", "Mean AUPIMO"),
    ("p33", "P33 AUPIMO"),
    ("image_auroc", "Image AUROC"),
    ("image_ap", "Image AP"),
    ("image_f1max", "Image F1-max"),
    ("auroc", "AUROC"),
    ("aupr", "AUPR"),
    ("f1max", "F1-max"),
    ("aupro", "AUPRO"),
    ("aupro_05", "AUPRO 5%"),
)

#: Full names of abbreviated column headers, shown as a tooltip (title).
_HEADER_TITLES: dict[str, str] = {
    "Avg. rank": "Average image-wise rank of AUPIMO (1 = best)",
    "Mean": "Mean AUPIMO over the anomalous images",
    "Std": "Standard deviation of AUPIMO (population)",
    "P33": "33rd percentile of AUPIMO",
    "Median": "Median AUPIMO",
    "Q1": "First quartile of AUPIMO",
    "Q3": "Third quartile of AUPIMO",
    "Min": "Lowest AUPIMO",
    "Max": "Highest AUPIMO",
    "AUROC": "Pixel-level AUROC (all pixels of all images)",
    "AUPRO": "AUPRO up to FPR 30 %",
    "AUPRO 5%": "AUPRO up to FPR 5 %",
    "Mean AUPIMO": "Mean over the datasets of the mean AUPIMO",
    "P33 AUPIMO": "Mean over the datasets of the 33rd percentile of AUPIMO",
    "Datasets": "Number of datasets with scores of this model",
}

_STATISTIC_LABELS = {
    "mean": "Mean", "median": "Median", "q1": "Q1", "q3": "Q3", "p33": "P33",
    "min": "Min", "max": "Max", "whisker_low": "Low whisker", "whisker_high": "High whisker",
    "outlier_low": "Low outlier", "outlier_high": "High outlier",
}


# =============================================================================================
# sources
# =============================================================================================


@dataclass
class ReportSources:
    """The score files to report on.

    Attributes
    ----------
    tree : ScoreTree
        Score files per dataset and model.
    notes : list of str
        Things to show at the top of the report (e.g. a folder without ``evaluation.json``).
    moved : list of str
        Files named in an ``evaluation.json`` (maps, images, masks) that no longer exist,
        one message per model and dataset; they are also in :attr:`notes`.
    """

    tree: ScoreTree
    notes: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)


def _score_file_of(folder: Path) -> Path:
    return folder / "aupimo" / "aupimos.json"


def _read_record(folder: Path) -> EvaluationRecord | None:
    """The folder's ``evaluation.json``, or None when absent or unreadable."""
    path = folder / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        return EvaluationRecord.load(path)
    except PimoError:
        return None


def _dataset_folders(folder: Path) -> list[Path]:
    """The ``<collection>/<dataset>`` folders of a model folder (``--categories all`` output)."""
    return [score.parent.parent for score in sorted(folder.glob("*/*/aupimo/aupimos.json"))]


def collect_sources(
    sources: Iterable[str | os.PathLike[str]] = (),
    models: Mapping[str, str | os.PathLike[str]] | None = None,
) -> ReportSources:
    """Find the score files of each source, and name their models and datasets.

    Parameters
    ----------
    sources : iterable of path
        Each one of

        - a ``pimo evaluate`` output folder (holding ``aupimo/aupimos.json``), or its
          ``aupimos.json``: the model is the one recorded in ``evaluation.json`` (``pimo
          evaluate --model-name``, by default the maps folder's name), the dataset
          ``<layout>/<category>`` from the same file;
        - one model's folder of categories, ``<collection>/<dataset>/aupimo/aupimos.json``
          (``pimo evaluate --categories all`` output): the model is the one its
          ``evaluation.json`` files agree on, else the folder's name;
        - a ``pimo compare`` root in the published layout
          ``<model>/<collection>/<dataset>/aupimo/aupimos.json``: models named after their
          folders.
    models : mapping of str to path, optional
        ``NAME -> PATH`` (``pimo report --model NAME=PATH``): an evaluate output folder (or
        its ``aupimos.json``) or a model's folder of categories, reported as model ``NAME``.

    Returns
    -------
    ReportSources

    Raises
    ------
    PimoValueError
        A source that does not exist or holds no score file, or two sources with the same
        model name for the same dataset (the message says to name them with ``--model``).
    """
    files: dict[str, dict[str, DatasetFiles]] = {}
    notes: list[str] = []
    moved: list[str] = []
    given = [(None, Path(source)) for source in sources]
    given += [(name, Path(path)) for name, path in (models or {}).items()]
    if not given:
        raise PimoValueError(
            "No result to report on: give `pimo evaluate` output folders, a `pimo compare` "
            "root or --model NAME=PATH."
        )

    def add(dataset: str, model: str, entry: DatasetFiles, origin: Path) -> None:
        by_model = files.setdefault(dataset, {})
        if model in by_model:
            raise PimoValueError(
                f"{origin}: model {model!r} already has scores for dataset {dataset!r} (from "
                f"{by_model[model].aupimo}); give each model its own name with --model "
                "NAME=PATH (or `pimo evaluate --model-name`)."
            )
        by_model[model] = entry

    def add_evaluation(folder: Path, model: str | None, dataset: str | None,
                       record: EvaluationRecord | None) -> None:
        name = model or (record.model if record is not None else folder.resolve().name)
        key = record.dataset_key if record is not None else (dataset or folder.name)
        add(key, name, DatasetFiles.beside(_score_file_of(folder)), folder)
        if record is None:
            notes.append(
                f"{folder}: no readable evaluation.json, so the anomaly maps cannot be found "
                "again; PIMO curves and heatmaps are skipped for this folder."
            )
            return
        missing = record.missing_files()
        if missing:
            moved.append(f"{name} on {key}: {missing}")

    for model, path in given:
        if path.is_file() and path.name == "aupimos.json":
            path = path.parent.parent if path.parent.name == "aupimo" else path.parent
        if not path.exists():
            raise PimoValueError(
                f"{path} does not exist; give a `pimo evaluate` output folder (with "
                "aupimo/aupimos.json), one model's folder of categories or a `pimo compare` "
                "root."
            )
        if _score_file_of(path).is_file():
            add_evaluation(path, model, None, _read_record(path))
            continue
        if not path.is_dir():
            raise PimoValueError(
                f"{path} is neither a folder nor a score file; give a `pimo evaluate` output "
                "folder, one model's folder of categories or a `pimo compare` root."
            )
        dataset_folders = _dataset_folders(path)
        if dataset_folders:  # one model's categories: <collection>/<dataset>/aupimo/...
            records = [_read_record(folder) for folder in dataset_folders]
            if model is None:
                recorded = {record.model for record in records if record is not None}
                only_one = len(recorded) == 1 and all(r is not None for r in records)
                model = recorded.pop() if only_one else path.resolve().name
            for folder, record in zip(dataset_folders, records, strict=True):
                add_evaluation(folder, model, f"{folder.parent.name}/{folder.name}", record)
            continue
        if model is not None:
            raise PimoValueError(
                f"Model {model!r}: {path} holds neither aupimo/aupimos.json nor "
                "<collection>/<dataset>/aupimo/aupimos.json; give a `pimo evaluate` output "
                "folder or one model's folder of categories."
            )
        try:
            tree = find_score_files(path)
        except PimoError as error:
            raise PimoValueError(
                f"{path} holds no score file: neither aupimo/aupimos.json, "
                "<collection>/<dataset>/aupimo/aupimos.json nor "
                f"<model>/<collection>/<dataset>/aupimo/aupimos.json ({error})."
            ) from error
        for dataset, by_model in tree.files.items():
            for name, entry in by_model.items():
                add(dataset, name, entry, path)
                record_path = find_evaluation(entry.aupimo)
                record = None if record_path is None else _read_record(record_path.parent)
                missing = None if record is None else record.missing_files()
                if missing:
                    moved.append(f"{name} on {dataset}: {missing}")
    names = tuple(sorted({model for by_model in files.values() for model in by_model}))
    return ReportSources(tree=ScoreTree(files=files, models=names), notes=notes + moved,
                         moved=moved)


# =============================================================================================
# HTML pieces
# =============================================================================================


#: Metadata left out of SVG figures (no date: the same figure gives the same bytes).
_SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


def figure_to_data_uri(figure: Figure, *, dpi: int = 110, image_format: str = "svg") -> str:
    """Render a figure to a data URI and free it.

    Parameters
    ----------
    figure : Figure
    dpi : int
        Resolution of a PNG (SVG is vector: sharp at any zoom and in print).
    image_format : {"svg", "png"}
        ``data:image/svg+xml;base64,...`` (text as paths, no font or link needed) or
        ``data:image/png;base64,...``.
    """
    if image_format not in ("svg", "png"):
        raise PimoValueError(f"image_format must be 'svg' or 'png', got {image_format!r}.")
    buffer = io.BytesIO()
    options = {"metadata": _SVG_METADATA} if image_format == "svg" else {"dpi": dpi}
    try:
        figure.savefig(buffer, format=image_format, facecolor="white", bbox_inches="tight",
                       pad_inches=0.1, **options)
    finally:
        figure.clear()
    mime = "image/svg+xml" if image_format == "svg" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def picture_to_data_uri(picture: np.ndarray, *, max_width: int | None = None,
                        image_format: str = "jpeg", quality: int = 92) -> str:
    """A uint8 RGB picture as a data URI, downscaled (Lanczos) to ``max_width`` pixels.

    JPEG (default; ``quality``, no chroma subsampling, so thin coloured lines stay clean) is
    about a third of PNG's size for photographs; ``image_format="png"`` is lossless.
    """
    from PIL import Image

    if image_format not in ("jpeg", "png"):
        raise PimoValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}.")
    image = Image.fromarray(picture)
    if max_width is not None and image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=quality, subsampling=0)
    else:
        image.save(buffer, format="PNG", optimize=True)
    return f"data:image/{image_format};base64," + base64.b64encode(buffer.getvalue()).decode()


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _model_html(name: str) -> str:
    """A model's name, escaped, allowed to wrap after ``_``, ``-`` and ``/``."""
    escaped = _e(name)
    for separator in ("_", "-", "/"):
        escaped = escaped.replace(separator, separator + "<wbr>")
    return escaped


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower())


def _anchor(name: str) -> str:
    return "ds-" + _slug(name)


def _figure_html(figure: Figure, alt: str, caption: str, *, css_class: str = "") -> str:
    uri = figure_to_data_uri(figure)
    class_attr = f' class="{css_class}"' if css_class else ""
    return (
        f'<figure{class_attr}><img src="{uri}" alt="{_e(alt)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _percent_cell(value: float | None, rank: int | None = None) -> str:
    if value is None or value != value:
        return '<td data-sort="">–</td>'
    rank_text = f" ({rank})" if rank is not None else ""
    return f'<td data-sort="{value:.6g}">{100 * value:.1f}{rank_text}</td>'


def _header_row(headers: Sequence[str | tuple[str, str]], *, first_text: bool = True) -> str:
    """A sortable header row; a header is a text or ``(short text, full name)``.

    The full name (or :data:`_HEADER_TITLES`' entry) is the header's tooltip, so short
    headers keep wide tables inside the window.
    """
    cells = []
    for index, header in enumerate(headers):
        text, full = header if isinstance(header, tuple) else (header, _HEADER_TITLES.get(header))
        text_class = ' class="text"' if index == 0 and first_text else ""
        title = f' title="{_e(full)}"' if full and full != text else ""
        cells.append(
            f'<th scope="col"{text_class}{title} aria-sort="none">'
            f'<button type="button">{_e(text)}</button></th>'
        )
    return "<thead><tr>" + "".join(cells) + "</tr></thead>"


def _present(
    columns: Sequence[tuple[str, str]], getters: Sequence[Callable[[str], float | None]]
) -> list[tuple[str, str]]:
    """The columns with a value for at least one model (e.g. no AUPRO 5 % column without files)."""
    return [(name, header) for name, header in columns
            if any(get(name) is not None for get in getters)]


def _dataset_table(dataset: str, comparison: DatasetComparison) -> str:
    columns = _present(TABLE_FIGURES, [comparison.summaries[m].figure for m in comparison.models])
    ranks = {name: comparison.figure_ranks(name) for name, _ in columns}
    rows = []
    for model in comparison.models:
        summary = comparison.summaries[model]
        cells = [f'<th scope="row" class="text">{_model_html(model)}</th>']
        for name, _ in columns:
            value = summary.figure(name)
            if name == "avg_rank":
                rank = ranks[name][model]
                rank_text = f" ({rank})" if rank is not None else ""
                cells.append(f'<td data-sort="{value:.6g}">{value:.2f}{rank_text}</td>')
            elif name == "std":
                cells.append(_percent_cell(value))
            else:
                cells.append(_percent_cell(value, ranks[name][model]))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    explanation = (
        f"AUPIMO statistics over {comparison.num_anomalous} anomalous images "
        f"(of {comparison.num_images}), in percent, rank in parentheses; average image-wise "
        "rank (1 = best); image-level AUROC, AP and F1-max, and pixel-level AUROC, AUPR (AP), "
        "F1-max, AUPRO and AUPRO up to FPR 5 %, when their files are present."
    )
    caption = f"{dataset}: results"
    return (
        f'<p class="note">{_e(explanation)}</p><div class="table-wrap">'
        f'<table class="sortable results" id="table-{_anchor(dataset)}">'
        f"<caption>{_e(caption)}</caption>"
        + _header_row(["Model", *(header for _, header in columns)])
        + "<tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _defect_type_table(dataset: str, comparison: DatasetComparison) -> str:
    """Mean / P33 AUPIMO and rank of each model per defect type (paper, Sec. 5)."""
    breakdown = comparison.defect_types
    rows = []
    for model in comparison.models:
        cells = [f'<th scope="row" class="text">{_e(model)}</th>']
        for defect in breakdown:
            mean, p33, rank = defect.mean[model], defect.p33[model], defect.rank[model]
            cells.append(f'<td data-sort="{mean:.6g}">{100 * mean:.1f} / {100 * p33:.1f} '
                         f"({rank})</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    explanation = (
        "AUPIMO on the anomalous images of each defect type: mean / P33 in percent, and the "
        "model's rank by average image-wise rank on those images (1 = best)."
    )
    headers = [f"{d.defect_type} ({d.num_anomalous})" for d in breakdown]
    return (
        f'<p class="note">{_e(explanation)}</p><div class="table-wrap">'
        f'<table class="sortable defect-types" id="defects-{_anchor(dataset)}">'
        f"<caption>{_e(dataset)}: per defect type</caption>"
        + _header_row(["Model", *headers])
        + "<tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _confidence_table(dataset: str, comparison: DatasetComparison, level: float) -> str:
    confidence = comparison.confidence
    models = comparison.models
    rows = []
    for position, model_a in enumerate(models, start=1):
        cells = [f'<th scope="row" class="text" data-sort="{position}">'
                 f'<span class="position">{position}</span> {_model_html(model_a)}</th>']
        for model_b in models:
            if model_a == model_b:
                cells.append('<td data-sort="">–</td>')
                continue
            value = confidence.confidence(model_a, model_b)
            if value != value:
                cells.append('<td data-sort="">n/a</td>')
            elif value < level:
                cells.append(
                    f'<td class="low" data-sort="{value:.6g}" title="below {100 * level:.0f} %">'
                    f"<strong>{100 * value:.1f}</strong></td>"
                )
            else:
                cells.append(f'<td data-sort="{value:.6g}">{100 * value:.1f}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    test = "Wilcoxon signed-rank" if confidence.test == "wilcoxon" else "paired t"
    explanation = (
        f"Confidence (%, {test} test on the anomalous images) that the row model beats the "
        f"column model; cells under {100 * level:.0f} % are highlighted: that order is not "
        "statistically established. Columns are numbered like the rows (models by average "
        "rank); hover a number for the model's name."
    )
    caption = f"{dataset}: pairwise confidence"
    return (
        f'<p class="note">{_e(explanation)}</p><div class="table-wrap">'
        f'<table class="sortable confidence" '
        f'id="confidence-{_anchor(dataset)}"><caption>{_e(caption)}</caption>'
        + _header_row(["Row beats column",
                       *((str(position), model) for position, model in enumerate(models, 1))])
        + "<tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _summary_table(scope: str, summary: object) -> str:
    from pimo.stats import CrossDatasetSummary

    assert isinstance(summary, CrossDatasetSummary)
    columns = _present(SUMMARY_COLUMNS, [summary.values[m].get for m in summary.models])
    ranks = {name: summary.figure_ranks(name) for name, _ in columns}
    rows = []
    for model in summary.models:
        cells = [f'<th scope="row" class="text">{_model_html(model)}</th>']
        for name, _ in columns:
            value = summary.values[model].get(name)
            if name == "avg_rank" and value is not None:
                rank = ranks[name][model]
                cells.append(f'<td data-sort="{value:.6g}">{value:.2f} ({rank})</td>')
            else:
                cells.append(_percent_cell(value, ranks[name][model]))
        count = summary.num_datasets[model]
        cells.append(f'<td data-sort="{count}">{count}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = (
        f"{'All datasets' if scope == 'all' else scope}: means over "
        f"{len(summary.datasets)} dataset(s), in percent, rank in parentheses."
    )
    return (
        f'<div class="table-wrap"><table class="sortable summary" id="summary-{_slug(scope)}">'
        f"<caption>{_e(caption)}</caption>"
        + _header_row(["Model", *(header for _, header in columns), "Datasets"])
        + "<tbody>" + "".join(rows) + "</tbody></table></div>"
    )


# =============================================================================================
# figures of one dataset
# =============================================================================================


def _comparison_figures(dataset: str, comparison: DatasetComparison, level: float) -> str:
    from pimo.plots import plot_aupimo_boxplots, plot_average_ranks

    models = comparison.models
    scores = {model: comparison.aligned.scores_of(model) for model in models}
    auroc = {m: comparison.summaries[m].set_metrics.get("auroc") for m in models}
    aupro = {m: comparison.summaries[m].set_metrics.get("aupro") for m in models}
    boxplots = plot_aupimo_boxplots(
        scores,
        auroc=auroc if any(v is not None for v in auroc.values()) else None,
        aupro=aupro if any(v is not None for v in aupro.values()) else None,
        title=f"{dataset}: AUPIMO",
    )
    parts = [_figure_html(
        boxplots,
        alt=f"Boxplots of per-image AUPIMO on {dataset}, one row per model, best average rank "
        "on top; AUROC and AUPRO drawn as vertical lines.",
        caption="AUPIMO boxplots (white diamond: mean; blue line: AUROC; red line: AUPRO).",
    )]
    if len(models) > 1:
        ranks_figure = plot_average_ranks(
            {model: comparison.summaries[model].average_rank for model in models},
            comparison.confidence.to_dict(order=models),
            level=level,
            title=f"{dataset}: average rank",
        )
        parts.append(_figure_html(
            ranks_figure,
            alt=f"Average-rank diagram of the models on {dataset}; models joined by a bar are "
            f"adjacent in rank with confidence under {100 * level:.0f} %.",
            caption="Average image-wise rank (1 = best); a bar joins adjacent models whose "
            f"order has confidence under {100 * level:.0f} %.",
        ))
    return '<div class="figures">' + "".join(parts) + "</div>"


def _open_evaluation(files: DatasetFiles, model: str) -> tuple[AupimoResult, EvaluationRecord]:
    """A model's scores and evaluation record, checked to match (raises PimoError)."""
    record_path = find_evaluation(files.aupimo)
    if record_path is None:
        raise PimoValueError(
            f"no evaluation.json beside {files.aupimo}: the anomaly maps of {model} cannot be "
            "found again (run `pimo evaluate` to get them)"
        )
    result = load_aupimo(files.aupimo)
    record = EvaluationRecord.load(record_path)
    record.check_matches(result)
    return result, record


def _heatmap_width(num_models: int) -> int:
    """Pixel width of each heatmap picture: twice its width on screen (sharp on 2x screens
    and in print), the grid sharing about 950 CSS pixels between the models, 240 at most
    each."""
    return 2 * max(80, min(240, 950 // max(1, num_models)))


def _heatmap_legend() -> str:
    from pimo.plots import aupimo_colour_stops

    blues, reds = aupimo_colour_stops()

    def gradient(colours: Sequence[str]) -> str:
        return f"background: linear-gradient(to right, {', '.join(colours)})"

    return (
        '<p class="note legend"><strong>Heatmap colours</strong> (each model with its own '
        "thresholds): no colour: score under the threshold at shared FPR = U (the upper FPR "
        f'bound); <span class="legend-swatch wide" style="{gradient(blues)}"></span> between '
        "the thresholds at shared FPR = U and = L, darker = higher (the same scale for every "
        f'image); <span class="legend-swatch wide" style="{gradient(reds)}"></span> at or '
        "above the threshold at shared FPR = L, darker = higher up to the image's maximum; "
        '<span class="legend-swatch contour"></span> white line: the ground-truth contour.</p>'
    )


def _sample_figures(
    dataset: str, comparison: DatasetComparison, files: Mapping[str, DatasetFiles],
    *, max_samples: int,
) -> str:
    """PIMO curves of the best model's selected images, then every model's heatmaps of them."""
    from pimo.plots import compose_heatmap, format_sample_label, plot_pimo_curves

    models = comparison.models
    best = models[0]
    selection = {
        _STATISTIC_LABELS.get(sample.statistic, sample.statistic): sample.image_index
        for sample in comparison.samples(best)[:max_samples]
    }
    parts: list[str] = []
    try:
        result, record = _open_evaluation(files[best], best)
        source = record.open_maps()
        try:
            curves = record.curves_for(source, result, list(selection.values()))
        finally:
            source.close()
    except PimoError as error:
        text = str(error)
        parts.append(f'<p class="note warning">{_e(text[:1].upper() + text[1:])}; PIMO '
                     "curves are skipped.</p>")
    else:
        figure = plot_pimo_curves(curves, result, selection=selection,
                                  title=f"{dataset}: {best}")
        parts.append('<div class="figures">' + _figure_html(
            figure,
            alt=f"PIMO curves (TPR against shared FPR, log scale) of {len(selection)} images of "
            f"{dataset} selected by statistic for {best}.",
            caption=f"PIMO curves of the images selected by statistic for {best} (shaded: "
            "integration range).",
        ) + "</div>")

    # every model's heatmaps of the same images: one column per model, best first
    width = _heatmap_width(len(models))
    cells: dict[str, list[str]] = {}
    unavailable: list[str] = []
    for model in models:
        try:
            result, record = _open_evaluation(files[model], model)
            source = record.open_maps()
            try:
                samples = [record.load_sample(source, index) for index in selection.values()]
            finally:
                source.close()
        except PimoError as error:
            reason = f"{model}: {error}"
            cells[model] = [
                f'<div class="cell missing" title="{_e(reason)}">not available</div>'
            ] * len(selection)
            unavailable.append(f'<p class="note warning">Heatmaps of {_e(reason)}</p>')
            continue
        column = []
        for label, sample in zip(selection, samples, strict=True):
            native_width = sample.mask.shape[1]
            picture = compose_heatmap(
                sample.image, sample.anomaly_map, sample.mask, result.thresh_bounds,
                contour_width=max(2, round(3 * native_width / width)), ignore=sample.ignore,
            )
            aupimo = float(result.aupimos[sample.index])
            text = format_sample_label(label, aupimo, sample.index)
            alt = (f"Heatmap of {sample.path} ({text}) for {model}: image with the anomaly "
                   "map in the AUPIMO colour scheme and the ground-truth contour.")
            uri = picture_to_data_uri(picture, max_width=width)
            # smaller than its place on screen: enlarged with visible pixels, as in imshow
            pixelated = ' class="pixelated"' if 2 * native_width < width else ""
            column.append(
                f'<figure class="cell"><img src="{uri}"{pixelated} alt="{_e(alt)}">'
                f"<figcaption>{100 * aupimo:.1f} %</figcaption></figure>"
            )
        cells[model] = column
    if len(unavailable) == len(models):  # nothing to draw: the note above says why
        return "".join(parts)
    paths = comparison.aligned.paths
    header = ['<div class="corner">Image</div>'] + [
        f'<div class="model" title="{_e(model)}">{_model_html(model)}</div>' for model in models
    ]
    rows = []
    for row, (label, index) in enumerate(selection.items()):
        path = paths[index] if paths else ""
        rows.append(
            f'<div class="image" title="{_e(path)}"><strong>{_e(label)}</strong> '
            f"({index:03d})<br><span>{_e(path)}</span></div>"
            + "".join(cells[model][row] for model in models)
        )
    parts.append(f"<h4>Heatmaps of every model ({len(selection)} images selected by "
                 f"{_e(best)}'s AUPIMO statistics)</h4>")
    parts.extend(unavailable)
    parts.append(_heatmap_legend())
    parts.append(
        f'<div class="table-wrap"><div class="heatmap-grid" style="--models: {len(models)}">'
        + "".join(header) + "".join(rows) + "</div></div>"
    )
    return "".join(parts)


# =============================================================================================
# the report
# =============================================================================================


def _read_asset(name: str) -> str:
    return resources.files("pimo.report").joinpath(name).read_text(encoding="utf-8")


def _render(title: str, subtitle: str, nav: str, content: str) -> str:
    page = _read_asset("template.html")
    replacements = {
        "{{css}}": _read_asset("report.css"),
        "{{js}}": _read_asset("report.js"),
        "{{version}}": _e(__version__),
        "{{title}}": _e(title),
        "{{subtitle}}": _e(subtitle),
        "{{nav}}": nav,
        "{{content}}": content,
    }
    for key in ("{{css}}", "{{js}}", "{{version}}", "{{title}}", "{{subtitle}}", "{{nav}}"):
        page = page.replace(key, replacements[key])
    return page.replace("{{content}}", content)


def _resolve_output(output: str | os.PathLike[str]) -> Path:
    path = Path(output)
    if path.is_dir() or (not path.suffix and not path.exists()):
        return path / REPORT_FILE
    if path.suffix.lower() not in (".html", ".htm"):
        raise PimoValueError(
            f"{path}: the report is an HTML file; give a name ending in .html, or a folder."
        )
    return path


def build_report(
    sources: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    models: Mapping[str, str | os.PathLike[str]] | None = None,
    title: str = "AUPIMO report",
    test: str = "wilcoxon",
    level: float = 0.95,
    max_samples: int = 8,
    curves: bool = True,
    analysis: Iterable[str | os.PathLike[str]] = (),
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the HTML report of some results.

    Parameters
    ----------
    sources : path or iterable of paths
        ``pimo evaluate`` output folders, models' folders of categories and/or ``pimo
        compare`` roots (published layout), see :func:`collect_sources`.
    output : path
        The HTML file, or a folder (then ``report.html`` in it; created when missing).
    models : mapping of str to path, optional
        More sources with their model's name (``pimo report --model NAME=PATH``).
    title : str
        The report's title.
    test : {"wilcoxon", "ttest"}
        Paired test of the confidence matrix.
    level : float
        Confidence under which a pair is highlighted.
    max_samples : int
        Most images per dataset shown as PIMO curves and heatmaps.
    curves : bool
        False: skip the PIMO curves and heatmaps (faster).
    analysis : iterable of paths
        ``pimo analyze`` output folders, added as "Analyses" pages.
    progress : callable, optional
        Called with one line per dataset as its section is drawn (e.g.
        ``"mvtec/bottle (2/15)"``), for logs.

    Returns
    -------
    Path
        The file written.

    Warns
    -----
    PimoWarning
        For each model and dataset whose maps, images or masks named in ``evaluation.json``
        no longer exist (their heatmaps are skipped; the report says so too).
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    target = check_output_file(_resolve_output(output), "report")
    collected = collect_sources(sources, models)
    for message in collected.moved:
        warnings.warn(message, PimoWarning, stacklevel=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        benchmark = compare_score_tree(collected.tree, test=test)  # type: ignore[arg-type]
    notes = list(collected.notes) + [str(w.message) for w in caught
                                     if str(w.message) not in benchmark.notes]
    notes += list(benchmark.notes)
    content, nav = _pages(benchmark, collected.tree, level=level, max_samples=max_samples,
                          curves=curves, notes=notes, progress=progress)
    if analysis:
        from pimo.report._analysis import analysis_pages

        pages, links = analysis_pages(analysis)
        content, nav = content + pages, nav + links
    subtitle = (
        f"{len(benchmark.datasets)} dataset(s), {len(collected.tree.models)} model(s)"
    )
    return atomic_write_text(target, _render(title, subtitle, nav, content))


def _pages(
    benchmark: BenchmarkComparison, tree: ScoreTree, *, level: float, max_samples: int,
    curves: bool, notes: Sequence[str], progress: Callable[[str], None] | None = None,
) -> tuple[str, str]:
    sections: list[str] = []
    summary_parts = ['<section class="page" id="summary"><h2>Summary across datasets</h2>']
    for note in dict.fromkeys(notes):
        summary_parts.append(f'<p class="note warning">{_e(note)}</p>')
    scopes = sorted(benchmark.summary, key=lambda scope: (scope != "all", scope))
    if len(scopes) == 2:  # one collection: its table would repeat the one over all datasets
        scopes = ["all"]
    for scope in scopes:
        summary_parts.append(f"<h3>{'All datasets' if scope == 'all' else _e(scope)}</h3>")
        summary_parts.append(_summary_table(scope, benchmark.summary[scope]))
    summary_parts.append("</section>")
    sections.append("".join(summary_parts))

    groups: dict[str, list[str]] = {}
    for position, (dataset, comparison) in enumerate(benchmark.datasets.items(), start=1):
        if progress is not None:
            progress(f"{dataset} ({position}/{len(benchmark.datasets)})")
        groups.setdefault(dataset.split("/", 1)[0] if "/" in dataset else "", []).append(dataset)
        anchor = _anchor(dataset)
        parts = [f'<section class="page dataset" id="{anchor}"><h2>{_e(dataset)}</h2>']
        if comparison.missing_models:
            parts.append(
                f'<p class="note">No scores for {_e(", ".join(comparison.missing_models))} on '
                "this dataset.</p>"
            )
        parts.append("<h3>Results</h3>")
        parts.append(_dataset_table(dataset, comparison))
        if comparison.defect_types:
            parts.append("<h3>Per defect type</h3>")
            parts.append(_defect_type_table(dataset, comparison))
        if len(comparison.models) > 1:
            parts.append("<h3>Pairwise confidence</h3>")
            parts.append(_confidence_table(dataset, comparison, level))
        parts.append("<h3>Figures</h3>")
        parts.append(_comparison_figures(dataset, comparison, level))
        best = comparison.models[0]
        parts.append(f"<h3>Selected images (by the statistics of the best model, "
                     f"{_e(best)})</h3>")
        if curves:
            parts.append(_sample_figures(
                dataset, comparison, tree.files[dataset], max_samples=max_samples
            ))
        else:
            parts.append('<p class="note">PIMO curves and heatmaps were not requested.</p>')
        parts.append("</section>")
        sections.append("".join(parts))

    nav = ['<ul><li><a href="#summary">Summary across datasets</a></li>']
    for group in sorted(groups):
        items = "".join(
            f'<li><a href="#{_anchor(d)}">{_e(d.split("/", 1)[1] if group else d)}</a></li>'
            for d in groups[group]
        )
        if group:
            nav.append(f'<li><span class="group">{_e(group)}</span><ul>{items}</ul></li>')
        else:
            nav.append(items)
    nav.append("</ul>")
    return "".join(sections), "".join(nav)

