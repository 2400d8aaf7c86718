"""Argument checks shared by the models: bad config values become one-line UserErrors."""

from __future__ import annotations

from collections.abc import Sequence

from sat.errors import UserError


def image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``input_shape`` as a ``(C, H, W)`` tuple of ints (accepts lists and OmegaConf lists)."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(key="input_shape", value=list(shape), problem="is not supported",
                        accepted="(channels, height, width), each >= 1")
    return shape
