"""Memory and time of one EcoDiff mask-training iteration versus the number of sampling steps T (CPU).

One iteration is what ``pruning.methods.ecodiff`` does per calibration sample: masks from
``MaskSet(find_groups(denoiser))`` attached to the frozen denoiser, hard-concrete noise reseeded per step
(``masks.resample(seed + i)`` before each step), forward over the whole trajectory, loss = MSE between
the final latent and the unmasked model's final latent (scaled by 1/accumulate) plus the sparsity term,
backward into the mask logits. It is run two ways:

- ``full``:         ``pruning.trajectory.full_backward`` (plain backprop through every step);
- ``checkpointed``: ``pruning.trajectory.checkpointed_backward`` (time-step gradient checkpointing).

Memory:
- peak RSS growth, each (T, way) in a FRESH interpreter so peaks never carry over: VmHWM over the
  iteration (reset through /proc/self/clear_refs by ``MemoryTracker``) minus VmRSS just before it. The
  child runs with glibc's ``MALLOC_MMAP_THRESHOLD_`` pinned low so large tensors are mapped and unmapped
  on their own and freed memory leaves RSS at once (no heap retention blurring the figure). A one-step iteration of the same way runs first as a warm-up (lazy kernel and
  allocator set-up), then the measured one.
- saved activations: the peak over the iteration of the bytes of distinct tensor storages autograd holds
  for backward (counted with ``torch.autograd.graph.saved_tensors_hooks``), excluding parameters,
  buffers, the mask logits and the trajectory's fixed inputs. Exact and noise-free (deterministic, so it
  is counted in this process, during the timing warm-up): the cleanest figure.

Time, in this process: per T a warm-up of each way, then ``--reps`` pairs with the order flipped every pair
(interleaved so drift and other processes' load hit both alike); reported: the medians and the median of
the per-pair ratios checkpointed / full. The logit gradients of the two ways are compared as a check.

Targets (reported, not asserted): checkpointed peak memory at the largest T within 1.1x of the smallest T;
checkpointed time at most 1.5x the full-backprop time, per T.

    python benchmarks/mask_training_memory.py [--model auto|tiny|large|digits-sdxl|digits-flux]
        [--steps 1,2,4,8,16] [--reps 5] [--threads 1] [--out PATH]

Model ``auto`` (default): the zoo's digits-sdxl when ``ecodiff_bench/zoo/models/digits-sdxl`` holds a
pipeline, else ``large``: an SDXL-architecture pipeline from constructor arguments (tests/tiny.py's text
encoders and VAE, a wider U-Net on 32x32 latents so activations dominate memory). ``digits-sdxl`` /
``digits-flux`` without the trained model in the zoo use the zoo's untrained pipeline of the same
architecture (memory and time do not depend on the weights). Prints the figures and writes JSON
(default benchmarks/results/mask_training_memory_cpu.json).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "ecodiff_bench" / "zoo" / "models"
PROMPT = "a handwritten digit seven"
SEED = 0
MEMORY_RATIO_TARGET = 1.1
TIME_RATIO_TARGET = 1.5
# glibc: serve every allocation of 64 KiB or more by its own mapping (fixed threshold, no dynamic raise),
# so a freed tensor goes back to the OS immediately and RSS follows the live memory.
CHILD_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}
WAYS = (("full", False), ("checkpointed", True))


# --- pipelines -----------------------------------------------------------------------------------------------


def _tiny_module():
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny

    return tiny


def _large_sdxl(seed: int):
    """tests/tiny.py's SDXL pipeline with a wider U-Net on 32x32 latents (the tiny VAE's factor is 1).

    (32, 64) channels: twice tiny's width and 4x its latent area, so the saved activations of one step
    (~58 MiB at CFG batch 2) are ten times the U-Net's weights, and an iteration stays ~0.3 s per step on
    one CPU thread.
    """
    from diffusers import StableDiffusionXLPipeline

    tiny = _tiny_module()
    small = tiny.sdxl_pipeline(seed=seed)
    torch.manual_seed(seed + 10)
    unet = tiny.sdxl_unet(sample_size=32, block_out_channels=(32, 64), norm_num_groups=16)
    pipe = StableDiffusionXLPipeline(
        vae=small.vae,
        text_encoder=small.text_encoder,
        text_encoder_2=small.text_encoder_2,
        tokenizer=small.tokenizer,
        tokenizer_2=small.tokenizer_2,
        unet=unet,
        scheduler=small.scheduler,
    )
    return pipe


def load_pipeline(model: str):
    """(pipeline, resolved model name, description, sampling settings) on the CPU in fp32."""
    if model == "auto":
        model = "digits-sdxl" if (ZOO / "digits-sdxl" / "model_index.json").is_file() else "large"
    sampling = {"guidance": 5.0, "height": None, "width": None, "max_sequence_length": 512}
    if model == "tiny":
        tiny = _tiny_module()
        pipe = tiny.sdxl_pipeline(seed=SEED)
        sampling.update(height=tiny.SDXL_CALL["height"], width=tiny.SDXL_CALL["width"])
        source = "tiny SDXL pipeline from constructor arguments (tests/tiny.py)"
    elif model == "large":
        pipe = _large_sdxl(SEED)
        sampling.update(height=32, width=32)
        source = (
            "SDXL-architecture pipeline from constructor arguments: tests/tiny.py's text encoders and VAE, "
            "U-Net block_out_channels (32, 64), 2/4 heads, transformer layers (1, 2), 32x32 latents"
        )
    elif model in ("digits-sdxl", "digits-flux"):
        path = ZOO / model
        flux = model == "digits-flux"
        if (path / "model_index.json").is_file():
            from diffusers import FluxPipeline, StableDiffusionXLPipeline

            cls = FluxPipeline if flux else StableDiffusionXLPipeline
            pipe = cls.from_pretrained(str(path), torch_dtype=torch.float32)
            source = f"zoo {model} ({path})"
        else:
            from ecodiff_bench.zoo import flux as zoo_flux
            from ecodiff_bench.zoo import sdxl as zoo_sdxl

            pipe = (zoo_flux if flux else zoo_sdxl).build_random_pipeline(seed=SEED)
            source = (
                f"untrained {model} architecture (ecodiff_bench.zoo build_random_pipeline; {path} absent)"
            )
        if flux:
            from ecodiff_bench.zoo.tokenization import T5_MAX_LENGTH

            sampling.update(guidance=3.5, max_sequence_length=T5_MAX_LENGTH)
    else:
        raise ValueError(f"unknown model {model!r}")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cpu", torch.float32), model, source, sampling


# --- one mask-training iteration -------------------------------------------------------------------------------


def _tensors_in(obj, depth: int = 0):
    if torch.is_tensor(obj):
        yield obj
    elif depth < 3 and isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors_in(v, depth + 1)
    elif depth < 3 and isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors_in(v, depth + 1)
    elif depth < 2 and hasattr(obj, "__dict__") and not isinstance(obj, torch.nn.Module):
        for v in vars(obj).values():
            yield from _tensors_in(v, depth + 1)


class MaskTraining:
    """A pipeline with EcoDiff masks attached and, per T, the trajectory and unmasked reference prepared."""

    def __init__(self, pipe, sampling: dict):
        from pruning.architectures import denoiser_of, find_groups
        from pruning.masks import MaskSet
        from pruning.methods.ecodiff import EcoDiffConfig

        self.pipe, self.sampling = pipe, sampling
        self.config = EcoDiffConfig(
            controller="none"
        )  # one iteration with the fixed penalty: no target needed
        self.denoiser = denoiser_of(pipe)
        for p in self.denoiser.parameters():
            p.requires_grad_(False)  # as ecodiff: only the logits learn
        groups = find_groups(self.denoiser)
        self.n_groups, self.n_units = len(groups), sum(g.n_units for g in groups)
        self.masks = MaskSet(groups, self.config.parametrization)
        self._cache: dict[int, tuple] = {}
        self.masks.attach(self.denoiser)

    def prepared(self, steps: int):
        """(trajectory, reference final latent) for ``steps`` sampling steps, computed once."""
        from pruning import trajectory
        from pruning.architectures import prepare_trajectory

        if steps not in self._cache:
            s = self.sampling
            traj = prepare_trajectory(
                self.pipe,
                PROMPT,
                SEED,
                steps=steps,
                guidance=s["guidance"],
                height=s["height"],
                width=s["width"],
                max_sequence_length=s["max_sequence_length"],
            )
            with self.masks.using("off"), torch.no_grad():
                ref = trajectory.run(traj, self.denoiser)
            self._cache[steps] = (traj, ref)
        return self._cache[steps]

    def fixed_storages(self, steps: int) -> set[int]:
        """Storage addresses of what exists before an iteration: weights, buffers, logits, trajectory inputs."""
        traj, ref = self.prepared(steps)
        tensors = [*self.pipe_tensors(), *self.masks.parameters(), *_tensors_in(traj), ref]
        return {t.untyped_storage().data_ptr() for t in tensors}

    def pipe_tensors(self):
        for module in self.pipe.components.values():
            if isinstance(module, torch.nn.Module):
                yield from module.parameters()
                yield from module.buffers()

    def zero_grad(self) -> None:
        for p in self.masks.parameters():
            p.grad = None

    def iteration(self, steps: int, checkpointing: bool) -> float:
        """One training iteration at ``steps`` steps; the logits' gradients are left in their ``.grad``."""
        from pruning import trajectory

        traj, ref = self.prepared(steps)
        cfg = self.config
        scale = 1.0 / cfg.accumulate
        noise_seed = (cfg.seed * 1_000_003 + 0) * 1000  # position 0 of ecodiff's schedule

        def loss_fn(z):
            return torch.nn.functional.mse_loss(z.float(), ref.float()) * scale

        def before_step(i):
            self.masks.resample(noise_seed + i)

        backward = trajectory.checkpointed_backward if checkpointing else trajectory.full_backward
        loss, _ = backward(traj, self.denoiser, loss_fn, before_step)
        (cfg.beta_reg * self.masks.sparsity_loss() * scale).backward()
        return float(loss)

    def gradients(self) -> torch.Tensor:
        return torch.cat([p.grad.detach().flatten().clone() for p in self.masks.parameters()])


