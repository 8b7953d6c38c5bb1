"""One image's PIMO curve and heatmap, from a ``pimo evaluate`` output folder (``pimo show``)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from pimo._io import atomic_write_bytes, check_output_file
from pimo._validate import PimoValueError
from pimo.report._evaluation import EVALUATION_FILE, EvaluationRecord
from pimo.results import load_aupimo

__all__ = ["render_image_diagnosis"]


def render_image_diagnosis(
    evaluation: str | os.PathLike[str],
    image: str | int,
    output: str | os.PathLike[str] | None = None,
    *,
    dpi: int = 120,
) -> Path:
    """Write the PNG of one image's PIMO curve next to its heatmap.

    For a normal image (no PIMO curve) its false positives at the thresholds of the two FPR
    bounds are drawn instead of the curve (:func:`pimo.plots.plot_bound_false_positives`).

    Parameters
    ----------
    evaluation : path
        A ``pimo evaluate`` output folder (``aupimo/aupimos.json`` and ``evaluation.json``).
    image : str or int
        Index in the score list, or the image's path relative to the dataset root (a unique
        suffix is enough).
    output : path, optional
        The PNG to write; default ``show-<index>.png`` in ``evaluation``.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    PimoValueError
        When a file is missing or the image is not found; the message names the fix.
    """
    from pimo.plots import plot_image_diagnosis

    folder = Path(evaluation)
    if output is not None:
        check_output_file(output, "figure")
    score_file = folder / "aupimo" / "aupimos.json"
    record_file = folder / EVALUATION_FILE
    for needed in (score_file, record_file):
        if not needed.is_file():
            raise PimoValueError(
                f"{needed} does not exist: `pimo show` needs a `pimo evaluate` output folder "
                "(with aupimo/aupimos.json and evaluation.json); run `pimo evaluate` first."
            )
    result = load_aupimo(score_file)
    record = EvaluationRecord.load(record_file)
    record.check_matches(result)
    index = record.index_of(str(image))
    source = record.open_maps()
    normal = result.image_classes[index] != 1
    try:  # a normal image has no PIMO curve: its false positives at the bounds are drawn
        curves = None if normal else record.curves_for(source, result, [index])
        sample = record.load_sample(source, index)
    finally:
        source.close()
    figure = plot_image_diagnosis(
        curves, result, index, sample.image, sample.anomaly_map, sample.mask, title=sample.path,
        ignore=sample.ignore,
    )
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    finally:
        figure.clear()
    target = Path(output) if output is not None else folder / f"show-{index:03d}.png"
    if target.suffix.lower() != ".png":
        raise PimoValueError(f"{target}: `pimo show` writes a PNG; give a name ending in .png.")
    return atomic_write_bytes(target, buffer.getvalue())
