"""How much does the measurement harness add to what it measures? (target: < 2 % of latency)

Runs a small diffusers SDXL pipeline (the zoo's digits-sdxl when it is present, else a tiny SDXL-architecture
pipeline built from constructor arguments) two ways, in alternating blocks so drift hits both alike:

- bare:    a plain loop, one ``time.perf_counter()`` pair per call;
- harness: the same calls under ``EnergyMonitor`` (a window around the block, power timeline when NVML is
           there), ``MemoryTracker`` and ``time_callable`` (a synchronizing Timer per call).

It reports the end-to-end difference of the medians of block means (noisy on a shared machine: an A/A
difference between bare blocks is printed next to it) and the harness's own fixed costs measured directly (Timer enter/exit per call,
window edges per block), which give a noise-free upper bound of the overhead per call.

    python benchmarks/harness_overhead.py [--device cuda] [--blocks 6] [--calls 10]

Prints the figures and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
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
    ap.add_argument("--blocks", type=int, default=6, help="alternating bare/harness blocks (each)")
    ap.add_argument("--calls", type=int, default=10, help="calls per block")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from ecodiff_bench.measure import EnergyMonitor, MemoryTracker, Timer, time_callable
    from ecodiff_bench.measure._device import synchronize

    pipe, source = load_pipeline(args.device)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    prompts = ["a handwritten digit seven"] * args.batch
    gen = torch.Generator(device="cpu")

    def call():
        gen.manual_seed(0)
        with torch.no_grad():
            pipe(prompt=prompts, num_inference_steps=args.steps, height=size, width=size, guidance_scale=5.0,
                 output_type="pt", generator=gen)

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

    bare_blocks: list[float] = []  # mean call time of each block
    harness_blocks: list[float] = []
    window_costs: list[float] = []
    for b in range(args.blocks):
        order = ("bare", "harness") if b % 2 == 0 else ("harness", "bare")
        for kind in order:
            if kind == "bare":
                times = []
                for _ in range(args.calls):
                    synchronize(device)
                    s = time.perf_counter()
                    call()
                    synchronize(device)
                    times.append(time.perf_counter() - s)
                bare_blocks.append(statistics.fmean(times))
            else:
                e0 = time.perf_counter()
                with MemoryTracker(device) as mem:
                    monitor.begin_window(f"block{b}")
                    e1 = time.perf_counter()
                    vals = time_callable(call, warmup=0, min_reps=args.calls, min_seconds=0.0,
                                         max_reps=args.calls, images_per_call=args.batch,
                                         steps_per_call=args.steps, device=device)
                    e2 = time.perf_counter()
                    window = monitor.end_window(f"block{b}")
                window.values(images=args.calls * args.batch)
                mem.values()
                e3 = time.perf_counter()
                window_costs.append((e1 - e0) + (e3 - e2))
                harness_blocks.append(vals["latency_image_s"].details["call_mean_s"])
    power = monitor.stop_timeline() if timeline else []
    monitor.close()

    # the harness's fixed costs, measured directly
    n_empty = 2000
    s = time.perf_counter()
    for _ in range(n_empty):
        with Timer(device):
            pass
    timer_cost = (time.perf_counter() - s) / n_empty

    bare_med, harness_med = statistics.median(bare_blocks), statistics.median(harness_blocks)
    # A/A: the two halves of the bare blocks against each other (what noise alone produces)
    aa_spread = abs(statistics.median(bare_blocks[0::2]) - statistics.median(bare_blocks[1::2])) / bare_med
    window_cost = statistics.median(window_costs)
    fixed_per_call = timer_cost + window_cost / args.calls
    result = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pipeline": source,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "steps": args.steps, "batch": args.batch, "blocks": args.blocks, "calls_per_block": args.calls,
        "bare_block_mean_call_s": bare_blocks,
        "harness_block_mean_call_s": harness_blocks,
        "bare_median_call_s": bare_med,
        "harness_median_call_s": harness_med,
        "end_to_end_overhead_frac": (harness_med - bare_med) / bare_med,
        "bare_aa_difference_frac": aa_spread,
        "timer_cost_per_call_s": timer_cost,
        "window_edges_cost_s": window_cost,
        "fixed_overhead_per_call_frac": fixed_per_call / bare_med,
        "energy_monitor_setup_s": setup_s,
        "power_timeline_samples": len(power),
        "gpu_energy_status": window.gpu_status, "gpu_energy_note": window.gpu_note,
        "cpu_energy_status": window.cpu_status,
    }
    print(f"pipeline: {source}")
    print(f"device: {result['device_name']}  steps={args.steps} batch={args.batch} "
          f"blocks={args.blocks}x{args.calls} calls")
    print(f"bare    call (median of block means): {bare_med * 1e3:9.3f} ms")
    print(f"harness call (median of block means): {harness_med * 1e3:9.3f} ms")
    print(f"end-to-end overhead: {100 * result['end_to_end_overhead_frac']:+.2f} %  "
          f"(A/A difference between halves of the bare blocks: {100 * aa_spread:.2f} %)")
    print(f"fixed costs: Timer {timer_cost * 1e6:.1f} us/call, window edges {window_cost * 1e3:.2f} ms/block "
          f"-> {100 * result['fixed_overhead_per_call_frac']:.3f} % of a call")
    print(f"EnergyMonitor setup (once): {setup_s:.2f} s; GPU energy: {window.gpu_status} ({window.gpu_note})")
    out = args.out or ROOT / "benchmarks" / "results" / f"harness_overhead_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
