"""The package namespace: lazily imported sub-modules, and a light ``import pimo``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import pimo


def test_submodules_are_attributes() -> None:
    from pimo import plots, stats, streaming

    assert pimo.stats is stats and pimo.streaming is streaming and pimo.plots is plots
    assert pimo.streaming.AupimoStream is streaming.AupimoStream
    assert {"plots", "stats", "streaming"} <= set(dir(pimo))


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        pimo.nothing_here  # noqa: B018
    assert not hasattr(pimo, "report_of_everything")


def test_import_pimo_does_not_import_matplotlib_until_plots_is_used() -> None:
    code = (
        "import json, sys; import pimo; before = 'matplotlib' in sys.modules; "
        "stats = 'pimo.stats' in sys.modules; pimo.plots; "
        "print(json.dumps([before, stats, 'matplotlib' in sys.modules]))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True)
    before, stats_loaded, after = json.loads(completed.stdout.strip().splitlines()[-1])
    assert before is False and stats_loaded is False
    assert after is True


def test_public_functions_are_not_shadowed_by_their_modules() -> None:
    import pimo.evaluate  # imports the modules that define the public functions

    for name in ("image_metrics", "threshold_at", "aupimo", "set_metrics", "evaluate_dataset"):
        assert callable(getattr(pimo, name)), name


def loaded_after(statement: str, modules: tuple[str, ...]) -> list[bool]:
    """Which of ``modules`` a fresh interpreter has loaded after ``statement``."""
    code = (f"import json, sys; {statement}; "
            f"print(json.dumps([m in sys.modules for m in {modules!r}]))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_the_command_line_imports_nothing_heavy_before_it_handles_ctrl_c() -> None:
    assert loaded_after("import pimo.cli", ("numpy", "numba", "matplotlib")) == [False] * 3


def test_ctrl_c_while_the_command_loads_says_aborted(monkeypatch, capsys) -> None:
    import builtins

    from pimo.cli import EXIT_INTERRUPTED, main

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "pimo._validate":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert main(["--help"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "Aborted."


def test_pimo_help_loads_no_kernel_and_no_plotting_library() -> None:
    assert loaded_after("from pimo.cli import main; main(['--help'])",
                        ("numba", "matplotlib", "scipy")) == [False] * 3
