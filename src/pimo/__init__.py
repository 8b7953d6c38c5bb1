"""pimo: exact, fast evaluation of anomaly localization.

The public API. Per-image metrics: :func:`aupimo`, :func:`auimo`, :func:`pimo_curves`, and
:class:`AupimoAccumulator` for batches in any order; score
files: :func:`load_aupimo` and :meth:`AupimoResult.save`.

The sub-modules :mod:`pimo.stats` (model comparison), :mod:`pimo.streaming` (one image at a
time) and :mod:`pimo.plots` (matplotlib figures) are attributes of the package, imported on
first access, so ``import pimo`` stays fast and does not import matplotlib.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

try:
    __version__ = version("pimo")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from pimo._synthetic import make_example
from pimo._validate import (
    ConstantNormalMapsError,
    EmptyInputError,
    FprBoundsError,
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

#: Sub-modules imported on first access as ``pimo.<name>``.
_LAZY_SUBMODULES = ("plots", "stats", "streaming")


def __getattr__(name: str) -> ModuleType:
    """Import :data:`_LAZY_SUBMODULES` on first access (``pimo.stats``, ...)."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"pimo.{name}")
    raise AttributeError(f"module 'pimo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_SUBMODULES})


__all__ = [
    "AuimoResult",
    "AupimoAccumulator",
    "AupimoResult",
    "ConstantNormalMapsError",
    "DatasetError",
    "EmptyInputError",
    "EvaluationResult",
    "FprBoundsError",
    "IncompleteSummaryError",
    "IntegrationRange",
    "MaskValueError",
    "NoAnomalousImageError",
    "NoNormalImageError",
    "NonFiniteScoreError",
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
    "label_regions",
    "load_auimo",
    "load_aupimo",
    "load_value",
    "make_example",
    "pimo_curves",
    "save_value",
    "set_metrics",
]
