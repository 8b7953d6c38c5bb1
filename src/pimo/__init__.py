"""pimo: exact, fast evaluation of anomaly localization.

The public API. Per-image metrics: :func:`aupimo`, :func:`auimo`, :func:`pimo_curves`, and
:class:`AupimoAccumulator` for batches in any order; score
files: :func:`load_aupimo` and :meth:`AupimoResult.save`.

Importing :mod:`pimo` is cheap: every public name (and the submodules :mod:`pimo.stats`,
:mod:`pimo.streaming`, :mod:`pimo.plots`, ...) is loaded on first use, so that a command only
pays for numpy, numba, scipy, matplotlib or Pillow when it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from pimo import accumulate as accumulate
    from pimo import data as data
    from pimo import evaluate as evaluate
    from pimo import pimo as pimo
    from pimo import plots as plots
    from pimo import report as report
    from pimo import results as results
    from pimo import setmetrics as setmetrics
    from pimo import stats as stats
    from pimo import streaming as streaming
    from pimo._synthetic import make_example
    from pimo._validate import (
        ConstantNormalMapsError,
        EmptyInputError,
        FprBoundsError,
        IgnoreMaskError,
        IncompleteSummaryError,
        MaskValueError,
        NoAnomalousImageError,
        NonFiniteScoreError,
        NoNormalImageError,
        OutputPathError,
        PimoError,
        PimoTypeError,
        PimoValueError,
        PimoWarning,
        ScoreFileError,
        ShapeMismatchError,
        UnreachableFprError,
    )
    from pimo.accumulate import AupimoAccumulator
    from pimo.data.problems import DatasetError
    from pimo.evaluate import EvaluationResult, evaluate_dataset
    from pimo.imagemetrics import ImageMetricsResult, image_metrics
    from pimo.pimo import IntegrationRange, SharedFprCurve, auimo, aupimo, pimo_curves
    from pimo.results import (
        AuimoResult,
        AupimoResult,
        PimoCurves,
        load_auimo,
        load_aupimo,
        load_value,
        save_value,
    )
    from pimo.setmetrics import (
        SetMetricsAccumulator,
        SetMetricsResult,
        aupro,
        auroc,
        label_regions,
        set_metrics,
    )
    from pimo.thresholds import OperatingThreshold, load_threshold, threshold_at

# public name -> module that defines it, imported on first access
_LAZY_NAMES: dict[str, str] = {
    **dict.fromkeys((
        "ConstantNormalMapsError",
        "EmptyInputError",
        "FprBoundsError",
        "IgnoreMaskError",
        "IncompleteSummaryError",
        "MaskValueError",
        "NoAnomalousImageError",
        "NonFiniteScoreError",
        "NoNormalImageError",
        "OutputPathError",
        "PimoError",
        "PimoTypeError",
        "PimoValueError",
        "PimoWarning",
        "ScoreFileError",
        "ShapeMismatchError",
        "UnreachableFprError",
    ), "pimo._validate"),
    "make_example": "pimo._synthetic",
    "AupimoAccumulator": "pimo.accumulate",
    "DatasetError": "pimo.data.problems",
    "EvaluationResult": "pimo.evaluate",
    "evaluate_dataset": "pimo.evaluate",
    "ImageMetricsResult": "pimo.imagemetrics",
    "image_metrics": "pimo.imagemetrics",
    "IntegrationRange": "pimo.pimo",
    "SharedFprCurve": "pimo.pimo",
    "auimo": "pimo.pimo",
    "aupimo": "pimo.pimo",
    "pimo_curves": "pimo.pimo",
    "AuimoResult": "pimo.results",
    "AupimoResult": "pimo.results",
    "PimoCurves": "pimo.results",
    "load_auimo": "pimo.results",
    "load_aupimo": "pimo.results",
    "load_value": "pimo.results",
    "save_value": "pimo.results",
    "SetMetricsAccumulator": "pimo.setmetrics",
    "SetMetricsResult": "pimo.setmetrics",
    "aupro": "pimo.setmetrics",
    "auroc": "pimo.setmetrics",
    "label_regions": "pimo.setmetrics",
    "set_metrics": "pimo.setmetrics",
    "OperatingThreshold": "pimo.thresholds",
    "load_threshold": "pimo.thresholds",
    "threshold_at": "pimo.thresholds",
}

# submodules reachable as attributes of the package without an explicit import
_LAZY_SUBMODULES = (
    "accumulate", "data", "evaluate", "imagemetrics", "pimo", "plots", "report", "results",
    "setmetrics", "stats", "streaming", "thresholds",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pimo")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def __getattr__(name: str) -> Any:
    """Import a public name or submodule on first access (PEP 562)."""
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    elif name in _LAZY_SUBMODULES:
        value = importlib.import_module(f"pimo.{name}")
    elif name == "__version__":
        value = _version()
    else:
        raise AttributeError(f"module 'pimo' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES, *_LAZY_SUBMODULES, "__version__"})


__all__ = [
    "AuimoResult",
    "AupimoAccumulator",
    "AupimoResult",
    "ConstantNormalMapsError",
    "DatasetError",
    "EmptyInputError",
    "EvaluationResult",
    "FprBoundsError",
    "IgnoreMaskError",
    "ImageMetricsResult",
    "IncompleteSummaryError",
    "IntegrationRange",
    "MaskValueError",
    "NoAnomalousImageError",
    "NoNormalImageError",
    "NonFiniteScoreError",
    "OperatingThreshold",
    "OutputPathError",
    "PimoCurves",
    "PimoError",
    "PimoTypeError",
    "PimoValueError",
    "PimoWarning",
    "ScoreFileError",
    "SetMetricsAccumulator",
    "SetMetricsResult",
    "ShapeMismatchError",
    "SharedFprCurve",
    "UnreachableFprError",
    "__version__",
    "auimo",
    "aupimo",
    "aupro",
    "auroc",
    "evaluate_dataset",
    "image_metrics",
    "label_regions",
    "load_auimo",
    "load_aupimo",
    "load_threshold",
    "load_value",
    "make_example",
    "pimo_curves",
    "save_value",
    "set_metrics",
    "threshold_at",
]
