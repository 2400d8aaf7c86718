"""Building objects from config nodes: one builder, two policies.

- :data:`USER_CONFIG`: the config the user composed now. Any importable ``_target_``
  (Hydra's ``instantiate``); a constructor's refusal is named by the node's path.
- :class:`StoredConfig`: a config read back from a checkpoint or a run folder, which is
  data from whoever wrote the file. Targets come from the trust registry only
  (:mod:`sat.config.trust`), no other Hydra key is honoured, and arguments that name
  files are supplied by the caller (what the user confirmed now), never by the file.

Both answer :meth:`class_of` (the class a ``_target_`` names, for its ``arg_roles``) and
:meth:`roles` (every key's roles, :mod:`sat.config.roles`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sat.config import keys, roles, trust
from sat.errors import UserError


class UserConfig:
    """The user's own config: anything importable may be named."""

    def class_of(self, target: Any) -> type | None:
        from hydra.utils import get_object

        try:
            obj = get_object(str(target))
        except Exception:  # noqa: BLE001  (an import failure is reported when the object is built)
            return None
        return obj if isinstance(obj, type) else None

    def roles(self, config: Mapping[str, Any], schema: type | None) -> dict[str, roles.Roles]:
        return roles.key_roles(config, schema, self.class_of)

    def build(self, node: Any, what: str, kind: str | None = None, **runtime: Any) -> Any:
        """``instantiate(node, **runtime)``, which must give an object of ``kind`` (its
        base class, :func:`sat.config.trust.kind_base`; None: anything)."""
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        try:
            obj = instantiate(node, **runtime)
        except InstantiationException as e:  # a constructor's refusal, named by the node's path (method.natural.alpha)
            raise keys.instantiation_error(e, what) from None
        expected = trust.base_of(kind) if kind is not None else object
        if not isinstance(obj, expected):
            target = node.get("_target_") if hasattr(node, "get") else None
            raise UserError(f"{what}._target_={target!r} built a {type(obj).__name__}; accepted: a "
                            f"{expected.__name__}")
        return obj


USER_CONFIG = UserConfig()


class StoredConfig:
    """A config read back from a checkpoint or run folder: data, never code.
    ``trusted_packages``: the user's own packages whose classes it may name; ``files``:
    the values of file arguments (``root``) the user gives now."""

    def __init__(self, trusted_packages: Iterable[str] | None = None, files: Mapping[str, Any] | None = None):
        self.trusted_packages = trust.trusted_package_names(trusted_packages)
        self.files = dict(files or {})

    def class_of(self, target: Any) -> type | None:
        return trust.known_class(target)

    def roles(self, config: Mapping[str, Any], schema: type | None) -> dict[str, roles.Roles]:
        return roles.key_roles(config, schema, self.class_of)

    def build(self, node: Any, what: str, kind: str | None = None, **runtime: Any) -> Any:
        if kind is None:
            raise ValueError("a stored config builds only the kinds the trust registry knows")
        return trust.build(node, kind, what, trusted_packages=self.trusted_packages, files=self.files, **runtime)
