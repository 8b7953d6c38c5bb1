"""Reading dataset images and ground-truth masks (Pillow), one file at a time.

Mask binarisation
-----------------
A pixel is anomalous when its mask value is ``> 0`` (``> mask_threshold`` when a threshold is
given). Without a threshold the mask must be *clean*: besides 0 it may hold a single value
(0/255 and 0/1 masks, for instance), or, for layouts whose masks carry one label per defect
(VisA), at most :data:`MAX_LABELS` distinct values. Anything else (typically the gradients left
by JPEG compression) is refused with a message that points to ``--mask-threshold``, rather
than guessed. Colour masks are reduced to their brightest channel; palette masks use their
palette indices.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from pimo.data.problems import Problem

__all__ = [
    "MAX_LABELS",
    "FileProblemError",
    "read_image_size",
    "read_mask",
    "require_regular_file",
]

MAX_LABELS = 16  # distinct non-zero values accepted in a label mask without a threshold


class FileProblemError(Exception):
    """A file could not be used; ``problem`` says which and why (collected, then reported)."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


def _file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def require_regular_file(path: str | os.PathLike[str], kind: str, name: str) -> None:
    """Raise a problem unless ``path`` is a regular file that can be opened for reading.

    Checked before reading, so that a directory, a FIFO or a device in place of a file is
    reported as ``unreadable-<kind>`` (reading a FIFO would block forever) and a file without
    read permission as unreadable rather than missing.

    Raises
    ------
    FileProblemError
        ``missing-<kind>`` when nothing is at ``path``, ``unreadable-<kind>`` otherwise.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as error:
        raise FileProblemError(
            Problem(f"missing-{kind}", name, f"the {kind} file {path} does not exist.")
        ) from error
    except OSError as error:
        raise FileProblemError(
            Problem(f"unreadable-{kind}", name,
                    f"the {kind} file {path} cannot be read: {error.strerror or error}.")
        ) from error
    if not stat.S_ISREG(mode):
        raise FileProblemError(
            Problem(
                f"unreadable-{kind}",
                name,
                f"the {kind} file {path} cannot be read: it is {_file_type(mode)}, not a regular "
                f"file. Put the {kind} file itself there.",
            )
        )
    if not os.access(path, os.R_OK):
        raise _permission_problem(path, kind, name)


def _permission_problem(path: Path, kind: str, name: str) -> FileProblemError:
    return FileProblemError(
        Problem(
            f"unreadable-{kind}",
            name,
            f"the {kind} file {path} cannot be read: permission denied. Make it readable "
            f"(e.g. chmod a+r {path}).",
        )
    )


def _open_decoded(path: Path, kind: str, name: str) -> Image.Image:
    """Open and fully decode an image file, turning every failure into a problem."""
    require_regular_file(path, kind, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
            image.load()
    except FileNotFoundError as error:
        raise FileProblemError(
            Problem(f"missing-{kind}", name, f"the {kind} file {path} does not exist.")
        ) from error
    except PermissionError as error:
        raise _permission_problem(path, kind, name) from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise FileProblemError(
            Problem(
                f"unreadable-{kind}",
                name,
                f"the {kind} file {path} cannot be read: it is truncated or not a valid image "
                f"({error}).",
            )
        ) from error
    return image


def read_image_size(
    path: str | os.PathLike[str], *, name: str | None = None, verify: bool = True
) -> tuple[int, int]:
    """``(height, width)`` of an image file.

    Parameters
    ----------
    path : path-like
        The image file.
    name : str, optional
        How to call the image in problems (its path relative to the dataset root).
    verify : bool
        Decode the whole image, which detects truncated and corrupt files; with ``False`` only
        the header is read.

    Raises
    ------
    FileProblemError
        The file is missing, truncated or not an image.
    """
    path = Path(path)
    name = name or str(path)
    if verify:
        with _open_decoded(path, "image", name) as image:
            return image.height, image.width
    require_regular_file(path, "image", name)
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except FileNotFoundError as error:
        raise FileProblemError(
            Problem("missing-image", name, f"the image file {path} does not exist.")
        ) from error
    except PermissionError as error:
        raise _permission_problem(path, "image", name) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise FileProblemError(
            Problem(
                "unreadable-image",
                name,
                f"the image file {path} is not a readable image ({error}).",
            )
        ) from error


def _mask_values(image: Image.Image) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 3:
        channels = array.shape[2]
        array = array[..., :3].max(axis=2) if channels >= 3 else array[..., 0]
    return array


def _distinct_values(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.bool_:
        return np.unique(array.view(np.uint8))
    if array.dtype.kind == "u" and array.dtype.itemsize <= 2:
        return np.flatnonzero(np.bincount(array.reshape(-1), minlength=1)).astype(array.dtype)
    return np.unique(array)


def read_mask(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    threshold: float | None = None,
    label_masks: bool = False,
) -> np.ndarray:
    """Read a mask file as a boolean array (True = anomalous pixel).

    Parameters
    ----------
    path : path-like
        The mask file (PNG, BMP, TIFF; JPEG masks need a threshold).
    name : str, optional
        How to call the image in problems (its path relative to the dataset root).
    threshold : float, optional
        Pixels with a value ``> threshold`` are anomalous; no check of the values. Without it,
        pixels ``> 0`` are anomalous and the mask must be clean (see the module notes).
    label_masks : bool
        Accept up to :data:`MAX_LABELS` distinct non-zero values (one label per defect).

    Raises
    ------
    FileProblemError
        Missing or unreadable file, or a mask that is not clean.
    """
    path = Path(path)
    name = name or str(path)
    with _open_decoded(path, "mask", name) as image:
        values = _mask_values(image)
    if threshold is not None:
        return values > threshold
    distinct = _distinct_values(values)
    nonzero = distinct[distinct != 0]
    allowed = MAX_LABELS if label_masks else 1
    if nonzero.size > allowed:
        shown = ", ".join(str(v) for v in distinct[:6].tolist())
        raise FileProblemError(
            Problem(
                "non-binary-mask",
                name,
                f"the mask {path} is not binary: it holds {distinct.size} distinct values "
                f"({shown}{', ...' if distinct.size > 6 else ''}), as masks saved with lossy "
                "compression (e.g. JPEG) do. Binarise it explicitly with --mask-threshold T "
                "(pixels > T are anomalous; 127 suits 0/255 masks).",
            )
        )
    return values > 0
