"""Regression thresholds: how much a metric may change from a baseline release to a candidate.

One schema for the suite's ``regression.thresholds``, ``ecodiff-bench check --thresholds FILE`` and the
gate (:mod:`reports.gate`)::

    fid:             {max_increase: 2.0}         # candidate - baseline <= 2.0
    clip_score:      {max_decrease: 0.5}         # baseline - candidate <= 0.5
    latency_image_s: {max_increase_frac: 0.05}   # (candidate - baseline) / |baseline| <= 5 %
    energy_image_j:  {max_increase_frac: 0.05, required: true}
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

from ecodiff_bench.core.metrics import METRICS
from ecodiff_bench.core.registry import suggest

BOUNDS = ("max_increase", "max_decrease", "max_increase_frac", "max_decrease_frac")

DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "fid": {"max_increase": 2.0},
    "clip_score": {"max_decrease": 0.5},
    "latency_image_s": {"max_increase_frac": 0.05},
    "energy_image_j": {"max_increase_frac": 0.05},
}


class MetricThreshold(BaseModel):
    """Allowed change of one metric from baseline to candidate; set at least one bound."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_increase: float | None = Field(None, ge=0, description="candidate - baseline may be at most this")
    max_decrease: float | None = Field(None, ge=0, description="baseline - candidate may be at most this")
    max_increase_frac: float | None = Field(
        None, ge=0, description="(candidate - baseline) / |baseline| at most"
    )
    max_decrease_frac: float | None = Field(
        None, ge=0, description="(baseline - candidate) / |baseline| at most"
    )
    required: bool = Field(
        False, description="fail (instead of 'not compared') when the metric is unavailable"
    )

    @model_validator(mode="after")
    def _one_bound(self) -> MetricThreshold:
        if all(getattr(self, b) is None for b in BOUNDS):
            raise ValueError(f"set at least one of {', '.join(BOUNDS)}")
        return self

    def bounds(self) -> dict[str, float]:
        return {b: getattr(self, b) for b in BOUNDS if getattr(self, b) is not None}


def check_metric_name(name: str) -> str:
    """``name`` if the catalog knows it; else a ``ValueError`` naming the closest metric."""
    if name not in METRICS:
        raise ValueError(
            f"unknown metric {name!r}.{suggest(name, METRICS)} Known metrics: {', '.join(METRICS)}"
        )
    return name


class Thresholds(RootModel[dict[str, MetricThreshold]]):
    """Mapping metric name -> :class:`MetricThreshold`; every name must be in the metric catalog."""

    @field_validator("root")
    @classmethod
    def _known_metrics(cls, v: dict[str, MetricThreshold]) -> dict[str, MetricThreshold]:
        for name in v:
            check_metric_name(name)
        return v

    def items(self):
        return self.root.items()

    def __len__(self) -> int:
        return len(self.root)


def default_thresholds() -> Thresholds:
    return Thresholds.model_validate(DEFAULT_THRESHOLDS)


def validate_thresholds(data: Any) -> Thresholds:
    """Validate a plain mapping (e.g. parsed YAML). Raises ``ValueError`` whose message names each bad path."""
    if isinstance(data, Thresholds):
        return data
    try:
        return Thresholds.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"] if p != "root") or "thresholds"
            lines.append(f"thresholds.{path}: {err['msg']} (got {err.get('input')!r})")
        raise ValueError("invalid gate thresholds:\n  " + "\n  ".join(lines)) from None
