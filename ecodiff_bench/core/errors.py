"""The harness's exceptions for things a user can fix; the CLI turns them into exit code 2 (no traceback)."""

from __future__ import annotations

from ecodiff_bench.core.registry import UnknownNameError

__all__ = [
    "PreflightError",
    "RecordError",
    "StoreDamagedError",
    "StoreError",
    "SuiteError",
    "UnknownNameError",
]


class SuiteError(ValueError):
    """A suite that cannot be loaded or is invalid.

    ``problems`` holds one line per problem, each ``<field.path>: <what is wrong> (got ...; allowed: ...)``;
    ``source`` names the suite file (or builtin name) when known.
    """

    heading = "Invalid"

    def __init__(self, problems: list[str] | str, source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"suite {self.source}" if self.source else "suite"
        if len(self.problems) == 1:
            return f"{self.heading} {where}: {self.problems[0]}"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"{self.heading} {where} ({len(self.problems)} problems):\n{lines}"

    def __str__(self) -> str:
        return self.args[0]


class PreflightError(SuiteError):
    """A valid suite that cannot run here (no such device, an output folder that cannot be written)."""

    heading = "Cannot run"


class RecordError(ValueError):
    """A record that does not have the run-record shape; the message names the field."""


class StoreError(RuntimeError):
    """A store-level problem (unknown tag, empty selection, missing file, ...)."""


class StoreDamagedError(StoreError):
    """A results store (or one of its records) that cannot be read; the message says how to rescue the rest."""
