"""The ``pimo`` command: one sub-command per job.

Sub-commands live in their own modules and are imported only when used, so ``pimo --help``
starts fast. Add a command by adding one line to ``_COMMANDS``.
"""

from __future__ import annotations

import importlib
import re
import sys

import click

# name -> "module:attribute" of a click.Command
_COMMANDS: dict[str, str] = {
    "analyze": "pimo.cli.analyze_cmd:analyze_group",
    "aupimo": "pimo.cli.aupimo_cmd:aupimo_command",
    "compare": "pimo.cli.compare_cmd:compare_command",
    "demo": "pimo.cli.demo_cmd:demo_command",
    "evaluate": "pimo.cli.evaluate_cmd:evaluate_command",
    "report": "pimo.cli.report_cmd:report_command",
    "show": "pimo.cli.show_cmd:show_command",
    "threshold": "pimo.cli.threshold_cmd:threshold_command",
}

# Exit code for bad input (a PimoError): distinct from crashes (1) and usage errors (2, click).
EXIT_BAD_INPUT = 2
# Exit code after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130

# The library's parameter names in messages, and what the command line calls them.
_CLI_WORDING: tuple[tuple[str, str], ...] = (
    (r"fpr_bounds=\(\s*([^,()]+?)\s*,\s*([^()]+?)\s*\)", r"--fpr-bounds \1 \2"),
    (r"\bfpr_bounds\b", "--fpr-bounds"),
    (r"\bnum_thresholds=None\b", "no --num-thresholds"),
    (r"\bnum_thresholds=(\d+)", r"--num-thresholds \1"),
    (r"\bnum_thresholds\b", "--num-thresholds"),
    (r"Use None for the exact mode", "Leave out --num-thresholds for the exact mode"),
    (r"or None for the exact mode", "or leave it out for the exact mode"),
    (r"\bbe None \(exact mode, recommended\) or", "be left out (exact mode, recommended) or"),
    (r" \((?:skip_missing|set_metrics|mask_threshold|resolution)=[^)]*\)", ""),
    (r"\bskip_missing=True\b", "--skip-missing"),
    (r"\bmask_threshold\b", "--mask-threshold"),
    (r"\(np\.broadcast_to\(ignore, maps\.shape\) repeats one mask for every image\)",
     "(a single mask file applies to every image)"),
)


def cli_wording(message: str) -> str:
    """A library message with parameter names as the command line spells its options.

    ``fpr_bounds=(1e-05, 0.0001)`` becomes ``--fpr-bounds 1e-05 0.0001``, ``num_thresholds``
    ``--num-thresholds``, ``skip_missing=True`` ``--skip-missing``, and so on.
    """
    for pattern, replacement in _CLI_WORDING:
        message = re.sub(pattern, replacement, message)
    return message


class _LazyGroup(click.Group):
    """A click group that imports each sub-command on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: read the installed version only when asked (importlib.metadata is slow)."""
    if not value or ctx.resilient_parsing:
        return
    from pimo import __version__

    click.echo(f"pimo, version {__version__}")
    ctx.exit()


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", "-V", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show the version and exit.")
def cli() -> None:
    """pimo: exact, fast evaluation of anomaly localization (AUPIMO, AUROC, AUPRO).

    Run `pimo COMMAND --help` for the options of each command.
    """


def skip_numba_blas_probe() -> None:
    """Spare the ``pimo`` process numba's BLAS probe, an import of scipy.linalg (about 0.2 s).

    On its first compile or cache load numba imports ``scipy.linalg.cython_blas`` only to
    decide whether ``np.correlate`` and ``np.convolve`` may call BLAS; pimo's kernels use
    neither. Commands that run kernels call this first: that one module is blocked while
    numba's module imports (so the probe answers "no BLAS"), then unblocked, and scipy.linalg
    imports normally afterwards. A no-op when either module is already loaded.
    """
    blocked = "scipy.linalg.cython_blas"
    if "numba.np.arraymath" in sys.modules or blocked in sys.modules:
        return
    sys.modules[blocked] = None  # type: ignore[assignment]
    try:
        importlib.import_module("numba.np.arraymath")
    finally:
        del sys.modules[blocked]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pimo`` console script; returns the exit code."""
    try:
        return _run(argv)
    except (click.exceptions.Abort, KeyboardInterrupt):  # Ctrl-C, also inside numba, threads
        click.echo("Aborted.", err=True)  # or an import
        return EXIT_INTERRUPTED


def _run(argv: list[str] | None) -> int:
    from pimo._validate import PimoError  # numpy: after main's Ctrl-C handler is in place

    try:
        code = cli.main(args=argv, prog_name="pimo", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except PimoError as error:
        click.echo(f"error: {cli_wording(str(error))}", err=True)
        return EXIT_BAD_INPUT
    except SystemExit as exit_:  # click's --help/--version
        return int(exit_.code or 0)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
