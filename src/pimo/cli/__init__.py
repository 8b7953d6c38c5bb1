"""The ``pimo`` command: one sub-command per job.

Sub-commands live in their own modules and are imported only when used, so ``pimo --help``
starts fast. Add a command by adding one line to ``_COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys

import click

from pimo import __version__

# name -> "module:attribute" of a click.Command
_COMMANDS: dict[str, str] = {
    "analyze": "pimo.cli.analyze_cmd:analyze_group",
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


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="pimo")
def cli() -> None:
    """pimo: exact, fast evaluation of anomaly localization (AUPIMO, AUROC, AUPRO).

    Run `pimo COMMAND --help` for the options of each command.
    """


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
