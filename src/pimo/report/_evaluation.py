"""Find the data of an evaluation again, to redraw PIMO curves and heatmaps.

``pimo evaluate`` writes ``evaluation.json`` beside the score files: the dataset root, the maps'
location and, per image in score order, the image, mask and map paths. :class:`EvaluationRecord`
reads it and loads one sample at a time at the resolution the scores were computed at (each
mask's full size, maps upsampled bilinearly, unless a fixed resolution was used).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pimo._io import read_json
from pimo._outputs import EVALUATION_FILE, evaluation_folder
from pimo._validate import PimoValueError
from pimo.data.ignore import IgnoreMasks
from pimo.data.images import FileProblemError, read_mask
from pimo.data.maps import MapEntry, MapSource, open_maps, path_key
from pimo.data.resize import resize_bilinear, resize_nearest
from pimo.evaluate import default_model_name
from pimo.results import AupimoResult, PimoCurves

__all__ = ["EVALUATION_FILE", "EvaluationRecord", "Sample", "find_evaluation"]



class EvaluationDataError(PimoValueError):
    """The files an evaluation was computed from cannot be found or read."""


@dataclass(frozen=True)
class Sample:
    """One image as it was evaluated.

    Attributes
    ----------
    index : int
        Index in the score list.
    path : str
        The image's path relative to the dataset root.
    image : ndarray of uint8, shape (H, W, 3)
    mask : ndarray of bool, shape (H, W)
        All False for a normal image.
    anomaly_map : ndarray of float, shape (H, W)
        Upsampled to the mask's size.
    ignore : ndarray of bool, shape (H, W), or None
        The pixels its ignore mask left out of the metrics (None without ignore masks).
    """

    index: int
    path: str
    image: np.ndarray
    mask: np.ndarray
    anomaly_map: np.ndarray
    ignore: np.ndarray | None = None


def find_evaluation(score_file: str | os.PathLike[str]) -> Path | None:
    """The ``evaluation.json`` of a score file (``<folder>/aupimo/aupimos.json``), if any."""
    candidate = evaluation_folder(score_file) / EVALUATION_FILE
    return candidate if candidate.is_file() else None


@dataclass(frozen=True)
class EvaluationRecord:
    """The content of an ``evaluation.json``.

    Attributes
    ----------
    path : Path
        The file read.
    dataset_root : Path
    layout : str
    category : str
    maps_location : Path
        The maps folder or stacked file.
    resolution : tuple of int or None
        None: each mask's full size.
    mask_threshold : float or None
    images : list of dict
        Per image, in score order: ``path``, ``mask``, ``map``, ``map_row``, ``anomalous``,
        ``size``.
    model : str
        The model's name (records without one: the maps folder's name).
    ignore_masks : Path or None
        The ignore masks' folder or file (each image's file is its record's ``ignore_mask``).
    """

    path: Path
    dataset_root: Path
    layout: str
    category: str
    maps_location: Path
    resolution: tuple[int, int] | None
    mask_threshold: float | None
    images: list[dict[str, Any]]
    model: str = ""
    ignore_masks: Path | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvaluationRecord:
        """Read ``evaluation.json`` (raises :class:`EvaluationDataError` when malformed)."""
        path = Path(path)
        try:
            payload = read_json(path)
            dataset = payload["dataset"]
            resolution = payload.get("resolution", "full")
            maps_location = Path(payload["maps"]["location"])
            category = str(dataset.get("category", ""))
            return cls(
                path=path,
                dataset_root=Path(dataset["root"]),
                layout=str(dataset.get("layout", "")),
                category=category,
                maps_location=maps_location,
                resolution=None if resolution in (None, "full")
                else (int(resolution[0]), int(resolution[1])),
                mask_threshold=payload.get("mask_threshold"),
                images=list(payload["images"]),
                model=str(payload.get("model") or default_model_name(maps_location, category)),
                ignore_masks=None if payload.get("ignore_masks") is None
                else Path(payload["ignore_masks"]),
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
            raise EvaluationDataError(
                f"{path}: not a readable evaluation record ({type(error).__name__}: {error}). "
                "It is written by `pimo evaluate`; run it again to recreate the file."
            ) from error

    @property
    def dataset_key(self) -> str:
        """``"<layout>/<category>"``, the name ``pimo compare`` gives the dataset."""
        return f"{self.layout}/{self.category}" if self.layout else self.category

    def check_matches(self, result: AupimoResult) -> None:
        """Raise when the record does not describe the images of ``result`` (same order)."""
        if len(self.images) != result.num_images:
            raise EvaluationDataError(
                f"{self.path} lists {len(self.images)} images but the scores have "
                f"{result.num_images}; the two files are from different runs. Run `pimo "
                "evaluate` again to write them together."
            )
        if result.paths is not None:
            for index, (record, path) in enumerate(zip(self.images, result.paths, strict=True)):
                if str(record.get("path")) != str(path):
                    raise EvaluationDataError(
                        f"{self.path}: image {index} is {record.get('path')!r} but the scores "
                        f"say {path!r}; the two files are from different runs. Run `pimo "
                        "evaluate` again to write them together."
                    )

    def index_of(self, image: str) -> int:
        """The index of an image given as an index or a (suffix of a) relative path."""
        text = image.strip()
        if text.isdigit():
            index = int(text)
            if not 0 <= index < len(self.images):
                raise PimoValueError(
                    f"Image index {index} is out of range: the evaluation has "
                    f"{len(self.images)} images (0 to {len(self.images) - 1})."
                )
            return index
        wanted = text.replace("\\", "/").strip("/")
        matches = [
            index for index, record in enumerate(self.images)
            if str(record["path"]) == wanted or str(record["path"]).endswith("/" + wanted)
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            examples = ", ".join(str(record["path"]) for record in self.images[:3])
            raise PimoValueError(
                f"No evaluated image matches {image!r}. Give an index (0 to "
                f"{len(self.images) - 1}) or a path relative to the dataset root, e.g. "
                f"{examples}."
            )
        raise PimoValueError(
            f"{image!r} matches {len(matches)} images ("
            + ", ".join(str(self.images[i]["path"]) for i in matches[:4])
            + "); give a longer path or the index."
        )

    def missing_files(self) -> str | None:
        """Which of the files this record names no longer exist, in one sentence, or None.

        Checks the maps (folder or stacked file, and each map file of a folder), the dataset
        root, and each image and mask: the files the PIMO curves and heatmaps are drawn from.
        Only existence is checked (no file is read).
        """
        where = f"named in {self.path}"
        fix = "move them back, or run `pimo evaluate` again with their new location"
        if not self.maps_location.exists():
            return f"the anomaly maps {self.maps_location} ({where}) no longer exist; {fix}."
        if not self.dataset_root.is_dir():
            return f"the dataset {self.dataset_root} ({where}) no longer exists; {fix}."
        gone: dict[str, list[str]] = {"map": [], "image": [], "mask": []}
        maps_folder = self.maps_location if self.maps_location.is_dir() else None
        for record in self.images:
            if maps_folder is not None and not (maps_folder / str(record["map"])).is_file():
                gone["map"].append(str(maps_folder / str(record["map"])))
            if not (self.dataset_root / str(record["path"])).is_file():
                gone["image"].append(str(self.dataset_root / str(record["path"])))
            if record.get("mask") and not (self.dataset_root / str(record["mask"])).is_file():
                gone["mask"].append(str(self.dataset_root / str(record["mask"])))
        parts = [
            f"{len(paths)} of the {len(self.images)} {kind} files (e.g. {paths[0]})"
            for kind, paths in gone.items() if paths
        ]
        if not parts:
            return None
        return f"{' and '.join(parts)} {where} no longer exist; {fix}."

    # -- loading -----------------------------------------------------------------------------
    def open_maps(self) -> MapSource:
        """The map source (a folder of files or a stacked file)."""
        if not self.maps_location.exists():
            raise EvaluationDataError(
                f"The anomaly maps {self.maps_location} named in {self.path} no longer exist; "
                "move them back, or run `pimo evaluate` again with their new location."
            )
        return open_maps(self.maps_location)

    def _size(self, index: int) -> tuple[int, int]:
        if self.resolution is not None:
            return self.resolution
        size = self.images[index].get("size")
        return int(size[0]), int(size[1])

    def load_map(self, source: MapSource, index: int) -> np.ndarray:
        """The map of image ``index`` at the evaluation's resolution."""
        record = self.images[index]
        name = str(record["map"])
        row = record.get("map_row")
        entry = MapEntry(name, path_key(name), -1 if row is None else int(row))
        try:
            anomaly_map = source.load(entry)
        except FileProblemError as error:
            raise EvaluationDataError(f"{error} (listed in {self.path})") from error
        return resize_bilinear(anomaly_map, self._size(index))

    def load_mask(self, index: int) -> np.ndarray:
        """The ground-truth mask of image ``index`` (all False without a mask file)."""
        record = self.images[index]
        size = self._size(index)
        mask_name = record.get("mask")
        if not mask_name:
            return np.zeros(size, dtype=bool)
        threshold = self.mask_threshold
        try:
            mask = read_mask(
                self.dataset_root / str(mask_name), name=str(record["path"]),
                threshold=None if threshold is None else float(threshold),
                label_masks=True,
            )
        except FileProblemError as error:
            raise EvaluationDataError(f"{error} (listed in {self.path})") from error
        return mask if mask.shape == size else resize_nearest(mask, size)

    @cached_property
    def _ignore_source(self) -> IgnoreMasks | None:
        """One reader of the ignore masks for every image (a single file is decoded once)."""
        if self.ignore_masks is None:
            return None
        return IgnoreMasks(self.ignore_masks, single=self.ignore_masks.is_file())

    def load_ignore_mask(self, index: int) -> np.ndarray | None:
        """The ignore mask of image ``index`` (True = left out), None without ignore masks."""
        if self.ignore_masks is None:
            return None
        record = self.images[index]
        name = record.get("ignore_mask")
        if not self.ignore_masks.exists() or not name:
            raise EvaluationDataError(
                f"The ignore masks {self.ignore_masks} named in {self.path} no longer exist "
                f"(or the record of {record.get('path')} names none); move them back, or run "
                "`pimo evaluate` again with their new location."
            )
        assert self._ignore_source is not None
        try:
            ignore = self._ignore_source.load(str(name), image=str(record["path"]))
        except FileProblemError as error:
            raise EvaluationDataError(f"{error} (listed in {self.path})") from error
        size = self._size(index)
        return ignore if ignore.shape == size else resize_nearest(ignore, size)

    def load_sample(self, source: MapSource, index: int) -> Sample:
        """Image, mask and map of image ``index``."""
        record = self.images[index]
        relative = str(record["path"])
        size = self._size(index)
        image_path = self.dataset_root / relative
        try:
            with Image.open(image_path) as handle:
                picture = handle.convert("RGB")
                if (picture.height, picture.width) != size:
                    picture = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                image = np.asarray(picture)
        except OSError as error:
            raise EvaluationDataError(
                f"The image {image_path} (listed in {self.path}) cannot be read: {error}. The "
                "heatmaps need the dataset where it was evaluated."
            ) from error
        mask = self.load_mask(index)
        return Sample(index, relative, image, mask, self.load_map(source, index),
                      self.load_ignore_mask(index))

    def curves_for(
        self, source: MapSource, result: AupimoResult, indices: Sequence[int]
    ) -> PimoCurves:
        """PIMO curves of the images ``indices``, on the full image list's indices.

        The shared FPR needs every normal image, but each TPR only its own image, so only the
        normal maps and those of ``indices`` are loaded. Rows of other images are NaN.
        """
        from pimo.pimo import pimo_curves

        normal = [i for i in range(len(self.images)) if result.image_classes[i] == 0]
        wanted = [int(i) for i in indices if result.image_classes[int(i)] == 1]
        order = normal + wanted
        maps, masks, ignore_masks = [], [], []
        for index in order:
            anomaly_map = self.load_map(source, index)
            maps.append(anomaly_map)
            if result.image_classes[index] == 0:
                masks.append(np.zeros(anomaly_map.shape, dtype=bool))
            else:
                masks.append(self.load_mask(index))
            ignore_masks.append(self.load_ignore_mask(index))
        subset = pimo_curves(maps, masks, fpr_bounds=result.fpr_bounds,
                             ignore_masks=None if self.ignore_masks is None else ignore_masks)
        tprs = np.full((result.num_images, subset.thresholds.shape[0]), np.nan)
        for position, index in enumerate(order):
            tprs[index] = subset.tprs[position]
        return PimoCurves(
            thresholds=subset.thresholds, shared_fpr=subset.shared_fpr, tprs=tprs,
            image_classes=result.image_classes, fpr_bounds=subset.fpr_bounds,
            mode=subset.mode, paths=result.paths,
        )
