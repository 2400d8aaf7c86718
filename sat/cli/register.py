"""What Hydra composes with: the project's resolvers and its schemas (the structured
configs of sat/config/schema.py). Call :func:`register_config` before Hydra composes."""

from __future__ import annotations

from omegaconf import OmegaConf

from sat.cli.search import study_subdir
from sat.cli.sweeps import job_name, sweep_subdir
from sat.config import schema
from sat.tasks.context import sweep_job


def register_config() -> None:
    OmegaConf.register_new_resolver("sat_subdir", sweep_subdir, replace=True)  # train sweep job folders
    OmegaConf.register_new_resolver("sat_study", study_subdir, replace=True)  # a search's study folder
    OmegaConf.register_new_resolver("sat_job", job_name, replace=True)  # evaluate/attack sweep job folders
    OmegaConf.register_new_resolver("sat_job_label", lambda *, _root_: sweep_job(_root_.hydra), replace=True)
    schema.register()
