"""``pimo aupimo``: per-image AUPIMO of stacked maps and masks stored as .npy/.npz files."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from pimo._validate import PimoValueError
from pimo.cli import skip_numba_blas_probe

_MAP_KEYS = ("anomaly_maps", "asmaps", "maps")
_MASK_KEYS = ("masks", "gts", "ground_truth")
_IGNORE_KEYS = ("ignore_masks", "ignore")
IGNORE_MASKS_HELP = (
    "Pixels to leave out of every metric (1 = ignored), a .npy/.npz file: a stack with one "
    "mask per image, or one (H, W) mask for every image (e.g. a border or a fixture)."
)


def _load_stack(path: Path, keys: tuple[str, ...], what: str) -> tuple[Any, list[str] | None]:
    """Read an (N, H, W) stack from .npy, or from .npz (by key, or its only array)."""
    from pimo.data.images import FileProblemError, require_regular_file

    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise PimoValueError(
            f"{what} file {str(path)!r} must be .npy or .npz (got {suffix or 'no extension'}). "
            "For datasets on disk (PNG/TIFF masks, per-image maps) use `pimo evaluate`."
        )
    if not path.exists():
        raise PimoValueError(f"{what} file {str(path)!r} does not exist.", path=str(path))
    try:
        require_regular_file(path, what, str(path))
    except FileProblemError as error:
        raise PimoValueError(error.problem.message, path=str(path)) from error
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded, None
        with loaded:
            names = list(loaded.files)
            chosen = next((key for key in keys if key in names), None)
            if chosen is None:
                arrays = [name for name in names if name != "paths"]
                if len(arrays) != 1:
                    raise PimoValueError(
                        f"{what} file {str(path)!r} holds arrays {names}; name the stack one "
                        f"of {list(keys)} (or store a single array).",
                        path=str(path),
                    )
                chosen = arrays[0]
            paths = [str(p) for p in loaded["paths"]] if "paths" in names else None
            return loaded[chosen], paths
    except PimoValueError:
        raise
    except Exception as error:  # OSError, ValueError, zipfile.BadZipFile, zlib.error, EOFError
        raise PimoValueError(
            f"Cannot read {what} file {str(path)!r}: it is truncated or not a valid "
            f"{suffix} file ({type(error).__name__}: {error}). Save it again with "
            f"numpy.{'save' if suffix == '.npy' else 'savez'}.",
            path=str(path),
        ) from error


def require_same_images(what: str, path: Path, listed: list[str] | None,
                        maps_paths: list[str] | None) -> None:
    """Refuse a stack whose ``paths`` differ from the maps' (the rows would pair images wrongly).

    Raises
    ------
    PimoValueError
        Naming the first entry that differs in both lists.
    """
    if listed is None or maps_paths is None or listed == maps_paths:
        return
    index = next((i for i, (ours, theirs) in enumerate(zip(listed, maps_paths, strict=False))
                  if ours != theirs), min(len(listed), len(maps_paths)))

    def entry(names: list[str]) -> str:
        return repr(names[index]) if index < len(names) else "missing"

    raise PimoValueError(
        f"{what} file {str(path)!r} lists other images than the maps, or in another order: "
        f"its entry {index} is {entry(listed)}, the maps' is {entry(maps_paths)}. Rows are "
        f"paired by position: store the {what.lower()} in the maps' order (or without "
        "'paths').",
        image_index=index, path=str(path))


def _is_binary(array: np.ndarray) -> bool:
    return array.dtype == np.bool_ or bool(np.all((array == 0) | (array == 1)))


def binarise_masks(masks: Any, threshold: float) -> np.ndarray:
    """``masks > threshold``: binary masks from 0/255 images or soft masks."""
    return np.asarray(masks) > threshold


def resize_maps_to_masks(anomaly_maps: Any, masks: Any) -> list[np.ndarray]:
    """Each map resized to its mask's (H, W), bilinear as torch's interpolate.

    Uses :func:`pimo.data.resize.resize_bilinear` (``align_corners=False``, the paper's
    protocol); a map already at its mask's size is kept as it is.

    Raises
    ------
    ShapeMismatchError
        When the counts differ or an image is not 2-D.
    """
    from pimo._validate import ShapeMismatchError
    from pimo.data.resize import resize_bilinear

    if len(anomaly_maps) != len(masks):
        raise ShapeMismatchError(
            f"Got {len(anomaly_maps)} anomaly maps but {len(masks)} masks; pass exactly one "
            "mask per anomaly map, in the same order."
        )
    resized = []
    for index, (anomaly_map, mask) in enumerate(zip(anomaly_maps, masks, strict=True)):
        anomaly_map, mask = np.asarray(anomaly_map), np.asarray(mask)
        if anomaly_map.ndim != 2 or mask.ndim != 2:
            raise ShapeMismatchError(
                f"--resize works on 2-D images, but image {index} has a map of shape "
                f"{anomaly_map.shape} and a mask of shape {mask.shape}.",
                image_index=index,
            )
        resized.append(resize_bilinear(anomaly_map, mask.shape))
    return resized


def load_ignore_masks(path: Path, masks: np.ndarray, *, paths: list[str] | None = None,
                      mask_threshold: float | None = None, resize: bool = False) -> Any:
    """The ignore masks of ``--ignore-masks PATH`` (1 = pixel left out), one per mask.

    ``PATH`` is a .npy/.npz file read as MASKS are (:func:`_load_stack`; in a .npz the array
    ``ignore_masks``/``ignore``, or its only array): a stack with one ignore mask per image,
    or a single mask (shape ``masks.shape[1:]``, or a stack of one) that applies to every
    image, repeated with :func:`numpy.broadcast_to` (no copy). Like the masks, it is binarised
    with ``mask_threshold`` (``ignore > T``) when one is given, unless it is binary already
    (bool or 0/1: a 0/1 border mask stays one under ``T = 127``); with ``resize`` an ignore mask
    whose (H, W) differs from its mask's is resized to it (nearest, as torch's
    ``interpolate(mode="nearest")``). Counts, shapes and values of a stack are left to the
    library's checks, whose errors name the image.

    Raises
    ------
    PimoValueError
        The file is missing or unreadable, or its ``paths`` differ from the maps' ``paths``.
    ShapeMismatchError
        A single mask does not have the masks' (H, W) (and ``resize`` is off, or cannot
        apply).
    """
    from pimo._validate import ShapeMismatchError
    from pimo.data.resize import resize_nearest

    ignore, ignore_paths = _load_stack(path, _IGNORE_KEYS, "ignore masks")
    require_same_images("Ignore masks", path, ignore_paths, paths)
    if mask_threshold is not None and not _is_binary(ignore):
        ignore = binarise_masks(ignore, mask_threshold)
    masks = np.asarray(masks)
    single = ignore.ndim == masks.ndim - 1 or (ignore.ndim == masks.ndim and len(ignore) == 1)
    if not single:
        if resize and len(ignore) == len(masks):
            return [resize_nearest(one, mask.shape) if one.ndim == mask.ndim == 2 else one
                    for one, mask in zip(ignore, masks, strict=True)]
        return ignore
    if ignore.ndim == masks.ndim:
        ignore = ignore[0]
    image_shape = masks.shape[1:]
    if resize and ignore.ndim == len(image_shape) == 2:
        ignore = resize_nearest(ignore, image_shape)
    if ignore.shape != image_shape:
        fix = "give it the masks' shape"
        if not resize and ignore.ndim == len(image_shape) == 2:
            fix += ", or add --resize to resize it (nearest)"
        raise ShapeMismatchError(
            f"The single ignore mask in {str(path)!r} has shape {ignore.shape} but the masks "
            f"have shape {image_shape}: {fix}.",
            path=str(path))
    return np.broadcast_to(ignore, masks.shape)


MASK_THRESHOLD_HELP = ("Binarise the masks: pixels > T are anomalous (e.g. 0 for 0/255 masks, "
                       "0.5 for soft masks); by default masks must be 0/1 or bool.")
RESIZE_HELP = ("Resize each map to its mask's size first (bilinear, as torch's interpolate with "
               "align_corners=False, the paper's protocol).")


def stack_input_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by the commands reading MAPS and MASKS stacks: --mask-threshold,
    --resize and --ignore-masks (their values reach :func:`load_stacks`)."""
    for option in reversed((
        click.option("--mask-threshold", type=float, default=None, metavar="T",
                     help=MASK_THRESHOLD_HELP),
        click.option("--resize", is_flag=True, help=RESIZE_HELP),
        click.option("--ignore-masks", "ignore_masks_path", type=click.Path(path_type=Path),
                     default=None, metavar="PATH",
                     help=IGNORE_MASKS_HELP + " Binarised by --mask-threshold and resized "
                          "(nearest) by --resize like the masks."),
    )):
        command = option(command)
    return command


