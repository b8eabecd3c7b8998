"""Named registries for the pluggable kinds (model families, models, metrics), and the one "did you mean".

Entries can be objects or lazy ``"module:attr"`` strings, so listing names never imports torch-heavy code.
Unknown names raise :class:`UnknownNameError` with the closest known name.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def suggest(name: str, known: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> str:
    """``" Did you mean: sdxl?"`` for the closest of ``known`` (up to ``n``), or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=n, cutoff=cutoff)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def unknown_message(kind: str, name: str, known: Iterable[str], *, cutoff: float = 0.5) -> str:
    """``Unknown model 'sdxll'. Did you mean: sdxl?`` (without the list of known names)."""
    return f"Unknown {kind} {name!r}.{suggest(name, known, cutoff=cutoff)}"


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message names the closest known one and lists them all."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, list(known)
        super().__init__(f"{unknown_message(kind, name, self.known)} Known: {', '.join(sorted(self.known))}.")

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
        entry = self._entries[self.check(name)]
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

    def __len__(self) -> int:
        return len(self._entries)
