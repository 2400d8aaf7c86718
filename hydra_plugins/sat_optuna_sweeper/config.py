"""The sweeper's config node, ``hydra/sweeper=optuna_study`` (imported by Hydra's plugin
scan, so it must stay cheap: Optuna itself is imported only when a study runs)."""

# No ``from __future__ import annotations``: Hydra executes this module before it is in sys.modules,
# where dataclasses cannot resolve string annotations; Optional: OmegaConf reads it at run time.
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class StudySweeperConf:
    _target_: str = "hydra_plugins.sat_optuna_sweeper.sweeper.StudySweeper"
    _recursive_: bool = False  # the sampler node is instantiated when the study starts, not with the plugin
    # what the task function returns is optimised: maximize | minimize
    direction: str = "maximize"
    # the study ends holding this many complete trials (a rerun of a stopped study runs only the rest)
    n_trials: int = 20
    # trials run at once (null: the launcher's parallelism: joblib's n_jobs, submitit's array_parallelism, else 1)
    n_jobs: Optional[int] = None
    # the search stops (an error) once the study holds this many failed trials (null: n_trials)
    max_failures: Optional[int] = None
    # the study's name in its database (null: the sweep folder's name)
    study_name: Optional[str] = None
    # an Optuna RDB URL (sqlite:///..., postgresql://..., mysql://...); null: sqlite:///<sweep dir>/optuna.db
    storage: Optional[str] = None
    # an Optuna sampler (instantiated when the study starts)
    sampler: dict[str, Any] = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    # the search space: key -> interval(a,b) | int(interval(a,b)) | tag(log, interval(a,b)) | choice(...) |
    # range(...) | a fixed value; the command line's overrides replace these
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="optuna_study", node=StudySweeperConf, provider="sat")
