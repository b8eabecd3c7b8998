"""`ecodiff-bench run` / `prune`: measure the base, prune per (method, ratio), save, measure, store, report.

Resumable by construction: every measured model is one record written atomically to the store, keyed by
its spec's content hash, and skipped on a rerun; expensive shared work (the unpruned model's evaluation
images, method scores such as EcoDiff's mask logits, mask-training checkpoints) is cached on disk under
``<outputs.dir>/cache``. A spec that fails becomes a failed record with its reason; the others go on.
"""

from __future__ import annotations

import copy
import json
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import groupby
from pathlib import Path

import click
import torch
from safetensors.torch import load_file, save_file

import pruning

from . import models
from .evaluate import Evaluator, write_json_atomic
from .measure import energy
from .measure.memory import disk_size
from .provenance import collect_provenance
from .store import Store
from .suite import PLAN_OPTIONS, RunSpec, Suite, expand
from .values import Value


@dataclass
class Context:
    suite: Suite
    smoke: bool
    out: Path
    store: Store
    run_id: str
    provenance: dict
    monitor: energy.EnergyMonitor
    save_models: bool = True

    @property
    def cache(self) -> Path:
        return self.out / "cache"


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _device(spec: RunSpec) -> torch.device:
    wanted = spec.model_spec.device
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


def _dtype(spec: RunSpec, device: torch.device) -> torch.dtype:
    if spec.model_spec.dtype:
        return getattr(torch, spec.model_spec.dtype)
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _source(spec: RunSpec) -> str | None:
    ms = spec.model_spec
    if ms.source == "zoo":
        return None
    if ms.source == "hub":
        return ms.hub_id
    return ms.source  # "random-init" or a local path


def settings_for(spec: RunSpec) -> dict:
    """Pipeline call settings: the model's defaults, then the suite's overrides."""
    settings = models.call_kwargs(spec.model_spec.name)
    settings.update(models.normalize_settings(spec.model_spec.call_overrides()))
    return settings


def sampling_for(settings: dict) -> dict:
    keys = {"num_inference_steps": "steps", "guidance_scale": "guidance", "height": "height", "width": "width",
            "max_sequence_length": "max_sequence_length"}
    return {short: settings[k] for k, short in keys.items() if k in settings}


def _quiet_libraries() -> None:
    """Our own progress bars say what is happening; silence the per-file bars of the loaders."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()


def _open(suite: Suite, smoke: bool, out: Path | None) -> Context:
    _quiet_libraries()
    out = Path(out or suite.outputs.dir_path)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(suite.outputs.store_path if out == suite.outputs.dir_path else out / "store.sqlite")
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    provenance = collect_provenance({"suite_file": suite._source, "smoke": smoke})
    monitor = energy.EnergyMonitor()
    if suite.energy.idle_baseline_s > 0:
        _say(f"measuring idle power for {suite.energy.idle_baseline_s:g} s ...")
        monitor.measure_idle(suite.energy.idle_baseline_s)
    return Context(suite, smoke, out, store, run_id, provenance, monitor)


def run_suite(suite: Suite, *, smoke: bool = False, out: Path | None = None) -> int:
    """Run every pending spec of ``suite``; returns the process exit code (1 if any spec failed)."""
    ctx = _open(suite, smoke, out)
    specs = expand(suite, smoke=smoke)
    failed = 0
    try:
        for model_key, group in groupby(specs, key=lambda s: s.model):
            group = list(group)
            pending = [s for s in group if not ctx.store.has_ok(s.record_id)]
            if not pending:
                _say(f"[{model_key}] all {len(group)} records already measured; skipping")
                continue
            failed += _run_model(ctx, group, pending)
    finally:
        ctx.monitor.close()
    _report(ctx)
    done = len(specs) - failed
    _say(f"{done}/{len(specs)} records ok; store: {ctx.store.path}; outputs: {ctx.out}")
    return 1 if failed else 0


def prune_suite(suite: Suite, *, smoke: bool = False, out: Path | None = None) -> int:
    """Compute plans and write pruned models for every (model, method, ratio) without measuring them."""
    _quiet_libraries()
    out = Path(out or suite.outputs.dir_path)
    monitor = energy.EnergyMonitor()
    try:
        for model_key, group in groupby(expand(suite, smoke=smoke), key=lambda s: s.model):
            group = list(group)
            pipe, settings = _load(group[0])
            scorer = Scorer(out / "cache", monitor)
            for spec in group[1:]:
                plan = scorer.plan(spec, pipe, settings)
                target = _model_dir(out, spec)
                pruned = pruning.apply(copy.deepcopy(pipe), plan)
                pruning.save(pruned, plan, target, copy_components=True)
                _say(f"[{model_key}] {spec.method} {spec.ratio:.0%}: {plan.achieved()['params_removed']:,} params "
                     f"removed -> {target}")
    finally:
        monitor.close()
    return 0


# -- one model ---------------------------------------------------------------------------------------------------


def _load(spec: RunSpec):
    device = _device(spec)
    pipe = models.load_pipeline(spec.model_spec.name, _source(spec), device=device, dtype=_dtype(spec, device),
                                offline=not spec.allow_hub)
    pipe.set_progress_bar_config(disable=True)
    return pipe, settings_for(spec)


def _run_model(ctx: Context, group: list[RunSpec], pending: list[RunSpec]) -> int:
    base_spec = group[0]
    assert base_spec.is_base, "expand() puts each model's base spec first"
    _say(f"[{base_spec.model}] loading ({len(pending)} of {len(group)} records to measure)")
    try:
        pipe, settings = _load(base_spec)
    except Exception as err:  # a model that cannot load fails each of its pending records, with the reason
        for spec in pending:
            _put_failed(ctx, spec, err)
        return len(pending)
    device = _device(base_spec)
    evaluator = Evaluator(base_spec, settings, device, ctx.monitor, ctx.cache)
    base_images = _base_images(ctx, base_spec, evaluator, pipe)
    failed = 0
    scorer = Scorer(ctx.cache, ctx.monitor)
    for spec in pending:
        label = "base" if spec.is_base else f"{spec.method} {spec.ratio:.0%}"
        _say(f"[{spec.model}] {label}: measuring")
        t0 = time.perf_counter()
        try:
            ctx.store.put(_measure_spec(ctx, spec, pipe, settings, evaluator, base_images, scorer))
        except Exception as err:  # one failed variant must not lose the others: record why, go on
            _put_failed(ctx, spec, err)
            failed += 1
            continue
        _say(f"[{spec.model}] {label}: done in {time.perf_counter() - t0:.1f} s")
    return failed


def _base_images(ctx: Context, spec: RunSpec, evaluator: Evaluator, pipe) -> torch.Tensor:
    """The unpruned model's evaluation images (the SSIM/PSNR reference), cached on disk."""
    path = ctx.cache / "base-images" / f"{spec.record_id[:16]}.safetensors"
    if path.exists():
        return load_file(path)["images"]
    images = evaluator.eval_images(pipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"images": images.contiguous()}, tmp)
    tmp.replace(path)
    return images


