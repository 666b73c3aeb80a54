"""The config-driven pipeline: ``culture-neurons run CONFIG.toml``, resume, the demo. See docs/pipeline.md."""

from .config import ConfigError, PipelineConfig, builtin_config, load_config, to_toml
from .demo import demo_config, run_demo
from .run import RunResult, cap_per_group, run_pipeline

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
