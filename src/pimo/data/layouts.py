"""Dataset layouts: small readers that list the test images of a category and their masks.

Every reader returns a :class:`Scan`: the test images as :class:`Sample` records (relative path,
image file, mask file or ``None`` for a normal image) sorted by relative path, and the
structural problems it found (a defect image without mask, a mask without image, ...). Paths
are relative to the dataset root, with ``/`` separators, as the paper's score files store them.

Layouts
-------
``mvtec``
    MVTec AD: ``ROOT/<category>/test/<defect>/<id>.png``, masks at
    ``ROOT/<category>/ground_truth/<defect>/<id>_mask.png``; ``good`` holds the normal images.
    Masks named ``<id>.png`` are accepted too, which also covers MVTec-style conversions of
    other datasets (e.g. VisA's ``visa_pytorch``). ``ROOT`` may also be one category's folder.
``visa``
    VisA, either with its split file ``ROOT/split_csv/1cls.csv`` (columns
    ``object,split,label,image,mask``; the rows with ``split == "test"`` are evaluated), or,
    without it, the per-category layout ``ROOT/<category>/Data/Images/{Normal,Anomaly}/`` with
    masks in ``ROOT/<category>/Data/Masks/Anomaly/<id>.png`` (then every image is evaluated:
    there is no split). VisA masks may hold one label value per defect: any value > 0 is
    anomalous.
``folder``
    Any ``ROOT/images/...`` tree with a parallel ``ROOT/masks/...`` tree: the mask of
    ``images/a/b.png`` is ``masks/a/b.png`` (any image extension; ``b_mask.png`` also works);
    an image without mask is normal. ``ROOT/<category>/images/...`` holds several categories.

:func:`open_dataset` parses ``"kind:ROOT"`` (or a bare ``ROOT``, whose layout is recognised).
"""

from __future__ import annotations

import csv
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import ClassVar

from pimo.data.problems import DatasetError, Problem

__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "DatasetLayout",
    "FolderLayout",
    "MVTecLayout",
    "Sample",
    "Scan",
    "VisaCsvLayout",
    "VisaLayout",
    "defect_type_of_path",
    "open_dataset",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    """One test image of a dataset.

    Attributes
    ----------
    relative_path : str
        The image's path relative to the dataset root, with ``/`` separators (the ``paths``
        entry of the score file).
    image_path : Path
        The image file.
    mask_path : Path or None
        The ground-truth mask file; ``None`` for a normal image.
    defect_type : str or None
        The defect type the layout gives the image: the MVTec AD / VisA folder holding it
        (``"broken_large"``, ``"good"``), the Folder layout's sub-folder under ``images/``
        (None for an image directly in ``images/``).
    """

    relative_path: str
    image_path: Path
    mask_path: Path | None
    defect_type: str | None = None

    @property
    def has_mask(self) -> bool:
        """Whether the layout gives a mask file (an all-zero mask still means normal)."""
        return self.mask_path is not None


@dataclass(frozen=True)
class Scan:
    """The test images of one category and the structural problems found while listing them."""

    samples: list[Sample]
    problems: list[Problem] = field(default_factory=list)


def _is_image(path: Path) -> bool:
    """Named like an image file; anything but a folder (a FIFO, a device) counts, to be read
    and reported as unreadable rather than left out."""
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS
        and not path.name.startswith(".")
        and path.exists()
        and not path.is_dir()
    )


def _image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)


