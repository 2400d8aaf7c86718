"""What a hyper-parameter search (``python train.py -m hparams_search=...``) checks before
its first trial: the value it maximises can be measured without clean labels.

The search maximises what ``train.py`` returns, ``objective`` (default
``at_best_val/val/acc``: the best accuracy on the validation split, whose labels are as
noisy as the training labels). A run without a validation split has no such value: every
trial would come back empty, so the whole search is refused first, in one line.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sat.data.datasets import DataSource
from sat.data.prepare import load
from sat.errors import UserError
from sat.tasks import settings
from sat.tasks.common import build


def check_searchable(cfg: DictConfig) -> None:
    """Refuse a search whose objective reads the validation split when the dataset holds none."""
    section, metric = settings.objective(cfg)
    if not metric.startswith("val/"):
        return  # the user chose another value (final/test/acc: an oracle, never the default)
    data = load(build(cfg.dataset, "dataset", DataSource))
    if data.val is None and not data.val_size:
        raise UserError(f"a hyper-parameter search maximises objective={section}/{metric}, but dataset.val_size="
                        f"{data.val_size} leaves no validation split; accepted: dataset.val_size=N with N > 0 (noisy "
                        "labels held out of training: the search never reads clean labels)")


def study_subdir(overrides: Any, exclude: Any, seed: Any) -> str:
    """The study folder's name (resolver ``sat_study``): the command's fixed settings, the
    seed last, as sweep job folders are named (``noise.rate-0.6+seed-1``), so that the
    same command finds its study again and continues it. Searched keys (``interval(...)``,
    ``choice(...)``), settings that do not change results (``exclude``, but for ``objective``)
    and the ``hparams_search`` choice (a folder level of its own) are left out; ``/`` in a
    value becomes ``_`` (``objective-at_best_val_val_acc``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sat.cli import sweep_subdir

    lines = [str(o) for o in overrides or []]
    # the objective changes no run, but it is what a study is: another objective, another study
    skip = ({str(k) for k in exclude or []} - {"objective"}) | {"hparams_search"}
    fixed = {o.key_or_group: o for o in OverridesParser.create().parse_overrides(lines)  # a key given twice: the last
             if not o.is_sweep_override() and o.key_or_group not in skip and not o.is_delete()}
    name = "+".join(sorted(f"{o.get_key_element()}-{o.get_value_element_as_str().replace('/', '_')}"
                           for o in fixed.values()))
    return sweep_subdir(name, seed, lines)


class SearchCheck(Callback):
    """A Hydra callback (``hydra.callbacks``, set by conf/hparams_search/): runs
    :func:`check_searchable` before the search starts; a refusal is one ``error:`` line
    and exit status 2, before any trial."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_searchable(config)
        except UserError as e:  # inside Hydra: a traceback would follow, so exit here
            print(f"error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
