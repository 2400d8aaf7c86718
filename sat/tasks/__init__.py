"""The tasks behind the entry points; the only package that reads Hydra configs."""

from sat.tasks.common import run_task
from sat.tasks.evaluation import evaluate
from sat.tasks.robustness import attack
from sat.tasks.training import train

__all__ = ["attack", "evaluate", "run_task", "train"]