def _image_files_recursive(folder: Path) -> list[Path]:
    """Image files anywhere under ``folder`` (hidden folders skipped), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath) / name
            for name in filenames
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS and not name.startswith(".")
        )
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _find_mask(folder: Path, stem: str, suffixes: Iterable[str] = ("_mask", "")) -> Path | None:
    """The mask of image ``stem`` in ``folder``: ``<stem>_mask.<ext>`` or ``<stem>.<ext>``,
    ``<ext>`` any image extension in any case (``.png``, ``.TIF``, ``.Jpg``, ...)."""
    for suffix in suffixes:
        for ext in (".png", ".PNG", ".bmp", ".tif", ".tiff", ".jpg", ".JPG", ".jpeg"):
            candidate = folder / f"{stem}{suffix}{ext}"
            if candidate.exists():  # not only regular files: the reader reports the others
                return candidate
    if not folder.is_dir():
        return None
    by_name: dict[str, Path] = {}  # the other spellings of the extensions (.TIF, .Png, ...)
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            by_name.setdefault(path.stem, path)
    for suffix in suffixes:
        if f"{stem}{suffix}" in by_name:
            return by_name[f"{stem}{suffix}"]
    return None


def defect_type_of_path(relative_path: str) -> str | None:
    """The name of the folder holding an image (``a/test/crack/000.png`` -> ``"crack"``).

    The defect type of the MVTec AD and VisA layouts, and of published score files whose
    ``paths`` follow them; None for a bare file name.
    """
    parent = PurePosixPath(str(relative_path).replace("\\", "/")).parent
    return parent.name or None


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


class DatasetLayout(ABC):
    """A dataset on disk: its categories and, for each, its test images and masks.

    Attributes
    ----------
    name : str
        The layout's name (``"mvtec"``, ``"visa"``, ``"folder"``), also the collection folder
        of ``--categories all`` outputs.
    root : Path
        The dataset root; sample paths are relative to it.
    label_masks : bool
        Whether masks may hold several non-zero label values (VisA) rather than one.
    """

    name: ClassVar[str]
    label_masks: ClassVar[bool] = False

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    @classmethod
    @abstractmethod
    def recognises(cls, root: Path) -> bool:
        """Whether ``root`` looks like this layout."""

    @abstractmethod
    def categories(self) -> list[str]:
        """The categories, sorted."""

    @abstractmethod
    def _scan(self, category: str) -> Scan:
        """List the test images of an existing category."""

    def scan(self, category: str | None = None) -> Scan:
        """The test images of ``category`` (optional when there is only one).

        Raises
        ------
        DatasetError
            Unknown category, or a category without test image.
        """
        available = self.categories()
        if category is None:
            if len(available) != 1:
                raise DatasetError(
                    f"{self.describe()} has {len(available)} categories "
                    f"({', '.join(available) or 'none'}); choose one with --category NAME, or "
                    "evaluate all of them with --categories all."
                )
            category = available[0]
        if category not in available:
            raise DatasetError(
                f"Category {category!r} is not in {self.describe()}. Available categories: "
                f"{', '.join(available) or 'none'}."
            )
        scan = self._scan(category)
        if not scan.samples:
            raise DatasetError(
                f"Category {category!r} of {self.describe()} has no test image "
                f"({self._where(category)}).",
                scan.problems,
                path=str(self.root),
            )
        return scan

    def describe(self) -> str:
        """E.g. ``"the mvtec dataset at /data/mvtec"``."""
        return f"the {self.name} dataset at {self.root}"

    def _where(self, category: str) -> str:
        return f"looked under {self.root / category}"


class MVTecLayout(DatasetLayout):
    """MVTec AD (and MVTec-style conversions): ``<category>/test/<defect>/<id>.<ext>``."""

    name = "mvtec"
    normal_defect: ClassVar[str] = "good"

    def __init__(self, root: str | os.PathLike[str]):
        root = Path(root)
        self._single: str | None = None
        if (root / "test").is_dir():  # the root is one category's folder
            self._single = root.resolve().name
            root = root.resolve().parent
        super().__init__(root)

    @classmethod
    def recognises(cls, root: Path) -> bool:
        if (root / "test").is_dir():
            return True
        return root.is_dir() and any((child / "test").is_dir() for child in root.iterdir())

    def categories(self) -> list[str]:
        if self._single is not None:
            return [self._single]
        if not self.root.is_dir():
            return []
        return sorted(
            child.name
            for child in self.root.iterdir()
            if child.is_dir() and (child / "test").is_dir()
        )

    def _where(self, category: str) -> str:
        return f"looked for images in {self.root / category / 'test'}/<defect>/"

    def _scan(self, category: str) -> Scan:
        category_dir = self.root / category
        test_dir, truth_dir = category_dir / "test", category_dir / "ground_truth"
        samples: list[Sample] = []
        problems: list[Problem] = []
        defects = sorted(
            d.name for d in test_dir.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        for defect in defects:
            used_masks: set[Path] = set()
            for image in _image_files(test_dir / defect):
                relative = _relative(image, self.root)
                if defect == self.normal_defect:
                    samples.append(Sample(relative, image, None, defect))
                    continue
                mask = _find_mask(truth_dir / defect, image.stem)
                if mask is None:
                    problems.append(
                        Problem(
                            "missing-mask",
                            relative,
                            f"no mask for the anomalous image {relative}: expected "
                            f"{_relative(truth_dir / defect, self.root)}/{image.stem}_mask.png.",
                        )
                    )
                    continue
                used_masks.add(mask)
                samples.append(Sample(relative, image, mask, defect))
            for mask in _image_files(truth_dir / defect):
                if mask not in used_masks:
                    relative = _relative(mask, self.root)
                    message = (f"the mask {relative} has no image in "
                               f"{_relative(test_dir / defect, self.root)}/.")
                    if defect == self.normal_defect:
                        message = (f"the mask {relative} is for a normal image: the images of "
                                   f"test/{defect}/ are normal (no mask) in this layout. Remove "
                                   "it, or move its image to a defect folder.")
                    problems.append(Problem("orphan-mask", relative, message))
        return Scan(sorted(samples, key=lambda s: s.relative_path), problems)


class VisaCsvLayout(DatasetLayout):
    """VisA with its split file ``split_csv/1cls.csv`` (the test split is evaluated)."""

    name = "visa"
    label_masks = True
    split_file: ClassVar[str] = "split_csv/1cls.csv"
    columns: ClassVar[tuple[str, ...]] = ("object", "split", "label", "image", "mask")

    @classmethod
    def recognises(cls, root: Path) -> bool:
        return (root / cls.split_file).is_file()

    def _rows(self) -> list[dict[str, str]]:
        csv_path = self.root / self.split_file
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in self.columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(
                    f"{csv_path} lacks the column(s) {', '.join(missing)}; VisA's split file has "
                    f"the columns {','.join(self.columns)}.",
                    path=str(csv_path),
                )
            return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]

    def categories(self) -> list[str]:
        return sorted({row["object"] for row in self._rows() if row["split"] == "test"})

    def _where(self, category: str) -> str:
        return f"no row with object={category!r} and split=test in {self.root / self.split_file}"

    def _scan(self, category: str) -> Scan:
        samples: list[Sample] = []
        problems: list[Problem] = []
        for row in self._rows():
            if row["object"] != category or row["split"] != "test":
                continue
            relative = PurePosixPath(row["image"].replace("\\", "/")).as_posix()
            image = self.root / relative
            if not image.exists():
                problems.append(
                    Problem(
                        "missing-image",
                        relative,
                        f"the image {relative} listed in {self.split_file} does not exist.",
                    )
                )
                continue
            if row["label"] == "normal":
                samples.append(Sample(relative, image, None, defect_type_of_path(relative)))
                continue
            if not row["mask"]:
                problems.append(
                    Problem(
                        "missing-mask",
                        relative,
                        f"the anomalous image {relative} has no mask in {self.split_file}.",
                    )
                )
                continue
            mask = self.root / row["mask"].replace("\\", "/")
            if not mask.exists():
                problems.append(
                    Problem(
                        "missing-mask",
                        relative,
                        f"the mask of {relative}, {row['mask']}, does not exist.",
                    )
                )
                continue
            samples.append(Sample(relative, image, mask, defect_type_of_path(relative)))
        return Scan(sorted(samples, key=lambda s: s.relative_path), problems)


class VisaLayout(DatasetLayout):
    """VisA's per-category layout ``<category>/Data/Images/{Normal,Anomaly}`` (all images)."""

    name = "visa"
    label_masks = True

    @classmethod
    def recognises(cls, root: Path) -> bool:
        return root.is_dir() and any(
            (child / "Data" / "Images").is_dir() for child in root.iterdir()
        )

    def categories(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            child.name for child in self.root.iterdir() if (child / "Data" / "Images").is_dir()
        )

    def _where(self, category: str) -> str:
        return f"looked in {self.root / category / 'Data' / 'Images'}/{{Normal,Anomaly}}/"

    def _scan(self, category: str) -> Scan:
        data = self.root / category / "Data"
        samples = [
            Sample(_relative(image, self.root), image, None, "Normal")
            for image in _image_files(data / "Images" / "Normal")
        ]
        problems: list[Problem] = []
        used_masks: set[Path] = set()
        for image in _image_files(data / "Images" / "Anomaly"):
            relative = _relative(image, self.root)
            mask = _find_mask(data / "Masks" / "Anomaly", image.stem, ("", "_mask"))
            if mask is None:
                problems.append(
                    Problem(
                        "missing-mask",
                        relative,
                        f"no mask for the anomalous image {relative}: expected "
                        f"{category}/Data/Masks/Anomaly/{image.stem}.png.",
                    )
                )
                continue
            used_masks.add(mask)
            samples.append(Sample(relative, image, mask, "Anomaly"))
        for mask in _image_files(data / "Masks" / "Anomaly"):
            if mask not in used_masks:
                relative = _relative(mask, self.root)
                problems.append(
                    Problem(
                        "orphan-mask",
                        relative,
                        f"the mask {relative} has no image in {category}/Data/Images/Anomaly/.",
                    )
                )
        return Scan(sorted(samples, key=lambda s: s.relative_path), problems)