class _Saved:
    __slots__ = ("counter", "ptr", "tensor")

    def __init__(self, counter, ptr, tensor):
        self.counter, self.ptr, self.tensor = counter, ptr, tensor

    def __del__(self):
        self.counter.release(self.ptr)


class SavedActivations:
    """Peak bytes of distinct storages autograd keeps for backward (a storage saved twice counts once)."""

    def __init__(self, exclude: set[int]):
        self.exclude = exclude
        self.live: dict[int, list[int]] = {}  # storage address -> [references, bytes]
        self.bytes = 0
        self.peak = 0
        self.saved = 0  # tensors packed (excluded ones too)
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    def pack(self, t):
        self.saved += 1
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0 or ptr in self.exclude:
            return t
        entry = self.live.get(ptr)
        if entry is None:
            self.live[ptr] = [1, nbytes]
            self.bytes += nbytes
            self.peak = max(self.peak, self.bytes)
        else:
            entry[0] += 1
        return _Saved(self, ptr, t)

    @staticmethod
    def unpack(packed):
        return packed.tensor if isinstance(packed, _Saved) else packed

    def release(self, ptr) -> None:
        entry = self.live[ptr]
        entry[0] -= 1
        if entry[0] == 0:
            self.bytes -= entry[1]
            del self.live[ptr]

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


