"""Ignore masks on disk: pixels to leave out of every metric (1 / non-zero = left out).

Two forms:

- a **folder** that mirrors the images' paths, as a maps folder does (``IGNORE/test/crack/000.png``
  for the image ``test/crack/000.png``; a sub-folder named like the category is used when
  present); every evaluated image needs its file;
- **one file** that applies to every image (a fixed border, a fixture, a "don't care" zone).

Files are PNG/TIFF images (0/255 or 0/1, one non-zero value) or ``.npy``/``.npz`` arrays of
0/1 (or bool); they must have the size of the image's mask.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pimo.data.images import FileProblemError, _distinct_values, _mask_values, _open_decoded
from pimo.data.maps import MapFiles, entries_of_category, match_maps, read_map_file
from pimo.data.problems import DatasetError, Problem

__all__ = ["IGNORE_IMAGE_EXTENSIONS", "IgnoreMasks", "open_ignore_masks", "read_ignore_mask"]

#: Ignore masks read as images (the other map extensions are read as arrays).
IGNORE_IMAGE_EXTENSIONS = (".png", ".tif", ".tiff")


def read_ignore_mask(path: str | os.PathLike[str], *, name: str | None = None) -> np.ndarray:
    """Read an ignore-mask file as a boolean array (True = pixel left out).

    Raises
    ------
    FileProblemError
        Missing or unreadable file (``missing-ignore-mask``, ``unreadable-ignore-mask``), or
        values other than 0 and one other value (``non-binary-ignore-mask``).
    """
    path = Path(path)
    name = name or str(path)
    if path.suffix.lower() in IGNORE_IMAGE_EXTENSIONS:
        with _open_decoded(path, "ignore-mask", name) as image:
            values = _mask_values(image)
        distinct = _distinct_values(values)
        if np.count_nonzero(distinct) > 1:
            shown = ", ".join(str(v) for v in distinct[:6].tolist())
            raise FileProblemError(Problem(
                "non-binary-ignore-mask", name,
                f"the ignore mask {path} is not binary: it holds {distinct.size} distinct values "
                f"({shown}{', ...' if distinct.size > 6 else ''}). Save it as a lossless 0/255 "
                "(or 0/1) image, non-zero = pixel left out.",
            ))
        return values > 0
    try:
        array = read_map_file(path, name=name, accept_bool=True)
    except FileProblemError as error:
        problem = error.problem
        raise FileProblemError(Problem(
            problem.kind.replace("map", "ignore-mask"), problem.path,
            problem.message.replace("the map file", "the ignore-mask file")
                           .replace("the map", "the ignore mask"),
        )) from error
    bad = (array != 0) & (array != 1)
    if np.any(bad):
        values = ", ".join(repr(v) for v in np.unique(array[bad])[:3].tolist())
        raise FileProblemError(Problem(
            "non-binary-ignore-mask", name,
            f"the ignore mask {path} holds values other than 0 and 1 (e.g. {values}); save "
            "a bool or 0/1 array, 1 = pixel left out.",
        ))
    return array.astype(bool)


@dataclass
class IgnoreMasks:
    """The ignore masks of one category: a folder of files or one file for every image.

    Attributes
    ----------
    location : Path
        The folder (the category's sub-folder when there is one) or the file.
    single : bool
        One file for every image.
    """

    location: Path
    single: bool
    _cached: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def match(self, sample_paths: Sequence[str], category: str, categories: Sequence[str]
              ) -> tuple[list[str | None], list[Problem]]:
        """Each image's ignore-mask file (relative to :attr:`location`), and the problems.

        A folder is matched as a maps folder is (:func:`pimo.data.maps.match_maps`):
        ``missing-ignore-mask`` for an image without file, ``orphan-ignore-mask`` for a file
        without image.
        """
        if self.single:
            return [self.location.name] * len(sample_paths), []
        entries = entries_of_category(MapFiles(self.location).entries(), category, categories)
        matches, problems = match_maps(sample_paths, entries, where=str(self.location),
                                       kind="ignore-mask")
        return [None if entry is None else entry.name for entry in matches], problems

    def load(self, name: str, *, image: str) -> np.ndarray:
        """The ignore mask ``name`` (from :meth:`match`) as a bool array, for ``image``.

        Raises
        ------
        FileProblemError
            As :func:`read_ignore_mask`, naming the image.
        """
        if not self.single:
            return read_ignore_mask(self.location / name, name=f"{name} (for {image})")
        with self._lock:
            if self._cached is None:
                self._cached = read_ignore_mask(self.location, name=str(self.location))
            return self._cached

    def __getstate__(self) -> dict[str, object]:  # sent to Dask workers without lock or cache
        return {"location": self.location, "single": self.single}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.location = Path(str(state["location"]))
        self.single = bool(state["single"])
        self._cached = None
        self._lock = threading.Lock()


def open_ignore_masks(location: str | os.PathLike[str], category: str | None = None
                      ) -> IgnoreMasks:
    """The ignore masks at ``location``: a folder mirroring the images' paths, or one file.

    A folder with a sub-folder named ``category`` uses that sub-folder, as
    :func:`pimo.data.maps.open_maps` does.

    Raises
    ------
    DatasetError
        ``location`` does not exist.
    """
    path = Path(location)
    if path.is_dir():
        if category is not None and (path / category).is_dir():
            path = path / category
        return IgnoreMasks(path, single=False)
    if path.is_file():
        return IgnoreMasks(path, single=True)
    raise DatasetError(
        f"The ignore masks {path} do not exist: pass a folder that mirrors the images' paths "
        "(one mask per image, as the maps folder) or one mask file for every image.",
        path=str(path),
    )
