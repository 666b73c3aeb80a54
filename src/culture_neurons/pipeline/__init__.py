"""The config-driven pipeline: ``culture-neurons run CONFIG.toml``, resume, the demo. See docs/pipeline.md."""

from collections.abc import Sequence
from typing import Any

from ..data.sampling import cap_examples
from .config import ConfigError, PipelineConfig, builtin_config, load_config, to_toml
from .demo import demo_config, run_demo
from .result import RunResult
from .run import run_pipeline


def cap_per_group(examples: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` examples per group, the pipeline's ``max_per_group`` sample (``n=0``: all)."""
    return cap_examples(examples, max_per_group=n)


__all__ = [
    "ConfigError",
    "PipelineConfig",
    "RunResult",
    "builtin_config",
    "cap_per_group",
    "demo_config",
    "load_config",
    "run_demo",
    "run_pipeline",
    "to_toml",
]
