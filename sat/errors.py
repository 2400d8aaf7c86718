"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

from typing import Any

_UNSET: Any = object()


class UserError(ValueError):
    """Bad input from the user (a config value, a path, a missing file). The entry
    points print the message alone and exit with status 2.

    Structured where a value is refused: ``UserError(key="alpha", value=1.5,
    problem="is out of range", accepted="a number >= 0 and < 1")`` reads
    ``alpha=1.5 is out of range; accepted: a number >= 0 and < 1``. The library names its
    own argument; the task layer that built the object from a config node says where it
    came from with :meth:`within` (``method.natural.alpha=1.5``). ``{key}`` in
    ``problem`` or ``accepted`` stands for the key as finally named.
    """

    def __init__(self, message: str | None = None, *, key: str | None = None, value: Any = _UNSET,
                 problem: str = "", accepted: str | None = None):
        self.key, self.value, self.problem, self.accepted = key, value, problem, accepted
        super().__init__(message if message is not None or key is None else self._render())

    @property
    def structured(self) -> bool:
        return self.key is not None

    def _render(self) -> str:
        head = self.key if self.value is _UNSET else f"{self.key}={self.value!r}"
        text = f"{head} {self.problem.replace('{key}', str(self.key))}".strip()
        return f"{text}; accepted: {self.accepted.replace('{key}', str(self.key))}" if self.accepted else text

    def within(self, path: str) -> UserError:
        """This error, raised by an object built from the config node at ``path``, with
        its key named from the config's root (``alpha`` -> ``method.alpha``)."""
        if not self.structured or not path:
            return self
        return type(self)(key=f"{path}.{self.key}", value=self.value, problem=self.problem, accepted=self.accepted)
