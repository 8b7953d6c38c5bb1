"""``pimo demo``: build a small synthetic dataset, score it with three detectors, evaluate them.

Layout of ``OUT`` (default ``pimo-demo``)::

    OUT/dataset/<category>/{train,test,ground_truth}/...   MVTec-AD-style images and masks
    OUT/maps/<detector>/<category>/test/<defect>/<id>.npy  anomaly maps (quarter resolution
                                                          for the patch detectors)
    OUT/results/<detector>/mvtec/<category>/               pimo evaluate's output
    OUT/report.html                                        pimo report of OUT/results
"""

from __future__ import annotations

import time
from pathlib import Path

import click

__all__ = ["demo_command", "run_demo"]


def run_demo(
    out_dir: str | Path,
    *,
    size: int = 256,
    num_images: int = 20,
    fpr_bounds: tuple[float, float] = (1e-5, 1e-4),
    quiet: bool = False,
) -> list[Path]:
    """Build the demo dataset and maps in ``out_dir`` and evaluate every detector.

    Parameters
    ----------
    out_dir : path-like
        Where everything is written.
    size : int
        Image side in pixels.
    num_images : int
        Normal and anomalous test images per category (each).
    fpr_bounds : (float, float)
        AUPIMO's integration range.
    quiet : bool
        No progress bars or tables.

    Returns
    -------
    list of Path
        The evaluation folders (one per detector and category), each holding
        ``evaluation.json`` and the score files.
    """
    from pimo.cli.evaluate_cmd import print_summary, run_evaluations
    from pimo.data.demo import DETECTORS, make_demo_dataset, write_detector_maps

    out = Path(out_dir)

    def say(message: str) -> None:
        if not quiet:
            click.echo(message)

    say(f"Building the demo dataset in {out / 'dataset'} ...")
    dataset = make_demo_dataset(out / "dataset", size=size, num_normal=num_images,
                                num_anomalous=num_images)
    folders: list[Path] = []
    for position, detector in enumerate(DETECTORS, start=1):
        say(f"Detector {position}/{len(DETECTORS)}: {detector} — "
            f"{DETECTORS[detector].description}. Computing its anomaly maps ...")
        maps = write_detector_maps(dataset, out / "maps" / detector, detector)
        say(f"Detector {position}/{len(DETECTORS)}: {detector}: evaluating ...")
        done = run_evaluations(f"mvtec:{dataset}", maps, out / "results" / detector,
                               categories=sorted(p.name for p in dataset.iterdir()),
                               fpr_bounds=fpr_bounds, quiet=quiet, model_name=detector)
        if not quiet:
            print_summary([result for result, _ in done],
                          title=f"{detector}: {DETECTORS[detector].description}")
        folders.extend(folder for _, folder in done)
    return folders


@click.command("demo")
@click.argument("out", required=False, default="pimo-demo", type=click.Path(path_type=Path))
@click.option("--size", type=click.IntRange(min=32), default=256, show_default=True,
              help="Image side in pixels (smaller is faster).")
@click.option("--images", "num_images", type=click.IntRange(min=3), default=20,
              show_default=True, help="Normal and anomalous test images per category (each).")
@click.option("--fpr-bounds", nargs=2, type=float, default=(1e-5, 1e-4), show_default=True,
              metavar="L U", help="AUPIMO's shared-FPR range (small sizes need a larger L).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no tables.")
def demo_command(out: Path, size: int, num_images: int, fpr_bounds: tuple[float, float],
                 quiet: bool) -> int:
    """Build a small synthetic MVTec-style dataset in OUT, score it with three simple detectors,
    and evaluate each (AUPIMO, AUROC, AUPRO)."""
    started = time.perf_counter()
    folders = run_demo(out, size=size, num_images=num_images, fpr_bounds=fpr_bounds,
                       quiet=quiet)
    click.echo(f"Demo done in {time.perf_counter() - started:.0f} s: dataset in {out / 'dataset'}, "
               f"maps in {out / 'maps'}, results in:")
    for folder in folders:
        click.echo(f"  {folder}")
    from pimo.report import build_report

    if not quiet:
        click.echo("Writing the report ...")
    report = build_report(
        [out / "results"], out / "report.html", title="pimo demo",
        progress=None if quiet else (lambda line: click.echo(f"report: {line}", err=True)),
    )
    click.echo(f"Report (open it in a browser): {report}")
    click.echo(f"Compare the detectors with the paper's statistics: pimo compare {out / 'results'}")
    return 0
