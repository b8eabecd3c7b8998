"""Measuring one pipeline: size, FLOPs, latency, memory, energy, carbon and image quality.

The :class:`Evaluator` is built once per model of a suite. It owns what every variant of that model is
compared against (evaluation prompts and seeds, the unpruned model's images, the quality metrics and their
reference statistics) and turns a pipeline into a dict of :class:`~ecodiff_bench.core.values.Value`.

On several processes each rank generates its share of the (prompt, seed) pairs, the metrics sum their
states across ranks (torchmetrics' sync), and speed, energy and memory are measured on every rank over
the same rounds and reported per rank and combined (:func:`_across_ranks`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

import pruning
from ecodiff_bench import models
from ecodiff_bench.core.files import atomic_path, write_json_atomic
from ecodiff_bench.core.metrics import metric
from ecodiff_bench.core.values import Value
from ecodiff_bench.measure import carbon, energy, latency, memory, paired
from ecodiff_bench.quality.distributed import shard_range
from ecodiff_bench.run import distributed, quality_setup

EVAL_CHUNK = 25  # images per pipeline call while generating the evaluation set
GRID = 20  # images in the samples.png artifact


@dataclass
class Measured:
    metrics: dict[str, Value] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    images: torch.Tensor | None = None

    def add(self, values: dict[str, Value]) -> None:
        self.metrics.update(values)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 10) -> str:
    """The first two rows of images as one PNG."""
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(images[: nrow * 2].float(), tmp, nrow=nrow, padding=1, format="png")
    return str(path)


class Evaluator:
    """Everything needed to measure the variants of one model the same way."""

    def __init__(
        self, spec, settings: dict, device: torch.device, monitor: energy.EnergyMonitor, cache: Path
    ):
        self.spec, self.settings, self.device, self.monitor, self.cache = (
            spec,
            settings,
            device,
            monitor,
            cache,
        )
        ev = spec.evaluation
        prompts = ev.load_prompts()
        self.world = distributed.world()
        self.share = shard_range(ev.samples, self.world.rank, self.world.size)  # this rank's images
        self.prompts = [prompts[i % len(prompts)] for i in self.share]
        self.seeds = [ev.seed + i for i in self.share]
        perf = spec.performance
        self.timing_prompt = perf.prompt or self.prompts[0]
        self.batch = perf.batch_size
        self._quality: dict[str, Any] | None = None
        self._inference = weakref.WeakKeyDictionary()  # denoiser -> what pruning.inference applied

    # -- generation -------------------------------------------------------------------------------------------
    def generate(self, pipe, prompts, seeds, batch_size: int | None = None) -> torch.Tensor:
        return models.generate(
            pipe,
            prompts,
            seeds,
            family=self.spec.family,
            extra=self.settings,
            batch_size=batch_size or len(prompts),
        )

    def one_call(self, pipe):
        return lambda: self.generate(
            pipe, [self.timing_prompt] * self.batch, [self.spec.evaluation.seed] * self.batch
        )

    def my_share(self, images: torch.Tensor) -> torch.Tensor:
        """This rank's rows of the whole evaluation set."""
        return images[self.share.start : self.share.stop]

    def eval_images(self, pipe) -> torch.Tensor:
        """This rank's share of the evaluation set (all of it for one process); generated in chunks
        (image i depends only on its prompt and seed)."""
        chunk = max(self.batch, EVAL_CHUNK)
        return torch.cat(
            [
                self.generate(pipe, self.prompts[i : i + chunk], self.seeds[i : i + chunk])
                for i in range(0, len(self.prompts), chunk)
            ]
        )

    # -- measurement ------------------------------------------------------------------------------------------
    def measure(
        self, pipe, out: Path, *, base_pipe=None, base_images: torch.Tensor | None = None
    ) -> Measured:
        m = Measured()
        # Each stretch of local work between two collectives is one `together` section, so a failure on
        # any rank reaches every rank at the same point.
        with distributed.together("preparing the measurement"):
            m.add(self._size(pipe))
            first_call_s = self._prepare(pipe)
            if base_pipe is not None:
                self._prepare(base_pipe)
        timed = self._speed_energy(pipe, base_pipe, out, m)  # guarded round by round
        with distributed.together("measuring memory"):
            mem = self._memory(pipe)
        speed, mem = _across_ranks(timed.values["pruned"], timed), _across_ranks(mem)
        with distributed.together("generating the evaluation images"):
            m.add(self._with_carbon(speed, pipe))
            if first_call_s is not None:
                m.add(self._compile_time(first_call_s, m.metrics["latency_image_s"]))
            m.add(mem)
            m.images = self.eval_images(pipe)
        grid = distributed.gather_rows(m.images[: max(0, GRID - self.share.start)])  # the first GRID
        with distributed.together("writing the samples"):
            if self.world.writer:
                m.artifacts["samples"] = save_grid(grid, out / "samples.png")
        m.add(self._quality_values(m.images, base_images))
        return m

    def _size(self, pipe) -> dict[str, Value]:
        den = pruning.denoiser_of(pipe)
        values = {"params": memory.count_parameters(den)}
        values["flops_per_step"] = memory.flops_per_step(self._one_step(pipe))
        return values

    def _one_step(self, pipe):
        from pruning.architectures import prepare_trajectory

        traj = prepare_trajectory(pipe, self.timing_prompt, self.spec.evaluation.seed, **self.settings)
        den = pruning.denoiser_of(pipe)

        def step():
            with torch.no_grad():
                traj.step(den, traj.latents, 0)

        return step

    def _prepare(self, pipe) -> float | None:
        """Apply the suite's inference options to the denoiser once (after FLOPs are counted). With
        torch.compile, returns the first call's duration, which includes compiling."""
        from pruning.inference import InferenceOptions, apply_inference_options

        den = pruning.denoiser_of(pipe)
        if den in self._inference:
            return None
        options = self.spec.performance.inference
        self._inference[den] = apply_inference_options(den, InferenceOptions(**options.model_dump()))
        if options.compile is None:
            return None
        with latency.Timer(self.device) as timer:
            self.one_call(pipe)()
        return timer.elapsed_s

    def _compile_time(self, first_call_s: float, steady: Value) -> dict[str, Value]:
        steady_call_s = steady.details["call_mean_s"]
        return {
            "compile_time_s": Value.of(
                "compile_time_s",
                first_call_s - steady_call_s,
                note="first call (compiles) minus the steady-state mean call",
                details={
                    "first_call_s": first_call_s,
                    "steady_call_s": steady_call_s,
                    "mode": self.spec.performance.inference.compile,
                },
            )
        }

    def _speed_energy(self, pipe, base_pipe, out: Path, m: Measured) -> paired.PairedResult:
        """Latency and energy per image, the pruned model paired and interleaved with its base
        (:mod:`ecodiff_bench.measure.paired`); the base model alone when there is none."""
        fns = {"pruned": self.one_call(pipe)}
        if base_pipe is not None and self.spec.performance.interleave:
            fns["base"] = self.one_call(base_pipe)  # drift (heat, background load) hits both alike
        sampler = None
        if self.monitor.gpus:  # a power timeline needs NVML; energy itself falls back to the CPU figures
            sampler = self.monitor.start_timeline(self.spec.energy.sample_interval_s)
        try:
            result = paired.measure_paired(
                fns,
                self.monitor,
                paired.PairedSettings.from_latency(self.spec.performance.latency),
                images_per_call=self.batch,
                steps_per_call=self.settings["steps"],
                device=self.device,
                lockstep=_LOCKSTEP,
            )
        finally:
            samples = list(sampler.samples) if sampler is not None else []
            t0 = sampler.t0 if sampler is not None else 0.0
            self.monitor.stop_timeline()
        with distributed.together("writing the power timeline"):
            if samples and self.world.writer:
                timeline = paired.timeline_of(samples, result.spans("pruned"), t0)
                m.artifacts["power_timeline"] = str(write_json_atomic(out / "power_timeline.json", timeline))
        return result

    def _with_carbon(self, values: dict[str, Value], pipe) -> dict[str, Value]:
        values["latency_image_s"].details["inference"] = self._inference.get(pruning.denoiser_of(pipe))
        if self.spec.energy.carbon:
            values.update(
                carbon.carbon_values(
                    values["energy_image_j"], self.spec.energy.country, self.spec.energy.region
                )
            )
        return values

    def _memory(self, pipe) -> dict[str, Value]:
        call = self.one_call(pipe)
        with memory.MemoryTracker(self.device, model=pipe) as mem:
            call()
        return mem.values()

    # -- quality ----------------------------------------------------------------------------------------------
    def _quality_values(self, images: torch.Tensor, base_images: torch.Tensor | None) -> dict[str, Value]:
        wanted = self.spec.evaluation.metrics
        if self._quality is None:
            self._quality = quality_setup.build(self.spec.evaluation, self.cache, self.device)
        return quality_setup.compute(self._quality, wanted, images, self.prompts, base_images)


