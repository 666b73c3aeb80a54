"""The ``culture-neurons`` command: a thin layer of argument parsing over the Python API."""

from __future__ import annotations

import logging
import math
import sys
import traceback

import click

from .errors import CultureNeuronsError
from .version import __version__

# What every failure message says was kept: outputs are written atomically, so no file is ever
# half-written, but a command may have finished some files before it stopped.
_KEPT = "no file was left half-written"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _environment_error(exc: BaseException) -> str | None:
    """A one-line message for a failure of the environment that escaped as a foreign exception."""
    name = type(exc).__name__
    text = _one_line(exc)
    if name == "SafetensorError":  # safetensors' own type: a full disk or a damaged file
        return f"safetensors: {text} ({_KEPT})"
    # torch's words for a device that this machine or build lacks (not for a bug that mixes devices)
    absent = (
        "Torch not compiled with",
        "No CUDA GPUs are available",
        "Found no NVIDIA driver",
        "Invalid device string",
        "Expected one of cpu, cuda",
        "invalid device ordinal",
        "CUDA driver version is insufficient",
    )
    if isinstance(exc, (AssertionError, RuntimeError)) and any(a.lower() in text.lower() for a in absent):
        return f"device: {text}; choose another --device (cpu works everywhere)"
    return None


class _Group(click.Group):
    """A click group that turns package errors into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        from .signals import handle_signals

        debug = bool(ctx.find_root().params.get("debug"))
        try:
            with handle_signals():
                return super().invoke(ctx)
        except CultureNeuronsError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {_one_line(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            # The environment, not the input: a full disk, a vanished folder, a permission change.
            if debug:
                traceback.print_exc()
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            click.echo(f"error: {where}{exc.strerror or exc} ({_KEPT})", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo(f"interrupted ({_KEPT}); rerun the same command to resume", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            message = _environment_error(exc)
            if message is None or debug:
                raise
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="culture-neurons")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def cli(debug: bool) -> None:
    """Find and test the neurons that carry an LLM's cultural knowledge."""
    logging.basicConfig(format="%(message)s")
    logging.getLogger("culture_neurons").setLevel(logging.DEBUG if debug else logging.INFO)


def _finite_float_class(base: type) -> type:
    """A subclass of click's float type ``base`` that also refuses NaN and infinity.

    click's FloatParamType accepts "nan" and "inf", and FloatRange lets NaN through because every
    comparison with it is false; a NaN factor or threshold then runs for an hour before it fails.
    """

    class Finite(base):  # type: ignore[misc, valid-type]
        def convert(self, value, param, ctx):
            out = super().convert(value, param, ctx)
            if isinstance(out, float) and not math.isfinite(out):
                self.fail(f"{value!r} is not a finite number", param, ctx)
            return out

    Finite.__name__ = f"Finite{base.__name__}"
    return Finite


def require_finite_floats(command: click.Command) -> None:
    """Make every float option of ``command`` and its subcommands refuse NaN and infinity."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            require_finite_floats(sub)
    for param in command.params:
        kind = type(param.type)
        if isinstance(param.type, click.types.FloatParamType) and not kind.__name__.startswith("Finite"):
            param.type.__class__ = _finite_float_class(kind)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    cli.main(args=argv, prog_name="culture-neurons")


def _register() -> None:
    # Subcommands live beside the API they wrap; importing them here keeps this file a table of contents.
    from .attribution.cli import score
    from .cards.cli import inspect
    from .data.cli import data
    from .evaluation.cli import ablate, cross_culture
    from .integrations.evaluate_command import evaluate  # evaluation's command plus its lm-eval options
    from .pipeline.cli import demo, report, run
    from .selection.cli import select
    from .training.cli import train
    from .validity.cli import validate

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
    cli.add_command(validate)
    cli.add_command(inspect)
    require_finite_floats(cli)  # last: it covers every command added above


_register()

if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
