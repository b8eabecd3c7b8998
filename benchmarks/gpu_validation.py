"""One prepared run on one H100/H200 (at most ~8 minutes): full-size SDXL and FLUX.1-dev, random init, bf16.

Sections (each written to the JSON as soon as it is done, so a run cut short keeps what it measured):

1. ``sdxl_mask_training``: one EcoDiff mask-training iteration of the SDXL U-Net at 1024x1024 with CFG
   (hard-concrete masks on every head and FFN unit, noise reseeded per step, loss = MSE of the final
   latent against a fixed target plus the sparsity term, backward into the logits): peak GPU memory
   (``torch.cuda.max_memory_allocated``; also its growth over the resident weights) and time, at
   T = 5, 25, 50 with time-step checkpointing and T = 5, 10 without. An out-of-memory error is recorded as
   ``"status": "oom"``, never as a number.
2. ``sdxl_speed`` / ``flux_speed``: base vs pruned (20% of prunable parameters, seeded random scores, FFN
   widths aligned to 64) per-step latency (one sampling step, CUDA events, interleaved rounds, 95% paired
   bootstrap interval of the ratio) next to the FLOPs ratio; energy per image (``--steps`` sampling steps
   of the denoiser; text encoders and VAE excluded) from NVML's total-energy counter over windows of at
   least 5 s, base and pruned windows interleaved (base, pruned, pruned, base), after an idle baseline.
   SDXL: 1024x1024, CFG 5.0; FLUX.1-dev: 1024x1024 (4,096 image tokens), 512 text tokens, guidance 3.5.

Inference options (``pruning.inference``): SDPA attention and channels-last for the U-Net on CUDA by
default; ``--compile MODE`` adds torch.compile, with each model's first (compiling) call timed apart.

Needs only what the GPU machine has (torch, numpy, scipy, nvidia-ml-py) plus diffusers, and ``pruning`` from
this checkout: nothing imports the harness (pydantic, codecarbon, open_clip are not needed). ``--tiny`` runs the same code paths with tiny models on the CPU in
seconds (short windows, small T): the test suite runs it.

    python benchmarks/gpu_validation.py [--tiny] [--sections sdxl_mask_training,sdxl_speed,flux_speed]
        [--compile MODE] [--steps 50] [--budget-s 480] [--out PATH]
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import torch  # noqa: E402

import pruning  # noqa: E402
from pruning import trajectory  # noqa: E402
from pruning.inference import COMPILE_MODES, InferenceOptions, apply_inference_options  # noqa: E402
from pruning.masks import MaskSet  # noqa: E402

SECTIONS = ("sdxl_mask_training", "sdxl_speed", "flux_speed")
RATIO, ALIGN = 0.2, 64
BETA_REG = 0.5  # EcoDiff's SDXL setting; the term's cost, not its value, matters here
TARGETS = {"memory_flat": 1.1, "time_overhead": 1.5, "latency_vs_flops": 0.05}


class Settings:
    """Sizes that differ between the real run and --tiny."""

    def __init__(self, tiny: bool, steps: int, compile_mode: str | None):
        self.tiny = tiny
        self.scale = "tiny" if tiny else "full"
        self.device = torch.device("cpu" if tiny else "cuda")
        self.dtype = torch.float32 if tiny else torch.bfloat16
        self.checkpointed_T = (2, 3, 4) if tiny else (5, 25, 50)
        self.full_T = (2, 3) if tiny else (5, 10)
        self.steps = 3 if tiny else steps
        self.rounds = 4 if tiny else 12
        self.window_s = 0.3 if tiny else 5.0
        self.idle_s = 0.3 if tiny else 5.0
        self.compile = compile_mode

    def to_dict(self) -> dict:
        return {
            k: (str(v) if isinstance(v, (torch.device, torch.dtype)) else v) for k, v in vars(self).items()
        }


def _free() -> None:
    """Return freed GPU memory to the driver before the next measurement (nothing to do on the CPU)."""
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


# --- 1. mask training -----------------------------------------------------------------------------------------


def _iteration(den, masks: MaskSet, traj, target, checkpointing: bool) -> float:
    """One EcoDiff training iteration; the logits' gradients are left in ``.grad``."""

    def loss_fn(z):
        return torch.nn.functional.mse_loss(z.float(), target.float())

    def before_step(i):
        masks.resample(1000 + i)

    backward = trajectory.checkpointed_backward if checkpointing else trajectory.full_backward
    loss, _ = backward(traj, den, loss_fn, before_step)
    (BETA_REG * masks.sparsity_loss()).backward()
    return float(loss)


