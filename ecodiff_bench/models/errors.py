"""Errors of model resolution and loading (torch-free, so the CLI can catch them cheaply)."""

from __future__ import annotations


class ModelNotFoundError(FileNotFoundError):
    """Weights or a pipeline directory that are not available locally.

    ``looked_for`` is the hub id or path that was wanted, ``where`` where it was searched (a cache
    directory or a filesystem path), ``hint`` how to get it. The message states all three.
    """

    def __init__(self, message: str, *, looked_for: str, where: str, hint: str):
        self.looked_for, self.where, self.hint = looked_for, where, hint
        super().__init__(f"{message}\nLooked for: {looked_for}\nLooked in: {where}\nTo fix: {hint}")

    def __str__(self) -> str:  # OSError would prefix an errno; show the message only
        return self.args[0]
