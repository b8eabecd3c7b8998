"""One run spec (a measured model) and the content hashes that make reruns skip finished work.

A spec's ``record_id`` is the sha256 of its canonical JSON (:meth:`RunSpec.hash_payload`), which covers
everything that can change a measurement (model and call settings, method, options, ratio, seed,
calibration and evaluation prompts by content, performance and energy settings, smoke) and the suite's
name, so that suites sharing one store never share a record; nothing else of the suite enters it
(description, outputs, regression thresholds, the other models). A recovered variant adds its recovery
options; the unrecovered ids stay as they were.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ecodiff_bench.core.hashing import sha256_of, short
from ecodiff_bench.suite.methods import METHOD_NAMES
from ecodiff_bench.suite.problems import StrictModel
from ecodiff_bench.suite.recovery import recovered_method
from ecodiff_bench.suite.schema import Calibration, Energy, Evaluation, Performance
from ecodiff_bench.suite.sources import ModelSpec

SCHEMA_VERSION = 2  # of record ids; 2: the suite's name is part of a record's identity
SCORE_SCHEMA = 1  # of score keys: scores do not depend on the suite, so caches carry over


class RunSpec(StrictModel):
    """One measured model: the base of a model, or one (method, ratio, seed) applied to it."""

    suite: str
    model: str = Field(description="the model's key in the suite (label or name)")
    family: str
    model_spec: ModelSpec
    method: Literal[("base", *METHOD_NAMES)]
    ratio: float
    seed: int
    options: dict[str, Any] = Field(default_factory=dict, description="method options, defaults resolved")
    calibration: Calibration | None = None
    evaluation: Evaluation
    performance: Performance
    energy: Energy
    allow_hub: bool = False
    smoke: bool = False
    record_id: str = Field(description="sha256 of hash_payload(): skip the spec when this record exists")
    base_id: str | None = Field(None, description="record_id of the same model's base spec")
    score_key: str | None = Field(
        None, description="same scores/logits for every ranking and target (and ratio, unless ratio-specific)"
    )
    plan_key: str | None = Field(
        None, description="same pruned model (plan) regardless of evaluation settings"
    )
    recovery: dict[str, Any] | None = Field(None, description="recovery options of a recovered variant")
    unrecovered_id: str | None = Field(None, description="record_id of the same plan without recovery")
    recovery_key: str | None = Field(None, description="same recovered model regardless of evaluation")

    @classmethod
    def identified(cls, **fields: Any) -> RunSpec:
        """A spec made of ``fields``, its ``record_id`` the hash of its own payload."""
        draft = cls.model_construct(**fields)
        return cls(**fields, record_id=sha256_of(draft.hash_payload()))

    @property
    def is_base(self) -> bool:
        return self.method == "base"

    @property
    def is_recovered(self) -> bool:
        return self.recovery is not None

    @property
    def record_method(self) -> str:
        """The record's method: ``base``, the pruning method, or ``<method>+recovery``."""
        return recovered_method(self.method) if self.is_recovered else self.method

    def hash_payload(self) -> dict[str, Any]:
        extra = {} if self.recovery is None else {"recovery": self.recovery}  # unrecovered ids stay
        return {
            **extra,
            "schema": SCHEMA_VERSION,
            "suite": self.suite,
            "model": model_payload(self.model_spec, self.model),
            "method": self.method,
            "ratio": self.ratio,
            "seed": self.seed,
            "options": self.options,
            "calibration": calibration_payload(self.calibration),
            "evaluation": _evaluation_payload(self.evaluation),
            "performance": self.performance.model_dump(mode="json"),
            "energy": self.energy.model_dump(mode="json"),
            "smoke": self.smoke,
        }

    def short(self) -> str:
        """The record id as tables show it."""
        return short(self.record_id)


def model_payload(m: BaseModel, key: str) -> dict[str, Any]:
    return {**m.model_dump(mode="json"), "key": key}


def calibration_payload(cal: Calibration | None) -> Any:
    if cal is None:
        return None
    return {
        "count": cal.count,
        "prompts": cal.prompt_identity(cal.count),
        "seed": cal.seed,
        "seeds_per_prompt": cal.seeds_per_prompt,
    }


def _evaluation_payload(ev: Evaluation) -> dict[str, Any]:
    d = ev.model_dump(mode="json", exclude={"prompts", "prompts_file"})
    d["prompts"] = ev.prompt_identity(ev.samples)
    return d