# -- several processes --------------------------------------------------------------------------------------
# Every rank runs the same rounds: a failure in one fails it on all, and rank 0 says when to stop.
_LOCKSTEP = paired.Lockstep(guard=distributed.together, decide=distributed.broadcast_json)


def _per_image(figures: list[float], images: list[int]) -> float:
    return sum(f * n for f, n in zip(figures, images, strict=True)) / sum(images)


# The catalog's combine rules that are arithmetic on the ranks' figures (each measured the same rounds on
# its own device); the others ("pooled pairs", "summed states", None) are not made here.
_ARITHMETIC = {
    "sum": lambda figures, images: sum(figures),
    "mean": lambda figures, images: sum(figures) / len(figures),
    "max": lambda figures, images: max(figures),
    "per image": _per_image,
}


def _across_ranks(values: dict[str, Value], result: paired.PairedResult | None = None) -> dict[str, Value]:
    """This rank's measurements combined with the other ranks' (the catalog's ``combine`` rule; the
    paired ratios over every rank's pairs), each value keeping the ranks' own figures in
    ``details.per_rank``. A figure unavailable on any rank is unavailable, naming the rank. One process:
    ``values`` unchanged."""
    if not distributed.world().active:
        return values
    mine = {"values": {k: v.to_dict() for k, v in values.items()}}
    if result is not None:
        mine["pairs"] = paired.pair_figures(result)
        mine["images"] = sum(len(b.call_s) for b in result.blocks["pruned"]) * result.images_per_call
    ranks = distributed.gather_json(mine)
    images = [r.get("images", 1) for r in ranks]
    out = {name: _combined(v, [r["values"][name] for r in ranks], images) for name, v in values.items()}
    if result is not None and "base" in result.blocks:
        out.update(paired.pooled_ratios([r["pairs"] for r in ranks], result, out["energy_image_j"]))
    return out


def _combined(v: Value, parts: list[dict], images: list[int]) -> Value:
    """One value from every rank's ``parts`` (this rank's is ``v``)."""
    details = {**v.details, "per_rank": [p["value"] for p in parts], "processes": len(parts)}
    missing = [i for i, p in enumerate(parts) if p["status"] == "unavailable"]
    if missing and v.available:
        why = f"unavailable on rank {missing[0]}: {parts[missing[0]]['note']}"
        return Value.unavailable_of(v.name, why)
    how = metric(v.name).combine
    if how not in _ARITHMETIC or missing:
        return replace(v, details=details)
    status = "estimated" if any(p["status"] == "estimated" for p in parts) else v.status
    figure = _ARITHMETIC[how]([p["value"] for p in parts], images)
    return replace(v, value=figure, status=status, details={**details, "across_ranks": how})
