"""Anomaly-map files: reading them, and matching them to the test images.

Formats
-------
One file per test image, in a folder tree that mirrors the images' relative paths:

``.npy``
    A float array (integers are read as float64).
``.npz``
    One array (or the key ``anomaly_map``).
``.tiff`` / ``.tif``
    A float image (as tifffile or OpenCV write them); integer TIFFs are read as raw values.
``.png``
    8-bit maps are read as ``value / 255``, 16-bit maps as ``value / 65535`` (scores in
    [0, 1]). Quantised maps create ties and lose the lowest false-positive rates: prefer a
    float format.
``.pt`` / ``.pth``
    A tensor (needs PyTorch).

Each map may be ``(H, W)``, ``(1, H, W)``, ``(1, 1, H, W)`` or ``(H, W, 1)``; its size may
differ from the image's (maps are resized to the mask's size afterwards).

Or one *stacked* file, as the paper's experiments stored them: ``{"asmaps": (N, H, W),
"paths": [...]}`` in a ``.pt`` (``torch.save``) or ``.npz`` (``numpy.savez``) file, where
``paths`` are the images' paths (absolute, or relative to any folder). Rows are read one at a
time: ``.pt`` files are memory-mapped, uncompressed ``.npz`` files too; a compressed ``.npz`` is
decompressed into memory once.

Matching
--------
A map matches an image when the trailing components of their paths agree, the last one
compared without extension (``bottle/test/crack/003.png`` ~ ``maps/test/crack/003.npy``). The
number of components compared is the one that matches the most images without ambiguity (the
longest on ties), so maps may mirror the dataset from its root, from the category, or from the
defect folders, and stacked files may hold absolute paths. When a dataset has several
categories, maps whose folders name another category are left out before matching
(:func:`entries_of_category`), so one folder or one stacked file may hold every category's maps.
"""

from __future__ import annotations

import os
import threading
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pimo._validate import integer_map_problem, tensor_to_numpy
from pimo.data.images import FileProblemError, require_regular_file
from pimo.data.problems import DatasetError, Problem

__all__ = [
    "MAP_EXTENSIONS",
    "MapEntry",
    "MapFiles",
    "MapSource",
    "StackedMaps",
    "entries_of_category",
    "match_maps",
    "open_maps",
    "read_map_file",
]

MAP_EXTENSIONS = (".npy", ".npz", ".tiff", ".tif", ".png", ".pt", ".pth")
# numpy parses .npy headers with ast.literal_eval, which some CPython 3.11 releases do not
# support from several threads at once ("SystemError: AST constructor recursion depth
# mismatch"); the decoding threads read .npy/.npz files one at a time.
_NPY_LOCK = threading.Lock()
_STACKED_KEYS = ("asmaps", "paths")


def path_key(path: str) -> tuple[str, ...]:
    """Path components with the extension of the last one removed (the matching key)."""
    parts = [p for p in PurePosixPath(str(path).replace("\\", "/")).parts if p not in ("/", "")]
    if not parts:
        return ()
    last = PurePosixPath(parts[-1])
    parts[-1] = last.name[: -len(last.suffix)] if last.suffix else last.name
    return tuple(parts)


@dataclass(frozen=True)
class MapEntry:
    """One anomaly map in a source: its name (file path or stacked path) and row."""

    name: str
    key: tuple[str, ...]
    row: int = -1


def _unreadable(name: str, reason: str) -> FileProblemError:
    return FileProblemError(
        Problem("unreadable-map", name, f"the map {name} cannot be read: {reason}")
    )


def _torch_load(path: Path, *, mmap: bool = False) -> Any:
    try:
        import torch
    except ImportError as error:
        raise DatasetError(
            f"Reading the .pt file {path} needs PyTorch, which is not installed: install it "
            "(pip install torch) or save the maps as .npy/.npz files.",
            path=str(path),
        ) from error
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError:
        if mmap:  # legacy (non-zip) files cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=True)
        raise


