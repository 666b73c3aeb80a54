"""Training progress in a log file: the package's own progress lines instead of the Trainer's tqdm bar.

Without a terminal on stderr the Trainer's bar writes carriage-return updates into the log. There
the bar is switched off (``disable_tqdm``) and :class:`StepProgress` logs one line per interval
with the step count and ETA, like every other long command of the package.
"""

from __future__ import annotations

import sys
from typing import Any

from transformers import TrainerCallback

from ..progress import progress


def trainer_bar_wanted(progress_on: bool) -> bool:
    """Whether the Trainer's own tqdm bar should run: progress is on and stderr is a terminal."""
    return progress_on and sys.stderr.isatty()


class StepProgress(TrainerCallback):
    """Counts optimizer steps with :func:`culture_neurons.progress.progress` (main process only)."""

    def __init__(self, desc: str = "training") -> None:
        self.desc = desc
        self.bar: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Open the counter at the resumed step, out of ``state.max_steps``."""
        if state.is_world_process_zero:
            self.bar = progress(total=state.max_steps or None, desc=self.desc, unit="step")
            self.bar.n = state.global_step  # a resumed run starts where its checkpoint stopped

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Advance to the Trainer's step count."""
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Log the final line."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