class FolderLayout(DatasetLayout):
    """``images/...`` with a parallel ``masks/...`` tree; an image without mask is normal."""

    name = "folder"

    @classmethod
    def recognises(cls, root: Path) -> bool:
        return (root / "images").is_dir() or (
            root.is_dir() and any((child / "images").is_dir() for child in root.iterdir())
        )

    def _base(self, category: str) -> Path:
        return self.root if (self.root / "images").is_dir() else self.root / category

    def categories(self) -> list[str]:
        if (self.root / "images").is_dir():
            return [self.root.resolve().name]
        if not self.root.is_dir():
            return []
        return sorted(child.name for child in self.root.iterdir() if (child / "images").is_dir())

    def _where(self, category: str) -> str:
        return f"looked under {self._base(category) / 'images'}/"

    def _scan(self, category: str) -> Scan:
        base = self._base(category)
        images_dir, masks_dir = base / "images", base / "masks"
        samples: list[Sample] = []
        used_masks: set[Path] = set()
        for image in _image_files_recursive(images_dir):
            inner = image.relative_to(images_dir)
            mask = _find_mask(masks_dir / inner.parent, image.stem, ("", "_mask"))
            if mask is not None:
                used_masks.add(mask)
            sub_folder = inner.parent.as_posix()
            samples.append(Sample(_relative(image, self.root), image, mask,
                                  None if sub_folder == "." else sub_folder))
        problems = [
            Problem(
                "orphan-mask",
                _relative(mask, self.root),
                f"the mask {_relative(mask, self.root)} has no image in "
                f"{_relative(images_dir, self.root)}/ (same relative path and stem).",
            )
            for mask in (_image_files_recursive(masks_dir) if masks_dir.is_dir() else [])
            if mask not in used_masks
        ]
        return Scan(sorted(samples, key=lambda s: s.relative_path), problems)


