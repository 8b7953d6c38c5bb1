"""``pimo report``: one self-contained HTML report of evaluation outputs and benchmark trees."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
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
    results: tuple[Path, ...], output: Path, title: str, test: str, max_samples: int,
    no_curves: bool, analysis: tuple[Path, ...],
) -> None:
    """Write one HTML report of RESULTS.

    Each of RESULTS is a `pimo evaluate` output folder (with aupimo/aupimos.json and, for the
    PIMO curves and heatmaps, evaluation.json) or a `pimo compare` root laid out as
    <model>/<collection>/<dataset>/aupimo/aupimos.json. The report is a single file with
    everything embedded: open it in any browser, offline.
    """
    from pimo.report import build_report

    written = build_report(
        results, output, title=title, test=test, max_samples=max_samples,
        curves=not no_curves and max_samples > 0, analysis=analysis,
    )
    click.echo(str(written))
