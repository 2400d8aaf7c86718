"""The run-level settings of a config (``trainer.*``, ``seed``, ``resume``), checked
before anything is loaded: each bad value is a one-line error naming it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sat import validate
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


@dataclass(frozen=True)
class TrainerSettings:
    epochs: int
    batch_size: int
    eval_batch_size: int
    precision: str
    channels_last: bool
    compile: bool
    compile_mode: str | None
    num_threads: int | None
    checkpoint_every: int
    checkpoint_from: int
    deterministic: bool
    progress: str
    eval_every: int
    async_checkpoint: bool
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
