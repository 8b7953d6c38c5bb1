"""``pimo show``: the PIMO curve and heatmap of one image of a ``pimo evaluate`` output."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("show")
@click.argument("evaluation", type=click.Path(path_type=Path))
@click.argument("image")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), default=None,
    help="PNG file to write (default: show-<index>.png in EVALUATION).",
)
@click.option("--dpi", type=click.IntRange(min=30, max=600), default=120, show_default=True)
def show_command(evaluation: Path, image: str, output: Path | None, dpi: int) -> None:
    """Draw the PIMO curve and heatmap of IMAGE from the EVALUATION folder.

    EVALUATION is a `pimo evaluate` output folder (aupimo/aupimos.json and evaluation.json).
    IMAGE is an index in the score list or a path relative to the dataset root (a unique
    suffix such as crack/003.png is enough).
    """
    from pimo.report.show import render_image_diagnosis

    written = render_image_diagnosis(evaluation, image, output, dpi=dpi)
    click.echo(str(written))
