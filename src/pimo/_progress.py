"""The progress protocol of long jobs (no heavy import: the command line loads it first)."""

from __future__ import annotations

__all__ = ["ProgressHook"]


class ProgressHook:
    """Receives progress: :meth:`start` once per stage, :meth:`advance` once per image.

    The default does nothing; the command line shows a progress bar.
    """

    def start(self, stage: str, total: int) -> None:
        """A stage of ``total`` images begins."""

    def advance(self, count: int = 1) -> None:
        """``count`` more images are done."""
