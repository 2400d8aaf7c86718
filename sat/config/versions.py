"""A stored config written by an older version of sat, read as today's.

A run folder or a checkpoint outlives the code that wrote it: since, a class may have moved
(its former path kept as an alias of the same class, :func:`sat.config.trust.trusted`) and a
setting may have been added (absent from the stored config; the schema gives its default).
The resume check and the report read stored configs through :func:`as_today`, so a run
preempted before an update continues after it, and runs from before and after one are one
group of a report.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sat.config import trust
from sat.config.schema import field_defaults


def schema_defaults(schema: type, prefix: str = "") -> dict[str, Any]:
    """The schema's settings that have a default, flattened: ``{"loader.kind": "auto", ...}``."""
    out = {prefix + name: value for name, value in field_defaults(schema).items()}
    for f in dataclasses.fields(schema):  # nested settings (trainer, loader): their own schemas
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            out.update(schema_defaults(f.default_factory, f"{prefix}{f.name}."))
    return out


def current_name(target: Any) -> Any:
    """A ``_target_`` under its class's current name (a former name is an alias of it); a
    name the registry does not know is returned as it is (nothing is imported by it)."""
    found = trust.known_class(target)
    return f"{found.__module__}.{found.__qualname__}" if found is not None else target


def as_today(flat: dict[str, Any], schema: type | None) -> dict[str, Any]:
    """A flattened stored config with every ``_target_`` under its class's current name and,
    given the ``schema`` it was written for, every setting of it that it lacks (added since)
    at its default."""
    out = {k: current_name(v) if k.endswith("_target_") else v for k, v in flat.items()}
    if schema is not None:
        out = {**schema_defaults(schema), **out}
    return out
