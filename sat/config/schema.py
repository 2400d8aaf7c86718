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

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sat.config import validate
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


# Optional[...] rather than ``X | None``: OmegaConf reads these annotations at run time.
@dataclass
class TrainerSettings:
    """``trainer``: the schema of the node and, from :meth:`from_config`, its checked values."""

    epochs: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    precision: str = MISSING
    channels_last: bool = MISSING
    compile: bool = MISSING
    compile_mode: Optional[str] = MISSING
    num_threads: Optional[int] = MISSING
    checkpoint_every: int = MISSING
    checkpoint_from: int = MISSING
    deterministic: bool = False
    progress: str = "auto"
    eval_every: int = 1
    async_checkpoint: bool = True
    sync_batchnorm: bool = False

    @classmethod
    def from_config(cls, node: Any) -> "TrainerSettings":
        t = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
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
            deterministic=validate.flag("trainer.deterministic", t.get("deterministic", False)),
            progress=validate.choice("trainer.progress", t.get("progress", "auto"), PROGRESS),
            eval_every=validate.positive_int("trainer.eval_every", t.get("eval_every", 1)),
            async_checkpoint=validate.flag("trainer.async_checkpoint", t.get("async_checkpoint", True)),
            sync_batchnorm=validate.flag("trainer.sync_batchnorm", t.get("sync_batchnorm", False)),
        )


@dataclass
class Paths:
    data_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class TrainConfig:
    """``conf/train.yaml``."""

    name: str = MISSING
    seed: int = MISSING
    device: str = MISSING
    resume: Optional[str] = MISSING
    objective: str = MISSING
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    paths: Paths = field(default_factory=Paths)
    dataset: Any = MISSING
    model: Any = MISSING
    noise: Any = MISSING
    method: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    augment: Any = MISSING
    logger: Any = None
    init_from: Optional[str] = None  # a checkpoint whose weights a new run starts from (sat.tasks.train.warm_start)
    init_from_strict: bool = True


@dataclass
class AttackTrainerSettings:
    """``trainer`` of ``attack.py``: the keys of training's ``trainer`` that apply to it."""

    eval_batch_size: int = MISSING


@dataclass
class EvaluateTrainerSettings(AttackTrainerSettings):
    """``trainer`` of ``evaluate.py``."""

    precision: str = MISSING


@dataclass
class CheckpointReading:
    """What ``evaluate.py`` and ``attack.py`` share: reading a run's checkpoint back."""

    name: str = MISSING
    dataset_root: Optional[str] = None
    trusted_packages: list[str] = field(default_factory=list)
    device: str = MISSING
    seed: int = MISSING
    paths: Paths = field(default_factory=Paths)


@dataclass
class EvaluateConfig(CheckpointReading):
    """``conf/evaluate.yaml``."""

    report: str = MISSING
    checkpoint: Any = MISSING  # one path, or a list of them (report=selective)
    trainer: EvaluateTrainerSettings = field(default_factory=EvaluateTrainerSettings)
    calibration_size: int = MISSING
    calibration_seed: int = MISSING
    top_suspects: int = MISSING
    detector: str = "model"  # report=label_errors: model | confident_learning
    folds: int = 5
    cv_epochs: Optional[int] = None
    label_fraction: Optional[float] = None  # report=linear_probe|knn
    labels_per_class: Optional[int] = None
    knn_k: int = 200
    knn_temperature: float = 0.1


@dataclass
class AttackConfig(CheckpointReading):
    """``conf/attack.yaml``."""

    checkpoint: Optional[str] = None
    checkpoints: Optional[str] = None
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
