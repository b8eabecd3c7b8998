"""Building run records: the values a plan and its cost contribute, and the record itself."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pruning
from ecodiff_bench.core.record import RunRecord, utc_now
from ecodiff_bench.core.values import Value
from ecodiff_bench.measure.memory import disk_size
from ecodiff_bench.run.attempts import OWN_RATIO
from ecodiff_bench.suite import RunSpec


def base_values(pipe, denoiser_attr: str) -> dict[str, Value]:
    """What the unpruned model contributes besides measurements: its size on disk, nothing removed."""
    folder = Path(str(pipe.config.get("_name_or_path", ""))) / denoiser_attr
    if folder.is_dir():
        disk = disk_size(folder)
    else:
        why = "the unpruned weights are not in a local directory (random-init or hub cache)"
        disk = Value.unavailable("disk_bytes", "B", why, False)
    zero = {
        n: Value(n, 0.0, "fraction", "measured", None, "unpruned")
        for n in ("params_removed_frac", "units_removed_frac")
    }
    return {"disk_bytes": disk, **zero}


def plan_values(plan: pruning.PruningPlan) -> dict[str, Value]:
    a = plan.achieved()
    note = f"target {plan.ratio:.0%} of prunable parameters ({plan.target}, {plan.ranking} ranking)"
    if plan.info.get("align"):
        note += f"; FFN widths aligned to multiples of {plan.info['align']['multiple']}"
    removed = {"params_removed": a["params_removed"], "params_prunable": a["params_prunable"]}
    return {
        "params_removed_frac": Value(
            "params_removed_frac",
            a["params_removed_frac_of_prunable"],
            "fraction",
            "measured",
            None,
            note,
            removed,
        ),
        "units_removed_frac": Value(
            "units_removed_frac", a["units_removed_frac"], "fraction", "measured", None
        ),
    }


def cost_values(scores: pruning.Scores) -> dict[str, Value]:
    """What computing the scores cost: every part of a resumed computation summed (run/attempts.py)."""
    energy_value = Value.from_dict({**scores.info["pruning_energy"], "name": "pruning_energy_j"})
    if "pruning_time" in scores.info:
        time_value = Value.from_dict({**scores.info["pruning_time"], "name": "pruning_time_s"})
    else:  # scores cached before the parts were counted
        shared = OWN_RATIO if scores.info.get("target") else "shared by every ratio of this method"
        note = f"scoring time, {shared}"
        time_value = Value("pruning_time_s", scores.info["pruning_time_s"], "s", "measured", False, note)
    return {"pruning_energy_j": energy_value, "pruning_time_s": time_value}


def make_record(
    spec: RunSpec,
    *,
    suite_hash: str,
    run_id: str,
    provenance: dict,
    metrics: dict[str, Value],
    artifacts: dict[str, str],
    settings: dict[str, Any],
    run_settings: dict[str, Any],
    plan: pruning.PruningPlan | None = None,
    error: BaseException | None = None,
) -> RunRecord:
    """The record of one spec: measured (``error`` None) or failed with ``error`` as its reason."""
    prov = {**provenance, "seeds": {"evaluation": spec.evaluation.seed, "method": spec.seed}}
    if error is not None:
        prov["traceback"] = traceback.format_exception(error)[-6:]
    return RunRecord(
        record_id=spec.record_id,
        run_id=run_id,
        suite=spec.suite,
        suite_hash=suite_hash,
        created_at=utc_now(),
        model=spec.model,
        family=spec.family,
        method=spec.record_method,
        ratio=spec.ratio,
        seed=spec.seed,
        smoke=spec.smoke,
        status="ok" if error is None else "failed",
        error=None if error is None else f"{type(error).__name__}: {error}",
        metrics=metrics,
        provenance=prov,
        settings={
            **settings,
            **run_settings,
            "options": spec.options,
            **({"recovery": spec.recovery} if spec.is_recovered else {}),
            "plan_achieved": plan.achieved() if plan else None,
            "mask_training": plan.info.get("ecodiff") if plan else None,
        },
        artifacts=artifacts,
    )
