"""Self-Adaptive Training (SAT) framework.

The library never reads Hydra configs except in :mod:`sat.tasks`; everything else
takes plain Python values.
"""

__version__ = "0.1.0"
