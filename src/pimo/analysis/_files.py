"""Output files of ``pimo analyze``: names, and atomic CSV/PNG/JSON writers."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from pimo._io import atomic_write_bytes, atomic_write_text, dump_json

__all__ = ["ANALYSIS_FILES", "write_csv", "write_json", "write_png"]

#: analysis -> (summary JSON, per-item CSV, figure) written in the output folder.
ANALYSIS_FILES: dict[str, tuple[str, str, str]] = {
    "sizes": ("sizes.json", "sizes.csv", "sizes.png"),
    "fp-regions": ("fp_regions.json", "fp_regions.csv", "fp_regions.png"),
    "robustness": ("robustness.json", "robustness.csv", "robustness.png"),
    "video": ("video.json", "video.csv", "video.png"),
}


def write_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]],
              columns: Sequence[str]) -> Path:
    """Write ``rows`` as CSV with a header of ``columns``, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: row[column] for column in columns})
    return atomic_write_text(path, buffer.getvalue())


def write_png(path: str | os.PathLike[str], figure: Figure, *, dpi: int = 130) -> Path:
    """Render ``figure`` as PNG into ``path``, atomically, and free it."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    finally:
        figure.clear()
    return atomic_write_bytes(path, buffer.getvalue())


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Strict JSON, atomically (:func:`pimo._io.dump_json`)."""
    return dump_json(path, payload)