@dataclass
class StackInputs:
    """MAPS and MASKS as the metrics take them, and how they were prepared (for the files)."""

    anomaly_maps: Any
    masks: Any
    paths: list[str] | None
    ignore_masks: Any
    settings: dict[str, Any]

    def describe(self, title: str) -> str:
        """``title`` followed by what was done to the inputs, if anything."""
        if "ignore_masks" in self.settings:
            title += f", without the pixels of {self.settings['ignore_masks']}"
        if "resize" in self.settings:
            title += ", maps resized to the masks"
        return title


def load_stacks(maps: Path, masks: Path, *, mask_threshold: float | None, resize: bool,
                ignore_masks_path: Path | None) -> StackInputs:
    """Read MAPS and MASKS (and --ignore-masks), binarise the masks with ``mask_threshold``
    and, with ``resize``, resize the maps (bilinear) and the ignore masks (nearest) to the
    masks. ``settings`` records what was applied (``mask_threshold``, ``resize``,
    ``ignore_masks``), for the files written: a threshold chosen on resized maps only holds
    for maps resized the same way. Stacks that list their images' ``paths`` must list the
    same images in the same order (rows are paired by position)."""
    anomaly_maps, paths = _load_stack(maps, _MAP_KEYS, "maps")
    ground_truth, mask_paths = _load_stack(masks, _MASK_KEYS, "masks")
    require_same_images("Masks", masks, mask_paths, paths)
    paths = paths or mask_paths
    settings: dict[str, Any] = {}
    if mask_threshold is not None:
        ground_truth = binarise_masks(ground_truth, mask_threshold)
        settings["mask_threshold"] = mask_threshold
    ignore_masks = None
    if ignore_masks_path is not None:
        ignore_masks = load_ignore_masks(ignore_masks_path, ground_truth, paths=paths,
                                         mask_threshold=mask_threshold, resize=resize)
        settings["ignore_masks"] = str(ignore_masks_path)
    if resize:
        resized = resize_maps_to_masks(anomaly_maps, ground_truth)
        if any(np.shape(before) != after.shape
               for before, after in zip(anomaly_maps, resized, strict=True)):
            settings["resize"] = "bilinear, to each mask's size (align_corners=False)"
        anomaly_maps = resized
    return StackInputs(anomaly_maps, ground_truth, paths, ignore_masks, settings)


