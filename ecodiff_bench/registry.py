"""Named registries for the pluggable kinds (model families, pruning methods, metrics, trackers).

Entries can be objects or lazy ``"module:attr"`` strings, so listing names never imports torch-heavy code.
Unknown names raise :class:`UnknownNameError` with a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the closest known names."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean: {close[0]}?" if close else ""
        super().__init__(f"Unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known))}.")

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return self.args[0]


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, entry: T | str, help: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        self._help[name] = help

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, list(self._entries))
        entry = self._entries[name]
        if isinstance(entry, str) and ":" in entry:
            module, attr = entry.split(":", 1)
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def check(self, name: str) -> str:
        """Validate a name without importing its entry."""
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, list(self._entries))
        return name

    def help(self, name: str) -> str:
        return self._help[self.check(name)]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