LAYOUTS: dict[str, tuple[type[DatasetLayout], ...]] = {
    "mvtec": (MVTecLayout,),
    "visa": (VisaCsvLayout, VisaLayout),
    "folder": (FolderLayout,),
}

_LAYOUT_HELP = (
    "Known layouts: mvtec:ROOT (ROOT/<category>/test/<defect>/*.png with "
    "ROOT/<category>/ground_truth/<defect>/*_mask.png), visa:ROOT (ROOT/split_csv/1cls.csv, or "
    "ROOT/<category>/Data/Images/{Normal,Anomaly}/), folder:ROOT (ROOT/images/... with a "
    "parallel ROOT/masks/...)."
)


def open_dataset(spec: str | os.PathLike[str]) -> DatasetLayout:
    """Open a dataset from ``"kind:ROOT"`` (kind in mvtec, visa, folder) or a bare ``ROOT``.

    A bare root is matched against every layout; a kind is checked against its layout.

    Raises
    ------
    DatasetError
        The root does not exist, the kind is unknown, or the folder does not have the layout.
    """
    text = os.fspath(spec)
    kind, sep, rest = text.partition(":")
    if sep and (kind.lower() in LAYOUTS or (len(kind) > 1 and not Path(text).exists())):
        kind, root = kind.lower(), Path(rest)
    else:
        kind, root = "", Path(text)
    if kind and kind not in LAYOUTS:
        raise DatasetError(f"Unknown dataset layout {kind!r} in {text!r}. {_LAYOUT_HELP}")
    if not root.is_dir():
        raise DatasetError(f"The dataset root {root} is not a folder.", path=str(root))
    candidates = LAYOUTS[kind] if kind else tuple(c for cs in LAYOUTS.values() for c in cs)
    for layout in candidates:
        if layout.recognises(root):
            return layout(root)
    what = f"the {kind} layout" if kind else "any known layout"
    raise DatasetError(
        f"Unknown layout: {root} does not have {what}. {_LAYOUT_HELP}", path=str(root)
    )
