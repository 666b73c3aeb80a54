"""The ``culture-neurons`` command: a thin layer of argument parsing over the Python API."""

from __future__ import annotations

import logging
import sys
import traceback

import click

from . import __version__
from .errors import CultureNeuronsError


class _Group(click.Group):
    """A click group that turns package errors into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except CultureNeuronsError as exc:
            if ctx.find_root().params.get("debug"):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            # The environment, not the input: a full disk, a vanished folder, a permission change.
            if ctx.find_root().params.get("debug"):
                traceback.print_exc()
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            click.echo(f"error: {where}{exc.strerror or exc} (nothing was written)", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was written", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="culture-neurons")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def cli(debug: bool) -> None:
    """Find and test the neurons that carry an LLM's cultural knowledge."""
    logging.basicConfig(format="%(message)s")
    logging.getLogger("culture_neurons").setLevel(logging.DEBUG if debug else logging.INFO)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    cli.main(args=argv, prog_name="culture-neurons")


def _register() -> None:
    # Subcommands live beside the API they wrap; importing them here keeps this file a table of contents.
    from .attribution.cli import score
    from .data.cli import data
    from .evaluation.cli import ablate, cross_culture, evaluate
    from .pipeline.cli import demo, report, run
    from .selection.cli import select
    from .training.cli import train

    cli.add_command(score)
    cli.add_command(data)
    cli.add_command(select)
    cli.add_command(evaluate)
    cli.add_command(ablate)
    cli.add_command(cross_culture)
    cli.add_command(train)
    cli.add_command(run)
    cli.add_command(report)
    cli.add_command(demo)


_register()

if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
