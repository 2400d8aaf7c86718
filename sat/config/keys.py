"""Config keys as the user typed them: a key or option that does not exist, a value of
the wrong type, and a constructor's refusal, each as one :class:`UserError` line that
names the key and, for a typo, the closest valid ones.

- :func:`composition_error`: what Hydra raises while composing (an unknown option, a key
  the schema does not have, a wrong type, a malformed override);
- :func:`check_keys`: keys added with ``+`` (which Hydra adds to any node) must exist
  too: in a schema (sat/config/schema.py) or among the constructor's arguments of a
  ``_target_`` node;
- :func:`instantiation_error`: a library check names an argument (``alpha=1.5``); the
  node it was built from says where it came from (``method.natural.alpha=1.5``).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from sat.config import validate
from sat.config.signatures import source_arguments
from sat.errors import UserError

HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})


# --- unknown keys -------------------------------------------------------------------------


def _leaves(node: Any, prefix: str = "") -> list[str]:
    """Every key path of a config (``trainer.epochs``, ...), Hydra's own node left out."""
    if not isinstance(node, DictConfig):
        return []
    paths = []
    for key in node.keys():
        if prefix == "" and key == "hydra" or key in HYDRA_KEYS:
            continue
        path = f"{prefix}{key}"
        paths.append(path)
        paths += _leaves(node._get_node(key), path + ".")
    return paths


def unknown_key(path: str, valid: Iterable[str], everywhere: Iterable[str] = ()) -> UserError:
    """``path`` is not a key: name the closest of its node's ``valid`` keys (as full
    paths), or any key of the config whose last part is close (``batch_size`` ->
    ``trainer.eval_batch_size``); with none close, list the node's keys."""
    parent, _, name = path.rpartition(".")
    full = [f"{parent}.{k}" if parent else k for k in sorted(valid)]
    close = [f"{parent}.{k}" if parent else k for k in difflib.get_close_matches(name, sorted(valid), n=3, cutoff=0.6)]
    by_name = {p.rpartition(".")[2]: p for p in sorted(everywhere)}
    close += [by_name[k] for k in difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.75)
              if by_name[k] not in close and by_name[k] != path]
    where = f"{parent}" if parent else "the config"
    if close:
        return UserError(f"{path} is not a key of {where}; did you mean {' or '.join(close[:3])}?")
    return UserError(f"{path} is not a key of {where}; accepted: {', '.join(full) or 'none'}")


def _arguments(target: Any, importing: bool = True) -> set[str] | None:
    """The keyword arguments a ``_target_`` takes (None: open or unreadable); without
    ``importing``, only what its source file says (:mod:`sat.config.signatures`)."""
    from hydra.utils import get_object

    if not importing:
        return source_arguments(str(target))
    try:
        obj = get_object(str(target))
    except Exception:  # noqa: BLE001  (an import failure is reported when the object is built)
        return None
    return validate.argument_names(obj)


def _schema_fields(node: DictConfig) -> set[str] | None:
    schema = OmegaConf.get_type(node)
    return {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None


def check_keys(cfg: DictConfig, importing: bool = True) -> None:
    """Refuse a key that neither the schema nor the constructor it would reach knows
    (``+trainer.epoch=3``, ``+method.alfa=1``, ``+foo=1``): Hydra adds those silently.
    Without ``importing``, constructors are read from their source files only (no
    torch): a node whose source does not settle its arguments is left to the full check."""
    everywhere = _leaves(cfg)

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, ListConfig):
            for i, item in enumerate(node._iter_ex(resolve=False)):
                walk(item, f"{prefix}[{i}]")
            return
        if not isinstance(node, DictConfig) or node._is_missing() or node._is_none():
            return
        keys = [k for k in node.keys() if not (prefix == "" and k == "hydra")]
        valid = _schema_fields(node)
        if valid is None and "_target_" in node:
            valid = _arguments(node._get_node("_target_")._value(), importing)
            valid = None if valid is None else valid | HYDRA_KEYS
        for key in keys:
            if valid is not None and key not in valid:
                raise unknown_key(f"{prefix}{key}", valid - HYDRA_KEYS, everywhere)
            walk(node._get_node(key), f"{prefix}{key}.")

    walk(cfg, "")


