"""Rebuilding a run from one of its checkpoints (evaluate.py, attack.py).

The checkpoint's stored config is data from whoever wrote the file: objects are built
from it only through :mod:`sat.config.trust`, and the files it reads (dataset root, noise) are
the ones the user confirms now, never paths taken from the stored config.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sat.config import trust, validate
from sat.config.build import StoredConfig
from sat.config.schema import read
from sat.data.noise import NoisePattern
from sat.data.prepare import TrainingData, load, prepare
from sat.errors import UserError
from sat.run.checkpoint import load_checkpoint
from sat.run.folder import RunFolder
from sat.tasks.budget import check_memory
from sat.tasks.build import build_model

log = logging.getLogger("sat")


def trusted_packages(cfg: Any) -> list[str]:
    """The user's ``trusted_packages=``: their own packages a checkpoint's config may name."""
    value = read(cfg, "trusted_packages") or []
    if isinstance(value, str):
        value = [value]
    return trust.trusted_package_names([str(v) for v in value])


@contextlib.contextmanager
def _dataset_named() -> Iterator[None]:
    """The dataset's refusals name dataset.<argument>, and its root by the key that sets
    it here: evaluate's and attack's ``dataset_root=`` (a checkpoint's own ``dataset.root``
    is never used)."""
    try:
        yield
    except UserError as e:
        raise e.from_node("dataset").renamed({"dataset.root": "dataset_root"}) from None


@dataclass
class RestoredRun:
    state: dict[str, Any]  # the checkpoint (tensors and plain values)
    config: dict[str, Any]  # the run's stored config, as plain data
    data: TrainingData
    model: nn.Module  # in eval mode, on the requested device
    policy: StoredConfig  # how objects are built from ``config``: through the trust registry

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def outputs(self) -> int:
        """The model's outputs (an abstaining model has one more than the classes)."""
        return int(self.state.get("model_outputs") or self.data.num_classes)

    def build_model(self) -> nn.Module:
        """A fresh network of the run's architecture, with the run's input normalisation."""
        data = self.data.data
        return build_model(self.config.get("model"), self.outputs, data.input_shape, self.policy, (data.mean, data.std))

    def build_method(self) -> Any:
        """The run's method as its stored config describes it, with its state from the
        checkpoint (per-sample state allocated for the training labels, then loaded): so a
        report asks the method itself (``soft_labels()``), whatever it keeps inside."""
        method = self.policy.build(self.config.get("method"), "method", "method")
        method.attach_model(self.build_model)
        with validate.config_node("method"):  # its refusals name the stored config's method.<argument>
            method.setup(self.data.train.labels, self.data.num_classes)
        try:
            method.load_state_dict(self.state["method"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise UserError(f"checkpoint: its method state does not fit the method its config describes "
                            f"({str(e).splitlines()[0]})") from None
        return method.eval()


def note_run_state(checkpoint: Path, epoch: int) -> None:
    """Say when a checkpoint's run has not finished: still training (its file will
    change), or killed without a word (its summary says running; no process holds its lock)."""
    folder = RunFolder.of_checkpoint(checkpoint)
    status = RunFolder(folder).status() if folder is not None else None
    if status == "running":
        log.warning("%s is of epoch %d of a run still training (%s): not its final weights", checkpoint, epoch, folder)
    elif status == "killed":
        log.warning("%s is of epoch %d of a run that was killed (no process holds its lock); python train.py "
                    "resume=%s continues it", checkpoint, epoch, folder)


def restore_run(
    checkpoint: str | Path, device: torch.device, data_dir: str | None, trusted_packages: Iterable[str] | None = None,
    data_cache: dict | None = None,
) -> RestoredRun:
    """Load ``checkpoint`` and rebuild its run's data (with its exact noise) and model.

    ``data_dir``: where dataset files are read from now (the user's ``dataset_root=``
    or their current data folder). The noise comes from the run's ``noise.pt`` next to
    the checkpoint's folder, else it is redrawn from the stored seeded config; either way
    its hash must match the one the checkpoint recorded. ``data_cache`` (a dict the
    caller keeps) reuses the data across checkpoints of one run.
    """
    checkpoint = Path(str(checkpoint)).expanduser()
    state = load_checkpoint(checkpoint)
    note_run_state(checkpoint, int(state["epoch"]))
    config = state["config"]
    if not isinstance(config, dict):
        raise UserError(f"checkpoint={str(checkpoint)!r} holds no readable config")
    policy = StoredConfig(trusted_packages, files={"root": data_dir})
    with _dataset_named():
        source = policy.build(config.get("dataset"), "dataset", "dataset")
    outputs = int(state.get("model_outputs") or source.num_classes)
    check_memory("evaluate", device=device, input_shape=source.input_shape, batch_size=1, source=source,
                 build_model=lambda: build_model(config.get("model"), outputs, source.input_shape, policy),
                 what=f"checkpoint={str(checkpoint)!r}")
    noise_file = RunFolder(RunFolder.of_checkpoint(checkpoint, record=False)).noise_file
    key = (repr(config.get("dataset")), str(data_dir), state["noise_sha256"])
    nd = (data_cache or {}).get(key)
    if nd is None:
        pattern = NoisePattern.load(noise_file) if noise_file.is_file() else None
        noise = None if pattern is not None else policy.build(config.get("noise"), "noise", "noise")
        # the data as the run itself saw it: on the device, or streamed
        with _dataset_named():
            data = load(source)
        nd = prepare(data, noise, device, pattern=pattern, loader_kind=state.get("loader_kind") or "auto")
        if data_cache is not None:
            data_cache[key] = nd
    if nd.pattern.sha256() != state["noise_sha256"]:
        raise UserError(f"checkpoint={str(checkpoint)!r}: its noise pattern (hash {state['noise_sha256'][:12]}) could not "
                        f"be reproduced; put the run's noise.pt at {noise_file}")
    run = RestoredRun(state, config, nd, None, policy)  # type: ignore[arg-type]  (the model comes next)
    # First without memory (the meta device): a stored config describing another model (or
    # a huge one) is refused before anything is allocated.
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in run.build_model().state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state["model"].items() if isinstance(v, torch.Tensor)}
    if shapes != stored:
        differ = sorted(set(shapes.items()) ^ set(stored.items()))[:1]
        raise UserError(f"checkpoint={str(checkpoint)!r}: its weights do not fit the model its config describes "
                        f"(first difference: {differ[0][0] if differ else '?'})")
    model = run.build_model()
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise UserError(f"checkpoint={str(checkpoint)!r}: its weights do not fit the model its config describes "
                        f"({str(e).splitlines()[0]})") from None
    run.model = model.to(device).eval()
    return run
