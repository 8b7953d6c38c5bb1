"""pimo: exact, fast evaluation of anomaly localization.

The public API. Per-image metrics: :func:`aupimo`, :func:`auimo`, :func:`pimo_curves`; score
files: :func:`load_aupimo` and :meth:`AupimoResult.save`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pimo")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from pimo._synthetic import make_example
from pimo._validate import (
    ConstantNormalMapsError,
    EmptyInputError,
    FprBoundsError,
    MaskValueError,
    NoAnomalousImageError,
    NonFiniteScoreError,
    NoNormalImageError,
    PimoError,
    PimoTypeError,
    PimoValueError,
    PimoWarning,
    ScoreFileError,
    ShapeMismatchError,
    UnreachableFprError,
)
from pimo.data.problems import DatasetError
from pimo.evaluate import EvaluationResult, evaluate_dataset
from pimo.image_metrics import ImageMetricsResult, image_metrics
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
from pimo.setmetrics import SetMetricsResult, aupro, auroc, label_regions, set_metrics
from pimo.thresholds import OperatingThreshold, load_threshold, threshold_at

__all__ = [
    "AuimoResult",
    "AupimoResult",
    "ConstantNormalMapsError",
    "DatasetError",
    "EmptyInputError",
    "EvaluationResult",
    "FprBoundsError",
    "ImageMetricsResult",
    "IntegrationRange",
    "MaskValueError",
    "NoAnomalousImageError",
    "NoNormalImageError",
    "NonFiniteScoreError",
    "OperatingThreshold",
    "PimoCurves",
    "PimoError",
    "PimoTypeError",
    "PimoValueError",
    "PimoWarning",
    "ScoreFileError",
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