def _model_dir(out: Path, spec: RunSpec) -> Path:
    return out / "models" / f"{spec.model}-{spec.method}-{round(spec.ratio * 100)}-{spec.record_id[:8]}"


class Scorer:
    """Method scores per ``score_key``, shared by every ratio: memory, then the disk cache, then computed.

    Computing them is the pruning's own cost; it is timed and metered on ``monitor``.
    """

    def __init__(self, cache: Path, monitor: energy.EnergyMonitor):
        self.cache, self.monitor, self.memo = cache, monitor, {}

    def scores(self, spec: RunSpec, pipe, settings: dict) -> pruning.Scores:
        if spec.score_key not in self.memo:
            folder = self.cache / "scores" / spec.score_key[:24]
            if (folder / "scores.safetensors").exists():
                info = json.loads((folder / "info.json").read_text())
                self.memo[spec.score_key] = pruning.Scores(spec.method, load_file(folder / "scores.safetensors"), info)
            else:
                self.memo[spec.score_key] = self._compute(spec, pipe, settings, folder)
        return self.memo[spec.score_key]

    def _compute(self, spec: RunSpec, pipe, settings: dict, folder: Path) -> pruning.Scores:
        options = {k: v for k, v in spec.options.items() if k not in PLAN_OPTIONS}
        prompts = None
        if spec.calibration:
            count = min(spec.calibration.count, spec.options.get("prompts") or spec.calibration.count)
            prompts = spec.calibration.load_prompts()[:count]
        t0 = time.perf_counter()
        self.monitor.begin_window("scoring")
        try:
            result = pruning.score(pipe, spec.method, prompts, sampling=sampling_for(settings),
                                   options=_method_options(spec.method, options, spec.seed),
                                   checkpoint_dir=folder / "checkpoint" if spec.method == "ecodiff" else None)
        except BaseException:
            self.monitor.cancel_window("scoring")
            raise
        window = self.monitor.end_window("scoring")
        result.info["pruning_time_s"] = time.perf_counter() - t0
        result.info["pruning_energy"] = window.total_value("pruning_energy_j").to_dict()
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.float().contiguous() for k, v in result.values.items()}, folder / "scores.safetensors")
        write_json_atomic(folder / "info.json", result.info)
        return result

    def plan(self, spec: RunSpec, pipe, settings: dict) -> pruning.PruningPlan:
        return pruning.plan(pipe, self.scores(spec, pipe, settings), spec.ratio,
                            target=spec.options.get("target", "params"),
                            ranking=spec.options.get("ranking", "global"), align=spec.options.get("align"))


def _method_options(method: str, options: dict, seed: int) -> dict:
    """Suite options -> keyword arguments of the method's config (shared options are the plan's)."""
    if method == "magnitude":
        return {}
    options = {**options, "seed": seed}
    options.pop("prompts", None)  # ecodiff: how many calibration prompts, applied by the caller
    return options


