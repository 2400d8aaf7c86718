"""Rebuilding a run from one of its checkpoints (evaluate.py, attack.py).

The checkpoint's stored config is data from whoever wrote the file: objects are built
from it only through :mod:`sat.config.trust`, and the files it reads (dataset root, noise) are
the ones the user confirms now, never paths taken from the stored config.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from sat.config import trust
from sat.run.checkpoint import load_checkpoint
from sat.data.noise import NoisePattern
from sat.errors import UserError
from sat.data.prepare import TrainingData, load, prepare
from sat.models import with_normalization
from sat.run.folder import RunFolder


@contextlib.contextmanager
def _dataset_root_named() -> Iterator[None]:
    """Dataset errors name the key that sets the root here: evaluate's and attack's
    ``dataset_root=`` (a checkpoint's own ``dataset.root`` is never used)."""
    try:
        yield
    except UserError as e:
        raise UserError(str(e).replace("dataset.root=", "dataset_root=")) from None


@dataclass
class RestoredRun:
    state: dict[str, Any]  # the checkpoint (tensors and plain values)
    config: dict[str, Any]  # the run's stored config, as plain data
    data: TrainingData
    model: nn.Module  # in eval mode, on the requested device

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


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
    config = state["config"]
    if not isinstance(config, dict):
        raise UserError(f"checkpoint={str(checkpoint)!r} holds no readable config")
    with _dataset_root_named():
        source = trust.build(config.get("dataset"), "dataset", "dataset", trusted_packages=trusted_packages,
                             files={"root": data_dir})
    noise_file = RunFolder(RunFolder.of_checkpoint(checkpoint, record=False)).noise_file
    key = (repr(config.get("dataset")), str(data_dir), state["noise_sha256"])
    nd = (data_cache or {}).get(key)
    if nd is None:
        pattern = NoisePattern.load(noise_file) if noise_file.is_file() else None
        noise = None if pattern is not None else \
            trust.build(config.get("noise"), "noise", "noise", trusted_packages=trusted_packages)
        # the data as the run itself saw it: on the device, or streamed
        with _dataset_root_named():
            data = load(source)
        nd = prepare(data, noise, device, pattern=pattern, loader_kind=state.get("loader_kind"))
        if data_cache is not None:
            data_cache[key] = nd
    if nd.pattern.sha256() != state["noise_sha256"]:
        raise UserError(f"checkpoint={str(checkpoint)!r}: its noise pattern (hash {state['noise_sha256'][:12]}) could not "
                        f"be reproduced; put the run's noise.pt at {noise_file}")
    outputs = int(state.get("model_outputs") or nd.data.num_classes)

    def build_model() -> torch.nn.Module:
        net = trust.build(config.get("model"), "model", "model", trusted_packages=trusted_packages,
                          num_classes=outputs, input_shape=tuple(nd.data.input_shape))
        return with_normalization(net, tuple(nd.data.mean), tuple(nd.data.std))

    # First without memory (the meta device): a stored config describing another model (or
    # a huge one) is refused before anything is allocated.
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in build_model().state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state["model"].items() if isinstance(v, torch.Tensor)}
    if shapes != stored:
        differ = sorted(set(shapes.items()) ^ set(stored.items()))[:1]
        raise UserError(f"checkpoint={str(checkpoint)!r}: its weights do not fit the model its config describes "
                        f"(first difference: {differ[0][0] if differ else '?'})")
    model = build_model()
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise UserError(f"checkpoint={str(checkpoint)!r}: its weights do not fit the model its config describes "
                        f"({str(e).splitlines()[0]})") from None
    return RestoredRun(state, config, nd, model.to(device).eval())
