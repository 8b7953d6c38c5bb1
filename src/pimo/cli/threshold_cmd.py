"""``pimo threshold``: an operating threshold chosen on the normal images of .npy/.npz stacks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pimo._validate import THRESHOLD_KINDS
from pimo.cli.aupimo_cmd import load_stacks, stack_input_options

if TYPE_CHECKING:
    from pimo.thresholds import OperatingThreshold


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _print_result(result: OperatingThreshold, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = result.summary()
    normal, anomalous = summary["normal"], summary["anomalous"]
    rule = (f"shared FPR <= {result.target_fpr:g}" if result.kind == "shared" else
            f"{_percent(result.share)} of normal images with FPR <= {result.target_fpr:g}")
    click.echo(f"{title}\nthreshold {result.threshold!r}  ({rule}; a >= threshold is anomalous)")
    click.echo(f"achieved shared FPR {result.shared_fpr:.4g}; normal images within the target "
               f"{_percent(result.normal_share)}")
    table = Table(title="At the threshold")
    for column in ("images", "count", "mean FPR", "mean FP regions", "FP regions P90",
                   "<= 1 FP region", "mean TPR", "mean IoU", "mean F1"):
        table.add_column(column, justify="right")
    quantiles = normal["fp_regions_quantiles"]
    table.add_row(
        "normal", str(normal["num_images"]), f"{normal['mean_fpr']:.3g}",
        f"{normal['mean_fp_regions']:.2f}", f"{quantiles['p90']:.1f}",
        _percent(normal["share_fp_regions_le_1"]), "-", "-", "-",
    )
    if anomalous["num_images"]:
        anomalous_fpr = result.fpr[result.image_classes == 1]
        table.add_row(
            "anomalous", str(anomalous["num_images"]), f"{float(anomalous_fpr.mean()):.3g}",
            f"{anomalous['mean_fp_regions']:.2f}", "-", "-", _percent(anomalous["mean_tpr"]),
            _percent(anomalous["mean_iou"]), _percent(anomalous["mean_f1"]),
        )
    Console().print(table)


@click.command("threshold")
@click.argument("maps", type=click.Path(path_type=Path))
@click.argument("masks", type=click.Path(path_type=Path))
@click.option("--fpr", "target_fpr", type=float, required=True,
              help="Target false-positive rate in (0, 1], e.g. 1e-4.")
@click.option("--kind", type=click.Choice(THRESHOLD_KINDS), default="shared", show_default=True,
              help="shared: mean FPR of the normal images <= target; per-image: each normal "
                   "image's FPR <= target for a share of them.")
@click.option("--share", type=float, default=None,
              help="With --kind per-image: fraction of normal images that must meet the "
                   "target (default 1).")
@click.option("--connectivity", type=int, default=None,
              help="FP-region connectivity (4 or 8 in 2-D); default 8.")
@stack_input_options
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write the threshold and its per-image results (JSON) here.")
def threshold_command(maps: Path, masks: Path, target_fpr: float, kind: str,
                      share: float | None, connectivity: int | None,
                      mask_threshold: float | None, resize: bool,
                      ignore_masks_path: Path | None, output: Path | None) -> None:
    """Choose an operating threshold on the normal images of MAPS and MASKS.

    MAPS and MASKS are .npy/.npz stacks of shape (N, H, W), as for `pimo aupimo`; all-zero
    masks mark the normal images, which alone choose the threshold. Prints the threshold and
    what it gives on every image (TPR, IoU, F1, FPR, false-positive regions). The JSON
    written with -o records --mask-threshold, --resize and --ignore-masks: a threshold chosen
    on resized maps holds for maps resized the same way. Example:

    \b
        pimo threshold maps.npy masks.npy --fpr 1e-4 -o threshold.json
        pimo threshold maps.npy masks.npy --fpr 1e-4 --ignore-masks border.npy
        pimo threshold small_maps.npy masks_0_255.npy --fpr 1e-4 --resize --mask-threshold 0
    """
    import pimo
    from pimo._io import check_output_file

    if output is not None:
        check_output_file(output, "threshold file")
    inputs = load_stacks(maps, masks, mask_threshold=mask_threshold, resize=resize,
                         ignore_masks_path=ignore_masks_path)
    result = pimo.threshold_at(inputs.anomaly_maps, inputs.masks, fpr=target_fpr, kind=kind,
                               share=share, paths=inputs.paths, connectivity=connectivity,
                               ignore_masks=inputs.ignore_masks)
    if inputs.settings:
        result = replace(result, extra={**result.extra, **inputs.settings})
    _print_result(result, inputs.describe(f"Operating threshold of {maps}"))
    if output is not None:
        click.echo(f"wrote {result.save(output)}")
