"""What a config key is to a run besides its value: its roles, declared once where the
key is declared, and read by everything that must treat some keys apart.

- ``NEUTRAL``: cannot change what a run computes (where it writes, how fast it runs,
  what it logs). Left out of the report's grouping, of the "is this finished run the
  command's result" check and of sweep folder names.
- ``PER_PROCESS``: may differ between the processes of one distributed run (a node's
  local data folder, its thread count). Left out of the fingerprint the ranks compare.
- ``FILE``: names or fetches files. A config read back from a checkpoint never sets it
  (the user's current value does); a sweep folder carries a hash of it, not its value.
- ``FIXED``: a continued run must keep it (its checkpoint's state depends on it).

Run-level keys declare their roles in the schemas (:mod:`sat.config.schema`, dataclass
field metadata made by :func:`declare`); a subtree inherits its field's roles. The
arguments of a ``_target_`` node declare theirs on the class, ``arg_roles = {"root":
(FILE, PER_PROCESS)}`` (merged along the base classes), and those replace the roles
the node inherits. A key declared nowhere has no role.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

NEUTRAL = "neutral"
PER_PROCESS = "per_process"
FILE = "file"
FIXED = "fixed"
ROLES = (NEUTRAL, PER_PROCESS, FILE, FIXED)

Roles = frozenset[str]
ClassOf = Callable[[str], "type | None"]  # a ``_target_`` -> its class (None: unknown)


def declare(*roles: str) -> dict[str, Any]:
    """Field metadata: ``field(default=..., metadata=declare(NEUTRAL, PER_PROCESS))``."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"roles {sorted(unknown)}; accepted: {', '.join(ROLES)}")
    return {"roles": frozenset(roles)}


def arg_roles(cls: type | None) -> dict[str, Roles]:
    """The roles a class declares for its constructor arguments (``arg_roles``), merged
    along its base classes (a subclass's declaration of an argument wins)."""
    merged: dict[str, Roles] = {}
    for base in reversed(getattr(cls, "__mro__", ())):
        for name, roles in (base.__dict__.get("arg_roles") or {}).items():
            merged[name] = frozenset(roles)
    return merged


def file_args(cls: type | None) -> set[str]:
    """The arguments of ``cls`` that name or fetch files."""
    return {name for name, roles in arg_roles(cls).items() if FILE in roles}


@functools.cache
def _fields(schema: type) -> dict[str, tuple[Roles | None, type | None]]:
    """Each field of a schema: its declared roles (None: none declared) and the schema
    its annotation names, if it is one (through ``Optional``)."""
    hints = typing.get_type_hints(schema)
    out = {}
    for f in dataclasses.fields(schema):
        hint = hints.get(f.name)
        nested = next((h for h in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(h)), None)
        out[f.name] = (f.metadata.get("roles"), nested)
    return out


# Hydra's own node (``hydra.run.dir``, ...) in a composed config: never part of a result.
HYDRA_NODE = frozenset({NEUTRAL, PER_PROCESS})


def key_roles(config: Mapping[str, Any], schema: type | None = None,
              class_of: ClassOf | None = None) -> dict[str, Roles]:
    """``{"trainer.progress": {NEUTRAL, PER_PROCESS}, ...}`` for every leaf of a plain,
    nested ``config`` (lists are leaves): ``schema`` is its primary config's dataclass,
    ``class_of`` finds the class a ``_target_`` names (for its ``arg_roles``)."""
    out: dict[str, Roles] = {}

    def walk(node: Any, prefix: str, inherited: Roles, schema: type | None) -> None:
        if not isinstance(node, Mapping) or not node:
            out[prefix[:-1]] = inherited
            return
        fields = _fields(schema) if schema is not None else {}
        target = node.get("_target_")
        by_arg = arg_roles(class_of(target)) if isinstance(target, str) and class_of is not None else {}
        for key, value in node.items():
            declared, sub = fields.get(str(key), (None, None))
            roles = by_arg.get(str(key), declared if declared is not None else inherited)
            if prefix == "" and key == "hydra":
                roles = HYDRA_NODE
            walk(value, f"{prefix}{key}.", roles, sub)

    walk(config, "", frozenset(), schema)
    return out


def with_role(roles: Mapping[str, Roles], *wanted: str) -> set[str]:
    """The keys having any of the ``wanted`` roles."""
    return {key for key, have in roles.items() if have & set(wanted)}


def covers(keys: Iterable[str], key: str) -> bool:
    """Whether ``key`` is one of ``keys`` or lies below one of them (``hydra.run.dir``
    below ``hydra``)."""
    return any(key == k or key.startswith(f"{k}.") for k in keys)
