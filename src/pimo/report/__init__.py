"""One self-contained HTML report of AUPIMO comparisons (``pimo report``).

:func:`build_report` reads score files, from ``pimo evaluate`` output folders and/or a
``pimo compare`` root in the published layout (``<model>/<collection>/<dataset>/aupimo/
aupimos.json``), compares the models of each dataset with :mod:`pimo.stats` and writes one HTML
file: per dataset, the paper's table (ranks in parentheses), the pairwise confidence matrix,
AUPIMO boxplots, the average-rank diagram and, when ``evaluation.json`` lets the maps be found
again, the PIMO curves and heatmaps of the images selected by statistic for the best model;
then a cross-dataset summary (paper, Table 5). Figures are embedded as PNG data URIs, CSS and
JavaScript are inline: the file needs nothing else to be read.
"""

from __future__ import annotations

import base64
import html
import io
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure

from pimo import __version__
from pimo._io import atomic_write_text
from pimo._validate import PimoError, PimoValueError
from pimo.results import load_aupimo
from pimo.stats import (
    BenchmarkComparison,
    DatasetComparison,
    DatasetFiles,
    ScoreTree,
    compare_score_tree,
    find_score_files,
)

__all__ = ["ReportSources", "build_report", "collect_sources", "figure_to_data_uri"]

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
    ("auroc", "AUROC"),
    ("aupro", "AUPRO"),
    ("aupro_05", "AUPRO 5%"),
)

#: Columns of the cross-dataset summary (paper, Table 5).
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("avg_rank", "Avg. rank"),
    ("mean", "Mean AUPIMO"),
    ("p33", "P33 AUPIMO"),
    ("auroc", "AUROC"),
    ("aupro", "AUPRO"),
    ("aupro_05", "AUPRO 5%"),
)

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
    """

    tree: ScoreTree
    notes: list[str] = field(default_factory=list)


def _evaluation_dataset_key(folder: Path) -> str:
    from pimo.report._evaluation import EVALUATION_FILE

    record_path = folder / EVALUATION_FILE
    if record_path.is_file():
        try:
            from pimo.report._evaluation import EvaluationRecord

            return EvaluationRecord.load(record_path).dataset_key or folder.name
        except PimoError:
            return folder.name
    return folder.name


def collect_sources(sources: Iterable[str | os.PathLike[str]]) -> ReportSources:
    """Find the score files of each source.

    Parameters
    ----------
    sources : iterable of path
        ``pimo evaluate`` output folders (holding ``aupimo/aupimos.json``; the model is named
        after the folder, the dataset after ``evaluation.json``), or ``pimo compare`` roots in
        the published layout.

    Returns
    -------
    ReportSources

    Raises
    ------
    PimoValueError
        A source that does not exist or holds no score file, or one model given twice for the
        same dataset.
    """
    files: dict[str, dict[str, DatasetFiles]] = {}
    notes: list[str] = []
    given = [Path(source) for source in sources]
    if not given:
        raise PimoValueError(
            "No result to report on: give `pimo evaluate` output folders or a `pimo compare` "
            "root."
        )

    def add(dataset: str, model: str, entry: DatasetFiles, origin: Path) -> None:
        by_model = files.setdefault(dataset, {})
        if model in by_model:
            raise PimoValueError(
                f"{origin}: model {model!r} already has scores for dataset {dataset!r} (from "
                f"{by_model[model].aupimo}); rename one of the folders so every model has a "
                "distinct name."
            )
        by_model[model] = entry

    for path in given:
        if path.is_file() and path.name == "aupimos.json":
            path = path.parent.parent if path.parent.name == "aupimo" else path.parent
        if not path.exists():
            raise PimoValueError(
                f"{path} does not exist; give a `pimo evaluate` output folder (with "
                "aupimo/aupimos.json) or a `pimo compare` root."
            )
        if (path / "aupimo" / "aupimos.json").is_file():
            model = path.resolve().name
            dataset = _evaluation_dataset_key(path)
            add(dataset, model, DatasetFiles.beside(path / "aupimo" / "aupimos.json"), path)
            if not (path / "evaluation.json").is_file():
                notes.append(
                    f"{path}: no evaluation.json, so the anomaly maps cannot be found again; "
                    "PIMO curves and heatmaps are skipped for this folder."
                )
            continue
        if not path.is_dir():
            raise PimoValueError(
                f"{path} is neither a folder nor a score file; give a `pimo evaluate` output "
                "folder or a `pimo compare` root."
            )
        try:
            tree = find_score_files(path)
        except PimoError as error:
            raise PimoValueError(
                f"{path} holds no score file: neither aupimo/aupimos.json nor "
                f"<model>/<collection>/<dataset>/aupimo/aupimos.json ({error})."
            ) from error
        for dataset, by_model in tree.files.items():
            for model, entry in by_model.items():
                add(dataset, model, entry, path)
    models = tuple(sorted({model for by_model in files.values() for model in by_model}))
    return ReportSources(tree=ScoreTree(files=files, models=models), notes=notes)


# =============================================================================================
# HTML pieces
# =============================================================================================


def figure_to_data_uri(figure: Figure, *, dpi: int = 110) -> str:
    """Render a figure to a ``data:image/png;base64,...`` URI and free it."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, facecolor="white", bbox_inches="tight",
                       pad_inches=0.1)
    finally:
        figure.clear()
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


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


