"""The paper's analyses on your own data: arrays in, dataclasses out.

- :func:`region_sizes`, :func:`tiny_region_table`: sizes of the ground-truth regions and the
  tiny-region table (paper App. B, Fig. 8, Tab. 2).
- :func:`fp_regions_vs_fpr`: number of false-positive regions vs image FPR on normal images
  (paper App. A.1, Fig. 6).
- :func:`add_tiny_regions`, :func:`noisy_annotation_robustness`: AUPRO and AUPIMO with masks
  made noisy by random tiny regions (paper Fig. 5b).
- :func:`video_timelines`: per-frame AUPIMO along time per video (paper App. C.3, Fig. 11).

Figures: :mod:`pimo.analysis.plots`. Command line: ``pimo analyze``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from pimo.analysis.fp_regions import FpRegionsResult, fp_regions_vs_fpr
    from pimo.analysis.noise import (
        VISA_TINY_REGIONS,
        NoiseStatistics,
        RobustnessResult,
        add_tiny_regions,
        load_noise_statistics,
        noisy_annotation_robustness,
    )
    from pimo.analysis.sizes import (
        TINY_RELATIVE_SIZE,
        RegionSizes,
        TinyRegionTable,
        region_sizes,
        tiny_region_table,
    )
    from pimo.analysis.video import VideoTimeline, frame_number, natural_key, video_timelines

#: public name -> the module defining it (imported on first access: ``pimo analyze --help``
#: and ``pimo --help`` do not load numba, scipy or matplotlib)
_LAZY_NAMES = {
    **dict.fromkeys(("FpRegionsResult", "fp_regions_vs_fpr"), "pimo.analysis.fp_regions"),
    **dict.fromkeys(("VISA_TINY_REGIONS", "NoiseStatistics", "RobustnessResult",
                     "add_tiny_regions", "load_noise_statistics",
                     "noisy_annotation_robustness"), "pimo.analysis.noise"),
    **dict.fromkeys(("TINY_RELATIVE_SIZE", "RegionSizes", "TinyRegionTable", "region_sizes",
                     "tiny_region_table"), "pimo.analysis.sizes"),
    **dict.fromkeys(("VideoTimeline", "frame_number", "natural_key", "video_timelines"),
                    "pimo.analysis.video"),
}


def __getattr__(name: str) -> Any:
    """Import a public name on first access (PEP 562)."""
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module 'pimo.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


__all__ = [
    "TINY_RELATIVE_SIZE",
    "VISA_TINY_REGIONS",
    "FpRegionsResult",
    "NoiseStatistics",
    "RegionSizes",
    "RobustnessResult",
    "TinyRegionTable",
    "VideoTimeline",
    "add_tiny_regions",
    "fp_regions_vs_fpr",
    "frame_number",
    "load_noise_statistics",
    "natural_key",
    "noisy_annotation_robustness",
    "region_sizes",
    "tiny_region_table",
    "video_timelines",
]
