"""The files of an evaluation folder, which of them pimo owns, and which run wrote them.

An evaluation folder (what ``pimo evaluate`` writes for one category) holds the published
layout's score files and ``evaluation.json``. :data:`OWN_FILE_PATTERNS` is the one list of the
names pimo writes there: a new metric file only needs a pattern here to be cleaned up by a later
run. A run *owns* its folder: the files matching these patterns that it did not rewrite are
removed (:func:`remove_stale_files`), so a folder never mixes two runs' numbers.

``evaluation.json`` is written last and records the run (:class:`EvaluationRun`): an id shared by
the categories evaluated together and the list of those categories. A run interrupted half way
therefore leaves folders whose records disagree, which :func:`run_consistency_notes` reports.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pimo._io import read_json
from pimo._validate import ScoreFileError

__all__ = [
    "AUPIMO_FILE",
    "EVALUATION_FILE",
    "OWN_FILE_PATTERNS",
    "EvaluationRun",
    "evaluation_folder",
    "own_files",
    "read_evaluation_file",
    "recorded_dataset_key",
    "remove_stale_files",
    "run_consistency_notes",
    "settings_notes",
]

EVALUATION_FILE = "evaluation.json"
AUPIMO_FILE = "aupimo/aupimos.json"

#: Glob patterns, relative to an evaluation folder, of every file pimo writes there.
OWN_FILE_PATTERNS: tuple[str, ...] = (
    AUPIMO_FILE,
    "auroc.json",
    "aupro.json",
    "aupro_*.json",
    "aupr.json",
    "f1max.json",
    "image_*.json",
    EVALUATION_FILE,
)


@dataclass(frozen=True)
class EvaluationRun:
    """One ``pimo evaluate`` run: an id and the categories it evaluates, in order.

    Attributes
    ----------
    id : str
        A random hex id, the same in every category folder written by the run.
    categories : tuple of str
        Every category the run was asked to evaluate.
    """

    id: str
    categories: tuple[str, ...]

    @classmethod
    def new(cls, categories: Iterable[str]) -> EvaluationRun:
        """A run with a fresh id."""
        return cls(uuid.uuid4().hex, tuple(categories))

    def to_dict(self) -> dict[str, Any]:
        """The ``run`` field of ``evaluation.json``."""
        return {"id": self.id, "categories": list(self.categories)}


def evaluation_folder(score_file: str | os.PathLike[str]) -> Path:
    """The evaluation folder of a score file: the parent of ``aupimo/`` (or the file's folder)."""
    path = Path(score_file)
    return path.parent.parent if path.parent.name == "aupimo" else path.parent


def own_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files of ``folder`` that match :data:`OWN_FILE_PATTERNS` (sorted)."""
    folder = Path(folder)
    found = {path for pattern in OWN_FILE_PATTERNS for path in folder.glob(pattern)}
    return sorted(path for path in found if path.is_file())


def remove_stale_files(
    folder: str | os.PathLike[str], written: Iterable[str | os.PathLike[str]]
) -> list[Path]:
    """Remove pimo's own files in ``folder`` that are not in ``written``; return them.

    Only names matching :data:`OWN_FILE_PATTERNS` are touched; any other file stays.
    """
    keep = {Path(path).resolve() for path in written}
    removed = []
    for path in own_files(folder):
        if path.resolve() not in keep:
            path.unlink()
            removed.append(path)
    return removed


def read_evaluation_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an ``evaluation.json`` as a dict.

    Raises
    ------
    ScoreFileError
        The file cannot be read, is not valid JSON (e.g. truncated) or not a JSON object;
        the message names the file and says how to recreate it.
    """
    path = Path(path)
    fix = "It is written by `pimo evaluate`; run it again to recreate the file."
    try:
        payload = read_json(path)
    except OSError as error:
        raise ScoreFileError(
            f"{path}: cannot be read ({error.strerror or error}). {fix}", path=str(path)
        ) from error
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ScoreFileError(
            f"{path}: not valid JSON, e.g. a truncated file ({error}). {fix}", path=str(path)
        ) from error
    if not isinstance(payload, dict):
        raise ScoreFileError(
            f"{path}: expected a JSON object, got {type(payload).__name__}. {fix}",
            path=str(path),
        )
    return payload


def _record_of(folder: Path) -> dict[str, Any] | None:
    record_path = folder / EVALUATION_FILE
    return read_evaluation_file(record_path) if record_path.is_file() else None


def recorded_dataset_key(folder: str | os.PathLike[str]) -> str | None:
    """``"<layout>/<category>"`` as recorded in ``folder/evaluation.json`` (None without one).

    Raises
    ------
    ScoreFileError
        A malformed ``evaluation.json``.
    """
    record = _record_of(Path(folder))
    if record is None:
        return None
    dataset = record.get("dataset")
    if not isinstance(dataset, dict) or not dataset.get("category"):
        return None
    layout, category = str(dataset.get("layout") or ""), str(dataset["category"])
    return f"{layout}/{category}" if layout else category


def _run_of(record: Mapping[str, Any] | None) -> tuple[str, tuple[str, ...]] | None:
    run = record.get("run") if record is not None else None
    if not isinstance(run, dict) or not isinstance(run.get("id"), str):
        return None
    categories = run.get("categories")
    return run["id"], tuple(str(c) for c in categories) if isinstance(categories, list) else ()


def run_consistency_notes(score_files: Mapping[str, Mapping[str, Path]]) -> list[str]:
    """Notes on datasets of one model that an interrupted or repeated run left inconsistent.

    Parameters
    ----------
    score_files : mapping model -> (mapping dataset key -> score file)
        The per-image score files of each model.

    Returns
    -------
    list of str
        One note per model whose folders disagree: some datasets have an ``evaluation.json``
        that says they were evaluated together with another of the model's datasets, which
        was written by a different run or has no ``evaluation.json``. Folders evaluated by
        separate runs on purpose (each run naming only its own category) give no note.

    Raises
    ------
    ScoreFileError
        A malformed ``evaluation.json``.
    """
    notes = []
    for model, by_dataset in score_files.items():
        runs = {
            dataset: _run_of(_record_of(evaluation_folder(path)))
            for dataset, path in by_dataset.items()
        }
        by_category: dict[str, list[str]] = {}
        for dataset in by_dataset:
            by_category.setdefault(dataset.rsplit("/", 1)[-1], []).append(dataset)
        problems: list[str] = []
        for dataset, run in sorted(runs.items(), key=lambda item: item[0]):
            if run is None:
                continue
            run_id, categories = run
            for category in categories:
                for other in by_category.get(category, []):
                    other_run = runs[other]
                    if other == dataset or (other_run is not None and other_run[0] == run_id):
                        continue
                    what = (
                        "has no evaluation.json" if other_run is None
                        else f"comes from another run ({other_run[0][:8]})"
                    )
                    problems.append(
                        f"{dataset} was evaluated in run {run_id[:8]} with {category}, but "
                        f"{other} {what}"
                    )
        if problems:
            notes.append(
                f"model {model!r}: its results mix evaluation runs (an interrupted or partly "
                f"repeated `pimo evaluate --categories` run?): {'; '.join(sorted(set(problems)))}."
                " Run `pimo evaluate` again for these categories into a fresh folder."
            )
    return notes



#: The evaluation settings that change the numbers: ``evaluation.json`` key -> its name.
_SETTINGS = {"resolution": "resolution", "ignore_masks": "ignore masks",
             "mask_threshold": "mask threshold"}
#: What a score file without ``evaluation.json`` (e.g. published scores) was computed with.
_UNRECORDED = {"resolution": "full", "ignore_masks": None, "mask_threshold": None}


def settings_notes(score_files: Mapping[str, Mapping[str, Path]]) -> list[str]:
    """Notes on datasets whose models were evaluated with different settings.

    Parameters
    ----------
    score_files : mapping model -> (mapping dataset key -> score file)
        The per-image score files of each model.

    Returns
    -------
    list of str
        One note per dataset where the models' ``evaluation.json`` records differ in
        resolution, ignore masks or mask threshold (their numbers are then not comparable). A
        model without a record (e.g. published scores) counts as evaluated at full
        resolution, without ignore masks, on clean masks.

    Raises
    ------
    ScoreFileError
        A malformed ``evaluation.json``.
    """
    by_dataset: dict[str, dict[str, Path]] = {}
    for model, files in score_files.items():
        for dataset, path in files.items():
            by_dataset.setdefault(dataset, {})[model] = path
    notes = []
    for dataset, by_model in sorted(by_dataset.items()):
        records = {model: _record_of(evaluation_folder(path)) for model, path in by_model.items()}
        differences = []
        for key, name in _SETTINGS.items():
            values = {model: _UNRECORDED[key] if record is None
                      else record.get(key, _UNRECORDED[key])
                      for model, record in records.items()}
            if len({str(value) for value in values.values()}) > 1:
                shown = ", ".join(
                    f"{'none' if value is None else value}"
                    f"{' (no evaluation.json)' if records[model] is None else ''} for {model!r}"
                    for model, value in values.items())
                differences.append(f"{name}: {shown}")
        if differences:
            notes.append(
                f"{dataset}: the models were evaluated with different settings ("
                f"{'; '.join(differences)}), so their numbers are not comparable. Evaluate "
                "every model with the same settings."
            )
    return notes