# --- memory: one configuration per fresh interpreter ----------------------------------------------------------


def _vm_rss_bytes() -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def child_memory(model: str, steps: int, checkpointing: bool) -> dict:
    """Measure one configuration in this (fresh) process; returns the row's memory figures."""
    from ecodiff_bench.measure import MemoryTracker

    pipe, _, _, sampling = load_pipeline(model)
    run = MaskTraining(pipe, sampling)
    run.prepared(steps)
    run.prepared(1)
    run.iteration(1, checkpointing)  # warm-up: lazy kernel / allocator set-up, same code path
    run.zero_grad()
    gc.collect()
    before = _vm_rss_bytes()
    with MemoryTracker("cpu", nvml=False) as mem:
        run.iteration(steps, checkpointing)
    peak_value = mem.values()["peak_rss_bytes"]
    peak = int(peak_value.value)
    return {
        "rss_before_bytes": before,
        "peak_rss_bytes": peak,
        "peak_rss_growth_bytes": peak - before if before is not None else None,
        "peak_rss_note": peak_value.note,
    }


def run_child(model: str, steps: int, checkpointing: bool, threads: int) -> dict:
    env = {**os.environ, **CHILD_MALLOC_ENV, "OMP_NUM_THREADS": str(threads)}
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--model",
        model,
        "--threads",
        str(threads),
        "--child",
        f"{steps}:{int(checkpointing)}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(
            f"memory child T={steps} checkpointing={checkpointing} failed:\n{proc.stderr[-4000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- time: interleaved in this process -------------------------------------------------------------------------


