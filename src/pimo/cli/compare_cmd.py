"""``pimo compare``: compare models from their per-image scores (the paper's tables and tests).

The command reads score files (the published layout ``<model>/<collection>/<dataset>/aupimo/
aupimos.json`` under ROOT, and/or explicit ``--model NAME=PATH``), compares the models on each
dataset with :func:`pimo.stats.compare_score_tree`, and prints

- per dataset, the paper's table (App. D.4): AUROC, AUPRO, AUPRO 5 % (when the files exist),
  average AUPIMO, its std, P33 and the average image-wise rank, each figure with the model's rank
  in parentheses, models ordered by average rank; then the pairwise confidence matrix with the
  cells below 95 % highlighted;
- the cross-dataset summary per collection and over all datasets (paper, Table 5).

Tables are printed with rich, or as Markdown (``--markdown``) or LaTeX (``--latex``); ``--json``
and ``--csv`` write machine-readable results (fractions, not percent).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pimo._io import atomic_write_text, check_output_file, check_output_folder, dump_json

if TYPE_CHECKING:
    from pimo.stats import BenchmarkComparison, CrossDatasetSummary, DatasetComparison

__all__ = ["compare_command"]

#: Confidence below which a cell of the pairwise matrix is highlighted (paper, App. D.4).
CONFIDENCE_LEVEL = 0.95

_SET_METRIC_HEADERS = {"auroc": "AUROC", "aupro": "AUPRO", "aupro_05": "AUPRO 5%"}


# =============================================================================================
# a format-neutral table, rendered by rich, Markdown or LaTeX
# =============================================================================================


@dataclass(frozen=True)
class Cell:
    """One table cell: its text and whether it is highlighted."""

    text: str
    highlight: bool = False


@dataclass
class TextTable:
    """A table of pre-formatted cells; the first ``left_columns`` columns are left-aligned."""

    title: str
    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str | None = None
    left_columns: int = 2


def _percent(value: float | None, decimals: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{decimals}f}%"


def _with_rank(text: str, rank: int | None) -> str:
    return text if rank is None else f"{text} ({rank})"


def _confidence_text(value: float) -> str:
    """Confidence as in the paper: whole percent, ``<1%`` for small non-zero values."""
    if math.isnan(value):
        return ""
    if 0 < value < 0.005:
        return "<1%"
    return f"{100 * value:.0f}%"


def _set_metrics_present(values: Iterable[dict[str, float | None]]) -> list[str]:
    values = list(values)
    return [
        name for name in _SET_METRIC_HEADERS
        if any(entry.get(name) is not None for entry in values)
    ]


def dataset_tables(
    key: str, comparison: DatasetComparison, *, full_matrix: bool = False) -> list[TextTable]:
    """The statistics table and the confidence matrix of one dataset."""
    models = comparison.models
    summaries = comparison.summaries
    set_metrics = _set_metrics_present(summaries[m].set_metrics for m in models)
    header = ["#", "Model"]
    header += [_SET_METRIC_HEADERS[name] for name in set_metrics]
    header += ["Avg. AUPIMO", "Std. AUPIMO", "P33 AUPIMO", "Avg. rank"]
    ranks = {name: comparison.figure_ranks(name) for name in (*set_metrics, "mean", "p33",
                                                               "avg_rank")}
    stats_table = TextTable(
        title=(
            f"{key} — {comparison.num_images} images ({comparison.num_anomalous} anomalous), "
            f"{len(models)} models"
        ),
        header=header,
        caption=(
            f"Left out (no scores for this dataset): {', '.join(comparison.missing_models)}."
            if comparison.missing_models else None
        ),
    )
    for position, model in enumerate(models, start=1):
        summary = summaries[model]
        stats = summary.statistics
        row = [Cell(str(position)), Cell(model)]
        row += [
            Cell(_with_rank(_percent(summary.set_metrics.get(name)), ranks[name][model]))
            for name in set_metrics
        ]
        row += [
            Cell(_with_rank(_percent(stats.mean), ranks["mean"][model])),
            Cell(_percent(stats.std)),
            Cell(_with_rank(_percent(stats.p33), ranks["p33"][model])),
            Cell(_with_rank(f"{summary.average_rank:.1f}", ranks["avg_rank"][model])),
        ]
        stats_table.rows.append(row)

    test_name = (
        "one-sided Wilcoxon signed-rank test" if comparison.confidence.test == "wilcoxon"
        else "one-sided paired t-test"
    )
    matrix_table = TextTable(
        title=f"{key} — confidence that the row model beats the column model",
        header=["#", "Model (avg. rank)"] + [str(i) for i in range(1, len(models) + 1)],
        caption=(
            f"Confidence = 1 − p ({test_name} on the anomalous images' AUPIMO); "
            f"cells below {100 * CONFIDENCE_LEVEL:.0f}% are highlighted."
            + ("" if full_matrix else " Only pairs where the row model has the better "
               "average rank are shown (--full-matrix for all).")
        ),
    )
    for i, model_a in enumerate(models):
        row = [
            Cell(str(i + 1)),
            Cell(f"{model_a} ({summaries[model_a].average_rank:.1f})"),
        ]
        for j, model_b in enumerate(models):
            if i == j or (j < i and not full_matrix):
                row.append(Cell(""))
                continue
            value = comparison.confidence.confidence(model_a, model_b)
            row.append(Cell(_confidence_text(value), highlight=value < CONFIDENCE_LEVEL))
        matrix_table.rows.append(row)
    return [stats_table, matrix_table]


def summary_table(summary: CrossDatasetSummary) -> TextTable:
    """The cross-dataset summary of one scope (paper, Table 5)."""
    models = summary.models
    set_metrics = _set_metrics_present(summary.values[m] for m in models)
    header = ["#", "Model", "Datasets"]
    header += [_SET_METRIC_HEADERS[name] for name in set_metrics]
    header += ["Avg. AUPIMO", "P33 AUPIMO", "Avg. rank"]
    ranks = {name: summary.figure_ranks(name) for name in (*set_metrics, "mean", "p33",
                                                            "avg_rank")}
    scope = "all datasets" if summary.scope == "all" else f"collection {summary.scope}"
    table = TextTable(
        title=f"Summary over {scope} ({len(summary.datasets)} datasets)",
        header=header,
        caption=(
            "Means over datasets of each dataset's figure (scores in %, rank in parentheses)."
        ),
        left_columns=2,
    )
    for position, model in enumerate(models, start=1):
        values = summary.values[model]
        row = [Cell(str(position)), Cell(model), Cell(str(summary.num_datasets[model]))]
        row += [
            Cell(_with_rank(_percent(values[name], 2), ranks[name][model]))
            for name in set_metrics
        ]
        row += [
            Cell(_with_rank(_percent(values["mean"], 2), ranks["mean"][model])),
            Cell(_with_rank(_percent(values["p33"], 2), ranks["p33"][model])),
            Cell(_with_rank(f"{values['avg_rank']:.1f}", ranks["avg_rank"][model])),
        ]
        table.rows.append(row)
    return table


def render_markdown(table: TextTable) -> str:
    """A GitHub-flavoured Markdown table; highlighted cells in bold."""

    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    def cell(item: Cell) -> str:
        text = escape(item.text)
        return f"**{text}**" if item.highlight and text else text

    lines = [f"### {escape(table.title)}", ""]
    lines.append("| " + " | ".join(escape(h) for h in table.header) + " |")
    lines.append(
        "|" + "|".join(
            ":---" if i < table.left_columns else "---:" for i in range(len(table.header))
        ) + "|"
    )
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", escape(table.caption)]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    replacements = {
        "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
        "—": "---", "−": "-",
    }
    return "".join(replacements.get(char, char) for char in text)


def render_latex(table: TextTable) -> str:
    """A LaTeX ``table`` (``tabular``, ``\\hline`` rules); highlighted cells in bold."""

    def cell(item: Cell) -> str:
        text = _latex_escape(item.text)
        return f"\\textbf{{{text}}}" if item.highlight and text else text

    spec = "".join("l" if i < table.left_columns else "r" for i in range(len(table.header)))
    lines = [
        "\\begin{table}[ht]",
        "\\centering",
        "\\small",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\hline",
        " & ".join(_latex_escape(h) for h in table.header) + " \\\\",
        "\\hline",
    ]
    lines += [" & ".join(cell(c) for c in row) + " \\\\" for row in table.rows]
    lines += ["\\hline", "\\end{tabular}"]
    caption = _latex_escape(table.title)
    if table.caption:
        caption += ". " + _latex_escape(table.caption)
    lines += [f"\\caption{{{caption}}}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _print_rich(tables: Sequence[TextTable]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe or a file: wide tables are not wrapped
        console = Console(highlight=False, width=220)
    # without colours (a pipe, NO_COLOR), highlighted cells are marked with a star instead
    plain = console.no_color or console.color_system is None

    def cell(item: Cell) -> Text:
        if not item.highlight or not item.text:
            return Text(item.text)
        return Text(item.text + "*") if plain else Text(item.text, style="bold red")

    for table in tables:
        caption = table.caption
        if caption and plain:
            caption = caption.replace("are highlighted", "are marked *")
        rich_table = Table(
            title=Text(table.title, style="bold"),
            caption=Text(caption) if caption else None,
            caption_justify="left",
        )
        for index, name in enumerate(table.header):
            rich_table.add_column(
                name, justify="left" if index < table.left_columns else "right", no_wrap=True
            )
        for row in table.rows:
            rich_table.add_row(*(cell(c) for c in row))
        console.print(rich_table)
        console.print()


# =============================================================================================
# machine-readable output
# =============================================================================================


def _csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()


def _split_key(key: str) -> tuple[str, str]:
    collection, _, dataset = key.partition("/")
    return (collection, dataset) if dataset else ("", key)


def write_csv_tables(result: BenchmarkComparison, folder: Path) -> list[Path]:
    """Write tidy CSV tables (one row per observation) into ``folder``; return their paths.

    - ``models.csv``: one row per dataset and model — AUPIMO statistics, average rank, set
      metrics, image counts;
    - ``confidence.csv``: one row per dataset and ordered pair of models;
    - ``summary.csv``: one row per scope (collection or ``all``) and model;
    - ``image_scores.csv``: one row per dataset, anomalous image and model — score and rank;
    - ``samples.csv``: one row per dataset, model and boxplot statistic — the selected image.
    """
    from pimo.stats import SET_METRICS, SUMMARY_FIGURES

    model_rows, confidence_rows, image_rows, sample_rows = [], [], [], []
    statistics = ("mean", "std", "p33", "median", "q1", "q3", "min", "max")
    for key, comparison in result.datasets.items():
        collection, dataset = _split_key(key)
        for position, model in enumerate(comparison.models, start=1):
            record = comparison.summaries[model].to_dict()
            model_rows.append(
                [collection, dataset, model, position]
                + [record[name] for name in (*statistics, "avg_rank", *SET_METRICS)]
                + [record["num_images"], record["num_anomalous"]]
            )
            for other in comparison.models:
                if other != model:
                    confidence_rows.append([
                        collection, dataset, model, other,
                        comparison.confidence.confidence(model, other),
                        comparison.confidence.test,
                    ])
            for sample in comparison.samples(model):
                sample_rows.append([
                    collection, dataset, model, sample.statistic, sample.statistic_value,
                    sample.image_index, sample.path, sample.score,
                ])
        aligned, ranks = comparison.aligned, comparison.ranks
        for column, image_index in enumerate(ranks.image_indices):
            path = aligned.paths[image_index] if aligned.paths else None
            for row, model in enumerate(ranks.models):
                image_rows.append([
                    collection, dataset, int(image_index), path, model,
                    float(aligned.scores[row, image_index]), float(ranks.ranks[row, column]),
                ])
    summary_rows = [
        [scope, model] + [summary.values[model][name] for name in SUMMARY_FIGURES]
        + [summary.num_datasets[model]]
        for scope, summary in result.summary.items()
        for model in summary.models
    ]
    tables = {
        "models.csv": (
            ["collection", "dataset", "model", "position", *statistics, "avg_rank",
             *SET_METRICS, "num_images", "num_anomalous"],
            model_rows,
        ),
        "confidence.csv": (
            ["collection", "dataset", "model_a", "model_b", "confidence", "test"],
            confidence_rows,
        ),
        "summary.csv": (["scope", "model", *SUMMARY_FIGURES, "num_datasets"], summary_rows),
        "image_scores.csv": (
            ["collection", "dataset", "image_index", "path", "model", "score", "rank"],
            image_rows,
        ),
        "samples.csv": (
            ["collection", "dataset", "model", "statistic", "statistic_value", "image_index",
             "path", "score"],
            sample_rows,
        ),
    }
    written = []
    for name, (header, rows) in tables.items():
        written.append(atomic_write_text(folder / name, _csv_text(header, rows)))
    return written


# =============================================================================================
# the command
# =============================================================================================


def _split_names(values: Sequence[str]) -> list[str] | None:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return names or None


def _parse_model_specs(specs: Sequence[str]) -> dict[str, str]:
    models: dict[str, str] = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator or not name.strip() or not path.strip():
            raise click.BadParameter(
                f"{spec!r}: expected NAME=PATH (e.g. patchcore=results/patchcore/aupimos.json).",
                param_hint="--model",
            )
        if name.strip() in models:
            raise click.BadParameter(f"model name {name.strip()!r} given twice.",
                                     param_hint="--model")
        models[name.strip()] = path.strip()
    return models


@click.command("compare")
@click.argument("root", required=False, type=click.Path(path_type=Path))
@click.option(
    "--model", "model_specs", multiple=True, metavar="NAME=PATH",
    help="Add a model: a score file (aupimos.json), a folder holding aupimo/aupimos.json, or a "
         "model folder <collection>/<dataset>/aupimo/aupimos.json. Repeatable; combines with "
         "ROOT.",
)
@click.option(
    "--datasets", "dataset_filter", multiple=True, metavar="NAMES",
    help="Only these datasets (comma-separated): 'collection/dataset', a dataset name or a "
         "collection, e.g. --datasets mvtec/bottle,visa.",
)
@click.option(
    "--models", "model_filter", multiple=True, metavar="NAMES",
    help="Only these models (comma-separated).",
)
@click.option(
    "--test", "test", type=click.Choice(["wilcoxon", "ttest"]), default="wilcoxon",
    show_default=True, help="Pairwise test: one-sided Wilcoxon signed-rank or paired t-test.",
)
@click.option(
    "--zero-tolerance", type=click.FloatRange(min=0), default=1e-3, show_default=True,
    help="Wilcoxon: paired differences with |d| <= this count as ties (dropped).",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every figure (fractions, not percent) to this JSON file.")
@click.option("--csv", "csv_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write tidy CSV tables into this folder.")
@click.option("--markdown", is_flag=True, help="Print the tables as Markdown.")
@click.option("--latex", is_flag=True, help="Print the tables as LaTeX.")
@click.option("--full-matrix", is_flag=True,
              help="Show both directions of every pair in the confidence matrix.")
@click.option("--summary-only", is_flag=True, help="Print only the cross-dataset summaries.")
@click.option("--quiet", "-q", is_flag=True, help="Print no table (use with --json/--csv).")
def compare_command(
    root: Path | None,
    model_specs: tuple[str, ...],
    dataset_filter: tuple[str, ...],
    model_filter: tuple[str, ...],
    test: str,
    zero_tolerance: float,
    json_path: Path | None,
    csv_dir: Path | None,
    markdown: bool,
    latex: bool,
    full_matrix: bool,
    summary_only: bool,
    quiet: bool,
) -> None:
    """Compare models from their per-image AUPIMO scores (tables and tests of the paper).

    ROOT holds the published layout <model>/<collection>/<dataset>/aupimo/aupimos.json, with
    optional auroc.json, aupro.json and aupro_05.json beside aupimo/ — e.g.
    paper-benchmark/benchmark. Models can also be given one by one with --model NAME=PATH.

    Per dataset: AUROC, AUPRO, AUPRO 5%, average, std and P33 of AUPIMO over the anomalous
    images and the average image-wise rank (1 = best), with each model's rank in parentheses;
    then the pairwise confidence (1 - p) that one model beats another, below 95% highlighted.
    Then the means over the datasets of each collection and of all (paper, Table 5).
    """
    from pimo import stats

    if markdown and latex:
        raise click.UsageError("Choose one of --markdown and --latex.")
    if root is None and not model_specs:
        raise click.UsageError("Give ROOT (a folder of score files) or at least one --model.")
    if json_path is not None:
        check_output_file(json_path, "--json file")
    if csv_dir is not None:
        check_output_folder(csv_dir, "--csv folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trees = []
        if root is not None:
            trees.append(stats.find_score_files(root))
        if model_specs:
            trees.append(stats.explicit_score_tree(_parse_model_specs(model_specs)))
        tree = trees[0] if len(trees) == 1 else trees[0].merged(trees[1])
        tree = tree.select(
            datasets=_split_names(dataset_filter), models=_split_names(model_filter)
        )
        result = stats.compare_score_tree(tree, test=test, zero_tolerance=zero_tolerance)
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)

    if json_path is not None:
        dump_json(json_path, result.to_dict())
    if csv_dir is not None:
        write_csv_tables(result, csv_dir)
    if quiet:
        return

    tables: list[TextTable] = []
    if not summary_only:
        for key, comparison in result.datasets.items():
            tables += dataset_tables(key, comparison, full_matrix=full_matrix)
    if summary_only or len(result.datasets) > 1:
        scopes = list(result.summary)
        if len(scopes) == 2:  # one collection: its summary equals the one over all datasets
            scopes = scopes[:1]
        tables += [summary_table(result.summary[scope]) for scope in scopes]
    if markdown:
        click.echo("\n".join(render_markdown(table) for table in tables), nl=False)
    elif latex:
        click.echo("\n".join(render_latex(table) for table in tables), nl=False)
    else:
        _print_rich(tables)
    if json_path is not None:
        click.echo(f"wrote {json_path}", err=True)
    if csv_dir is not None:
        click.echo(f"wrote CSV tables to {csv_dir}", err=True)