def _to_numpy(value: Any) -> np.ndarray:
    return np.asarray(tensor_to_numpy(value))


def as_2d_map(array: np.ndarray, name: str, *, accept_bool: bool = False) -> np.ndarray:
    """Squeeze ``(1, H, W)``/``(1, 1, H, W)``/``(H, W, 1)`` to ``(H, W)`` and check the dtype
    (bool arrays pass as they are with ``accept_bool``: ignore masks)."""
    original = array.shape
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2 or min(array.shape) < 1:
        raise FileProblemError(
            Problem(
                "map-shape",
                name,
                f"the map {name} has shape {original}; expected one 2-D map per image "
                "((H, W), (1, H, W), (1, 1, H, W) or (H, W, 1)).",
            )
        )
    if accept_bool and array.dtype == np.bool_:
        return array
    if array.dtype.kind not in "fiu":
        raise FileProblemError(
            Problem(
                "map-shape", name, f"the map {name} has dtype {array.dtype}; expected real numbers."
            )
        )
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        array = array.astype(np.float32)
    elif array.dtype.kind in "iu":
        problem = integer_map_problem(array, name)
        if problem is not None:
            raise FileProblemError(Problem("map-values", name, problem))
        array = array.astype(np.float64)
    return array


def _read_png_map(path: Path, name: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise _unreadable(name, f"not a valid PNG ({error}).") from error
    if mode in ("L", "P", "1"):
        return array.astype(np.float32) / np.float32(255)
    if mode.startswith("I;16") or mode == "I":
        return array.astype(np.float32) / np.float32(65535)
    raise FileProblemError(
        Problem(
            "map-shape",
            name,
            f"the PNG map {name} has mode {mode}; PNG maps must be single-channel 8- or 16-bit.",
        )
    )


def read_map_file(path: str | os.PathLike[str], *, name: str | None = None,
                  accept_bool: bool = False) -> np.ndarray:
    """Read a one-map file as a 2-D float array (see the module notes for the formats); a
    bool array is returned as it is with ``accept_bool``.

    Raises
    ------
    FileProblemError
        Unreadable or truncated file, wrong shape, stacked file given as one map.
    DatasetError
        A ``.pt`` file without PyTorch installed.
    """
    path = Path(path)
    name = name or str(path)
    suffix = path.suffix.lower()
    require_regular_file(path, "map", name)
    try:
        if suffix == ".npy":
            with _NPY_LOCK:
                array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                if "asmaps" in keys:
                    raise _unreadable(
                        name,
                        "it is a stacked file (key 'asmaps'): pass it "
                        "itself as the maps, not inside a folder.",
                    )
                key = (
                    "anomaly_map"
                    if "anomaly_map" in keys
                    else (keys[0] if len(keys) == 1 else None)
                )
                if key is None:
                    raise _unreadable(
                        name,
                        f"it holds several arrays ({', '.join(keys)}); "
                        "save one array, or name it 'anomaly_map'.",
                    )
                with _NPY_LOCK:
                    array = archive[key]
        elif suffix in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        elif suffix == ".png":
            array = _read_png_map(path, name)
        elif suffix in (".pt", ".pth"):
            value = _torch_load(path)
            if isinstance(value, dict):
                if "asmaps" in value:
                    raise _unreadable(
                        name,
                        "it is a stacked file (key 'asmaps'): pass it "
                        "itself as the maps, not inside a folder.",
                    )
                if len(value) != 1:
                    raise _unreadable(
                        name,
                        f"it holds a dict with keys {sorted(value)}; save one tensor per file.",
                    )
                value = next(iter(value.values()))
            array = _to_numpy(value)
        else:
            raise _unreadable(
                name, f"unknown extension {path.suffix!r} (known: {', '.join(MAP_EXTENSIONS)})."
            )
    except FileProblemError:
        raise
    except DatasetError:
        raise
    except FileNotFoundError as error:
        raise FileProblemError(
            Problem("missing-map", name, f"the map file {path} does not exist.")
        ) from error
    except PermissionError as error:
        raise _unreadable(
            name, f"permission denied. Make {path} readable (e.g. chmod a+r).",
        ) from error
    except Exception as error:  # numpy, tifffile, zipfile and torch raise many types
        raise _unreadable(
            name, f"truncated or corrupt ({type(error).__name__}: {error})."
        ) from error
    return as_2d_map(np.asarray(array), name, accept_bool=accept_bool)


class MapSource(ABC):
    """Where the anomaly maps are: a folder of files, or one stacked file."""

    location: Path
    kind: str

    @abstractmethod
    def entries(self) -> list[MapEntry]:
        """Every map the source holds."""

    @abstractmethod
    def load(self, entry: MapEntry) -> np.ndarray:
        """One map as a 2-D float array (raises :class:`FileProblemError`)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release open files."""


class MapFiles(MapSource):
    """A folder of one-map files (searched recursively)."""

    kind = "files"

    def __init__(self, folder: str | os.PathLike[str]):
        self.location = Path(folder)

    def entries(self) -> list[MapEntry]:
        """Every file named like a map (anything but a folder named like one is read later).

        Raises
        ------
        DatasetError
            A folder of the tree cannot be listed (its maps would look missing).
        """
        found = []
        unlisted: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(self.location, onerror=unlisted.append):
            # a folder named like a map file stands where a map should be: kept as an entry,
            # so that reading it reports it as unreadable instead of the map as missing
            named_like_maps = [d for d in dirnames if d.lower().endswith(MAP_EXTENSIONS)]
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and d not in named_like_maps
            )
            for filename in [*filenames, *named_like_maps]:
                if filename.startswith(".") or not filename.lower().endswith(MAP_EXTENSIONS):
                    continue
                relative = (Path(dirpath) / filename).relative_to(self.location).as_posix()
                found.append(MapEntry(relative, path_key(relative)))
        if unlisted:
            problems = [
                Problem("unreadable-map", str(error.filename),
                        f"the folder {error.filename} cannot be listed: "
                        f"{error.strerror or error}. Make it readable (e.g. chmod a+rx).")
                for error in unlisted
            ]
            raise DatasetError(
                f"Cannot list the anomaly maps in {self.location}.", problems,
                path=str(self.location),
            )
        return sorted(found, key=lambda entry: entry.name)

    def load(self, entry: MapEntry) -> np.ndarray:
        return read_map_file(self.location / entry.name, name=entry.name)


