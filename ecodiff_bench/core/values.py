"""Measured values that carry their unit, direction and status (never a silent zero).

A catalog metric's value is made with :meth:`Value.of` (or :meth:`Value.unavailable_of`), which takes
the unit and direction from the catalog (:mod:`ecodiff_bench.core.metrics`), so they are said once.
Torch-free on purpose: the store and the reports use the same shape.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from ecodiff_bench.core.metrics import metric

Status = Literal["measured", "estimated", "unavailable"]
STATUSES: tuple[str, ...] = ("measured", "estimated", "unavailable")


@dataclass(frozen=True)
class Value:
    """One number with its unit. ``value`` is None exactly when ``status == 'unavailable'``."""

    name: str
    value: float | None
    unit: str
    status: Status = "measured"
    higher_is_better: bool | None = None
    note: str = ""
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"Value {self.name!r}: status {self.status!r} is not one of {STATUSES}")
        if self.status == "unavailable":
            if self.value is not None:
                raise ValueError(
                    f"Value {self.name!r}: an unavailable value must be None, got {self.value!r}"
                )
            if not self.note:
                raise ValueError(f"Value {self.name!r}: say why it is unavailable (note=...)")
        elif self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            raise ValueError(
                f"Value {self.name!r}: status {self.status!r} needs a number, got {self.value!r}"
            )

    @classmethod
    def of(
        cls,
        name: str,
        value: float | None,
        status: Status = "measured",
        note: str = "",
        details: dict | None = None,
    ) -> Value:
        """A value of the catalog's metric ``name``, in the catalog's unit and direction (an unknown name
        raises with the closest known one)."""
        spec = metric(name)
        return cls(
            name, value, spec.unit, status, spec.higher_is_better, note, {} if details is None else details
        )

    @classmethod
    def unavailable_of(cls, name: str, why: str) -> Value:
        """The catalog's metric ``name`` could not be measured, and ``why``."""
        return cls.of(name, None, "unavailable", why)

    @classmethod
    def unavailable(cls, name: str, unit: str, why: str, higher_is_better: bool | None = None) -> Value:
        """An unavailable value of any name (a catalog metric's: :meth:`unavailable_of`)."""
        return cls(name, None, unit, "unavailable", higher_is_better, why)

    def with_details(self, extra: dict) -> Value:
        """This value with ``extra`` added to its details."""
        return replace(self, details={**self.details, **extra})

    @property
    def available(self) -> bool:
        return self.status != "unavailable"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Value:
        return cls(**d)

    def __str__(self) -> str:
        if not self.available:
            return f"{self.name}: unavailable ({self.note})"
        label = " (estimated)" if self.status == "estimated" else ""
        return f"{self.name}: {self.value:.6g} {self.unit}{label}"
