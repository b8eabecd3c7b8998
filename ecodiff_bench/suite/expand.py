"""Expansion of a suite into run specs, and the content hashes that make reruns skip finished work.

Per model one ``base`` spec, then one spec per (method, seed, ratio), each followed by its recovered
variant when the method has a ``recovery`` section (same plan, then distilled; ``recovery`` set). A spec's ``record_id`` is the sha256
of its canonical JSON, which covers everything that can change a measurement (model and call settings,
method, options, ratio, seed, calibration and evaluation prompts by content, performance and energy
settings, smoke) and the suite's name, so that suites sharing one store never share a record; nothing
else of the suite enters it (description, outputs, regression thresholds, the other models).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from ecodiff_bench.suite.loading import validate_suite
from ecodiff_bench.suite.methods import (
    METHOD_NAMES,
    PLAN_OPTIONS,
    needs_calibration,
    ratio_specific,
    resolved_options,
)
from ecodiff_bench.suite.methods import shrink_for_smoke as _shrink_method
from ecodiff_bench.suite.problems import StrictModel
from ecodiff_bench.suite.recovery import recovered_method
from ecodiff_bench.suite.recovery import resolved as resolved_recovery
from ecodiff_bench.suite.recovery import shrink_for_smoke as _shrink_recovery
from ecodiff_bench.suite.schema import Calibration, Energy, Evaluation, Performance, Suite
from ecodiff_bench.suite.sources import ModelSpec

SCHEMA_VERSION = 2  # of record ids; 2: the suite's name is part of a record's identity
SCORE_SCHEMA = 1  # of score keys: scores do not depend on the suite, so caches carry over


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_of(obj: Any) -> str:
    """sha256 of ``obj``'s canonical JSON (sorted keys, no whitespace)."""
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()


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
        return _spec_payload(
            self.suite,
            self.model_spec,
            self.method,
            self.ratio,
            self.seed,
            self.options,
            self.calibration,
            self.evaluation,
            self.performance,
            self.energy,
            self.smoke,
            self.model,
            self.recovery,
        )

    def short(self) -> str:
        return self.record_id[:12]


def _model_payload(m: BaseModel, key: str) -> dict[str, Any]:
    return {**m.model_dump(mode="json"), "key": key}


def _calibration_payload(cal: Calibration | None) -> Any:
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


def _spec_payload(
    suite,
    model_spec,
    method,
    ratio,
    seed,
    options,
    calibration,
    evaluation,
    performance,
    energy,
    smoke,
    key,
    recovery=None,
) -> dict[str, Any]:
    extra = {} if recovery is None else {"recovery": recovery}  # unrecovered ids stay as they were
    return {
        **extra,
        "schema": SCHEMA_VERSION,
        "suite": suite,
        "model": _model_payload(model_spec, key),
        "method": method,
        "ratio": ratio,
        "seed": seed,
        "options": options,
        "calibration": _calibration_payload(calibration),
        "evaluation": _evaluation_payload(evaluation),
        "performance": performance.model_dump(mode="json"),
        "energy": energy.model_dump(mode="json"),
        "smoke": smoke,
    }


def apply_smoke(suite: Suite) -> Suite:
    """The suite shrunk as ``--smoke`` asks: fewer samples, repetitions, epochs and calibration prompts."""
    sm = suite.smoke
    d = suite.model_dump(mode="python")
    ev = d["evaluation"]
    ev["samples"] = min(ev["samples"], sm.samples)
    lat = d["performance"]["latency"]
    lat["warmup"] = min(lat["warmup"], 1)
    lat["min_reps"] = min(lat["min_reps"], sm.reps)
    lat["max_reps"] = max(lat["min_reps"], min(lat["max_reps"], sm.reps))
    lat["min_seconds"] = 0.0
    d["energy"]["idle_baseline_s"] = min(d["energy"]["idle_baseline_s"], sm.idle_baseline_s)
    cal = d["calibration"]
    cal["count"] = min(cal["count"], sm.calibration_count)
    for meth in d["methods"]:
        _shrink_method(
            meth["name"], meth["options"], epochs=sm.epochs, steps=sm.steps, calibration=cal["count"]
        )
        if meth.get("recovery"):
            _shrink_recovery(meth["recovery"], sm.recovery_steps)
    return validate_suite(d, source=suite.source)


def expand(suite: Suite, smoke: bool = False) -> list[RunSpec]:
    """Run specs in order: per model its base, then per method, seed and ratio a pruned spec."""
    s = apply_smoke(suite) if smoke else suite
    common = {"evaluation": s.evaluation, "performance": s.performance, "energy": s.energy, "smoke": smoke}
    specs: list[RunSpec] = []
    for m in s.models:
        family = m.family
        base_id = sha256_of(_spec_payload(s.name, m, "base", 0.0, 0, {}, None, key=m.key, **common))
        specs.append(
            RunSpec(
                suite=s.name,
                model=m.key,
                family=family,
                model_spec=m,
                method="base",
                ratio=0.0,
                seed=0,
                allow_hub=s.allow_hub,
                record_id=base_id,
                **common,
            )
        )
        for meth in s.methods:
            opts = resolved_options(meth, family)
            cal = s.calibration if needs_calibration(meth.name) else None
            for seed in meth.seeds:
                score_opts = {k: v for k, v in opts.items() if k not in PLAN_OPTIONS}
                score_payload = {
                    "schema": SCORE_SCHEMA,
                    "model": _model_payload(m, m.key),
                    "method": meth.name,
                    "seed": seed,
                    "options": score_opts,
                    "calibration": _calibration_payload(cal),
                    "smoke": smoke,
                }
                for ratio in meth.ratios:
                    # scores serve every ratio, except those trained to one (EcoDiff's controlled masks)
                    per_ratio = {"ratio": ratio} if ratio_specific(meth.name, opts) else {}
                    score_key = sha256_of({**score_payload, **per_ratio})
                    payload = _spec_payload(s.name, m, meth.name, ratio, seed, opts, cal, key=m.key, **common)
                    # an option left unset (align: None) leaves the plan key as it was before the option
                    plan_opts = {k: opts[k] for k in PLAN_OPTIONS if opts[k] is not None}
                    plan_key = sha256_of({"score_key": score_key, "ratio": ratio, **plan_opts})
                    pruned = RunSpec(
                        suite=s.name,
                        model=m.key,
                        family=family,
                        model_spec=m,
                        method=meth.name,
                        ratio=ratio,
                        seed=seed,
                        options=opts,
                        calibration=cal,
                        allow_hub=s.allow_hub,
                        record_id=sha256_of(payload),
                        base_id=base_id,
                        score_key=score_key,
                        plan_key=plan_key,
                        **common,
                    )
                    specs.append(pruned)
                    if meth.recovery is not None:
                        specs.append(_recovered(pruned, resolved_recovery(meth.recovery), s.calibration))
    return specs


def _recovered(pruned: RunSpec, recovery: dict[str, Any], calibration: Calibration) -> RunSpec:
    """The recovered variant of ``pruned``: same plan, then distilled on the calibration prompts."""
    spec = pruned.model_copy(
        update={
            "recovery": recovery,
            "calibration": calibration,  # recovery calibrates even a data-free method's model
            "unrecovered_id": pruned.record_id,
            "recovery_key": sha256_of(
                {
                    "plan_key": pruned.plan_key,
                    "recovery": recovery,
                    "calibration": _calibration_payload(calibration),
                }
            ),
        }
    )
    return spec.model_copy(update={"record_id": sha256_of(spec.hash_payload())})