def time_configs(run: MaskTraining, steps_list: list[int], reps: int) -> dict[int, dict]:
    """Per T: a warm-up of each way (counting saved activations and keeping the gradients), then ``reps``
    interleaved pairs timed."""
    out = {}
    for steps in steps_list:
        exclude = run.fixed_storages(steps)
        grads, saved = {}, {}
        for name, ckpt in WAYS:
            run.zero_grad()
            with SavedActivations(exclude) as counter:
                run.iteration(steps, ckpt)
            grads[name] = run.gradients()
            saved[name] = {"peak_bytes": counter.peak, "packed": counter.saved, "left_after": counter.bytes}
        times: dict[str, list[float]] = {name: [] for name, _ in WAYS}
        for r in range(reps):
            for name, ckpt in WAYS if r % 2 == 0 else WAYS[::-1]:
                run.zero_grad()
                t0 = time.perf_counter()
                run.iteration(steps, ckpt)
                times[name].append(time.perf_counter() - t0)
        ratios = [c / f for c, f in zip(times["checkpointed"], times["full"], strict=True)]
        diff = (grads["checkpointed"] - grads["full"]).abs().max().item()
        out[steps] = {
            "times": times,
            "ratios": ratios,
            "ratio_median": statistics.median(ratios),
            "saved": saved,
            "grad_max_abs_diff": diff,
            "grad_max_abs": grads["full"].abs().max().item(),
        }
        print(
            f"  T={steps:>2}: full {statistics.median(times['full']):7.3f} s  checkpointed "
            f"{statistics.median(times['checkpointed']):7.3f} s  ratio {out[steps]['ratio_median']:.3f}  "
            f"saved activations full {_mib(saved['full']['peak_bytes'])} MiB, checkpointed "
            f"{_mib(saved['checkpointed']['peak_bytes'])} MiB",
            flush=True,
        )
    return out


# --- main -------------------------------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        m = None
    return m.group(1).strip() if m else (platform.processor() or platform.machine())