def mask_training(s: Settings, den, step_model, sw: common.Stopwatch) -> dict:
    groups = pruning.find_groups(den)
    masks = MaskSet(groups, "hard-concrete").to(s.device)
    masks.attach(den)
    cuda = s.device.type == "cuda"
    rows = []
    try:
        for ckpt in (True, False):  # warm-up of both ways: kernel selection, allocator pools
            traj = step_model.trajectory(2)
            _iteration(den, masks, traj, torch.zeros_like(traj.latents), ckpt)
        configs = [(t, True) for t in s.checkpointed_T] + [(t, False) for t in s.full_T]
        for steps, ckpt in configs:
            row = {"T": steps, "checkpointing": ckpt}
            if sw.left() < 60 and not s.tiny:
                rows.append({**row, "status": "skipped", "reason": f"time budget ({sw.left():.0f} s left)"})
                continue
            masks.zero_grad(set_to_none=True)
            _free()
            traj = step_model.trajectory(steps)
            target = torch.randn(traj.latents.shape, generator=torch.Generator().manual_seed(steps)).to(
                traj.latents
            )
            resident = torch.cuda.memory_allocated(s.device) if cuda else None
            if cuda:
                torch.cuda.reset_peak_memory_stats(s.device)
            try:
                with common.Timer(s.device) as timer:
                    loss = _iteration(den, masks, traj, target, ckpt)
            except (torch.OutOfMemoryError, RuntimeError) as err:
                if not _is_oom(err):
                    raise
                rows.append({**row, "status": "oom", "error": str(err).splitlines()[0][:300]})
                del err
                masks.zero_grad(set_to_none=True)
                _free()
                continue
            grads = [p.grad for p in masks.parameters() if p.grad is not None]
            row.update(
                status="ok",
                time_s=timer.elapsed_s,
                loss_finite=bool(torch.isfinite(torch.tensor(loss))),
                logits_with_grad=len(grads),
                of_logits=len(list(masks.parameters())),
            )
            if cuda:
                peak = torch.cuda.max_memory_allocated(s.device)
                row.update(peak_bytes=peak, resident_bytes=resident, peak_growth_bytes=peak - resident)
            else:
                row.update(peak_bytes=None, peak_note="unavailable on the CPU (no allocator peak counter)")
            rows.append(row)
            print(
                f"  mask training T={steps:2d} {'checkpointed' if ckpt else 'full backprop'}: {row['time_s']:.2f} s"
                + (f", peak {row['peak_bytes'] / 2**30:.2f} GiB" if cuda else "")
            )
    finally:
        masks.detach()
        masks.zero_grad(set_to_none=True)
    return {
        "groups": len(groups),
        "units": sum(g.n_units for g in groups),
        "rows": rows,
        "loss": "MSE(final latent, fixed random target) + 0.5 x expected-L0 sparsity",
        "checks": _training_checks(rows),
    }


def _training_checks(rows: list[dict]) -> dict:
    ok = {(r["T"], r["checkpointing"]): r for r in rows if r["status"] == "ok"}
    ckpt_T = sorted(t for t, c in ok if c)
    out = {}
    if len(ckpt_T) >= 2 and ok[(ckpt_T[0], True)].get("peak_bytes"):
        lo, hi = ok[(ckpt_T[0], True)], ok[(ckpt_T[-1], True)]
        out["memory_flat_with_checkpointing"] = {
            "T": [ckpt_T[0], ckpt_T[-1]],
            "peak_ratio": hi["peak_bytes"] / lo["peak_bytes"],
            "growth_ratio": hi["peak_growth_bytes"] / max(lo["peak_growth_bytes"], 1),
            "target": TARGETS["memory_flat"],
            "pass": hi["peak_bytes"] / lo["peak_bytes"] <= TARGETS["memory_flat"],
        }
    both = [t for t, c in ok if not c and (t, True) in ok]
    for t in sorted(both):
        ratio = ok[(t, True)]["time_s"] / ok[(t, False)]["time_s"]
        out[f"time_overhead_T{t}"] = {
            "ratio": ratio,
            "target": TARGETS["time_overhead"],
            "pass": ratio <= TARGETS["time_overhead"],
        }
    return out