def _print_summary(result: Any, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = result.summary()
    table = Table(title=title)
    for column in ("images", "anomalous", "mean", "std", "P33", "median", "mode", "points"):
        table.add_column(column, justify="right")
    table.add_row(
        str(summary["num_images"]), str(summary["num_anomalous"]),
        f"{100 * summary['mean']:.1f} %", f"{100 * summary['std']:.1f} %",
        f"{100 * summary['p33']:.1f} %", f"{100 * summary['median']:.1f} %",
        result.mode, str(result.num_thresholds),
    )
    Console().print(table)
    low, high = result.thresh_bounds
    click.echo(
        f"FPR range [{result.fpr_bounds[0]:g}, {result.fpr_bounds[1]:g}] <-> score thresholds "
        f"[{low:.6g}, {high:.6g}]"
    )


@click.command("aupimo")
@click.argument("maps", required=False, type=click.Path(path_type=Path))
@click.argument("masks", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write the per-image score file (paper's JSON format) here.")
@click.option("--fpr-bounds", nargs=2, type=float, default=(1e-5, 1e-4), show_default=True,
              metavar="L U", help="Shared-FPR integration range.")
@click.option("--num-thresholds", type=int, default=None,
              help="Grid mode with K thresholds (reproduces the official implementation); "
                   "default: exact mode.")
@click.option("--auimo", "with_auimo", is_flag=True,
              help="Score with the IoU curve (AUIMO) instead of the TPR.")
@stack_input_options
@click.option("--example", is_flag=True,
              help="Run on a small generated example instead of MAPS and MASKS.")
def aupimo_command(maps: Path | None, masks: Path | None, output: Path | None,
                   fpr_bounds: tuple[float, float], num_thresholds: int | None,
                   mask_threshold: float | None, resize: bool, ignore_masks_path: Path | None,
                   with_auimo: bool, example: bool) -> None:
    """Per-image AUPIMO of MAPS and MASKS (.npy/.npz stacks of shape (N, H, W)).

    Prints the mean, std and P33 over anomalous images and, with -o, writes the per-image
    score file. Masks: all-zero = normal image. Maps must have their masks' size (or give
    --resize); masks must be binary (or give --mask-threshold). Example:

    \b
        pimo aupimo maps.npy masks.npy -o aupimo/aupimos.json
        pimo aupimo small_maps.npy masks_0_255.npy --resize --mask-threshold 0
        pimo aupimo maps.npy masks.npy --ignore-masks border.npy -o aupimos.json
    """
    import pimo
    from pimo._io import check_output_file

    if output is not None:
        check_output_file(output, "score file")
    if example:
        if maps is not None or masks is not None:
            raise click.UsageError("--example replaces MAPS and MASKS; give one or the other.")
        if mask_threshold is not None or resize or ignore_masks_path is not None:
            raise click.UsageError("--example takes no --mask-threshold, --resize or "
                                   "--ignore-masks (its masks are binary, its maps full size).")
        anomaly_maps, ground_truth = pimo.make_example(20, 20, (256, 256), seed=0)
        paths = [f"{'good' if i < 20 else 'defect'}/{i:03d}.png" for i in range(40)]
        title = "AUPIMO on the built-in example (40 synthetic 256x256 maps)"
        ignore_masks = None
        settings: dict[str, Any] = {}
    else:
        if maps is None or masks is None:
            raise click.UsageError("Give MAPS and MASKS files, or --example.")
        inputs = load_stacks(maps, masks, mask_threshold=mask_threshold, resize=resize,
                             ignore_masks_path=ignore_masks_path)
        anomaly_maps, ground_truth, paths = inputs.anomaly_maps, inputs.masks, inputs.paths
        ignore_masks, settings = inputs.ignore_masks, inputs.settings
        title = inputs.describe(f"{'AUIMO' if with_auimo else 'AUPIMO'} of {maps}")
    skip_numba_blas_probe()
    metric = pimo.auimo if with_auimo else pimo.aupimo
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pimo.PimoWarning)
        result = metric(anomaly_maps, ground_truth, fpr_bounds=fpr_bounds,
                        num_thresholds=num_thresholds, paths=paths, ignore_masks=ignore_masks)
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    _print_summary(result, title)
    if output is not None:
        if settings:
            result = replace(result, extra={**result.extra, **settings})
        written = result.save(output)
        click.echo(f"wrote {written}")