def _mib(n) -> str:
    return "n/a" if n is None else f"{n / 2**20:8.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model", default="auto", choices=["auto", "tiny", "large", "digits-sdxl", "digits-flux"]
    )
    ap.add_argument("--steps", default="1,2,4,8,16", help="comma-separated sampling step counts T")
    ap.add_argument("--reps", type=int, default=5, help="timed iteration pairs per T (after one warm-up)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine contention dominates the noise otherwise)",
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # "T:checkpointing", internal
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.child:
        steps, ckpt = (int(v) for v in args.child.split(":"))
        print(json.dumps(child_memory(args.model, steps, bool(ckpt))))
        return

    steps_list = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    if not steps_list or min(steps_list) < 1:
        ap.error("--steps needs positive integers")
    t_start = time.perf_counter()
    pipe, model, source, sampling = load_pipeline(args.model)
    run = MaskTraining(pipe, sampling)
    traj, _ = run.prepared(steps_list[0])
    latent_shape = list(traj.latents.shape)
    n_params = sum(p.numel() for p in run.denoiser.parameters())
    print(f"pipeline: {source}")
    print(
        f"device: CPU {cpu_name()}, {os.cpu_count()} cores, torch threads {args.threads}, "
        f"load average {[round(x, 2) for x in os.getloadavg()]}"
    )
    print(
        f"denoiser {type(run.denoiser).__name__}: {n_params / 1e6:.2f} M parameters, {run.n_groups} mask groups, "
        f"{run.n_units} units; latent {latent_shape}, guidance {sampling['guidance']}, steps {steps_list}"
    )

    print("memory (one fresh interpreter per configuration):", flush=True)
    memory: dict[tuple[int, bool], dict] = {}
    for steps in steps_list:
        for name, ckpt in WAYS:
            memory[steps, ckpt] = m = run_child(model, steps, ckpt, args.threads)
            print(
                f"  T={steps:>2} {name:>12}: peak RSS growth {_mib(m['peak_rss_growth_bytes'])} MiB "
                f"(RSS before {_mib(m['rss_before_bytes'])} MiB)",
                flush=True,
            )

    print(
        f"time (median of {args.reps} interleaved pairs after a warm-up) and saved activations:", flush=True
    )
    timing = time_configs(run, steps_list, args.reps)
    for (steps, ckpt), m in memory.items():
        m["saved_activation_bytes"] = timing[steps]["saved"]["checkpointed" if ckpt else "full"]["peak_bytes"]
        m["saved_tensors_packed"] = timing[steps]["saved"]["checkpointed" if ckpt else "full"]["packed"]

    rows = []
    for steps in steps_list:
        for name, ckpt in WAYS:
            m, t = memory[steps, ckpt], timing[steps]
            rows.append(
                {
                    "T": steps,
                    "checkpointing": ckpt,
                    "peak_rss_growth_bytes": m["peak_rss_growth_bytes"],
                    "saved_activation_bytes": m["saved_activation_bytes"],
                    "time_s_median": statistics.median(t["times"][name]),
                    "reps": args.reps,
                    "time_s": t["times"][name],
                    "rss_before_bytes": m["rss_before_bytes"],
                    "peak_rss_bytes": m["peak_rss_bytes"],
                    "saved_tensors_packed": m["saved_tensors_packed"],
                }
            )

    lo, hi = steps_list[0], steps_list[-1]
    rss_lo, rss_hi = memory[lo, True]["peak_rss_growth_bytes"], memory[hi, True]["peak_rss_growth_bytes"]
    act_lo, act_hi = memory[lo, True]["saved_activation_bytes"], memory[hi, True]["saved_activation_bytes"]
    rss_ratio = rss_hi / rss_lo if rss_lo and rss_hi is not None else None
    act_ratio = act_hi / act_lo if act_lo else None
    memory_check = {
        "target": f"checkpointed peak memory at T={hi} within {MEMORY_RATIO_TARGET}x of T={lo}",
        "limit": MEMORY_RATIO_TARGET,
        "T_low": lo,
        "T_high": hi,
        "peak_rss_growth_ratio": rss_ratio,
        "saved_activation_ratio": act_ratio,
        "pass_peak_rss": rss_ratio is not None and rss_ratio <= MEMORY_RATIO_TARGET,
        "pass_saved_activations": act_ratio is not None and act_ratio <= MEMORY_RATIO_TARGET,
        "full_backward_peak_rss_growth_ratio": (
            memory[hi, False]["peak_rss_growth_bytes"] / memory[lo, False]["peak_rss_growth_bytes"]
        ),
        "full_backward_saved_activation_ratio": (
            memory[hi, False]["saved_activation_bytes"] / memory[lo, False]["saved_activation_bytes"]
        ),
    }
    memory_check["pass"] = memory_check["pass_peak_rss"] and memory_check["pass_saved_activations"]
    memory_check["peak_rss_growth_diff_bytes"] = (
        (rss_hi - rss_lo) if rss_lo is not None and rss_hi is not None else None
    )
    # Step 0 needs no gradient for its input latent; every later step does, so T=1 saves slightly less than
    # any T >= 2. The ratio against the second-smallest T shows whether memory is flat beyond that.
    if len(steps_list) > 2:
        lo2 = steps_list[1]
        memory_check["vs_second_smallest_T"] = {
            "T_low": lo2,
            "peak_rss_growth_ratio": rss_hi / memory[lo2, True]["peak_rss_growth_bytes"],
            "saved_activation_ratio": act_hi / memory[lo2, True]["saved_activation_bytes"],
        }
    per_t = {
        str(s): {
            "ratio_median": timing[s]["ratio_median"],
            "ratios": timing[s]["ratios"],
            "pass": timing[s]["ratio_median"] <= TIME_RATIO_TARGET,
        }
        for s in steps_list
    }
    time_check = {
        "target": f"checkpointed / full-backprop time at most {TIME_RATIO_TARGET}x, per T",
        "limit": TIME_RATIO_TARGET,
        "per_T": per_t,
        "max_ratio": max(v["ratio_median"] for v in per_t.values()),
        "pass": all(v["pass"] for v in per_t.values()),
    }
    grad_check = {
        str(s): {"max_abs_diff": timing[s]["grad_max_abs_diff"], "max_abs": timing[s]["grad_max_abs"]}
        for s in steps_list
    }

    print()
    print(
        f"{'T':>3} {'way':>12} {'RSS growth MiB':>15} {'saved act. MiB':>15} {'time s (med)':>13} {'ckpt/full':>10}"
    )
    for row in rows:
        ratio = f"{timing[row['T']]['ratio_median']:10.3f}" if row["checkpointing"] else " " * 10
        print(
            f"{row['T']:>3} {'checkpointed' if row['checkpointing'] else 'full':>12} "
            f"{_mib(row['peak_rss_growth_bytes']):>15} {_mib(row['saved_activation_bytes']):>15} "
            f"{row['time_s_median']:13.3f} {ratio}"
        )
    print()
    fmt = "n/a" if rss_ratio is None else f"{rss_ratio:.3f}x"
    print(
        f"{'PASS' if memory_check['pass_peak_rss'] else 'FAIL'}  memory (peak RSS growth): checkpointed "
        f"T={hi} / T={lo} = {fmt} (target <= {MEMORY_RATIO_TARGET}x; full backprop: "
        f"{memory_check['full_backward_peak_rss_growth_ratio']:.2f}x)"
    )
    print(
        f"{'PASS' if memory_check['pass_saved_activations'] else 'FAIL'}  memory (saved activations): "
        f"checkpointed T={hi} / T={lo} = {act_ratio:.3f}x (target <= {MEMORY_RATIO_TARGET}x; full backprop: "
        f"{memory_check['full_backward_saved_activation_ratio']:.2f}x)"
    )
    if "vs_second_smallest_T" in memory_check:
        v2 = memory_check["vs_second_smallest_T"]
        print(
            f"info  checkpointed T={hi} / T={v2['T_low']}: peak RSS growth {v2['peak_rss_growth_ratio']:.3f}x, "
            f"saved activations {v2['saved_activation_ratio']:.3f}x; T={hi} - T={lo} peak RSS growth "
            f"{(rss_hi - rss_lo) / 2**20:+.2f} MiB"
        )
    for s in steps_list:
        v = per_t[str(s)]
        print(
            f"{'PASS' if v['pass'] else 'FAIL'}  time overhead T={s:>2}: checkpointed / full = "
            f"{v['ratio_median']:.3f}x (median of {len(v['ratios'])} pairs; target <= {TIME_RATIO_TARGET}x)"
        )
    worst = max(v["max_abs_diff"] / max(v["max_abs"], 1e-30) for v in grad_check.values())
    print(f"gradient check: checkpointed vs full logit gradients, max relative difference {worst:.2e}")

    import diffusers

    result = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "benchmark": "mask_training_memory",
        "device": "cpu",
        "cpu_name": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "settings": {
            "model": model,
            "model_requested": args.model,
            "pipeline": source,
            "denoiser": type(run.denoiser).__name__,
            "denoiser_params": n_params,
            "mask_groups": run.n_groups,
            "mask_units": run.n_units,
            "parametrization": run.config.parametrization,
            "accumulate": run.config.accumulate,
            "beta_reg": run.config.beta_reg,
            "prompt": PROMPT,
            "seed": SEED,
            "guidance": sampling["guidance"],
            "height": sampling["height"],
            "width": sampling["width"],
            "latent_shape": latent_shape,
            "steps": steps_list,
            "reps": args.reps,
            "dtype": "float32",
            "memory_child_env": CHILD_MALLOC_ENV,
            "memory_method": "fresh interpreter per configuration; warm-up one-step iteration of the same way; "
            "peak_rss_growth = VmHWM over the iteration (reset via /proc/self/clear_refs) minus "
            "VmRSS before it",
            "saved_activation_method": "peak live bytes of distinct storages packed by "
            "torch.autograd.graph.saved_tensors_hooks, excluding parameters, buffers, "
            "mask logits and the trajectory's fixed inputs (counted during the timing "
            "warm-up iteration; deterministic)",
            "time_method": "per T: one warm-up of each way, then reps pairs, order flipped every pair; "
            "trajectory and reference prepared once outside the timed region",
        },
        "rows": rows,
        "targets": {
            "memory_flat_with_checkpointing": memory_check,
            "time_overhead_of_checkpointing": time_check,
        },
        "gradient_check": grad_check,
        "wall_s": time.perf_counter() - t_start,
    }
    out = args.out or ROOT / "benchmarks" / "results" / "mask_training_memory_cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