# --- what Hydra raises while composing ----------------------------------------------------


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "a boolean (true, false)", str: "a string"}
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    origin = typing.get_origin(base)
    if origin in (list, tuple):
        return "a list"
    return names.get(base, getattr(base, "__name__", str(base)))


def _wrong_type(e: ValidationError) -> UserError:
    key = e.full_key or e.key
    hint = None
    with_schema = e.object_type if dataclasses.is_dataclass(e.object_type) else None
    if with_schema is not None and e.key is not None:
        hint = typing.get_type_hints(with_schema).get(str(e.key))
    accepted = _type_name(hint) if hint is not None else str(e.msg).splitlines()[0]
    return UserError(f"{key}={e.value!r} is not {accepted} (its type in the schema, sat/config/schema.py)")


def composition_error(e: BaseException) -> UserError | None:
    """The one-line UserError for a config Hydra could not compose, or None when ``e``
    is not that (a failure of the task itself)."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if isinstance(e, MissingConfigException):
        return _missing_option(e)
    if isinstance(e, OverrideParseException):
        override = _first_line(e).partition(": ")[2] or _first_line(e)
        return UserError(f"cannot parse the override {override!r} (an unbalanced quote or bracket?); "
                         "accepted: key=value, quoted as a whole where it has spaces")
    cause = e.__cause__
    if isinstance(e, ConfigCompositionException):
        if isinstance(cause, ValidationError):
            return _wrong_type(cause)
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
            parent = cause.parent_node
            valid = [str(k) for k in parent.keys() if k not in HYDRA_KEYS] if isinstance(parent, DictConfig) else []
            root = parent._get_root() if isinstance(parent, DictConfig) else None
            return unknown_key(cause.full_key, valid, _leaves(root) if root is not None else [])
        detail = _first_line(e) + (f" ({_first_line(cause)})" if cause is not None else "")
        return UserError(detail)
    return None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _missing_option(e: Any) -> UserError:
    """``experiment=quickstrat``: the closest options, and where the list is."""
    missing = str(e.missing_cfg_file or "")
    group, _, option = missing.rpartition("/")
    options = list(e.options or [])
    if not group or not options and "Could not find" not in str(e):
        return UserError(_first_line(e))
    close = difflib.get_close_matches(option, options, n=3, cutoff=0.5)
    if close:
        guesses = " or ".join(f"{group}={o}" for o in close)
        return UserError(f"{group}={option} is not an option; did you mean {guesses}? (the options are the files in "
                         f"conf/{group}/)")
    return UserError(f"{group}={option} is not an option; accepted: the files in conf/{group}/: "
                     f"{', '.join(options) or 'none'}")


# --- a constructor's refusal, named by the node it was built from ---------------------------


def instantiation_error(e: BaseException, what: str) -> UserError:
    """What ``hydra.utils.instantiate`` raised, as one line: a constructor's UserError
    with the path of the node that was built (Hydra's ``full_key``, else ``what``)
    put before the argument it names; anything else as ``what: detail``."""
    from hydra.errors import InstantiationException

    seen, node_key = e, ""
    while seen is not None and not isinstance(seen, UserError):
        if isinstance(seen, InstantiationException):  # the innermost one is the node that raised
            found = re.search(r"^full_key: (\S+)$", str(seen), re.M)
            node_key = found.group(1) if found else node_key
        seen = seen.__cause__
    if seen is None:
        cause = e.__cause__ or e
        return UserError(f"{what}: {_first_line(cause)}")
    if node_key != what and not node_key.startswith(what + "."):  # built from a detached node
        node_key = f"{what}.{node_key}" if node_key else what
    return seen.from_node(node_key)
