"""A hyper-parameter search's glue (``python train.py -m hparams_search=...``): the study
folder's name (resolver ``sat_study``) and the check before its first trial (a Hydra
callback). The sweeper itself is hydra_plugins/sat_optuna_sweeper."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sat.cli.sweeps import sweep_subdir
from sat.errors import UserError

# The objective changes no run (a neutral key), but it is what a study maximises: another
# objective, another study.
STUDY_KEYS = ("objective",)


def study_subdir(overrides: Any, seed: Any, *, _root_: Any = None) -> str:
    """The study folder's name: the command's fixed settings, named as a training sweep's
    job folder is (:func:`sat.cli.sweeps.sweep_subdir`, by the keys' roles; the seed last:
    ``noise.rate-0.6+seed-1``), so that the same command finds its study again and
    continues it. Searched keys (``interval(...)``, ``choice(...)``) and the
    ``hparams_search`` choice (a folder level of its own) are left out, the objective kept
    (``/`` in it as ``_``: ``objective-at_best_val_val_acc``); a key given twice counts once,
    as Hydra takes it (the last)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides or []])
    fixed = {o.key_or_group: o for o in parsed
             if not o.is_sweep_override() and not o.is_delete() and o.key_or_group != "hparams_search"}
    lines = []
    for key, override in fixed.items():
        value = override.get_value_element_as_str()
        lines.append(f"{override.get_key_element()}={value.replace('/', '_') if key in STUDY_KEYS else value}")
    return sweep_subdir(lines, seed, _root_=_root_, named_anyway=STUDY_KEYS)


class SearchCheck(Callback):
    """A Hydra callback (``hydra.callbacks``, set by conf/hparams_search/): runs
    :func:`sat.tasks.search.check_searchable` before the search starts; a refusal is one
    ``error:`` line and exit status 2, before any trial."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from sat.tasks.search import check_searchable  # (torch and the data: only when a search starts)

        try:
            check_searchable(config)
        except UserError as e:  # inside Hydra: a traceback would follow, so exit here
            print(f"error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
