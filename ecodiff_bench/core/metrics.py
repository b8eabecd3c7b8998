"""The metric catalog: every metric a run record can hold, with its unit, direction, delta kind and help.

This is the one place that says what a metric is. The suite schema (which quality metrics a suite may ask
for, which metrics a threshold may name), the regression gate, ``compare``, the reports (directions,
absolute or relative deltas) and ``ecodiff-bench ls metrics`` all read it; a test checks that every metric
the runner records is here, with the unit it is recorded in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ecodiff_bench.core.registry import Registry

Delta = Literal["absolute", "relative"]
#: When a metric is recorded: for every model, only when ``evaluation.metrics`` asks for it, only for
#: pruned models, or only when ``performance.inference.compile`` sets a torch.compile mode.
Stage = Literal["always", "evaluation", "pruned", "compile"]


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    higher_is_better: bool | None  # None: neither direction is better (a description, not a cost)
    delta: Delta  # how a change against the base is shown: a difference, or a percentage
    help: str
    stage: Stage = "always"
    sample_sensitive: bool = False  # its value depends on the sample count (compare only at equal N)


METRICS: Registry[Metric] = Registry("metric")


def _add(
    name: str,
    unit: str,
    higher_is_better: bool | None,
    help: str,
    *,
    delta: Delta = "relative",
    stage: Stage = "always",
    sample_sensitive: bool = False,
) -> None:
    METRICS.register(
        name, Metric(name, unit, higher_is_better, delta, help, stage, sample_sensitive), help=help
    )


# size and compute
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
)
_add("latency_step_s", "s", False, "seconds per denoising step (call time / steps)")
_add("throughput_img_per_s", "img/s", True, "images per second")
_add(
    "latency_ratio_vs_base",
    "ratio",
    False,
    "pruned / base per-image latency: ratio of medians over interleaved pairs, with its interval",
    delta="absolute",
    stage="pruned",
)
_add(
    "energy_ratio_vs_base",
    "ratio",
    False,
    "pruned / base energy per image over the same interleaved pairs, with its interval",
    delta="absolute",
    stage="pruned",
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
_add("peak_rss_bytes", "B", False, "peak resident memory of the whole process (not the model's own)")
_add(
    "model_peak_bytes",
    "B",
    False,
    "the model's peak memory while generating: weights + activations (CUDA: allocator peak)",
)
# energy and carbon
_add("gpu_energy_image_j", "J", False, "GPU energy per image, gross")
_add("gpu_energy_image_net_j", "J", False, "GPU energy per image, idle power subtracted")
_add("idle_power_w", "W", False, "idle GPU power before the run")
_add("cpu_energy_image_j", "J", False, "CPU energy per image (RAPL, or an estimate)")
_add("energy_image_j", "J", False, "total energy per image used for carbon")
_add("gco2e_per_1000_images", "gCO2e", False, "grams CO2-equivalent per 1,000 images")
# image quality (asked for in evaluation.metrics)
_QUALITY = {"delta": "absolute", "stage": "evaluation"}
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
_add("pruning_energy_j", "J", False, "energy spent computing the pruning plan", stage="pruned")
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


def metric(name: str) -> Metric:
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
