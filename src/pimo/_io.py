"""Small file helpers shared by every writer: atomic writes and tolerant JSON reading."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "dump_json", "read_json"]


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
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        mode = target.stat().st_mode & 0o777 if target.exists() else _default_file_mode()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp_name).replace(target)
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
