"""``culture-neurons-lm-eval``: lm-eval's own command line with this package's model registered.

lm-eval releases with plugin discovery find ``--model culture-neurons`` through the
``lm_eval.models`` entry point this package declares, so plain ``lm_eval`` works. Older releases
(0.4.10 to 0.4.13) never read entry points; this command registers every installed
``lm_eval.models`` entry point first, then hands the arguments to lm-eval unchanged.
"""

from __future__ import annotations

from importlib.metadata import entry_points

GROUP = "lm_eval.models"


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


def main() -> None:
    """Run lm-eval's CLI (same arguments as ``lm_eval``) after registering the entry-point models."""
    from lm_eval.__main__ import cli_evaluate

    register_entry_point_models()
    cli_evaluate()


if __name__ == "__main__":
    main()