def _measure_spec(ctx, spec, pipe, settings, evaluator, base_images, scorer: Scorer) -> dict:
    folder = ctx.out / "artifacts" / spec.record_id[:16]
    if spec.is_base:
        m = evaluator.measure(pipe, folder, base_images=None)
        return _record(ctx, spec, {**m.metrics, **_base_values(pipe)}, m.artifacts, settings)
    plan = scorer.plan(spec, pipe, settings)
    scores = scorer.scores(spec, pipe, settings)
    pruned = pruning.apply(copy.deepcopy(pipe), plan)
    target = _model_dir(ctx.out, spec)
    pruning.save(pruned, plan, target, copy_components=True)
    m = evaluator.measure(pruned, folder, base_pipe=pipe, base_images=base_images)
    m.artifacts["plan"] = str(target / "plan.json")
    m.artifacts["model_dir"] = str(target)
    if scores.info.get("curve"):
        m.artifacts["training_curve"] = write_json_atomic(folder / "training_curve.json", scores.info["curve"])
    metrics = {**m.metrics, **_plan_values(plan), **_cost_values(scores)}
    metrics["disk_bytes"] = disk_size(target / ("unet" if hasattr(pipe, "unet") else "transformer"))
    return _record(ctx, spec, metrics, m.artifacts, settings, plan=plan)


def _base_values(pipe) -> dict[str, Value]:
    attr = "unet" if hasattr(pipe, "unet") else "transformer"
    folder = Path(str(pipe.config.get("_name_or_path", ""))) / attr
    disk = disk_size(folder) if folder.is_dir() else Value.unavailable(
        "disk_bytes", "B", "the unpruned weights are not in a local directory (random-init or hub cache)", False)
    zero = {"params_removed_frac": Value("params_removed_frac", 0.0, "fraction", "measured", None, "unpruned"),
            "units_removed_frac": Value("units_removed_frac", 0.0, "fraction", "measured", None, "unpruned")}
    return {"disk_bytes": disk, **zero}


def _plan_values(plan: pruning.PruningPlan) -> dict[str, Value]:
    a = plan.achieved()
    note = f"target {plan.ratio:.0%} of prunable parameters ({plan.target}, {plan.ranking} ranking)"
    if plan.info.get("align"):
        note += f"; FFN widths aligned to multiples of {plan.info['align']['multiple']}"
    return {
        "params_removed_frac": Value("params_removed_frac", a["params_removed_frac_of_prunable"], "fraction",
                                     "measured", None, note, {"params_removed": a["params_removed"],
                                                              "params_prunable": a["params_prunable"]}),
        "units_removed_frac": Value("units_removed_frac", a["units_removed_frac"], "fraction", "measured", None),
    }


def _cost_values(scores: pruning.Scores) -> dict[str, Value]:
    energy_value = Value.from_dict({**scores.info["pruning_energy"], "name": "pruning_energy_j"})
    time_value = Value("pruning_time_s", scores.info["pruning_time_s"], "s", "measured", False,
                       note="scoring time, shared by every ratio of this method")
    return {"pruning_energy_j": energy_value, "pruning_time_s": time_value}


def _record(ctx: Context, spec: RunSpec, metrics: dict, artifacts: dict, settings: dict, *, plan=None,
            status: str = "ok", error: str | None = None) -> dict:
    return {
        "record_id": spec.record_id,
        "run_id": ctx.run_id,
        "suite": ctx.suite.name,
        "suite_hash": ctx.suite.content_hash(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": spec.model,
        "family": spec.family,
        "method": spec.method,
        "ratio": spec.ratio,
        "seed": spec.seed,
        "smoke": spec.smoke,
        "status": status,
        "error": error,
        "metrics": {k: v.to_dict() for k, v in metrics.items()},
        "provenance": {**ctx.provenance, "seeds": {"evaluation": spec.evaluation.seed, "method": spec.seed}},
        "settings": {**settings, "samples": spec.evaluation.samples, "batch_size": spec.performance.batch_size,
                     "device": str(_device(spec)), "dtype": str(_dtype(spec, _device(spec))),
                     "options": spec.options, "plan_achieved": plan.achieved() if plan else None},
        "artifacts": artifacts,
    }


def _put_failed(ctx: Context, spec: RunSpec, err: BaseException) -> None:
    reason = f"{type(err).__name__}: {err}"
    _say(f"[{spec.model}] {spec.method} {spec.ratio:.0%} FAILED: {reason}")
    record = _record(ctx, spec, {}, {}, {}, status="failed", error=reason)
    record["provenance"]["traceback"] = traceback.format_exception(err)[-6:]
    ctx.store.put(record)


def _report(ctx: Context) -> None:
    formats = ctx.suite.outputs.report
    if not formats:
        return
    import reports

    try:
        paths = reports.render(ctx.store.path, ctx.out / "report", suite=ctx.suite.name, include_smoke=ctx.smoke)
    except ValueError as err:
        _say(f"report not written: {err}")
        return
    for fmt, path in paths.items():
        _say(f"report ({fmt}): {path}")
