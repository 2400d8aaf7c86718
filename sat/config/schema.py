"""The run-level settings of a config (``trainer.*``, ``seed``, ``resume``, ...): the
schemas of the primary configs, and their checks.

The schemas are Hydra structured configs (registered in the ConfigStore by
:func:`register`, named first in the defaults of ``conf/{train,evaluate,attack}.yaml``),
so a key of the wrong type or a key that does not exist fails when the config is
composed. The YAML files hold the values; a field here is ``MISSING`` where the YAML
must set it. What a type cannot say (ranges, choices) is checked by :meth:`from_config`
and the readers below, each bad value a one-line error naming it.
Group nodes (``method``, ``model``, ...) are free-form here: their keys are their
constructors' argument names, checked by :mod:`sat.config.keys`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sat.config import validate
from sat.config.roles import FILE, FIXED, NEUTRAL, PER_PROCESS, declare
from sat.errors import UserError

PRECISIONS = ("auto", "bf16", "fp32")
PROGRESS = ("auto", "bar", "none")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def read(cfg: DictConfig, key: str) -> Any:
    """``cfg.<key>``, with a missing mandatory value (``???``) or a broken interpolation
    as a one-line error instead of OmegaConf's traceback."""
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as e:
        missing = "Missing mandatory value" in str(e)
        raise UserError(f"{key} is required; accepted: {key}=..." if missing
                        else f"{key} cannot be resolved ({str(e).splitlines()[0]})") from None
    return value


def field_defaults(schema: type) -> dict[str, Any]:
    """The schema's fields that have a plain default (not MISSING, not a factory), by name."""
    return {f.name: f.default for f in fields(schema) if f.default is not dataclasses.MISSING and f.default != MISSING}


def _over_defaults(schema: type, node: Any) -> dict[str, Any]:
    """A node's values over its schema's defaults: each default is written once, on its field."""
    given = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
    return {**field_defaults(schema), **given}


# Optional[...] rather than ``X | None``: OmegaConf reads these annotations at run time.
@dataclass
class TrainerSettings:
    """``trainer``: the schema of the node and, from :meth:`from_config`, its checked values."""

    epochs: int = field(default=MISSING, metadata=declare(FIXED))
    batch_size: int = field(default=MISSING, metadata=declare(FIXED))
    eval_batch_size: int = field(default=MISSING, metadata=declare(NEUTRAL))
    precision: str = field(default=MISSING, metadata=declare(FIXED))
    channels_last: bool = field(default=MISSING, metadata=declare(NEUTRAL))
    compile: bool = field(default=MISSING, metadata=declare(NEUTRAL))
    compile_mode: Optional[str] = field(default=MISSING, metadata=declare(NEUTRAL))
    num_threads: Optional[int] = field(default=MISSING, metadata=declare(NEUTRAL, PER_PROCESS))
    checkpoint_every: int = field(default=MISSING, metadata=declare(NEUTRAL))
    checkpoint_from: int = field(default=MISSING, metadata=declare(NEUTRAL))
    deterministic: bool = field(default=False, metadata=declare(NEUTRAL))
    progress: str = field(default="auto", metadata=declare(NEUTRAL, PER_PROCESS))
    eval_every: int = 1  # which epochs are evaluated (and so which is best): not neutral, yet a continuation may change it
    async_checkpoint: bool = field(default=True, metadata=declare(NEUTRAL))
    sync_batchnorm: bool = field(default=False, metadata=declare(FIXED))
    # every later phase of the method (Method.phase_starts: SAT's soft targets, a warm-up's end) starts by this
    # epoch, so a smoke run reaches it (debug=fast: 1); the moves are logged. null: as the method's arguments say
    phases_by: Optional[int] = field(default=None, metadata=declare(FIXED))
    # the weight decay of normalisation layers' parameters and of every bias (torchvision's --norm-weight-decay,
    # --bias-weight-decay); null: the optimizer's, as for every other parameter
    norm_weight_decay: Optional[float] = field(default=None, metadata=declare(FIXED))
    bias_weight_decay: Optional[float] = field(default=None, metadata=declare(FIXED))

    @classmethod
    def from_config(cls, node: Any) -> TrainerSettings:
        t = _over_defaults(cls, node)
        num_threads = t.get("num_threads")
        return cls(
            epochs=validate.positive_int("trainer.epochs", t.get("epochs")),
            batch_size=validate.positive_int("trainer.batch_size", t.get("batch_size")),
            eval_batch_size=validate.positive_int("trainer.eval_batch_size", t.get("eval_batch_size")),
            precision=validate.choice("trainer.precision", t.get("precision"), PRECISIONS),
            channels_last=validate.flag("trainer.channels_last", t.get("channels_last")),
            compile=validate.flag("trainer.compile", t.get("compile")),
            compile_mode=None if t.get("compile_mode") in (None, "default") else validate.choice(
                "trainer.compile_mode", t.get("compile_mode"), COMPILE_MODES),
            num_threads=None if num_threads is None else validate.positive_int("trainer.num_threads", num_threads),
            checkpoint_every=validate.number("trainer.checkpoint_every", t.get("checkpoint_every"), lo=0, integer=True),
            checkpoint_from=validate.number("trainer.checkpoint_from", t.get("checkpoint_from"), lo=0, integer=True),
            deterministic=validate.flag("trainer.deterministic", t["deterministic"]),
            progress=validate.choice("trainer.progress", t["progress"], PROGRESS),
            eval_every=validate.positive_int("trainer.eval_every", t["eval_every"]),
            async_checkpoint=validate.flag("trainer.async_checkpoint", t["async_checkpoint"]),
            sync_batchnorm=validate.flag("trainer.sync_batchnorm", t["sync_batchnorm"]),
            phases_by=None if t["phases_by"] is None else validate.number("trainer.phases_by", t["phases_by"], lo=0,
                                                                          integer=True),
            norm_weight_decay=_optional_decay("trainer.norm_weight_decay", t["norm_weight_decay"]),
            bias_weight_decay=_optional_decay("trainer.bias_weight_decay", t["bias_weight_decay"]),
        )


