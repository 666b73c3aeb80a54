"""``culture-neurons-lm-eval``: lm-eval's own command line with this package's model registered.

lm-eval releases with plugin discovery find ``--model culture-neurons`` through the
``lm_eval.models`` entry point this package declares, so plain ``lm_eval`` works. Older releases
(0.4.10 to 0.4.13) never read entry points; this command registers every installed
``lm_eval.models`` entry point first, then hands the arguments to lm-eval unchanged.

Two additions to lm-eval's behaviour:

- ``--help`` (and ``run --help``) ends with the ``culture-neurons`` model and every ``model_args``
  key it takes, written from :data:`.lm_eval_args.MODEL_ARGS`;
- an error of this package (a missing NeuronSet file, an unknown ``model_args`` key, a set of
  another model, a bad ``op`` or ``factor``) is one line, ``error: ...``, with a non-zero exit, as
  lm-eval reports a bad argument; the traceback shows with lm-eval's own debug switch,
  ``LMEVAL_LOG_LEVEL=DEBUG`` (or ``--verbosity DEBUG``).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import entry_points

GROUP = "lm_eval.models"
HELP_FLAGS = ("-h", "--help")


def register_entry_point_models() -> list[str]:
    """Add each installed ``lm_eval.models`` entry point lm-eval does not know yet (lazily); return their names."""
    import lm_eval.models  # noqa: F401 - fills the registry with the built-in names first
    from lm_eval.api.registry import model_registry

    added = []
    for ep in entry_points(group=GROUP):
        if ep.name not in model_registry:
            model_registry.register(ep.name, target=ep.value)
            added.append(ep.name)
    return added


def debug_requested(argv: Sequence[str], environ: dict[str, str] | None = None) -> bool:
    """lm-eval's debug switches: ``LMEVAL_LOG_LEVEL=DEBUG`` or ``--verbosity DEBUG`` / ``-v DEBUG``."""
    env = os.environ if environ is None else environ
    if env.get("LMEVAL_LOG_LEVEL", "").strip().upper() == "DEBUG":
        return True
    args = list(argv)
    for i, arg in enumerate(args):
        if arg in ("--verbosity", "-v") and i + 1 < len(args) and args[i + 1].upper() == "DEBUG":
            return True
        if arg.startswith("--verbosity=") and arg.split("=", 1)[1].upper() == "DEBUG":
            return True
    return False


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def main() -> None:
    """Run lm-eval's CLI (same arguments as ``lm_eval``) after registering the entry-point models."""
    from lm_eval.__main__ import cli_evaluate

    from ..errors import CultureNeuronsError
    from .lm_eval_args import model_args_help

    argv = sys.argv[1:]
    wants_help = not argv or any(a in HELP_FLAGS for a in argv)
    try:
        register_entry_point_models()
        cli_evaluate()
    except SystemExit as exc:
        if wants_help and exc.code in (0, None):
            print("\n" + model_args_help(), end="")
        raise
    except CultureNeuronsError as exc:
        if debug_requested(argv):
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    if wants_help:  # lm-eval prints its help without exiting when no command is given
        print("\n" + model_args_help(), end="")


if __name__ == "__main__":
    main()
