"""Self-Adaptive Training (SAT) framework.

The library never reads Hydra configs except in :mod:`sat.tasks` (and the thin
:mod:`sat.api`); everything else takes plain Python values. From Python::

    import sat
    summary = sat.train("experiment=quickstart", output_dir="runs/quickstart")
"""

__version__ = "0.3.0"

from sat import errors  # noqa: E402  (sat.errors.UserError: what bad input raises)
from sat.api import attack, evaluate, train  # noqa: E402

__all__ = ["attack", "errors", "evaluate", "train"]
