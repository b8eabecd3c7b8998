"""Regression thresholds: how much a metric may change from a baseline release to a candidate.

One schema for the suite's ``regression.thresholds``, ``ecodiff-bench check --thresholds FILE`` and the
gate (:mod:`reports.gate`)::

    fid:             {max_increase: 2.0}         # candidate - baseline <= 2.0
    clip_score:      {max_decrease: 0.5}         # baseline - candidate <= 0.5
    latency_image_s: {max_increase_frac: 0.05}   # (candidate - baseline) / |baseline| <= 5 %
    energy_image_j:  {max_increase_frac: 0.05, required: true}
    fid:             {max_increase: 2.0, window: [23.0, 24.0]}   # and the candidate within [23, 24]

A relative bound limits the change from the baseline release; a ``window`` is absolute, as MLPerf's
accuracy window: every candidate configuration's value of the metric must lie inside it (both ends
included), whatever the baseline says.
"""

from __future__ import annotations

import math
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
    window: tuple[float, float] | None = Field(
        None, description="[low, high]: the candidate's value must lie inside (absolute, both included)"
    )
    required: bool = Field(
        False, description="fail (instead of 'not compared') when the metric is unavailable"
    )

    @field_validator("window", mode="before")
    @classmethod
    def _window_shape(cls, v: Any) -> Any:
        numbers = isinstance(v, (list, tuple)) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
        )
        if v is not None and not (numbers and len(v) == 2):
            raise ValueError("a window is [low, high], two numbers (e.g. [23.0, 24.0])")
        return v

    @field_validator("window")
    @classmethod
    def _ordered_window(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None:
            low, high = v
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError("window ends must be finite numbers")
            if low > high:
                raise ValueError("a window is [low, high] with low <= high")
        return v

    @model_validator(mode="after")
    def _one_bound(self) -> MetricThreshold:
        if all(getattr(self, b) is None for b in BOUNDS) and self.window is None:
            raise ValueError(f"set at least one of {', '.join(BOUNDS)} or window")
        return self

    def bounds(self) -> dict[str, float]:
        """The relative bounds (on the change from the baseline) that are set; the window apart."""
        return {b: getattr(self, b) for b in BOUNDS if getattr(self, b) is not None}

    def allowed_range(self, baseline: float) -> tuple[float, float]:
        """The values a candidate may take without breaking a relative bound, given the baseline's value.

        Only the bounds that are set limit it; the side without one ends at the baseline itself (the band
        between the baseline and the limit, as the release history draws it). Intervals (which the gate
        also uses) are not part of it.
        """
        up = [baseline]
        down = [baseline]
        if self.max_increase is not None:
            up.append(baseline + self.max_increase)
        if self.max_increase_frac is not None:
            up.append(baseline + self.max_increase_frac * abs(baseline))
        if self.max_decrease is not None:
            down.append(baseline - self.max_decrease)
        if self.max_decrease_frac is not None:
            down.append(baseline - self.max_decrease_frac * abs(baseline))
        # several bounds on one side: the tightest one that moves away from the baseline limits it
        high = min((u for u in up if u != baseline), default=baseline)
        low = max((d for d in down if d != baseline), default=baseline)
        return low, high


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