def _npz_member_memmap(path: Path, member: str) -> np.ndarray | None:
    """Memory-map an uncompressed array of an ``.npz`` file (None if it is compressed)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with path.open("rb") as handle:
        handle.seek(info.header_offset)
        local_header = handle.read(30)
        name_length = int.from_bytes(local_header[26:28], "little")
        extra_length = int.from_bytes(local_header[28:30], "little")
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            return None
        offset = handle.tell()
    if dtype.hasobject:
        return None
    return np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


class StackedMaps(MapSource):
    """One file ``{"asmaps": (N, H, W), "paths": [...]}`` (``.pt`` or ``.npz``)."""

    kind = "stacked"

    def __init__(self, path: str | os.PathLike[str]):
        self.location = Path(path)
        suffix = self.location.suffix.lower()
        try:
            if suffix in (".pt", ".pth"):
                payload = _torch_load(self.location, mmap=True)
                if not isinstance(payload, dict):
                    raise TypeError(f"expected a dict, got {type(payload).__name__}")
                asmaps, paths = payload.get("asmaps"), payload.get("paths")
            elif suffix == ".npz":
                with np.load(self.location, allow_pickle=False) as archive:
                    keys = set(archive.keys())
                    paths = archive["paths"].tolist() if "paths" in keys else None
                    asmaps = None
                    if "asmaps" in keys:
                        asmaps = _npz_member_memmap(self.location, "asmaps.npy")
                        if asmaps is None:
                            asmaps = archive["asmaps"]
            else:
                raise DatasetError(
                    f"{self.location} is a file but not a stacked map file: pass a folder of "
                    "map files, or a .pt/.npz file with the keys 'asmaps' and 'paths'.",
                    path=str(self.location),
                )
        except DatasetError:
            raise
        except Exception as error:
            raise DatasetError(
                f"The stacked map file {self.location} cannot be read ({type(error).__name__}: "
                f"{error}).",
                path=str(self.location),
            ) from error
        if asmaps is None or paths is None:
            lacking = [k for k, v in zip(_STACKED_KEYS, (asmaps, paths), strict=True) if v is None]
            raise DatasetError(
                f"The stacked map file {self.location} lacks the key(s) "
                f"{', '.join(lacking)}; "
                "expected {'asmaps': (N, H, W) array, 'paths': list of N image paths}.",
                path=str(self.location),
            )
        self._asmaps = asmaps
        self._paths = [str(p) for p in paths]
        num_maps = int(asmaps.shape[0]) if getattr(asmaps, "ndim", 0) >= 3 else -1
        if num_maps != len(self._paths):
            raise DatasetError(
                f"The stacked map file {self.location} has 'asmaps' of shape "
                f"{tuple(asmaps.shape)} and {len(self._paths)} paths; expected (N, H, W) maps "
                "with one path per map.",
                path=str(self.location),
            )

    def entries(self) -> list[MapEntry]:
        return [MapEntry(path, path_key(path), row) for row, path in enumerate(self._paths)]

    def load(self, entry: MapEntry) -> np.ndarray:
        name = f"{self.location.name}[{entry.row}] ({entry.name})"
        return as_2d_map(np.array(_to_numpy(self._asmaps[entry.row])), name)

    def close(self) -> None:
        self._asmaps = None


def open_maps(location: str | os.PathLike[str], category: str | None = None) -> MapSource:
    """The maps at ``location``: a folder of map files or a stacked file.

    For a folder that has a sub-folder named ``category``, that sub-folder is used, so one maps
    folder laid out as ``MAPS/<category>/...`` serves every category.
    """
    path = Path(location)
    if path.is_dir():
        if category is not None and (path / category).is_dir():
            path = path / category
        return MapFiles(path)
    if path.is_file():
        return StackedMaps(path)
    raise DatasetError(
        f"The anomaly maps {path} do not exist (expected a folder of map files, "
        "or a stacked .pt/.npz file).",
        path=str(path),
    )


def entries_of_category(
    entries: Sequence[MapEntry], category: str, categories: Sequence[str]
) -> list[MapEntry]:
    """The maps that may belong to ``category``: leave out those of the dataset's other ones.

    A map belongs to another category when a folder of its path is named after one of the
    other ``categories`` and none is named ``category`` (``mvtec/screw/test/...`` when
    evaluating ``bottle``). Every other map is kept, to be matched or reported as an orphan, so
    one folder or stacked file can hold the maps of every category.
    """
    others = set(categories) - {category}
    if not others:
        return list(entries)
    kept = []
    for entry in entries:
        folders = set(entry.key[:-1])
        if category in folders or not (folders & others):
            kept.append(entry)
    return kept


def _folder_conflicts(sample_paths: Sequence[str], sample_keys: Sequence[tuple[str, ...]],
                      matches: Sequence[MapEntry | None], where: str, kind: str, noun: str
                      ) -> list[Problem]:
    """Matches by a name whose folders disagree: ``crack/img0.npy`` for ``good/img0.png``.

    Names alone may match when they are unique, but when the maps follow the images' folders
    (some matched map's folder is its image's folder), a map in another folder is another
    image's map, or a stray one: each such match is a ``<kind>-folder`` problem. Maps that
    never follow the images' folders (one flat folder, or an extra folder level) are left
    alone.
    """
    pairs = [(path, key, match) for path, key, match in zip(sample_paths, sample_keys, matches,
                                                            strict=True)
             if match is not None and len(key) >= 2 and len(match.key) >= 2]
    if not any(key[-2] == match.key[-2] for _, key, match in pairs):
        return []
    return [
        Problem(
            f"{kind}-folder",
            path,
            f"the {noun} {match.name} in {where} matches the image {path} by its name only: "
            f"its folder {match.key[-2]!r} is not the image's {key[-2]!r}, while the other "
            f"{noun}s follow the images' folders. It is another image's {noun} or a stray "
            f"one: move it to the image's folder, or remove it.",
        )
        for path, key, match in pairs if key[-2] != match.key[-2]
    ]


def match_maps(
    sample_paths: Sequence[str], entries: Sequence[MapEntry], *, where: str,
    kind: str = "map",
) -> tuple[list[MapEntry | None], list[Problem]]:
    """Match maps to images by the trailing components of their paths.

    Parameters
    ----------
    sample_paths : sequence of str
        The images' relative paths.
    entries : sequence of MapEntry
        The maps.
    where : str
        The maps' location, for messages.
    kind : {"map", "ignore-mask"}
        What the files are, in the problems' kinds and messages (ignore masks are matched to
        images as maps are).

    Returns
    -------
    matches : list of MapEntry or None
        The map of each image (``None``: no map).
    problems : list of Problem
        ``missing-map`` for each image without map, ``orphan-map`` for each map without
        image, ``duplicate-map`` for maps that share a path but not the extension,
        ``map-folder`` for a map matched by name whose folder is not its image's while the
        other maps follow the images' folders (``missing-ignore-mask``, ... for ignore masks).
    """
    noun, long_noun, example = (
        ("map", "anomaly map", ".npy") if kind == "map" else ("ignore mask", "ignore mask", ".png")
    )
    problems: list[Problem] = []
    by_key: dict[tuple[str, ...], MapEntry] = {}
    for entry in entries:
        if entry.key in by_key:
            problems.append(
                Problem(
                    f"duplicate-{kind}",
                    entry.name,
                    f"the {noun}s {by_key[entry.key].name} and {entry.name} in {where} are "
                    "for the same image; keep one.",
                )
            )
            continue
        by_key[entry.key] = entry
    unique_entries = list(by_key.values())
    sample_keys = [path_key(p) for p in sample_paths]
    longest = max((len(k) for k in [*sample_keys, *by_key]), default=0)
    best_depth, best_count, best_matches = 0, -1, [None] * len(sample_keys)
    for depth in range(1, longest + 1):
        tails = [key[-depth:] for key in sample_keys]
        if len(set(tails)) < len(tails):
            continue  # ambiguous for the images
        map_tails: dict[tuple[str, ...], MapEntry | None] = {}
        for entry in unique_entries:
            tail = entry.key[-depth:]
            map_tails[tail] = None if tail in map_tails else entry  # None: ambiguous
        matches = [map_tails.get(tail) for tail in tails]
        count = sum(match is not None for match in matches)
        if count >= best_count and count > 0:
            best_depth, best_count, best_matches = depth, count, matches
    problems.extend(_folder_conflicts(sample_paths, sample_keys, best_matches, where, kind,
                                      noun))
    matched = {id(match) for match in best_matches if match is not None}
    for path, match in zip(sample_paths, best_matches, strict=True):
        if match is None:
            problems.append(
                Problem(
                    f"missing-{kind}",
                    path,
                    f"no {long_noun} for the image {path} in {where} (looked for a file named "
                    f"like {'/'.join(path_key(path)[-max(best_depth, 1) :])}{example}, matching "
                    "the image's path without extension).",
                )
            )
    for entry in unique_entries:
        if id(entry) not in matched:
            problems.append(
                Problem(
                    f"orphan-{kind}",
                    entry.name,
                    f"the {noun} {entry.name} in {where} matches no test image.",
                )
            )
    return best_matches, problems
