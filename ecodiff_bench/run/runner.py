"""`ecodiff-bench run` / `prune`: measure the base, prune per (method, ratio), save, measure, store, report.

It reads a :class:`~ecodiff_bench.suite.RunPlan` (the specs, where everything goes, the idle baseline),
never the suite. Resumable by construction: every measured model is one record written atomically to
the store, keyed by its spec's content hash, and skipped on a rerun; expensive shared work (the unpruned
model's evaluation images, method scores such as EcoDiff's mask logits, mask-training checkpoints) is
cached on disk under the layout's ``cache``. A spec that fails becomes a failed record with its reason;
the others go on.

Launched on several processes (torchrun, accelerate launch), every rank runs the same loop on its own
device: rank 0 alone writes (store, models, caches, report) and says what is pending; scoring and
evaluation are sharded (:mod:`.distributed`); after each spec the ranks agree on its outcome.
"""

from __future__ import annotations

import copy
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
import torch
from safetensors.torch import load_file, save_file

import pruning
from ecodiff_bench import models
from ecodiff_bench.core.errors import PreflightError, StoreError
from ecodiff_bench.core.files import atomic_path, write_json_atomic
from ecodiff_bench.core.store import Store
from ecodiff_bench.measure import carbon, energy
from ecodiff_bench.measure.memory import disk_size
from ecodiff_bench.run import distributed
from ecodiff_bench.run.distributed import World
from ecodiff_bench.run.evaluate import Evaluator
from ecodiff_bench.run.model_card import write_measured_card
from ecodiff_bench.run.preflight import check_devices, preflight
from ecodiff_bench.run.provenance import collect_provenance
from ecodiff_bench.run.records import base_values, cost_values, make_record, plan_values
from ecodiff_bench.run.recovery import Recoverer
from ecodiff_bench.run.scorer import Scorer
from ecodiff_bench.suite import RunLayout, RunPlan, RunSpec


@dataclass
class Context:
    plan: RunPlan
    store: Store | None  # None on ranks other than 0: they never touch it
    run_id: str
    provenance: dict
    monitor: energy.EnergyMonitor
    world: World = field(default_factory=World)

    @property
    def layout(self) -> RunLayout:
        return self.plan.layout


def _say(msg: str) -> None:
    if distributed.world().writer:  # one voice when several processes run the suite
        click.echo(msg, err=True)


def _device(spec: RunSpec) -> torch.device:
    wanted = spec.model_spec.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return distributed.world().device(torch.device(wanted))  # each rank its own GPU


def _dtype(spec: RunSpec, device: torch.device) -> torch.dtype:
    if spec.model_spec.dtype:
        return getattr(torch, spec.model_spec.dtype)
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def settings_for(spec: RunSpec) -> dict:
    """Call settings (steps, guidance, ...): the model's defaults, then the suite's overrides."""
    return {**models.call_settings(spec.model_spec.name), **spec.model_spec.call_overrides()}


def _denoiser_attr(spec: RunSpec) -> str:
    """The pipeline component holding the denoiser (``unet`` / ``transformer``): the family's word."""
    return models.get_family(spec.family).denoiser_attr


def _quiet_libraries() -> None:
    """Our own progress bars say what is happening; silence the per-file bars of the loaders."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()


def _open_store(plan: RunPlan) -> Store:
    """The run's store, refused before any work when it is not a store of ours or is damaged."""
    try:
        return Store(plan.layout.store)
    except StoreError as exc:
        raise PreflightError(f"{plan.layout.store_field}: {exc}", source=plan.source) from None


def _context(plan: RunPlan, store: Store | None) -> Context:
    _quiet_libraries()
    world = distributed.world()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    run_id = distributed.broadcast_json(run_id)  # rank 0's
    provenance = collect_provenance(dict(plan.provenance))
    provenance.update(distributed.provenance(_device(plan.specs[0])))
    monitor = distributed.energy_monitor()
    if plan.idle_baseline_s > 0:
        _say(f"measuring idle power for {plan.idle_baseline_s:g} s ...")
        monitor.measure_idle(plan.idle_baseline_s)
    return Context(plan, store, run_id, provenance, monitor, world)


def _preflight(plan: RunPlan, writer: bool) -> None:
    """Check devices and the output folder before any work; rank 0 alone creates and probes the folder."""
    with distributed.together("preflight"):
        if writer:
            preflight(plan)
        else:
            check_devices(plan)


