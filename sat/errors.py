"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

_UNSET: Any = object()
def shown(value: Any) -> str:
    """A value as the user types it in a config: ``true``, ``null``, ``'auto'``, ``1.5``."""
    return {True: "true", False: "false"}[value] if isinstance(value, bool) else "null" if value is None else repr(value)


_NAMES = re.compile(r"\{(key|\.[A-Za-z_][\w.]*)\}")  # {key}: the error's key; {.name}: its sibling ``name``


class UserError(ValueError):
    """Bad input from the user (a config value, a path, a missing file). The entry
    points print the message alone and exit with status 2.

    Structured where a value is refused: ``UserError(key="alpha", value=1.5,
    problem="is out of range", accepted="a number >= 0 and < 1")`` reads
    ``alpha=1.5 is out of range; accepted: a number >= 0 and < 1``. The library names its
    own argument; the code that built the object says where it came from:
    :meth:`within` for a part of a bigger object (TRADES' ``natural.alpha``), and
    :meth:`from_node` for the config node it was built from (``method.natural.alpha=1.5``).

    In ``problem`` and ``accepted`` (and in a free-form ``message`` given with a ``key``),
    ``{key}`` stands for the key as finally named and ``{.name}`` for the object's other
    argument ``name`` (``resize=8 is smaller than {.image_size}=32`` reads
    ``dataset.resize=8 is smaller than dataset.image_size=32`` from the config).
    """

    def __init__(self, message: str | None = None, *, key: str | None = None, value: Any = _UNSET,
                 problem: str = "", accepted: str | None = None, path: str = "", rooted: bool = False,
                 renames: Mapping[str, str] | None = None):
        self.message, self.key, self.value, self.problem, self.accepted = message, key, value, problem, accepted
        self.path, self.rooted, self.renames = path, rooted, dict(renames or {})
        super().__init__(message if key is None else self._render())

    @property
    def structured(self) -> bool:
        return self.key is not None

    @property
    def name(self) -> str | None:
        """The key as finally named (``method.natural.alpha``); None for a free-form error."""
        return None if self.key is None else self._name(self.key)

    def _name(self, key: str) -> str:
        full = f"{self.path}.{key}" if self.path else key
        return self.renames.get(full, full)

    def _named(self, text: str) -> str:
        return _NAMES.sub(lambda m: str(self.name) if m.group(1) == "key" else self._name(m.group(1)[1:]), text)

    def _render(self) -> str:
        if self.message is not None:
            return self._named(self.message)
        head = self.name if self.value is _UNSET else f"{self.name}={shown(self.value)}"
        text = f"{head} {self._named(self.problem)}".strip()
        return f"{text}; accepted: {self._named(self.accepted)}" if self.accepted else text

    def _fields(self) -> dict[str, Any]:
        fields = dict(key=self.key, problem=self.problem, accepted=self.accepted, path=self.path, rooted=self.rooted,
                      renames=self.renames)
        return fields if self.value is _UNSET else {**fields, "value": self.value}

    def _with(self, **changes: Any) -> UserError:
        return type(self)(self.message, **{**self._fields(), **changes})

    def __reduce__(self) -> tuple[Any, ...]:  # a copy in another process keeps its structure
        return functools.partial(type(self), self.message, **self._fields()), ()

    def within(self, part: str) -> UserError:
        """This error, raised by the object given to a bigger one as argument ``part``,
        with its keys named through it (``alpha`` -> ``natural.alpha``)."""
        if not self.structured or self.rooted or not part:
            return self
        return self._with(path=f"{part}.{self.path}" if self.path else part)

    def from_node(self, path: str) -> UserError:
        """This error, raised by an object built from the config node at ``path``, with
        its keys named from the config's root (``alpha`` -> ``method.alpha``). The name is
        then final: an error already named from the root is returned as it is."""
        if not self.structured or self.rooted:
            return self
        return self._with(path=f"{path}.{self.path}" if path and self.path else path or self.path, rooted=True)

    def renamed(self, names: Mapping[str, str]) -> UserError:
        """This error with keys named otherwise where ``names`` maps a final name to the
        one the user types here (evaluate's ``{"dataset.root": "dataset_root"}``)."""
        if not self.structured:
            return self
        return self._with(renames={**self.renames, **names})
