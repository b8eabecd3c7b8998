"""The run record: one measured model (a base, or one method at one ratio and seed), as stored and reported.

This docstring is the contract between the runner (which writes records), the store and the reports::

    record_id    content hash of the run spec, suite name included (ecodiff_bench.suite.expand); a rerun
                 skips existing ok ones
    run_id       one invocation of `ecodiff-bench run` (UTC time + random suffix)
    suite        the suite's name;  suite_hash: sha256 of the whole validated suite
    created_at   ISO-8601 UTC time the record was made
    model        the suite's model key (label or name), e.g. "digits-sdxl"
    family       "sdxl" | "sdxl-turbo" | "flux-dev" | "flux-schnell"
    method       "base" for the unpruned model, else a pruning method ("ecodiff", "taylor", ...), with
                 "+recovery" when the pruned model was then distilled toward its base (suite section
                 methods[].recovery; a separate record beside the unrecovered one, same ratio and seed)
    ratio        target fraction of prunable parameters (or units) removed; 0.0 for the base
    seed         the method's seed (the evaluation seeds are in provenance.seeds)
    smoke        a run shrunk by --smoke; never compared with full runs
    status       "ok" | "failed";  error: why it failed (required when failed)
    metrics      {name: Value}: every name is in the metric catalog (ecodiff_bench.core.metrics)
    provenance   git commit, package versions, CPU/GPU, driver, power limit, seeds, suite file, ...
    settings     the model's call settings (steps, guidance, height, width[, max_sequence_length]),
                 samples, batch_size, device, dtype, method options, plan_achieved, mask_training
                 (EcoDiff: target, final expected sparsity, agreement, steps, time; else None); a
                 recovered variant: "recovery" (its resolved options)
    artifacts    {kind: path}: "samples" (PNG grid), "power_timeline" (JSON [[t_s, watts], ...]),
                 "plan" (plan.json), "training_curve" (JSON list of per-step objects: "step" and some
                 of "loss", "mse"/"nmse", "expected_sparsity" (expected removed share), "target",
                 "lambda1", "lambda2" (the controller's multipliers), "sparsity" (older runs: expected
                 share of open gates)), "recovery_curve" (JSON list of per-step objects: "step", "loss",
                 "timesteps" and/or "final_latent", "grad_norm"), "model_dir" (the saved pruned
                 pipeline). Relative paths are relative to the store's folder (:func:`artifact_path`),
                 so a report renders from any working directory

Records travel as the JSON form of :class:`RunRecord` (``to_dict``); NaN and infinities are refused
anywhere in a record (JSON has none: a value that could not be measured is ``unavailable``, with a note).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ecodiff_bench.core.errors import RecordError
from ecodiff_bench.core.values import Value

RECORD_STATUSES: tuple[str, ...] = ("ok", "failed")
#: A model's call settings, spelled the same everywhere: suite fields, family defaults, pruning's
#: ``sampling``, ``settings`` in records. Only the model family turns them into pipeline arguments.
CALL_SETTINGS: tuple[str, ...] = ("steps", "guidance", "height", "width", "max_sequence_length")
#: Top-level fields that are plain columns in exports and in the store's index, in this order.
RECORD_COLUMNS: tuple[str, ...] = (
    "record_id",
    "run_id",
    "suite",
    "suite_hash",
    "created_at",
    "model",
    "family",
    "method",
    "ratio",
    "seed",
    "smoke",
    "status",
    "error",
)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunRecord(BaseModel):
    """One measured model; see the module docstring for what each field holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    suite: str = Field(min_length=1)
    suite_hash: str = ""
    created_at: str = Field(default_factory=utc_now)
    model: str = Field(min_length=1)
    family: str = ""
    method: str = Field(min_length=1)
    ratio: float = 0.0
    seed: int | None = None
    smoke: bool = Field(strict=True)
    status: Literal["ok", "failed"]
    error: str | None = None
    metrics: dict[str, Value]
    provenance: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, str | None] = Field(default_factory=dict)

    @field_validator("artifacts", mode="before")
    @classmethod
    def _paths_as_text(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: p if p is None or isinstance(p, str) else str(p) for k, p in v.items()}
        return v

    @field_validator("metrics")
    @classmethod
    def _keys_are_names(cls, v: dict[str, Value]) -> dict[str, Value]:
        for key, value in v.items():
            if value.name != key:
                raise ValueError(
                    f"metrics.{key} holds a value named {value.name!r}; the key must equal the name"
                )
        return v

    @model_validator(mode="after")
    def _failure_has_a_reason(self) -> RunRecord:
        if self.status == "failed" and not self.error:
            raise ValueError(f"record {self.record_id!r} has status 'failed' but no error; say why it failed")
        return self

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def is_base(self) -> bool:
        return self.method == "base"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form that the store keeps and the reports read."""
        return self.model_dump(mode="json")

    @classmethod
    def parse(cls, data: RunRecord | dict) -> RunRecord:
        """Validate a record (or its JSON form); raises :class:`RecordError` naming the first bad field."""
        if isinstance(data, RunRecord):
            data = data.to_dict()  # checked again: a record built in code may hold NaN
        if not isinstance(data, dict):
            raise RecordError(f"a run record must be a dict, got {type(data).__name__}")
        data = {**data, "metrics": _metric_dicts(data.get("metrics"))} if "metrics" in data else data
        _check_finite(data, "record")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RecordError(_describe(exc)) from None


def artifact_path(record: dict, kind: str, store_path: str | Path) -> Path | None:
    """Where a record's artifact lies: an absolute path as stored, a relative one under the store's folder."""
    raw = (record.get("artifacts") or {}).get(kind)
    if not raw:
        return None
    path = Path(raw)
    return path if path.is_absolute() else Path(store_path).resolve().parent / path


def normalize_record(record: RunRecord | dict) -> dict[str, Any]:
    """A validated record in its JSON form, optional fields filled in. Raises :class:`RecordError`."""
    return RunRecord.parse(record).to_dict()


def _metric_dicts(metrics: Any) -> Any:
    """Accept :class:`Value` objects as well as their dicts."""
    if isinstance(metrics, dict):
        return {k: v.to_dict() if isinstance(v, Value) else v for k, v in metrics.items()}
    return metrics


def _check_finite(obj: Any, path: str) -> None:
    """JSON has no NaN/Infinity; refuse them with the path instead of writing invalid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise RecordError(f"{path} is {obj!r}; store a number, or mark the value unavailable with a note")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(v, f"{path}[{i}]")


def _describe(exc: ValidationError) -> str:
    """The problems of a record, one per line, each naming its field (``record.status must be ...``)."""
    errors = exc.errors(include_url=False)
    missing = [str(e["loc"][0]) for e in errors if e["type"] == "missing" and len(e["loc"]) == 1]
    required = [n for n, f in RunRecord.model_fields.items() if f.is_required()]
    lines = (
        [f"run record is missing {', '.join(missing)} (required: {', '.join(required)})"] if missing else []
    )
    for e in errors:
        if e["type"] == "missing" and len(e["loc"]) == 1:
            continue
        where = ".".join(["record", *(str(p) for p in e["loc"])])
        got = e.get("input")
        if e["type"] == "literal_error":
            what = f"must be one of {e['ctx']['expected']}, got {got!r}"
        elif e["type"] == "bool_type":
            what = f"must be true or false, got {got!r}"
        elif e["type"] in ("string_too_short", "string_type"):
            what = f"must be a non-empty string, got {got!r}"
        elif e["type"] == "value_error":
            what = f": {e['ctx']['error']}"
        else:
            what = f": {e['msg']} (got {got!r})"
        lines.append(f"{where} {what}" if not what.startswith(":") else f"{where}{what}")
    return "; ".join(lines)