def run_suite(plan: RunPlan, *, wait: bool = False, summary: dict | None = None) -> int:
    """Run every pending spec of ``plan``; returns the process exit code (1 if any spec failed).

    Devices, the output folder and the store are checked before any work. The run holds the store's
    lock throughout: a second run on the same store refuses (or, with ``wait``, waits and then skips
    what the first one measured). ``summary``, when given, is filled with what the run did (``run --json``).
    """
    writer = distributed.world().writer
    _preflight(plan, writer)
    failed = 0
    with ExitStack() as stack:
        store = None
        with distributed.together("opening the store"):
            if writer:
                store = stack.enter_context(_open_store(plan))
                stack.enter_context(store.run_lock(plan.suite, wait=wait, say=_say))
        ctx = _context(plan, store)
        stored = distributed.broadcast_json(_stored_ok(ctx, plan.specs))  # rank 0 reads the store
        done_before = set(stored)
        try:
            for model_key, group in plan.by_model():
                stored = distributed.broadcast_json(_stored_ok(ctx, group))
                pending = [s for s in group if s.record_id not in stored]
                if not pending:
                    _say(f"[{model_key}] all {len(group)} records already measured; skipping")
                    continue
                failed += _run_model(ctx, group, pending)
        finally:
            ctx.monitor.close()
        paths = _report(ctx) if writer else {}
    n = len(plan.specs)
    _say(f"{n - failed}/{n} records ok; store: {plan.layout.store}; outputs: {plan.layout.root}")
    if summary is not None:
        summary.update(_summary(ctx, done_before, failed, paths))
    return 1 if failed else 0


def _stored_ok(ctx: Context, specs) -> list[str] | None:
    """The record ids of ``specs`` the store already holds as measured (rank 0; None elsewhere)."""
    if ctx.store is None:
        return None
    return [s.record_id for s in specs if ctx.store.has_ok(s.record_id)]


def prune_suite(plan: RunPlan) -> int:
    """Compute plans and write pruned models for every (model, method, ratio) without measuring them."""
    writer = distributed.world().writer
    _preflight(plan, writer)
    _quiet_libraries()
    monitor = distributed.energy_monitor()
    layout = plan.layout
    try:
        for model_key, group in plan.by_model():
            with distributed.together("loading the model"):
                pipe, settings = _load(group[0])
            scorer, recoverer = Scorer(layout, monitor), Recoverer(layout, monitor)
            for spec in group[1:]:
                pruned, pruning_plan, _, _ = _pruned_model(spec, pipe, settings, scorer, recoverer)
                target = layout.model_dir(spec)
                with distributed.together("saving the pruned model"):
                    if writer:
                        pruning.save(pruned, pruning_plan, target, copy_components=True)
                removed = pruning_plan.achieved()["params_removed"]
                _say(f"[{model_key}] {_label(spec)}: {removed:,} params removed -> {target}")
    finally:
        monitor.close()
    return 0


# -- one model ---------------------------------------------------------------------------------------------------


