"""Problems found in a dataset or in a set of anomaly-map files, and the error that lists them.

Nothing is skipped silently: readers collect every :class:`Problem` they find (each names the
file concerned and says how to fix it) and the evaluation either fails with the full list
(:class:`DatasetError`) or, where the user asked to skip missing files, records what was
skipped in its output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pimo._validate import PimoValueError

__all__ = ["SKIPPABLE_KINDS", "DatasetError", "Problem", "format_problems"]

# Problems that ``skip_missing`` may skip: a file that is absent on one side of a pair.
SKIPPABLE_KINDS = frozenset(
    {"missing-map", "orphan-map", "missing-mask", "orphan-mask", "missing-image",
     "missing-ignore-mask", "orphan-ignore-mask"}
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input files.

    Attributes
    ----------
    kind : str
        A short identifier: ``missing-map``, ``orphan-map``, ``duplicate-map``, ``missing-mask``,
        ``orphan-mask``, ``missing-image``, ``unreadable-image``, ``unreadable-mask``,
        ``unreadable-map``, ``mask-size``, ``non-binary-mask``, ``non-finite-map``,
        ``map-shape``, ``map-values`` (integer scores beyond 2**53), ``map-folder`` (a map
        matched by name from another folder than its image's); for ignore masks
        ``missing-ignore-mask``, ``orphan-ignore-mask``, ``duplicate-ignore-mask``,
        ``ignore-mask-folder``,
        ``unreadable-ignore-mask``, ``non-binary-ignore-mask``, ``ignore-mask-size``.
    path : str
        The file concerned (the image's path relative to the dataset root when the problem is
        about an image, the file's own path otherwise).
    message : str
        What is wrong, in one sentence, with the fix when there is one.
    """

    kind: str
    path: str
    message: str

    @property
    def skippable(self) -> bool:
        """Whether ``skip_missing`` may skip the image concerned."""
        return self.kind in SKIPPABLE_KINDS

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready record."""
        return {"kind": self.kind, "path": self.path, "message": self.message}


def format_problems(problems: Sequence[Problem]) -> str:
    """One line per problem, prefixed with ``- ``."""
    return "\n".join(f"  - {problem.message}" for problem in problems)


class DatasetError(PimoValueError):
    """The dataset or the anomaly-map files have problems; ``problems`` lists all of them."""

    def __init__(
        self,
        message: str,
        problems: Iterable[Problem] = (),
        *,
        hint: str | None = None,
        path: str | None = None,
    ):
        self.problems = list(problems)
        text = message
        if self.problems:
            count = len(self.problems)
            text += f" {count} problem{'s' if count > 1 else ''}:\n{format_problems(self.problems)}"
            if path is None and count == 1:
                path = self.problems[0].path
        if hint:
            text += f"\n{hint}"
        super().__init__(text, path=path)
