"""A Hydra sweeper that runs an Optuna study (``hydra/sweeper=optuna_study``): the
search space under ``hydra.sweeper.params``, the study in a database (SQLite in the
sweep folder by default), trials asked and told through Optuna's ask-and-tell API and
run by any Hydra launcher. See docs/hparams_search.md."""