def _load(spec: RunSpec):
    device = _device(spec)
    pipe = models.load_pipeline(
        spec.model_spec.name,
        spec.model_spec.ref,
        device=device,
        dtype=_dtype(spec, device),
        offline=not spec.allow_hub,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe, settings_for(spec)


def _run_model(ctx: Context, group: list[RunSpec], pending: list[RunSpec]) -> int:
    base_spec = group[0]
    assert base_spec.is_base, "expand() puts each model's base spec first"
    _say(f"[{base_spec.model}] loading ({len(pending)} of {len(group)} records to measure)")
    pipe = settings = evaluator = base_images = err = None
    try:
        with distributed.together("loading the model"):
            pipe, settings = _load(base_spec)
            evaluator = Evaluator(base_spec, settings, _device(base_spec), ctx.monitor, ctx.layout.cache)
        base_images = _base_images(ctx, base_spec, evaluator, pipe)
    except Exception as exc:  # a model that cannot load fails each of its pending records, with the reason
        err = exc
    if (failure := _agreed_failure(err)) is not None:
        for spec in pending:
            _put_failed(ctx, spec, failure)
        return len(pending)
    scorer, recoverer = Scorer(ctx.layout, ctx.monitor), Recoverer(ctx.layout, ctx.monitor)
    failed = 0
    for spec in pending:
        label = _label(spec)
        _say(f"[{spec.model}] {label}: measuring")
        t0 = time.perf_counter()
        record = err = None
        try:
            record = _measure_spec(ctx, spec, pipe, settings, evaluator, base_images, scorer, recoverer)
        except Exception as exc:  # one failed variant must not lose the others: record why, go on
            err = exc
        if (failure := _agreed_failure(err)) is not None:
            _put_failed(ctx, spec, failure)
            failed += 1
            continue
        if ctx.store is None:  # not the writer
            continue
        try:
            record = ctx.store.put(record)
        except Exception as exc:
            _put_failed(ctx, spec, exc)
            failed += 1
            continue
        _append_emissions(ctx, spec, record)
        _say(f"[{spec.model}] {label}: done in {time.perf_counter() - t0:.1f} s")
    return failed


class RankFailure(RuntimeError):
    """A spec failed on another process of a distributed run; the message names the rank and its error."""


def _agreed_failure(err: BaseException | None) -> BaseException | None:
    """Every rank's outcome of the same work: None if all succeeded, else the error to record (this
    rank's own when it is the cause, else one naming the rank that failed)."""
    if isinstance(err, distributed.OutOfStep):  # the ranks cannot go on consistently: stop the run
        raise err
    cause = distributed.agree(err)
    if cause is None:
        return None
    rank, why = cause
    if rank == distributed.world().rank and err is not None:
        return err
    return RankFailure(f"rank {rank}: {why}")


def _base_images(ctx: Context, spec: RunSpec, evaluator: Evaluator, pipe) -> torch.Tensor:
    """The unpruned model's evaluation images (the SSIM/PSNR reference), cached on disk."""
    path = ctx.layout.base_images(spec)
    if distributed.broadcast_json(path.exists() if ctx.world.writer else None):
        cached = None
        with distributed.together("reading the cached base images"):
            if ctx.world.writer:
                cached = {"images": load_file(path)["images"]}
        return evaluator.my_share(distributed.broadcast_tensors(cached)["images"])
    with distributed.together("generating the base images"):
        images = evaluator.eval_images(pipe)  # this rank's share
    every = distributed.gather_rows(images)
    if ctx.world.writer:
        with atomic_path(path) as tmp:
            save_file({"images": every.contiguous()}, tmp)
    return images


def _append_emissions(ctx: Context, spec: RunSpec, record: dict) -> None:
    """One row per measured model in codecarbon's emissions.csv format, beside the store."""
    energy = spec.energy
    row = carbon.emissions_row_for_record(record, energy.country if energy.carbon else None, energy.region)
    if row is not None:
        carbon.write_emissions_csv([row], ctx.layout.emissions)


def _label(spec: RunSpec) -> str:
    return "base" if spec.is_base else f"{spec.record_method} {spec.ratio:.0%}"


def _run_settings(spec: RunSpec) -> dict:
    device = _device(spec)
    return {
        "samples": spec.evaluation.samples,
        "batch_size": spec.performance.batch_size,
        "device": str(device),
        "dtype": str(_dtype(spec, device)),
    }


def _pruned_model(spec: RunSpec, pipe, settings: dict, scorer: Scorer, recoverer: Recoverer):
    """(pruned pipeline, its plan, the method's scores, the recovery or None) for a pruned spec."""
    with distributed.together("scoring and pruning"):  # the scorer's own sections nest inside
        plan = scorer.plan(spec, pipe, settings)
        scores = scorer.scores(spec, pipe, settings)
        pruned = pruning.apply(copy.deepcopy(pipe), plan)
    if not spec.is_recovered:
        return pruned, plan, scores, None
    # Recovery is not sharded: rank 0 trains (and checkpoints) while the others wait, then they take its
    # weights, so every rank evaluates the same recovered model. Every rank built the same pruned model,
    # so its tensors are overwritten in place with rank 0's (a no-op on one process).
    writer = distributed.world().writer
    with distributed.together("recovery"):
        recovered = recoverer.recover(spec, pruned, pipe, plan, settings) if writer else None
    with torch.no_grad():
        for t in pruning.denoiser_of(pruned).state_dict().values():
            pruning.distributed.broadcast_(t, 0)
    return pruned, recovered.plan if writer else plan, scores, recovered


def _measure_spec(
    ctx: Context,
    spec: RunSpec,
    pipe,
    settings: dict,
    evaluator: Evaluator,
    base_images,
    scorer: Scorer,
    recoverer: Recoverer,
):
    folder = ctx.layout.artifacts(spec)
    common = {"settings": settings, "run_settings": _run_settings(spec)}
    if spec.is_base:
        m = evaluator.measure(pipe, folder, base_images=None)
        if not ctx.world.writer:
            return None
        metrics = {**m.metrics, **base_values(pipe, _denoiser_attr(spec))}
        return _record(ctx, spec, metrics=metrics, artifacts=ctx.layout.store_relative(m.artifacts), **common)
    pruned, pruned_plan, scores, recovered = _pruned_model(spec, pipe, settings, scorer, recoverer)
    target = ctx.layout.model_dir(spec)
    with distributed.together("saving the pruned model"):
        if ctx.world.writer:
            pruning.save(pruned, pruned_plan, target, copy_components=True)
    m = evaluator.measure(pruned, folder, base_pipe=pipe, base_images=base_images)
    if not ctx.world.writer:
        return None  # rank 0 writes the model, the artifacts and the record
    m.artifacts["plan"] = str(target / "plan.json")
    m.artifacts["model_dir"] = str(target)
    if scores.info.get("curve"):
        m.artifacts["training_curve"] = str(
            write_json_atomic(folder / "training_curve.json", scores.info["curve"])
        )
    metrics = {**m.metrics, **plan_values(pruned_plan), **cost_values(scores)}
    if recovered is not None:
        metrics.update(recovered.values)
        curve = write_json_atomic(folder / "recovery_curve.json", recovered.curve)
        m.artifacts["recovery_curve"] = str(curve)
    metrics["disk_bytes"] = disk_size(target / _denoiser_attr(spec))
    artifacts = ctx.layout.store_relative(m.artifacts)
    record = _record(ctx, spec, metrics=metrics, artifacts=artifacts, plan=pruned_plan, **common)
    # The card documents the record: never lose the record over it.
    try:
        write_measured_card(target, record, ctx.store.get(spec.base_id) if spec.base_id else None)
    except (OSError, ValueError, KeyError) as err:
        _say(f"[{spec.model}] model card not updated: {err}")
    return record


def _put_failed(ctx: Context, spec: RunSpec, err: BaseException) -> None:
    if ctx.store is None:  # rank 0 records it
        return
    _say(f"[{spec.model}] {_label(spec)} FAILED: {type(err).__name__}: {err}")
    record = _record(
        ctx, spec, metrics={}, artifacts={}, settings={}, run_settings=_run_settings(spec), error=err
    )
    ctx.store.put(record)


def _record(ctx: Context, spec: RunSpec, **fields):
    """The record of ``spec`` in this run (see :func:`~ecodiff_bench.run.records.make_record`)."""
    return make_record(
        spec, suite_hash=ctx.plan.suite_hash, run_id=ctx.run_id, provenance=ctx.provenance, **fields
    )


def _summary(ctx: Context, done_before: set[str], failed: int, paths: dict) -> dict:
    """What a run did, for ``run --json``: run id, store, each spec's record and whether it was measured
    now, the report and emissions.csv paths."""
    store, emissions = ctx.layout.store, ctx.layout.emissions
    records = [
        {
            "record_id": s.record_id,
            "model": s.model,
            "method": s.record_method,
            "ratio": s.ratio,
            "seed": s.seed,
            "measured_now": s.record_id not in done_before,
        }
        for s in ctx.plan.specs
    ]
    return {
        "run_id": ctx.run_id,
        "store": str(store),
        "records": records,
        "failed": failed,
        "report": {k: str(v) for k, v in paths.items()},
        "emissions_csv": str(emissions) if emissions.exists() else None,
    }


def _report(ctx: Context) -> dict[str, Path]:
    formats = ctx.plan.report_formats
    if not formats:
        return {}
    import reports

    try:
        paths = reports.render(
            ctx.store.path,
            ctx.layout.report,
            suite=ctx.plan.suite,
            include_smoke=ctx.plan.smoke,
            formats=formats,
        )
    except ValueError as err:
        _say(f"report not written: {err}")
        return {}
    for fmt, path in paths.items():
        _say(f"report ({fmt}): {path}")
    return paths
