"""Where the paper's published scores live (optional: tests skip when they are absent)."""

from __future__ import annotations

import os
from pathlib import Path


def paper_benchmark_root() -> Path | None:
    """``$PIMO_PAPER_BENCHMARK`` or ``../shared/paper-benchmark`` beside the repository."""
    candidates = []
    if os.environ.get("PIMO_PAPER_BENCHMARK"):
        candidates.append(Path(os.environ["PIMO_PAPER_BENCHMARK"]))
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "paper-benchmark")
    for candidate in candidates:
        if (candidate / "benchmark").is_dir():
            return candidate
    return None