def _header_row(headers: Sequence[str], *, first_text: bool = True) -> str:
    cells = []
    for index, header in enumerate(headers):
        text_class = ' class="text"' if index == 0 and first_text else ""
        cells.append(
            f'<th scope="col"{text_class} aria-sort="none">'
            f'<button type="button">{_e(header)}</button></th>'
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
        cells = [f'<th scope="row" class="text">{_e(model)}</th>']
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
        "rank (1 = best); pixel-level AUROC, AUPRO and AUPRO up to FPR 5 %."
    )
    caption = f"{dataset}: results"
    return (
        f'<p class="note">{_e(explanation)}</p><div class="table-wrap">'
        f'<table class="sortable results" id="table-{_anchor(dataset)}">'
        f"<caption>{_e(caption)}</caption>"
        + _header_row(["Model", *(header for _, header in columns)])
        + "<tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _confidence_table(dataset: str, comparison: DatasetComparison, level: float) -> str:
    confidence = comparison.confidence
    models = comparison.models
    rows = []
    for model_a in models:
        cells = [f'<th scope="row" class="text">{_e(model_a)}</th>']
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
        "statistically established."
    )
    caption = f"{dataset}: pairwise confidence"
    return (
        f'<p class="note">{_e(explanation)}</p><div class="table-wrap">'
        f'<table class="sortable confidence" '
        f'id="confidence-{_anchor(dataset)}"><caption>{_e(caption)}</caption>'
        + _header_row(["Row beats column", *models])
        + "<tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _summary_table(scope: str, summary: object) -> str:
    from pimo.stats import CrossDatasetSummary

    assert isinstance(summary, CrossDatasetSummary)
    columns = _present(SUMMARY_COLUMNS, [summary.values[m].get for m in summary.models])
    ranks = {name: summary.figure_ranks(name) for name, _ in columns}
    rows = []
    for model in summary.models:
        cells = [f'<th scope="row" class="text">{_e(model)}</th>']
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


def _sample_figures(
    dataset: str, comparison: DatasetComparison, files: DatasetFiles, model: str,
    *, max_samples: int,
) -> str:
    from pimo.plots import format_sample_label, plot_heatmap, plot_pimo_curves
    from pimo.report._evaluation import EvaluationRecord, find_evaluation

    record_path = find_evaluation(files.aupimo)
    if record_path is None:
        return (
            f'<p class="note warning">No evaluation.json beside {_e(files.aupimo)}: the anomaly '
            f"maps of {_e(model)} cannot be found again, so PIMO curves and heatmaps are "
            "skipped. Run <code>pimo evaluate</code> to get them.</p>"
        )
    try:
        result = load_aupimo(files.aupimo)
        record = EvaluationRecord.load(record_path)
        record.check_matches(result)
        samples = comparison.samples(model)[:max_samples]
        selection = {
            _STATISTIC_LABELS.get(sample.statistic, sample.statistic): sample.image_index
            for sample in samples
        }
        source = record.open_maps()
        try:
            curves = record.curves_for(source, result, list(selection.values()))
            loaded = [(label, record.load_sample(source, index))
                      for label, index in selection.items()]
        finally:
            source.close()
    except PimoError as error:
        return (
            f'<p class="note warning">PIMO curves and heatmaps of {_e(model)} are skipped: '
            f"{_e(error)}</p>"
        )
    curve_figure = plot_pimo_curves(
        curves, result, selection=selection, title=f"{dataset}: {model}"
    )
    parts = [_figure_html(
        curve_figure,
        alt=f"PIMO curves (TPR against shared FPR, log scale) of {len(selection)} images of "
        f"{dataset} selected by statistic for {model}.",
        caption="PIMO curves of the images selected by statistic (shaded: integration range).",
    )]
    heatmaps = []
    for label, sample in loaded:
        aupimo = float(result.aupimos[sample.index])
        figure = plot_heatmap(
            sample.image, sample.anomaly_map, sample.mask, result.thresh_bounds,
            statistic=label, aupimo=aupimo, image_index=sample.index,
        )
        text = format_sample_label(label, aupimo, sample.index)
        heatmaps.append(_figure_html(
            figure,
            alt=f"Heatmap of {sample.path} ({text}) for {model}: image with the anomaly map "
            "in the AUPIMO colour scheme and the ground-truth contour.",
            caption=f"{text} — {sample.path}",
        ))
    return (
        '<div class="figures">' + "".join(parts) + "</div>"
        + f"<h4>Heatmaps ({_e(model)})</h4>"
        + '<div class="heatmaps">' + "".join(heatmaps) + "</div>"
    )


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
    title: str = "AUPIMO report",
    test: str = "wilcoxon",
    level: float = 0.95,
    max_samples: int = 8,
    curves: bool = True,
    analysis: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Write the HTML report of some results.

    Parameters
    ----------
    sources : path or iterable of paths
        ``pimo evaluate`` output folders and/or ``pimo compare`` roots (published layout).
    output : path
        The HTML file, or a folder (then ``report.html`` in it; created when missing).
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

    Returns
    -------
    Path
        The file written.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    collected = collect_sources(sources)
    target = _resolve_output(output)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        benchmark = compare_score_tree(collected.tree, test=test)  # type: ignore[arg-type]
    notes = list(collected.notes) + [str(w.message) for w in caught
                                     if str(w.message) not in benchmark.notes]
    notes += list(benchmark.notes)
    content, nav = _pages(benchmark, collected.tree, level=level, max_samples=max_samples,
                          curves=curves, notes=notes)
    if analysis:
        from pimo.report._analysis import analysis_pages

        pages, links = analysis_pages(analysis)
        content, nav = content + pages, nav + links
    subtitle = (
        f"{len(benchmark.datasets)} dataset(s), {len(collected.tree.models)} model(s)"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(target, _render(title, subtitle, nav, content))


def _pages(
    benchmark: BenchmarkComparison, tree: ScoreTree, *, level: float, max_samples: int,
    curves: bool, notes: Sequence[str],
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
    for dataset, comparison in benchmark.datasets.items():
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
        if len(comparison.models) > 1:
            parts.append("<h3>Pairwise confidence</h3>")
            parts.append(_confidence_table(dataset, comparison, level))
        parts.append("<h3>Figures</h3>")
        parts.append(_comparison_figures(dataset, comparison, level))
        best = comparison.models[0]
        parts.append(f"<h3>Selected images of the best model ({_e(best)})</h3>")
        if curves:
            parts.append(_sample_figures(
                dataset, comparison, tree.files[dataset][best], best, max_samples=max_samples
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

