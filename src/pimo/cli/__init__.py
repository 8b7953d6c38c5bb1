"""The ``pimo`` command: one sub-command per job.

Sub-commands live in their own modules and are imported only when used, so ``pimo --help``
starts fast. Add a command by adding one line to ``_COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys

import click

# name -> "module:attribute" of a click.Command
_COMMANDS: dict[str, str] = {
    "aupimo": "pimo.cli.aupimo_cmd:aupimo_command",
    "compare": "pimo.cli.compare_cmd:compare_command",
    "demo": "pimo.cli.demo_cmd:demo_command",
    "evaluate": "pimo.cli.evaluate_cmd:evaluate_command",
    "report": "pimo.cli.report_cmd:report_command",
    "show": "pimo.cli.show_cmd:show_command",
}

# Exit code for bad input (a PimoError): distinct from crashes (1) and usage errors (2, click).
EXIT_BAD_INPUT = 2


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
    from pimo._validate import PimoError

    try:
        code = cli.main(args=argv, prog_name="pimo", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except PimoError as error:
        click.echo(f"error: {error}", err=True)
        return EXIT_BAD_INPUT
    except SystemExit as exit_:  # click's --help/--version
        return int(exit_.code or 0)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
