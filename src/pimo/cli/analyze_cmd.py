"""``pimo analyze``: the paper's analyses on your data (region sizes, FP regions, noise, video).

Each sub-command writes, into its output folder, a summary JSON, a CSV with one row per item
and a PNG figure (names in :data:`pimo.analysis._files.ANALYSIS_FILES`); ``pimo report
--analysis OUT`` adds them to a report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pimo.analysis._files import ANALYSIS_FILES, write_csv, write_json, write_png
from pimo.analysis._inputs import LoadedSet, load_category, load_stacks

__all__ = ["analyze_group"]


def _input_options(*, maps: bool, maps_required: bool) -> Callable[[Callable[..., Any]],
                                                                   Callable[..., Any]]:
    """The options that say where the data is: a dataset on disk, or .npy/.npz stacks."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--dataset", metavar="LAYOUT:ROOT", default=None,
                         help="A dataset on disk: mvtec:ROOT, visa:ROOT or folder:ROOT."),
            click.option("--category", default=None,
                         help="The dataset's category (needed when it has several)."),
            click.option("--categories", default=None, metavar="all|A,B,...",
                         help="Several categories (`all`: every one), each analysed apart."),
            click.option("--mask-threshold", type=float, default=None,
                         help="Mask pixels > T are anomalous (for lossy masks)."),
            click.option("--masks", "mask_files", type=click.Path(path_type=Path),
                         multiple=not maps, default=None,
                         help="Instead of --dataset: an (N, H, W) .npy/.npz stack of masks"
                              + ("." if maps else " (repeat the option for several datasets).")),
        ]
        if maps:
            options.append(click.option(
                "--maps", "maps", type=click.Path(path_type=Path), default=None,
                required=maps_required,
                help="With --dataset: a folder of map files or a stacked .pt/.npz file (as for "
                     "`pimo evaluate`); with --masks: an (N, H, W) .npy/.npz stack of maps."))
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _load_inputs(dataset: str | None, category: str | None, categories: str | None,
                 mask_threshold: float | None, mask_files: Any, maps: Path | None
                 ) -> list[LoadedSet]:
    if (dataset is None) == (not mask_files):
        raise click.UsageError("Give --dataset LAYOUT:ROOT, or --masks FILE (.npy/.npz), "
                               "not both.")
    if dataset is None:
        files = [mask_files] if isinstance(mask_files, Path) else list(mask_files)
        stems = [path.stem for path in files]
        repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
        if repeated:
            raise click.UsageError(f"Several --masks files are named {', '.join(repeated)}; "
                                   "each dataset is named after its file, so rename them.")
        return [load_stacks(path, maps) for path in files]
    from pimo.data import open_dataset

    if category is not None and categories is not None:
        raise click.UsageError("Give --category or --categories, not both.")
    layout = open_dataset(dataset)
    if categories is None:
        names: list[str | None] = [category]
    elif categories.strip().lower() == "all":
        names = list(layout.categories())
    else:
        names = list(dict.fromkeys(name.strip() for name in categories.split(",")
                                   if name.strip()))
    return [load_category(layout, name, maps=maps, mask_threshold=mask_threshold)
            for name in names]


def _need_maps(loaded: LoadedSet) -> tuple[list[Any], list[Any]]:
    if loaded.maps is None:
        raise click.UsageError("This analysis needs the anomaly maps: give --maps.")
    return loaded.maps, loaded.masks


def _wrote(output: Path, name: str) -> None:
    click.echo(f"wrote {', '.join(str(output / f) for f in ANALYSIS_FILES[name])}")


@click.group("analyze", context_settings={"help_option_names": ["-h", "--help"]})
def analyze_group() -> None:
    """The paper's analyses on your data: region sizes, FP regions, noisy masks, videos.

    Each writes a JSON summary, a CSV and a PNG figure into its -o folder; add them to a
    report with `pimo report ... --analysis FOLDER`.
    """


@analyze_group.command("sizes")
@_input_options(maps=False, maps_required=False)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The output folder.")
@click.option("--fpr-bounds", nargs=2, type=float, default=(1e-5, 1e-4), show_default=True,
              metavar="L U", help="AUPIMO's integration range, shaded in the figure.")
@click.option("--without-tiny", is_flag=True,
              help="Also draw each dataset without its tiny regions (Fig. 8, right).")
