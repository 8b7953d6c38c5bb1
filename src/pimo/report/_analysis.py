"""The report's "Analyses" pages: the outputs of ``pimo analyze`` (JSON summary + PNG figure)."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pimo._io import read_json
from pimo._validate import PimoValueError
from pimo.analysis._files import ANALYSIS_FILES

__all__ = ["analysis_pages"]

_TITLES = {
    "sizes": "Sizes of the ground-truth regions",
    "fp-regions": "False-positive regions vs image FPR (normal images)",
    "robustness": "Robustness to noisy annotations (clean - noisy)",
    "video": "Per-frame AUPIMO in videos",
}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _number(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{scale * float(value):.{digits}f}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    from pimo.report import _header_row

    body = "".join(
        "<tr>" + "".join(
            (f'<th scope="row" class="text">{_e(cell)}</th>' if k == 0 else f"<td>{_e(cell)}</td>")
            for k, cell in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return (f'<div class="table-wrap"><table class="sortable">{_header_row(headers)}'
            f"<tbody>{body}</tbody></table></div>")


def _sizes_table(payload: dict[str, Any]) -> str:
    datasets = payload["datasets"]
    first = next(iter(datasets.values()))["tiny_regions"]
    size_labels = list(first["regions_by_size"])
    count_labels = list(first["images_by_count"])
    headers = ["dataset", "regions", "median relative size",
               *[f"tiny {label} px" for label in size_labels], "tiny, other sizes",
               *[f"images with {label} tiny" for label in count_labels]]
    rows = []
    for name, record in datasets.items():
        tiny = record["tiny_regions"]
        median = record["summary"]["relative_median"]
        rows.append([name, record["summary"]["num_regions"],
                     "-" if median is None else f"{median:.2e}",
                     *tiny["regions_by_size"].values(), tiny["regions_outside_size_bins"],
                     *tiny["images_by_count"].values()])
    return _table(headers, rows)


def _fp_regions_table(payload: dict[str, Any]) -> str:
    rows = [[f"{level:.2e}", _number(mean)]
            for level, mean in zip(payload["levels"], payload["mean_num_regions"], strict=True)]
    return _table(["image FPR level", "mean FP regions"], rows)


def _robustness_table(payload: dict[str, Any]) -> str:
    rows = []
    for name, record in payload["datasets"].items():
        limits = record["fpr_limits"]
        draws = record["aupro_differences"]
        means = [sum(draw[k] for draw in draws) / len(draws) for k in range(len(limits))]
        rows.append([name, record["num_draws"],
                     *[_number(v, 100) for v in record["aupro_clean"]],
                     *[_number(v, 100) for v in means],
                     _number(record["aupimo_difference_mean_abs"], 100)])
    limits = next(iter(payload["datasets"].values()))["fpr_limits"]
    headers = ["dataset", "draws", *[f"AUPRO {100 * u:g} % (%)" for u in limits],
               *[f"AUPRO {100 * u:g} % diff. (pt)" for u in limits],
               "AUPIMO mean |diff.| (pt)"]
    return _table(headers, rows)


def _video_table(payload: dict[str, Any]) -> str:
    rows = [[v["video"], v["num_frames"], v["num_anomalous"], v["num_missing"],
             _number(v["mean_aupimo"], 100, 1)] for v in payload["videos"]]
    return _table(["video", "frames", "anomalous", "missing", "mean AUPIMO (%)"], rows)


_TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "sizes": _sizes_table,
    "fp-regions": _fp_regions_table,
    "robustness": _robustness_table,
    "video": _video_table,
}


def analysis_pages(folders: Iterable[str | os.PathLike[str]]) -> tuple[str, str]:
    """HTML pages and navigation links for ``pimo analyze`` output folders.

    Each analysis found in a folder (its JSON summary) becomes a page with a table and its
    figure (the PNG, embedded).

    Raises
    ------
    PimoValueError
        A folder does not exist or holds no analysis output.
    """
    pages: list[str] = []
    links: list[str] = []
    for number, folder in enumerate(Path(f) for f in folders):
        found = [name for name, files in ANALYSIS_FILES.items() if (folder / files[0]).is_file()]
        if not found:
            expected = ", ".join(files[0] for files in ANALYSIS_FILES.values())
            raise PimoValueError(
                f"{folder} holds no analysis output (looked for {expected}); give the -o folder "
                "of a `pimo analyze` command."
            )
        for name in found:
            json_name, _, png_name = ANALYSIS_FILES[name]
            payload = read_json(folder / json_name)
            anchor = f"analysis-{number}-{name}"
            parts = [f'<section class="page" id="{anchor}"><h2>{_e(_TITLES[name])}</h2>',
                     f'<p class="note">From {_e(folder)}.</p>', _TABLES[name](payload)]
            if (folder / png_name).is_file():
                data = base64.b64encode((folder / png_name).read_bytes()).decode("ascii")
                parts.append(f'<figure><img src="data:image/png;base64,{data}" '
                             f'alt="{_e(_TITLES[name])}"></figure>')
            parts.append("</section>")
            pages.append("".join(parts))
            links.append(f'<li><a href="#{anchor}">{_e(_TITLES[name])}</a></li>')
    nav = ('<ul><li><span class="group">Analyses</span><ul>' + "".join(links)
           + "</ul></li></ul>")
    return "".join(pages), nav
