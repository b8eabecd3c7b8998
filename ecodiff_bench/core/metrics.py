"""The metric catalog: one :class:`MetricSpec` per metric a run record can hold.

This is the one place that says what a metric is: its unit and direction, how a change is shown, when
it is recorded, how several processes combine it and how its confidence interval is made. The suite
schema (which quality metrics a suite may ask for, which metrics a threshold may name), the regression
gate, ``compare``, the reports (directions, absolute or relative deltas), ``ecodiff-bench ls metrics``,
:meth:`Value.of <ecodiff_bench.core.values.Value.of>` (unit and direction of every recorded value) and
the evaluator's cross-rank combination all read it.

Torch-free: how a quality metric is set up and computed lives on the torch side, registered under the
same name (``QUALITY`` in :mod:`ecodiff_bench.run.quality_setup`; a test checks both name the same set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ecodiff_bench.core.registry import Registry

Delta = Literal["absolute", "relative"]
#: When a metric is recorded: for every model, only when ``evaluation.metrics`` asks for it, only for
#: pruned models, or only when ``performance.inference.compile`` sets a torch.compile mode.
Stage = Literal["always", "evaluation", "pruned", "compile"]
#: How the figures of several processes (each measured the same rounds on its own device) make one:
#: "sum" (each adds its own share: throughput, its own GPU's power or energy), "mean" (what one call
#: costs), "max" (the largest rank decides what each GPU needs), "per image" (all ranks' energy over all
#: their images), "pooled pairs" (the paired ratio bootstrapped again over every rank's pairs), "summed
#: states" (the metric's states are summed before it is computed: quality). None: not combined (the same
#: on every rank, derived from combined figures, or this rank's own with the others' in ``per_rank``).
Combine = Literal["sum", "mean", "max", "per image", "pooled pairs", "summed states"]
#: How a value's confidence interval is made (:mod:`ecodiff_bench.core.stats`, recorded as
#: ``details.ci_method``): "mean", a bootstrap of the mean of repeated measurements (blocks of calls);
#: "paired ratio", the ratio of medians over interleaved pairs bootstrapped over the pairs; "none".
IntervalKind = Literal["mean", "paired ratio", "none"]


@dataclass(frozen=True)
class MetricSpec:
    """What one metric is. ``higher_is_better`` None: neither direction is better (a description)."""

    name: str
    unit: str
    higher_is_better: bool | None
    help: str
    delta: Delta = "relative"  # how a change against the base is shown: a difference, or a percentage
    stage: Stage = "always"
    sample_sensitive: bool = False  # its value depends on the sample count (compare only at equal N)
    combine: Combine | None = None
    interval: IntervalKind = "none"


METRICS: Registry[MetricSpec] = Registry("metric")


def _add(name: str, unit: str, higher_is_better: bool | None, help: str, **options) -> None:
    METRICS.register(name, MetricSpec(name, unit, higher_is_better, help, **options), help=help)


# size and compute (the same on every rank)
_add("params", "count", False, "parameters of the denoiser")
_add("params_removed_frac", "fraction", None, "fraction of prunable parameters removed", delta="absolute")
_add(
    "units_removed_frac",
    "fraction",
    None,
    "fraction of prunable units (heads, FFN units) removed",
    delta="absolute",
)
_add("disk_bytes", "B", False, "size of the saved denoiser")
_add("flops_per_step", "FLOP", False, "FLOPs of one denoiser call")
# speed
_add(
    "latency_image_s",
    "s",
    False,
    "seconds per image (mean; p50/p90/p99, its interval and the inference options in details)",
    combine="mean",
    interval="mean",
)
_add("latency_step_s", "s", False, "seconds per denoising step (call time / steps)", combine="mean")
_add("throughput_img_per_s", "img/s", True, "images per second", combine="sum")
_RATIO = {"delta": "absolute", "stage": "pruned", "combine": "pooled pairs", "interval": "paired ratio"}
_add(
    "latency_ratio_vs_base",
    "ratio",
    False,
    "pruned / base per-image latency: ratio of medians over interleaved pairs, with its interval",
    **_RATIO,
)
_add(
    "energy_ratio_vs_base",
    "ratio",
    False,
    "pruned / base energy per image over the same interleaved pairs, with its interval",
    **_RATIO,
)
_add(
    "compile_time_s",
    "s",
    False,
    "torch.compile: first (compiling) call minus the steady-state mean call",
    stage="compile",
)
# memory
_add("cuda_peak_allocated_bytes", "B", False, "peak CUDA memory allocated")
_add("cuda_peak_reserved_bytes", "B", False, "peak CUDA memory reserved")
_add("nvml_memory_used_bytes", "B", False, "GPU memory in use (NVML)")
_add(
    "peak_rss_bytes",
    "B",
    False,
    "peak resident memory of the whole process (not the model's own)",
    combine="max",
)
_add(
    "model_peak_bytes",
    "B",
    False,
    "the model's peak memory while generating: weights + activations (CUDA: allocator peak)",
    combine="max",
)
# energy and carbon
_add("gpu_energy_image_j", "J", False, "GPU energy per image, gross", combine="per image")
_add("gpu_energy_image_net_j", "J", False, "GPU energy per image, idle power subtracted", combine="per image")
_add("idle_power_w", "W", False, "idle GPU power before the run", combine="sum")
_add("cpu_energy_image_j", "J", False, "CPU energy per image (RAPL, or an estimate)", combine="per image")
_add(
    "energy_image_j",
    "J",
    False,
    "total energy per image used for carbon",
    combine="per image",
    interval="mean",
)
_add("gco2e_per_1000_images", "gCO2e", False, "grams CO2-equivalent per 1,000 images")
# image quality (asked for in evaluation.metrics)
_QUALITY = {"delta": "absolute", "stage": "evaluation", "combine": "summed states"}
_add(
    "fid",
    "",
    False,
    "Frechet Inception Distance against the reference set",
    sample_sensitive=True,
    **_QUALITY,
)
_add(
    "frechet_distance",
    "",
    False,
    "Frechet distance in the suite's feature extractor's space",
    sample_sensitive=True,
    **_QUALITY,
)
_add("clip_score", "", True, "100 x cosine(image, prompt) in CLIP space", sample_sensitive=True, **_QUALITY)
_add("ssim_vs_base", "", True, "SSIM against the unpruned model's images of the same seeds", **_QUALITY)
_add("psnr_vs_base", "dB", True, "PSNR against the unpruned model's images of the same seeds", **_QUALITY)
_add("recognisability", "fraction", True, "accuracy of a digits classifier on generated digits", **_QUALITY)
# the cost of pruning
_add("pruning_energy_j", "J", False, "energy spent computing the pruning plan", stage="pruned", combine="sum")
_add("pruning_time_s", "s", False, "time spent computing the pruning plan", stage="pruned")
# the cost of recovery (a recovered variant's distillation toward its base; pruning's cost is counted apart)
_add(
    "recovery_energy_j",
    "J",
    False,
    "energy spent distilling the pruned model toward its base",
    stage="pruned",
)
_add("recovery_time_s", "s", False, "time spent distilling the pruned model toward its base", stage="pruned")


def metric(name: str) -> MetricSpec:
    """The catalog entry of ``name``; an unknown name raises with the closest known one."""
    return METRICS.get(name)


#: The metrics a suite can ask the evaluation stage for (``evaluation.metrics``).
QUALITY_METRICS: tuple[str, ...] = tuple(n for n in METRICS if METRICS.get(n).stage == "evaluation")
#: Metrics whose value depends on how many images were scored.
SAMPLE_SENSITIVE: tuple[str, ...] = tuple(n for n in METRICS if METRICS.get(n).sample_sensitive)


def direction(name: str, stored: bool | None = None) -> bool | None:
    """Whether higher is better: the catalog's answer, else what a stored value says (foreign metrics)."""
    if name in METRICS:
        return METRICS.get(name).higher_is_better
    return stored


def is_absolute_delta(name: str) -> bool:
    """Quality scores, fractions and ratios change by a difference; resources by a percentage."""
    return name in METRICS and METRICS.get(name).delta == "absolute"