def sizes_command(dataset: str | None, category: str | None, categories: str | None,
                  mask_threshold: float | None, mask_files: tuple[Path, ...], output: Path,
                  fpr_bounds: tuple[float, float], without_tiny: bool) -> None:
    """Relative size of every ground-truth region and the tiny-region table (Fig. 8, Tab. 2).

    Regions are 8-connected (26 in 3-D); tiny: smaller than one pixel at 256x256. Example:

        pimo analyze sizes --dataset visa:/data/visa --categories all -o analysis/
    """
    from rich.console import Console
    from rich.table import Table

    from pimo.analysis import region_sizes, tiny_region_table
    from pimo.analysis.plots import plot_region_sizes

    sets = _load_inputs(dataset, category, categories, mask_threshold, mask_files, None)
    sizes = {s.name: region_sizes(s.masks, paths=s.paths) for s in sets}
    tables = {name: tiny_region_table(value) for name, value in sizes.items()}
    json_name, csv_name, png_name = ANALYSIS_FILES["sizes"]
    write_json(output / json_name, {
        "analysis": "sizes",
        "fpr_bounds": list(fpr_bounds),
        "datasets": {name: {"summary": sizes[name].summary(),
                            "tiny_regions": tables[name].to_dict()} for name in sizes},
    })
    write_csv(output / csv_name,
              ({"dataset": name, **row} for name, value in sizes.items()
               for row in value.to_rows()),
              ["dataset", "image", "path", "region", "pixels", "relative_size"])
    drawn: dict[str, Any] = {}
    for name, value in sizes.items():
        drawn[name] = value
        if without_tiny:
            drawn[f"{name} (no tiny)"] = value.without_tiny()
    write_png(output / png_name, plot_region_sizes(drawn, fpr_bounds=fpr_bounds))
    table = Table(title="Tiny regions (relative size < 1/256^2)")
    first = next(iter(tables.values()))
    for column in ["dataset", "regions", *[f"{a}-{b}" if b else f"{a}+"
                                            for a, b in first.size_bins], "other",
                   *[f"{a}-{b}/img" if b else f"{a}+/img" for a, b in first.count_bins],
                   "images"]:
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for name, tiny in tables.items():
        table.add_row(name, str(sizes[name].num_regions), *map(str, tiny.size_counts),
                      str(tiny.size_outside_bins), *map(str, tiny.image_counts),
                      str(tiny.num_images_with_tiny))
    Console().print(table)
    _wrote(output, "sizes")


@analyze_group.command("fp-regions")
@_input_options(maps=True, maps_required=True)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The output folder.")
@click.option("--fpr-range", nargs=2, type=float, default=(1e-5, 1e-3), show_default=True,
              metavar="LOW HIGH", help="Range of the image-FPR levels.")
@click.option("--levels", type=click.IntRange(min=1), default=11, show_default=True,
              help="Number of log-spaced levels.")
@click.option("--jitter", type=click.FloatRange(0, 1, max_open=True), default=0.1,
              show_default=True, help="Each level is multiplied by a factor in [1-J, 1+J].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the jitter.")
def fp_regions_command(dataset: str | None, category: str | None, categories: str | None,
                       mask_threshold: float | None, mask_files: Path | None, maps: Path,
                       output: Path, fpr_range: tuple[float, float], levels: int, jitter: float,
                       seed: int) -> None:
    """Number of false-positive regions vs image FPR on normal images (paper Fig. 6).

    Several categories are pooled, as in the paper. Example:

        pimo analyze fp-regions --dataset mvtec:/data/mvtec --categories all --maps maps/ -o a/
    """
    from pimo.analysis import fp_regions_vs_fpr
    from pimo.analysis.fp_regions import FpRegionsResult
    from pimo.analysis.plots import plot_fp_regions

    sets = _load_inputs(dataset, category, categories, mask_threshold, mask_files, maps)
    results, names = [], []
    for loaded in sets:
        anomaly_maps, masks = _need_maps(loaded)
        results.append(fp_regions_vs_fpr(anomaly_maps, masks, fpr_range=fpr_range,
                                         num_levels=levels, jitter=jitter, seed=seed,
                                         paths=loaded.paths))
        names.extend([loaded.name] * len(loaded.masks))
    pooled = FpRegionsResult.concatenate(results)
    json_name, csv_name, png_name = ANALYSIS_FILES["fp-regions"]
    write_json(output / json_name, {"analysis": "fp-regions",
                                    "datasets": [s.name for s in sets], **pooled.summary()})
    write_csv(output / csv_name,
              ({"dataset": names[row["image"]], **row} for row in pooled.to_rows()),
              ["dataset", "image", "path", "level", "target_fpr", "threshold", "fpr",
               "num_regions"])
    write_png(output / png_name, plot_fp_regions(pooled, seed=seed))
    summary = pooled.summary()
    for level, mean in zip(summary["levels"], summary["mean_num_regions"], strict=True):
        click.echo(f"image FPR {level:.2e}: {mean:.2f} FP regions on average")
    _wrote(output, "fp-regions")


