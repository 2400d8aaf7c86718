"""Warm start (``init_from=RUN/checkpoints/best.pt``): a *new* run whose model starts
from a checkpoint's weights, and nothing else of it: the optimizer, schedule, epoch,
method state (soft targets) and random state start fresh, and any setting may differ
(``resume=`` continues a run instead, and refuses changed settings).

``init_from_strict=true`` (default) needs the very same architecture; ``false`` loads the
tensors whose name and shape fit (a changed head: another number of classes) and
reports the rest. The input normalisation is never taken from the checkpoint: it is the
new run's data's. What was loaded is recorded in ``summary.json`` (``init_from``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sat.errors import UserError
from sat.models.normalize import Normalize
from sat.run.checkpoint import load_checkpoint


def _normalization_keys(model: nn.Module) -> set[str]:
    return {f"{name}.{buffer}" if name else buffer
            for name, module in model.named_modules() if isinstance(module, Normalize) for buffer in ("mean", "std")}


def warm_start(model: nn.Module, path: Any, strict: bool = True) -> dict[str, Any]:
    """Copy the weights of the checkpoint at ``path`` into ``model`` (in place); returns
    the record for ``summary.json``. Another architecture is a one-line UserError."""
    path = Path(str(path)).expanduser()
    state = load_checkpoint(path)  # verified: checksum, weights_only
    stored = {k: v for k, v in state["model"].items() if isinstance(v, torch.Tensor)}
    skip = _normalization_keys(model)
    own = {k: v for k, v in model.state_dict().items() if k not in skip}
    fits = {k: v for k, v in stored.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    misfits = sorted((set(own) | (set(stored) - skip)) - set(fits))
    if (strict and misfits) or not fits:
        first = misfits[0] if misfits else "?"
        detail = (f"{tuple(stored[first].shape)} in the checkpoint, {tuple(own[first].shape)} here"
                  if first in stored and first in own else "present in only one of them")
        raise UserError(f"init_from={path}: its weights are of another architecture (first difference: {first}, "
                        f"{detail}); accepted: a checkpoint of the same model"
                        + (", or init_from_strict=false to load the layers that fit" if strict and fits else ""))
    model.load_state_dict(fits, strict=False)
    return {"checkpoint": str(path), "epoch": int(state["epoch"]), "strict": bool(strict), "loaded": len(fits),
            "not_loaded": misfits}
