"""Inputs of ``pimo analyze``: one category of a dataset on disk, or ``.npy/.npz`` stacks.

Everything is read into memory (the analyses label regions image by image and recompute the
metrics several times). Maps are resized to their mask's size (bilinear, as ``pimo evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pimo.data.images import FileProblemError, read_image_size, read_mask
from pimo.data.layouts import DatasetLayout, open_dataset
from pimo.data.maps import entries_of_category, match_maps, open_maps
from pimo.data.problems import DatasetError, Problem
from pimo.data.resize import resize_bilinear

__all__ = ["LoadedSet", "load_category", "load_stacks"]


@dataclass
class LoadedSet:
    """Masks (and maps) of one dataset, in memory.

    Attributes
    ----------
    name : str
        The dataset's name (``<layout>/<category>`` or the stack file's stem).
    masks : list of ndarray of bool
        One mask per image; all zero for a normal image.
    maps : list of ndarray or None
        One anomaly map per image at its mask's size, when maps were given.
    paths : list of str or None
        The images' paths (relative to the dataset root).
    """

    name: str
    masks: list[np.ndarray]
    maps: list[np.ndarray] | None
    paths: list[str] | None


def load_category(
    dataset: str | DatasetLayout,
    category: str | None = None,
    *,
    maps: str | Path | None = None,
    mask_threshold: float | None = None,
) -> LoadedSet:
    """Read the masks (and, with ``maps``, the anomaly maps) of one category of a dataset.

    Raises
    ------
    DatasetError
        Every problem found: missing or unreadable files, maps without image and images
        without map, masks of another size than their image, non-binary masks.
    """
    layout = dataset if isinstance(dataset, DatasetLayout) else open_dataset(dataset)
    scan = layout.scan(category)
    category = category or layout.categories()[0]
    what = f"category {category!r} of {layout.describe()}"
    problems: list[Problem] = list(scan.problems)
    entries = None
    source = None
    if maps is not None:
        source = open_maps(maps, category)
        matched, map_problems = match_maps(
            [s.relative_path for s in scan.samples],
            entries_of_category(source.entries(), category, layout.categories()),
            where=str(source.location),
        )
        entries = matched
        problems.extend(map_problems)
    if problems:
        raise DatasetError(f"Cannot analyse {what}.", problems)
    masks: list[np.ndarray] = []
    map_list: list[np.ndarray] = []
    try:
        for position, sample in enumerate(scan.samples):
            try:
                size = read_image_size(sample.image_path, name=sample.relative_path,
                                       verify=False)
                if sample.mask_path is None:
                    mask = np.zeros(size, dtype=bool)
                else:
                    mask = read_mask(sample.mask_path, name=sample.relative_path,
                                     threshold=mask_threshold, label_masks=layout.label_masks)
                    if mask.shape != size:
                        problems.append(Problem(
                            "mask-size", sample.relative_path,
                            f"the mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} "
                            f"pixels but its image is {size[1]}x{size[0]}; masks must have "
                            "their image's size.",
                        ))
                        continue
                masks.append(mask)
                if source is not None and entries is not None:
                    entry = entries[position]
                    assert entry is not None
                    map_list.append(resize_bilinear(source.load(entry), mask.shape))
            except FileProblemError as error:
                problems.append(error.problem)
    finally:
        if source is not None:
            source.close()
    if problems:
        raise DatasetError(f"Cannot analyse {what}.", problems)
    if not masks:
        raise DatasetError(f"{what} has no test image.")
    return LoadedSet(
        name=f"{layout.name}/{category}",
        masks=masks,
        maps=map_list if source is not None else None,
        paths=[s.relative_path for s in scan.samples],
    )


def load_stacks(masks: Path, maps: Path | None = None) -> LoadedSet:
    """Read ``(N, H, W)`` (or ``(N, D, H, W)``) stacks from ``.npy``/``.npz`` files.

    The keys and the optional ``paths`` array are those of ``pimo aupimo``.
    """
    from pimo.cli.aupimo_cmd import _MAP_KEYS, _MASK_KEYS, _load_stack

    mask_stack, mask_paths = _load_stack(masks, _MASK_KEYS, "masks")
    map_stack, map_paths = (None, None) if maps is None else _load_stack(maps, _MAP_KEYS, "maps")
    return LoadedSet(
        name=masks.stem,
        masks=list(np.asarray(mask_stack)),
        maps=None if map_stack is None else list(np.asarray(map_stack)),
        paths=map_paths or mask_paths,
    )