@analyze_group.command("robustness")
@_input_options(maps=True, maps_required=True)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The output folder.")
@click.option("--draws", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent noisy versions of the masks.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the noise (the k-th category uses SEED + k).")
@click.option("--statistics", "statistics_file", type=click.Path(path_type=Path), default=None,
              help="JSON with count_bins, count_weights, size_bins, size_weights (default: "
                   "VisA's tiny regions, paper Tab. 2).")
@click.option("--fpr-bounds", nargs=2, type=float, default=(1e-5, 1e-4), show_default=True,
              metavar="L U", help="AUPIMO's integration range.")
def robustness_command(dataset: str | None, category: str | None, categories: str | None,
                       mask_threshold: float | None, mask_files: Path | None, maps: Path,
                       output: Path, draws: int, seed: int, statistics_file: Path | None,
                       fpr_bounds: tuple[float, float]) -> None:
    """AUPRO and AUPIMO with masks made noisy by random tiny regions (paper Fig. 5b).

    Reports clean - noisy: per dataset for AUPRO, per image for AUPIMO. Example:

        pimo analyze robustness --dataset mvtec:/data/mvtec --categories all --maps maps/ -o a/
    """
    from pimo.analysis import (
        VISA_TINY_REGIONS,
        load_noise_statistics,
        noisy_annotation_robustness,
    )
    from pimo.analysis.plots import plot_robustness

    statistics = (VISA_TINY_REGIONS if statistics_file is None
                  else load_noise_statistics(statistics_file))
    sets = _load_inputs(dataset, category, categories, mask_threshold, mask_files, maps)
    results = {}
    for offset, loaded in enumerate(sets):
        anomaly_maps, masks = _need_maps(loaded)
        results[loaded.name] = noisy_annotation_robustness(
            anomaly_maps, masks, statistics=statistics, num_draws=draws, seed=seed + offset,
            fpr_bounds=fpr_bounds, paths=loaded.paths,
        )
        summary = results[loaded.name].summary()
        differences = summary["aupro_differences"][0]
        click.echo(f"{loaded.name}: AUPRO 30% {100 * differences[0]:+.2f} pt, AUPRO 5% "
                   f"{100 * differences[1]:+.2f} pt, AUPIMO mean |diff| "
                   f"{100 * summary['aupimo_difference_mean_abs']:.2f} pt (clean - noisy)")
    json_name, csv_name, png_name = ANALYSIS_FILES["robustness"]
    write_json(output / json_name, {
        "analysis": "robustness",
        "datasets": {name: result.summary() for name, result in results.items()},
    })
    write_csv(output / csv_name,
              ({"dataset": name, **row} for name, result in results.items()
               for row in result.to_rows()),
              ["dataset", "draw", "image", "path", "aupimo_clean", "aupimo_noisy", "difference",
               "added_regions", "added_pixels"])
    write_png(output / png_name, plot_robustness(results))
    _wrote(output, "robustness")


@analyze_group.command("video")
@_input_options(maps=True, maps_required=False)
@click.option("--scores", type=click.Path(path_type=Path), default=None,
              help="Instead of the data: a per-image score file with paths (aupimos.json, as "
                   "`pimo evaluate` writes it).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The output folder.")
@click.option("--fpr-bounds", nargs=2, type=float, default=(1e-5, 1e-4), show_default=True,
              metavar="L U", help="AUPIMO's integration range.")
def video_command(dataset: str | None, category: str | None, categories: str | None,
                  mask_threshold: float | None, mask_files: Path | None, maps: Path | None,
                  scores: Path | None, output: Path, fpr_bounds: tuple[float, float]) -> None:
    """Per-frame AUPIMO along time, one panel per video (paper Fig. 11).

    Frames of all videos are evaluated together; a frame's video is its folder and its index
    the last number of its file name (missing numbers are shaded grey). Example, with
    ROOT/images/<video>/<frame>.png and ROOT/masks/<video>/<frame>.png:

        pimo analyze video --dataset folder:ROOT --maps maps/ -o analysis/
    """
    import pimo
    from pimo.analysis import video_timelines
    from pimo.analysis.plots import plot_video_timelines

    if categories is not None:
        raise click.UsageError("Videos are analysed one dataset at a time: use --category.")
    if scores is not None:
        if dataset is not None or mask_files is not None:
            raise click.UsageError("Give --scores, or the data (--dataset/--masks), not both.")
        result = pimo.load_aupimo(scores)
    else:
        loaded = _load_inputs(dataset, category, None, mask_threshold, mask_files, maps)[0]
        anomaly_maps, masks = _need_maps(loaded)
        result = pimo.aupimo(anomaly_maps, masks, fpr_bounds=fpr_bounds, paths=loaded.paths)
    timelines = video_timelines(result)
    json_name, csv_name, png_name = ANALYSIS_FILES["video"]
    write_json(output / json_name, {
        "analysis": "video",
        "fpr_bounds": list(result.fpr_bounds),
        "videos": [timeline.summary() for timeline in timelines],
    })
    write_csv(output / csv_name,
              ({"video": t.name, "frame": int(i), "path": p, "anomalous": bool(a),
                "aupimo": float(s)}
               for t in timelines
               for i, p, a, s in zip(t.frame_indices, t.paths, t.anomalous, t.aupimos,
                                     strict=True)),
              ["video", "frame", "path", "anomalous", "aupimo"])
    write_png(output / png_name, plot_video_timelines(timelines))
    for timeline in timelines:
        summary = timeline.summary()
        mean = summary["mean_aupimo"]
        click.echo(f"{timeline.name}: {summary['num_frames']} frames, "
                   f"{summary['num_anomalous']} anomalous, {summary['num_missing']} missing, "
                   f"mean AUPIMO {'-' if mean is None else f'{100 * mean:.1f} %'}")
    _wrote(output, "video")