# --- 2. speed and energy --------------------------------------------------------------------------------------


def _first_call_s(fn, device) -> float:
    with common.Timer(device) as timer:
        fn()
    return timer.elapsed_s


def speed(s: Settings, family: str, base, step_model, energy_meter, idle: dict, sw: common.Stopwatch) -> dict:
    traj = step_model.trajectory(s.steps)
    x = traj.latents

    def one_step(den):
        return lambda: traj.step(den, x, 0)

    def one_image(den):
        return lambda: trajectory.run(traj, den)

    groups = pruning.find_groups(base)
    plan = pruning.plan(
        base, pruning.Scores("random", pruning.random_scores(groups, seed=0)), RATIO, align=ALIGN
    )
    pruned = pruning.apply_plan(copy.deepcopy(base), plan)
    models = {"base": base, "pruned": pruned}
    flops = {k: common.flops_of(one_step(m)) for k, m in models.items()}
    options = InferenceOptions(compile=s.compile)
    applied = {k: apply_inference_options(m, options) for k, m in models.items()}
    compile_s = {k: _first_call_s(one_step(m), s.device) for k, m in models.items()} if s.compile else None
    times = common.interleaved_rounds(
        {k: one_step(m) for k, m in models.items()}, rounds=s.rounds, warmup=3, device=s.device
    )
    latency = common.paired_ratio(times["pruned"], times["base"])
    flops_ratio = flops["pruned"] / flops["base"]
    print(
        f"  {family}: {sum(times['base']) / len(times['base']) * 1e3:.1f} -> "
        f"{sum(times['pruned']) / len(times['pruned']) * 1e3:.1f} ms/step, latency x{latency['ratio']:.3f} "
        f"[{latency['ci95'][0]:.3f}, {latency['ci95'][1]:.3f}], FLOPs x{flops_ratio:.3f}"
    )
    energy = {"base": [], "pruned": []}
    for label in ("base", "pruned", "pruned", "base"):
        if sw.left() < 30 and not s.tiny:
            energy[label].append({"status": "skipped", "reason": f"time budget ({sw.left():.0f} s left)"})
            continue
        energy[label].append(
            _per_image(energy_meter.window(one_image(models[label]), s.window_s, s.device), idle)
        )
    achieved = plan.achieved()
    result = {
        "params": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()},
        "plan": {
            "ratio": RATIO,
            "align": plan.info["align"],
            "scores": "random (seed 0)",
            "params_removed_frac_of_prunable": achieved["params_removed_frac_of_prunable"],
            "params_removed_frac_of_model": achieved["params_removed_frac_of_model"],
        },
        "inference_options": applied,
        "compile_first_call_s": compile_s,
        "flops_per_step": flops,
        "flops_ratio": flops_ratio,
        "latency_per_step_s": {
            k: {"mean": sum(v) / len(v), "median": sorted(v)[len(v) // 2], "all": v} for k, v in times.items()
        },
        "latency_ratio": latency,
        "energy_per_image": energy,
        "energy_ratio": _energy_ratio(energy),
        "steps_per_image": s.steps,
        "checks": {
            "latency_within_0.05_of_flops": {
                "gap": latency["ratio"] - flops_ratio,
                "target": TARGETS["latency_vs_flops"],
                "pass": abs(latency["ratio"] - flops_ratio) <= TARGETS["latency_vs_flops"],
            }
        },
    }
    del models, pruned
    return result


def _per_image(window: dict, idle: dict) -> dict:
    """GPU energy per image of one window, gross and net of the idle baseline (or why there is none)."""
    if window["status"] != "measured":
        return window
    out = {**window, "gpu_energy_image_j": window["joules"] / window["calls"]}
    if idle["status"] == "measured":
        out["gpu_energy_image_net_j"] = (window["joules"] - idle["watts"] * window["seconds"]) / window[
            "calls"
        ]
    return out


def _energy_ratio(energy: dict) -> dict:
    """Mean pruned / mean base GPU energy per image over the measured windows, or why there is none."""
    means = {}
    for label, windows in energy.items():
        joules = [w["gpu_energy_image_j"] for w in windows if w["status"] == "measured"]
        if not joules:
            reasons = sorted({w.get("reason", "") for w in windows})
            return {"status": "unavailable", "reason": f"{label}: " + "; ".join(reasons)}
        means[label] = sum(joules) / len(joules)
    return {
        "status": "measured",
        "base_j": means["base"],
        "pruned_j": means["pruned"],
        "ratio": means["pruned"] / means["base"],
    }


# --- the run --------------------------------------------------------------------------------------------------


def _build(s: Settings, family: str):
    den = common.build_denoiser(family, s.scale, device=s.device, dtype=s.dtype)
    params = sum(p.numel() for p in den.parameters())
    expected = common.published_config(family)[1]
    if not s.tiny and expected is not None and params != expected:
        raise RuntimeError(f"{family}: built {params:,} parameters, the published model has {expected:,}")
    step_model, _ = common.make_step(family, s.scale, cfg=family == "sdxl", device=s.device, dtype=s.dtype)
    return den, step_model, params


def run(args) -> dict:
    s = Settings(args.tiny, args.steps, args.compile)
    if s.device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("gpu_validation: no CUDA device here; use --tiny for the CPU code-path check")
        torch.backends.cudnn.benchmark = True
    sw = common.Stopwatch(args.budget_s)
    out = args.out or common.ROOT / "benchmarks" / "results" / (
        "gpu_validation_tiny.json" if s.tiny else "gpu_validation.json"
    )
    energy_meter = common.NvmlEnergy()
    result = {
        "benchmark": "gpu_validation",
        **common.environment(),
        "driver": energy_meter.driver,
        "nvml": energy_meter.reason or f"ok ({energy_meter.name})",
        "settings": s.to_dict(),
        "budget_s": args.budget_s,
        "sections": {},
    }
    if torch.cuda.is_available():
        result["cudnn"] = torch.backends.cudnn.version()
    try:
        idle = result["idle_power"] = energy_meter.idle_power(s.idle_s)
        for family in ("sdxl", "flux"):
            wanted = [name for name in args.sections if name.startswith(family)]
            if not wanted:
                continue
            if sw.left() < 120 and not s.tiny:
                for name in wanted:
                    result["sections"][name] = {
                        "status": "skipped",
                        "reason": f"time budget ({sw.left():.0f} s left)",
                    }
                continue
            den, step_model, result[f"{family}_params"] = _build(s, family)
            for name in wanted:
                print(name)
                if name.endswith("mask_training"):
                    result["sections"][name] = mask_training(s, den, step_model, sw)
                else:
                    with torch.no_grad():
                        result["sections"][name] = speed(s, family, den, step_model, energy_meter, idle, sw)
                common.write_json(out, result)
            del den, step_model
            _free()
    finally:
        energy_meter.close()
        result["wall_s"] = sw.elapsed
        common.write_json(out, result)
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return result


def _sections(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in SECTIONS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown section {bad or text!r}; allowed: {', '.join(SECTIONS)}")
    return names


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="tiny models on the CPU (code-path check, seconds)"
    )
    parser.add_argument("--sections", type=_sections, default=list(SECTIONS))
    parser.add_argument("--compile", choices=COMPILE_MODES, default=None)
    parser.add_argument(
        "--steps", type=int, default=50, help="sampling steps per image for the energy windows"
    )
    parser.add_argument(
        "--budget-s", type=float, default=480.0, help="skip what would not fit in this many seconds"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.budget_s <= 0:
        parser.error("--steps must be >= 1 and --budget-s > 0")
    return run(args)


if __name__ == "__main__":
    main()