def _optional_decay(key: str, value: Any) -> float | None:
    return None if value is None else validate.number(key, value, lo=0.0)


@dataclass
class Paths:
    data_dir: str = field(default=MISSING, metadata=declare(NEUTRAL, PER_PROCESS, FILE))
    output_dir: str = field(default=MISSING, metadata=declare(NEUTRAL, PER_PROCESS))


LOADER_KINDS = ("auto", "device", "stream")
# Reader processes a streaming loader may start: more than 4 per core only costs memory
# (loader.num_workers=1e5 would fork 100,000 processes); at least 64, so that a config written
# on a cluster node still runs on a laptop.
MAX_WORKERS = max(64, 4 * (os.cpu_count() or 1))
DECODERS = ("auto", "cpu", "cuda")


@dataclass
class LoaderSettings:
    """``loader``: how batches reach the model. ``kind``: ``device`` (every image held on
    the training device), ``stream`` (read from disk every epoch) or ``auto`` (device when
    the images fit); the rest are a streaming loader's speed settings."""

    kind: str = field(default="auto", metadata=declare(FIXED))
    num_workers: Any = field(default="auto", metadata=declare(NEUTRAL, PER_PROCESS))  # an integer >= 0 or auto
    decode: str = field(default="auto", metadata=declare(NEUTRAL))
    persistent_workers: bool = field(default=True, metadata=declare(NEUTRAL))
    prefetch_factor: int = field(default=2, metadata=declare(NEUTRAL))

    @classmethod
    def from_config(cls, node: Any) -> LoaderSettings:
        t = _over_defaults(cls, node)
        workers = t["num_workers"]
        return cls(
            kind=validate.choice("loader.kind", t["kind"], LOADER_KINDS),
            num_workers=workers if workers == "auto" else validate.number("loader.num_workers", workers, lo=0,
                                                                          hi=MAX_WORKERS, integer=True),
            decode=validate.choice("loader.decode", t["decode"], DECODERS),
            persistent_workers=validate.flag("loader.persistent_workers", t["persistent_workers"]),
            prefetch_factor=validate.positive_int("loader.prefetch_factor", t["prefetch_factor"]),
        )


