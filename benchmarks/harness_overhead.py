"""How much does the measurement harness add to what it measures? (target: < 2 % of latency)

Runs a small diffusers SDXL pipeline (the zoo's digits-sdxl when it is present, else a tiny SDXL-architecture
pipeline built from constructor arguments) two ways, alternating call by call so drift and other processes'
load hit both alike:

- bare:    a plain loop, one ``time.perf_counter()`` pair per call (with device synchronization);
- harness: the same calls timed by ``LatencySampler`` (the synchronizing Timer behind ``time_callable``),
           inside an ``EnergyMonitor`` window (power timeline sampling when NVML is there) and a
           ``MemoryTracker`` window.

Reported: the median of paired ratios harness/bare and the best-of ratio (both noisy on a shared machine;
an A/A ratio of bare calls is printed next to them), and the harness's own costs measured directly (Timer
enter/exit per call, window edges per window), a noise-free figure of what the harness adds per call.

    python benchmarks/harness_overhead.py [--device cuda] [--pairs 40] [--steps 4] [--batch 1]

Prints the figures and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_pipeline(device: str):
    zoo_dir = ROOT / "ecodiff_bench" / "zoo" / "models" / "digits-sdxl"
    if (zoo_dir / "model_index.json").is_file():
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline.from_pretrained(str(zoo_dir))
        source = f"zoo digits-sdxl ({zoo_dir})"
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny import sdxl_pipeline  # tiny SDXL-architecture pipeline from constructor arguments

        pipe = sdxl_pipeline(seed=0)
        source = "tiny SDXL pipeline from constructor arguments (tests/tiny.py; zoo digits-sdxl not present)"
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device), source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=40, help="bare/harness call pairs")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default on the CPU: 1, as thread contention on a shared machine "
        "dominates the noise otherwise; on CUDA: torch's choice)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)

    from ecodiff_bench.measure import EnergyMonitor, LatencySampler, MemoryTracker, Timer
    from ecodiff_bench.measure._device import synchronize

    pipe, source = load_pipeline(args.device)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    prompts = ["a handwritten digit seven"] * args.batch
    gen = torch.Generator(device="cpu")

    def call():
        gen.manual_seed(0)
        with torch.no_grad():
            pipe(
                prompt=prompts,
                num_inference_steps=args.steps,
                height=size,
                width=size,
                guidance_scale=5.0,
                output_type="pt",
                generator=gen,
            )

    device = torch.device(args.device)
    for _ in range(3):  # warm-up (allocator, kernels, caches)
        call()
    synchronize(device)

    t0 = time.perf_counter()
    monitor = EnergyMonitor(cpu="auto")
    setup_s = time.perf_counter() - t0
    timeline = monitor.session.ok
    if timeline:
        monitor.start_timeline(interval_s=0.1)

    # Paired design: bare and harness calls alternate one by one (order flipped every pair), so drift and
    # other processes' load hit both alike; the whole run sits in one energy window and memory window.
    sampler = LatencySampler(images_per_call=args.batch, steps_per_call=args.steps, device=device)
    bare: list[float] = []
    e0 = time.perf_counter()
    mem = MemoryTracker(device).__enter__()
    monitor.begin_window("harness")
    edges_begin = time.perf_counter() - e0
    for i in range(args.pairs):
        for kind in ("bare", "harness") if i % 2 == 0 else ("harness", "bare"):
            if kind == "bare":
                synchronize(device)
                s = time.perf_counter()
                call()
                synchronize(device)
                bare.append(time.perf_counter() - s)
            else:
                with sampler.measure():
                    call()
    e1 = time.perf_counter()
    window = monitor.end_window("harness")
    mem.__exit__(None, None, None)
    window.values(images=args.pairs * args.batch, idle_power=monitor.idle_power)
    mem.values()
    latency = sampler.values()
    edges_cost = edges_begin + (time.perf_counter() - e1)
    harness = sampler.call_seconds
    power = monitor.stop_timeline() if timeline else []
    monitor.close()

    # the harness's fixed costs, measured directly
    n_empty = 2000
    s = time.perf_counter()
    for _ in range(n_empty):
        with Timer(device):
            pass
    timer_cost = (time.perf_counter() - s) / n_empty

    ratios = [h / b for h, b in zip(harness, bare, strict=True)]
    paired = statistics.median(ratios) - 1.0
    best = min(harness) / min(bare) - 1.0
    # A/A: consecutive bare calls against each other (what noise alone produces)
    aa = statistics.median([b2 / b1 for b1, b2 in zip(bare[::2], bare[1::2], strict=False)]) - 1.0
    fixed_per_call = timer_cost + edges_cost / args.pairs
    bare_med = statistics.median(bare)
    result = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pipeline": source,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "steps": args.steps,
        "batch": args.batch,
        "pairs": args.pairs,
        "bare_call_s": bare,
        "harness_call_s": harness,
        "bare_median_call_s": bare_med,
        "harness_median_call_s": statistics.median(harness),
        "overhead_paired_median_frac": paired,
        "overhead_best_of_frac": best,
        "aa_noise_median_frac": aa,
        "timer_cost_per_call_s": timer_cost,
        "window_edges_cost_s": edges_cost,
        "fixed_overhead_per_call_frac": fixed_per_call / bare_med,
        "energy_monitor_setup_s": setup_s,
        "power_timeline_samples": len(power),
        "latency_image_s": latency["latency_image_s"].to_dict(),
        "gpu_energy_status": window.gpu_status,
        "gpu_energy_note": window.gpu_note,
        "cpu_energy_status": window.cpu_status,
        "cpu_energy_note": window.cpu_note,
    }
    print(f"pipeline: {source}")
    print(
        f"device: {result['device_name']}  steps={args.steps} batch={args.batch} pairs={args.pairs} "
        f"load average {result['load_average']}"
    )
    print(f"bare    call: median {bare_med * 1e3:9.3f} ms  best {min(bare) * 1e3:9.3f} ms")
    print(
        f"harness call: median {statistics.median(harness) * 1e3:9.3f} ms  best {min(harness) * 1e3:9.3f} ms"
    )
    print(
        f"overhead: paired median {100 * paired:+.2f} %, best-of {100 * best:+.2f} %  "
        f"(A/A noise, bare vs bare: {100 * aa:+.2f} %)"
    )
    print(
        f"fixed costs: Timer {timer_cost * 1e6:.1f} us/call, window edges {edges_cost * 1e3:.2f} ms per window "
        f"-> {100 * result['fixed_overhead_per_call_frac']:.4f} % of a call"
    )
    print(
        f"EnergyMonitor setup (once): {setup_s:.2f} s; GPU energy: {window.gpu_status} ({window.gpu_note}); "
        f"CPU energy: {window.cpu_status}"
    )
    out = args.out or ROOT / "benchmarks" / "results" / f"harness_overhead_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
