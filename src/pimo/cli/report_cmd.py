"""``pimo report``: one self-contained HTML report of evaluation outputs and benchmark trees."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("results", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--model", "model_specs", multiple=True, metavar="NAME=PATH",
    help="Add a model under this name: a `pimo evaluate` output folder or a model's folder of "
         "categories (<collection>/<dataset>/aupimo/aupimos.json). Repeatable.",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path),
    help="The HTML file to write, or a folder (report.html is written in it).",
)
@click.option("--title", default="AUPIMO report", show_default=True, help="The report's title.")
@click.option(
    "--test", type=click.Choice(["wilcoxon", "ttest"]), default="wilcoxon", show_default=True,
    help="Paired test of the confidence matrix.",
)
@click.option(
    "--max-samples", type=click.IntRange(min=0), default=8, show_default=True,
    help="Most images per dataset drawn as PIMO curves and heatmaps.",
)
@click.option(
    "--no-curves", is_flag=True,
    help="Skip PIMO curves and heatmaps (they need the maps and images on disk).",
)
@click.option(
    "--analysis", "analysis", multiple=True, type=click.Path(path_type=Path),
    help="A `pimo analyze` output folder to add as Analyses pages (repeatable).",
)
def report_command(
    results: tuple[Path, ...], model_specs: tuple[str, ...], output: Path, title: str,
    test: str, max_samples: int, no_curves: bool, analysis: tuple[Path, ...],
) -> None:
    """Write one HTML report of RESULTS.

    Each of RESULTS is a `pimo evaluate` output folder (with aupimo/aupimos.json and, for the
    PIMO curves and heatmaps, evaluation.json), one model's `pimo evaluate --categories all`
    output, or a `pimo compare` root laid out as
    <model>/<collection>/<dataset>/aupimo/aupimos.json. Models are named as recorded by
    `pimo evaluate --model-name` (default: the maps folder's name); --model NAME=PATH names
    them explicitly. The report is a single file with everything embedded: open it in any
    browser, offline.

        pimo report out/patchcore out/padim -o report.html
        pimo report --model patchcore=out/a --model padim=out/b -o report.html
    """
    import warnings

    from pimo.cli.compare_cmd import _parse_model_specs
    from pimo.report import build_report

    if not results and not model_specs:
        raise click.UsageError("Give RESULTS (evaluate outputs or a compare root) or --model.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = build_report(
            results, output, models=_parse_model_specs(model_specs), title=title, test=test,
            max_samples=max_samples, curves=not no_curves and max_samples > 0,
            progress=lambda line: click.echo(f"report: {line}", err=True),
            analysis=analysis,
        )
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    click.echo(str(written))