@dataclass
class TrainConfig:
    """``conf/train.yaml``."""

    name: str = field(default=MISSING, metadata=declare(NEUTRAL))
    seed: int = field(default=MISSING, metadata=declare(FIXED))
    device: str = field(default=MISSING, metadata=declare(NEUTRAL))
    resume: Optional[str] = field(default=MISSING, metadata=declare(NEUTRAL, FILE))
    objective: str = field(default=MISSING, metadata=declare(NEUTRAL))
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    paths: Paths = field(default_factory=Paths)
    loader: LoaderSettings = field(default_factory=LoaderSettings)
    # the objects a run is made of: a continuation keeps them (their classes' arg_roles name the exceptions)
    dataset: Any = field(default=MISSING, metadata=declare(FIXED))
    model: Any = field(default=MISSING, metadata=declare(FIXED))
    noise: Any = field(default=MISSING, metadata=declare(FIXED))
    method: Any = field(default=MISSING, metadata=declare(FIXED))
    optimizer: Any = field(default=MISSING, metadata=declare(FIXED))
    scheduler: Any = field(default=MISSING, metadata=declare(FIXED))
    augment: Any = field(default=MISSING, metadata=declare(FIXED))
    logger: Any = field(default=None, metadata=declare(NEUTRAL))
    # a checkpoint whose weights a new run starts from (sat.tasks.train.warm_start)
    init_from: Optional[str] = field(default=None, metadata=declare(FILE))
    init_from_strict: bool = True
    # check every job (values, objects on the meta device, memory) and stop before reading data (sat.cli.dry_run)
    dry_run: bool = field(default=False, metadata=declare(NEUTRAL))


@dataclass
class AttackTrainerSettings:
    """``trainer`` of ``attack.py``: the keys of training's ``trainer`` that apply to it."""

    eval_batch_size: int = field(default=MISSING, metadata=declare(NEUTRAL))


@dataclass
class EvaluateTrainerSettings(AttackTrainerSettings):
    """``trainer`` of ``evaluate.py``."""

    precision: str = MISSING


@dataclass
class CheckpointReading:
    """What ``evaluate.py`` and ``attack.py`` share: reading a run's checkpoint back."""

    name: str = field(default=MISSING, metadata=declare(NEUTRAL))
    dataset_root: Optional[str] = field(default=None, metadata=declare(NEUTRAL, FILE))
    trusted_packages: list[str] = field(default_factory=list, metadata=declare(NEUTRAL))
    device: str = field(default=MISSING, metadata=declare(NEUTRAL))
    seed: int = MISSING
    paths: Paths = field(default_factory=Paths)
    dry_run: bool = field(default=False, metadata=declare(NEUTRAL))  # check, read no data, write nothing


@dataclass
class EvaluateConfig(CheckpointReading):
    """``conf/evaluate.yaml``."""

    report: Any = MISSING  # a Report node of conf/report/ (its keys: the class's arguments)
    checkpoint: Any = field(default=MISSING, metadata=declare(FILE))  # one path, or a list of them (report=selective)
    trainer: EvaluateTrainerSettings = field(default_factory=EvaluateTrainerSettings)


@dataclass
class AttackConfig(CheckpointReading):
    """``conf/attack.yaml``."""

    checkpoint: Optional[str] = field(default=None, metadata=declare(FILE))
    checkpoints: Optional[str] = field(default=None, metadata=declare(FILE))
    epochs: Any = None  # 71-100, 80, [71,80] or 71,80,90-95
    num_samples: Optional[int] = None
    trainer: AttackTrainerSettings = field(default_factory=AttackTrainerSettings)
    attack: Any = MISSING


SCHEMAS = {"train_schema": TrainConfig, "evaluate_schema": EvaluateConfig, "attack_schema": AttackConfig}


def register() -> None:
    """Put the schemas in Hydra's ConfigStore; call before Hydra composes a config."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)


register()  # on import, as Hydra's structured configs are: any @hydra.main on conf/ that imports sat.tasks finds them


def seed(cfg: DictConfig, key: str = "seed") -> int:
    return validate.number(key, read(cfg, key), integer=True)


def resume(cfg: DictConfig) -> str:
    """``auto`` (continue this run folder's checkpoint if it has one) or a checkpoint path."""
    value = read(cfg, "resume")
    return "auto" if value is None or str(value).strip() in ("", "auto") else str(value)


OBJECTIVE_SECTIONS = ("at_best_val", "final")


def objective(cfg: DictConfig) -> tuple[str, str]:
    """``objective``: the summary value ``train.py`` returns to a sweeper, as
    ``<section>/<metric>``; ``at_best_val/val/acc`` (the default) is the best validation
    accuracy: a sweep never picks its settings on the test set unless told to."""
    spec = read(cfg, "objective")
    section, _, metric = str(spec).partition("/")
    if section not in OBJECTIVE_SECTIONS or not metric:
        raise UserError(f"objective={spec!r} is not supported; accepted: at_best_val/val/acc, final/val/acc, "
                        "final/<any logged metric>")
    return section, metric
