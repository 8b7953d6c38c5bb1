"""Small file helpers shared by every writer: output checks, atomic writes, tolerant JSON reading.

Every failure to write becomes an :class:`~pimo.OutputPathError` naming the path and the fix;
commands call :func:`check_output_file` / :func:`check_output_folder` before computing, so a
bad ``-o`` is refused at once rather than after the work.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from pimo._validate import OutputPathError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_file",
    "check_output_folder",
    "dump_json",
    "read_json",
]


def _check_ancestors(path: Path, what: str) -> None:
    """The nearest existing folder above ``path`` must be a writable folder."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(
            f"Cannot write the {what} {path}: {ancestor} is a file, not a folder, so nothing "
            "can be created under it. Choose another path.",
            path=str(path),
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"Cannot write the {what} {path}: no permission to write in {ancestor}. Choose a "
            "folder you can write to, or change its permissions.",
            path=str(path),
        )


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """Check that a file can be written at ``path`` (before computing what goes in it).

    Raises
    ------
    OutputPathError
        ``path`` is a folder, lies under a file, or is in a folder without write permission.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputPathError(
            f"Cannot write the {what} {target}: it is a folder. Give a file name (e.g. "
            f"{target / 'out.json'}).",
            path=str(target),
        )
    _check_ancestors(target, what)
    return target


def check_output_folder(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Check that ``path`` is, or can be created as, a writable folder.

    Raises
    ------
    OutputPathError
        ``path`` is a file, lies under a file, or cannot be written to.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputPathError(
            f"The {what} {target} is a file, not a folder. Give a folder (it is created when "
            "missing), or remove the file.",
            path=str(target),
        )
    if target.is_dir():
        if not os.access(target, os.W_OK | os.X_OK):
            raise OutputPathError(
                f"Cannot write in the {what} {target}: permission denied. Choose a folder you "
                "can write to, or change its permissions.",
                path=str(target),
            )
        return target
    _check_ancestors(target, what)
    return target


def _default_file_mode() -> int:
    """``0o666`` minus the process umask: the mode ``open()`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, which is flushed, synced and then
    renamed over ``path``: a reader sees either the old file or the complete new one, never a
    partial write. Parent folders are created; the file gets the usual permissions (those of
    the file it replaces, or ``0o666`` minus the umask).

    Raises
    ------
    OutputPathError
        The file cannot be written there (see :func:`check_output_file`), or writing failed
        (e.g. the disk is full).
    """
    target = check_output_file(path, "file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as error:
        raise OutputPathError(
            f"Cannot write the file {target}: {error.strerror or error}. Choose another path.",
            path=str(target),
        ) from error
    try:
        mode = target.stat().st_mode & 0o777 if target.exists() else _default_file_mode()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp_name).replace(target)
    except OSError as error:
        Path(tmp_name).unlink(missing_ok=True)
        raise OutputPathError(
            f"Cannot write the file {target}: {error.strerror or error}. Choose another path, "
            "or free some space.",
            path=str(target),
        ) from error
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _strict(value: Any) -> Any:
    """Replace non-finite floats by ``None`` so that the output is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value


def dump_json(path: str | os.PathLike[str], payload: Any, *, indent: int | None = 4) -> Path:
    """Write ``payload`` as strict JSON (``NaN``/``inf`` become ``null``), atomically."""
    text = json.dumps(_strict(payload), indent=indent, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file that may contain the non-standard tokens ``NaN``/``Infinity``.

    Official score files write normal images as a bare ``NaN``; Python's parser accepts it and
    it is mapped to ``float('nan')``.
    """
    with Path(path).open(encoding="utf-8") as handle:
        return json.load(handle)
