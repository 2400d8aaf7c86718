"""What a hyper-parameter search (``python train.py -m hparams_search=...``) checks before
its first trial: the value it maximises can be measured without clean labels.

The search maximises what ``train.py`` returns, ``objective`` (every search space sets
``final/val/acc``: the last epoch's accuracy on the validation split, whose labels are as
noisy as the training labels). A run without a validation split has no such value: every
trial would come back empty, so the whole search is refused first, in one line.
"""

from __future__ import annotations

from omegaconf import DictConfig

from sat.config import schema
from sat.config.build import USER_CONFIG
from sat.data.prepare import load
from sat.errors import UserError


def check_searchable(cfg: DictConfig) -> None:
    """Refuse a search whose objective reads the validation split when the dataset holds none."""
    section, metric = schema.objective(cfg)
    if not metric.startswith("val/"):
        return  # the user chose another value (final/test/acc: an oracle, never the default)
    data = load(USER_CONFIG.build(cfg.dataset, "dataset", "dataset"))
    if data.val is None and not data.val_size:
        raise UserError(key="dataset.val_size", value=data.val_size,
                        problem=f"leaves no validation split, where the search maximises objective={section}/{metric}",
                        accepted="dataset.val_size=N with N > 0 (noisy labels held out of training: the search "
                                 "never reads clean labels)")
