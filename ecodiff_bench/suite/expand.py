"""Expansion of a suite into a :class:`~ecodiff_bench.suite.plan.RunPlan`: per model one ``base`` spec,
then one spec per (method, seed, ratio), each followed by its recovered variant when the method has a
``recovery`` section (same plan, then distilled; ``recovery`` set). Besides the record id of each spec
(:mod:`.spec`), the keys of the work specs share: a method's scores (``score_key``), the pruned model
(``plan_key``) and the recovered one (``recovery_key``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ecodiff_bench.core.hashing import sha256_of
from ecodiff_bench.suite.loading import validate_suite
from ecodiff_bench.suite.methods import (
    PLAN_OPTIONS,
    MethodEntry,
    needs_calibration,
    ratio_specific,
    resolved_options,
)
from ecodiff_bench.suite.methods import shrink_for_smoke as _shrink_method
from ecodiff_bench.suite.plan import RunLayout, RunPlan
from ecodiff_bench.suite.recovery import resolved as resolved_recovery
from ecodiff_bench.suite.recovery import shrink_for_smoke as _shrink_recovery
from ecodiff_bench.suite.schema import Calibration, Suite
from ecodiff_bench.suite.sources import ModelSpec
from ecodiff_bench.suite.spec import SCORE_SCHEMA, RunSpec, calibration_payload, model_payload


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


def expand(suite: Suite, smoke: bool = False, out: str | os.PathLike | None = None) -> RunPlan:
    """The run plan of ``suite`` (shrunk once, here, for ``smoke``); ``out`` replaces ``outputs.dir``."""
    s = apply_smoke(suite) if smoke else suite
    thresholds = {k: v.model_dump(exclude_none=True) for k, v in suite.regression.thresholds.items()}
    return RunPlan(
        suite=suite.name,
        source=suite.source,
        suite_hash=suite.content_hash(),
        smoke=smoke,
        specs=tuple(spec for m in s.models for spec in _model_specs(s, m, smoke)),
        layout=RunLayout.of(suite.outputs, out),
        idle_baseline_s=s.energy.idle_baseline_s,
        provenance={"suite_file": suite.source, "smoke": smoke, "thresholds": thresholds},
        report_formats=tuple(suite.outputs.report),
        positions={m.key: suite.position(m.key) for m in suite.models},
    )


def _model_specs(s: Suite, m: ModelSpec, smoke: bool) -> Iterator[RunSpec]:
    """One model's specs: its base, then per method, seed and ratio a pruned spec (and its recovery)."""
    common = {
        "suite": s.name,
        "model": m.key,
        "family": m.family,
        "model_spec": m,
        "evaluation": s.evaluation,
        "performance": s.performance,
        "energy": s.energy,
        "allow_hub": s.allow_hub,
        "smoke": smoke,
    }
    base = RunSpec.identified(**common, method="base", ratio=0.0, seed=0)
    yield base
    for meth in s.methods:
        opts = resolved_options(meth, m.family)
        cal = s.calibration if needs_calibration(meth.name) else None
        for seed in meth.seeds:
            for ratio in meth.ratios:
                score_key = _score_key(m, meth, seed, ratio, opts, cal, smoke)
                pruned = RunSpec.identified(
                    **common,
                    method=meth.name,
                    ratio=ratio,
                    seed=seed,
                    options=opts,
                    calibration=cal,
                    base_id=base.record_id,
                    score_key=score_key,
                    plan_key=_plan_key(score_key, ratio, opts),
                )
                yield pruned
                if meth.recovery is not None:
                    yield _recovered(pruned, resolved_recovery(meth.recovery), s.calibration)


def _score_key(m: ModelSpec, meth: MethodEntry, seed: int, ratio: float, opts: dict, cal, smoke: bool) -> str:
    """Same scores for every ratio, ranking, target and alignment; except scores trained to one ratio
    (EcoDiff's controlled masks), whose key is their ratio's own."""
    payload = {
        "schema": SCORE_SCHEMA,
        "model": model_payload(m, m.key),
        "method": meth.name,
        "seed": seed,
        "options": {k: v for k, v in opts.items() if k not in PLAN_OPTIONS},
        "calibration": calibration_payload(cal),
        "smoke": smoke,
    }
    if ratio_specific(meth.name, opts):
        payload["ratio"] = ratio
    return sha256_of(payload)


def _plan_key(score_key: str, ratio: float, opts: dict[str, Any]) -> str:
    """The same pruned model: scores, ratio and the plan's options (an option left unset, such as
    ``align: None``, leaves the key as it was before the option existed)."""
    plan_opts = {k: opts[k] for k in PLAN_OPTIONS if opts[k] is not None}
    return sha256_of({"score_key": score_key, "ratio": ratio, **plan_opts})


def _recovered(pruned: RunSpec, recovery: dict[str, Any], calibration: Calibration) -> RunSpec:
    """The recovered variant of ``pruned``: same plan, then distilled on the calibration prompts."""
    fields = {k: v for k, v in pruned if k != "record_id"}
    key = {"plan_key": pruned.plan_key, "recovery": recovery, "calibration": calibration_payload(calibration)}
    return RunSpec.identified(
        **{
            **fields,
            "recovery": recovery,
            "calibration": calibration,  # recovery calibrates even a data-free method's model
            "unrecovered_id": pruned.record_id,
            "recovery_key": sha256_of(key),
        }
    )
