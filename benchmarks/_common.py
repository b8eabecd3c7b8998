"""Shared by the speed benchmarks: random-init SDXL / FLUX denoisers at several scales, a pure sampling
step with fixed conditioning, a synchronizing timer, interleaved timing rounds, paired bootstrap
intervals, NVML energy windows and run metadata.

Needs only torch, diffusers, numpy, scipy, nvidia-ml-py and ``pruning`` from this checkout, so it runs
on a GPU machine that has none of the harness's dependencies (pydantic, codecarbon, open_clip): the
timer and the energy window below are small stand-ins for ``ecodiff_bench.measure``'s (same method:
CUDA events; NVML's total-energy counter read at synchronized window edges, an idle baseline, and a
reason instead of a number when there is no counter). Architectures come from the published component
configs in ``ecodiff_bench/configs``, read as JSON files.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the harness: idle threads sleep (busy shared CPUs)

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmark this checkout, also where nothing is installed
    sys.path.insert(0, str(ROOT))

from pruning.trajectory import Trajectory  # noqa: E402

CONFIGS = ROOT / "ecodiff_bench" / "configs"
FAMILIES = {"sdxl": ("sdxl.json", "unet"), "flux": ("flux-dev.json", "transformer")}

# Architecture overrides per scale. "cpu": the same block types, head width and FFN ratio, narrower and
# shallower so that one step is ~0.3-0.6 s of matrix work on 2 CPU cores (compute-bound, not overhead).
# "tiny": seconds for a whole benchmark on the CPU (tests, --tiny).
SCALES = {
    "sdxl": {
        "full": {},
        "cpu": {
            "block_out_channels": [128, 256, 512],
            "attention_head_dim": [2, 4, 8],
            "transformer_layers_per_block": [1, 2, 4],
            "layers_per_block": 1,
        },
        "tiny": {
            "block_out_channels": [32, 64, 64],
            "attention_head_dim": [1, 2, 2],
            "transformer_layers_per_block": [1, 1, 1],
            "layers_per_block": 1,
            "cross_attention_dim": 64,
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 32,
            "norm_num_groups": 8,
        },
    },
    "flux": {
        "full": {},
        "cpu": {"num_layers": 2, "num_single_layers": 4, "num_attention_heads": 6},
        "tiny": {
            "num_layers": 1,
            "num_single_layers": 1,
            "num_attention_heads": 2,
            "attention_head_dim": 16,
            "axes_dims_rope": [4, 6, 6],
            "joint_attention_dim": 32,
            "pooled_projection_dim": 32,
            "in_channels": 16,
        },
    },
}
# Latent side (SDXL: latent pixels; FLUX: latent pixels before 2x2 packing) and text tokens per scale.
SHAPES = {
    "sdxl": {"full": (128, 77), "cpu": (32, 77), "tiny": (8, 77)},
    "flux": {"full": (128, 512), "cpu": (32, 64), "tiny": (8, 8)},
}


def published_config(family: str) -> tuple[dict, int | None]:
    """(denoiser config of the published model, its expected parameter count)."""
    file, component = FAMILIES[family]
    spec = json.loads((CONFIGS / file).read_text())
    config = {k: v for k, v in spec["components"][component]["config"].items() if not k.startswith("_")}
    return config, spec.get("expected_params", {}).get(component)


def denoiser_config(family: str, scale: str) -> dict:
    return {**published_config(family)[0], **SCALES[family][scale]}


def build_denoiser(family: str, scale: str, *, device="cpu", dtype=torch.float32, seed: int = 0):
    """A random-init denoiser, built directly on ``device`` in ``dtype`` (weights never matter for speed)."""
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel

    cls = UNet2DConditionModel if family == "sdxl" else FluxTransformer2DModel
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(**denoiser_config(family, scale))
    finally:
        torch.set_default_dtype(previous)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


class Denoise:
    """The model part of one sampling step, with fixed random conditioning: ``(denoiser, x, i) -> dx/dsigma``.

    SDXL: epsilon-prediction U-Net with classifier-free guidance (the batch doubles) when ``cfg``;
    FLUX: rectified-flow transformer with the guidance embedding. Values are random because speed,
    memory and energy do not depend on them; shapes are the real ones for the scale.
    """

    def __init__(
        self,
        family: str,
        config: dict,
        side: int,
        text_tokens: int,
        *,
        cfg: bool,
        guidance: float,
        device,
        dtype,
        seed: int = 0,
    ):
        self.family, self.cfg, self.guidance = family, cfg, guidance
        gen = torch.Generator().manual_seed(seed)

        def rand(*shape):
            return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

        batch = 2 if cfg else 1
        if family == "sdxl":
            pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
            self.kwargs = {
                "encoder_hidden_states": rand(batch, text_tokens, config["cross_attention_dim"]),
                "added_cond_kwargs": {
                    "text_embeds": rand(batch, pooled),
                    "time_ids": torch.tensor(
                        [[side * 8, side * 8, 0, 0, side * 8, side * 8]] * batch, device=device, dtype=dtype
                    ),
                },
            }
            self.latent_shape = (1, config["in_channels"], side, side)
        else:
            tokens = (side // 2) ** 2
            rows, cols = torch.meshgrid(torch.arange(side // 2), torch.arange(side // 2), indexing="ij")
            img_ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(tokens, 3)
            self.kwargs = {
                "encoder_hidden_states": rand(1, text_tokens, config["joint_attention_dim"]),
                "pooled_projections": rand(1, config["pooled_projection_dim"]),
                "txt_ids": torch.zeros(text_tokens, 3, device=device, dtype=dtype),
                "img_ids": img_ids.to(device=device, dtype=dtype),
            }
            if config.get("guidance_embeds"):
                self.kwargs["guidance"] = torch.full((1,), guidance, device=device, dtype=torch.float32)
            self.latent_shape = (1, tokens, config["in_channels"])
        self.device, self.dtype = device, dtype

    def evaluate(self, denoiser, x, sigma, t):
        if self.family == "sdxl":
            x_in = x / (sigma**2 + 1).sqrt()
            if self.cfg:
                x_in = torch.cat([x_in, x_in])
            out = denoiser(x_in, t, return_dict=False, **self.kwargs)[0]
            if self.cfg:
                uncond, text = out.chunk(2)
                out = uncond + self.guidance * (text - uncond)
            return out.to(x.dtype)
        t = t.expand(x.shape[0]).to(x.dtype)
        return denoiser(hidden_states=x, timestep=t / 1000, return_dict=False, **self.kwargs)[0].to(x.dtype)

    def trajectory(self, steps: int, seed: int = 0) -> Trajectory:
        """A ``steps``-step Euler trajectory (SDXL: sigmas from 14.6 to 0; FLUX: from 1 to 0), pure per step."""
        if self.family == "sdxl":
            sigmas = torch.linspace(14.6, 0.0, steps + 1, device=self.device)
            timesteps = torch.linspace(999, 0, steps, device=self.device)
        else:
            sigmas = torch.linspace(1.0, 0.0, steps + 1, device=self.device)
            timesteps = sigmas[:-1] * 1000
        gen = torch.Generator().manual_seed(seed)
        latents = torch.randn(self.latent_shape, generator=gen).to(device=self.device, dtype=self.dtype)

        def model(denoiser, x, i):
            return self.evaluate(denoiser, x, sigmas[i], timesteps[i])

        return Trajectory(latents * sigmas[0].clamp(min=1.0), sigmas, model)


def make_step(
    family: str, scale: str, *, cfg: bool, device, dtype, steps: int = 50
) -> tuple[Denoise, Trajectory]:
    side, text_tokens = SHAPES[family][scale]
    guidance = 5.0 if family == "sdxl" else 3.5
    model = Denoise(
        family,
        denoiser_config(family, scale),
        side,
        text_tokens,
        cfg=cfg,
        guidance=guidance,
        device=device,
        dtype=dtype,
    )
    return model, model.trajectory(steps)


def flops_of(fn: Callable[[], object]) -> int:
    """Matmul/convolution/attention FLOPs of one call (torch.utils.flop_counter; elementwise ops excluded)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    return int(counter.get_total_flops())


class Timer:
    """``with Timer(device) as t: work()`` then ``t.elapsed_s``: CUDA events on a CUDA device (the GPU's own
    clock), else perf_counter; the device is synchronized before the start and after the end."""

    def __init__(self, device=None):
        self.cuda = device is not None and torch.device(device).type == "cuda"
        self.elapsed_s: float | None = None

    def __enter__(self) -> Timer:
        if self.cuda:
            torch.cuda.synchronize()
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self._events[0].record()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self._events[1].record()
            self._events[1].synchronize()
            self.elapsed_s = self._events[0].elapsed_time(self._events[1]) / 1000.0
        else:
            self.elapsed_s = time.perf_counter() - self._t0


def interleaved_rounds(
    fns: dict[str, Callable[[], object]], *, rounds: int, warmup: int, device=None
) -> dict[str, list[float]]:
    """Seconds per call of each function, called once per round in a rotating order (so drift, heat and
    other processes' load hit every label alike)."""
    labels = list(fns)
    for _ in range(warmup):
        for label in labels:
            fns[label]()
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        shift = r % len(labels)
        for label in labels[shift:] + labels[:shift]:
            with Timer(device) as timer:
                fns[label]()
            times[label].append(timer.elapsed_s)
    return times


def paired_ratio(numerator: list[float], denominator: list[float], *, seed: int = 0) -> dict:
    """mean(numerator) / mean(denominator) with a 95% paired bootstrap interval over rounds (scipy)."""
    from scipy.stats import bootstrap

    a, b = np.asarray(numerator), np.asarray(denominator)

    def ratio(x, y, axis=-1):
        return np.mean(x, axis=axis) / np.mean(y, axis=axis)

    result = bootstrap(
        (a, b),
        ratio,
        paired=True,
        vectorized=True,
        n_resamples=4000,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return {"ratio": float(ratio(a, b)), "ci95": [float(low), float(high)], "rounds": int(a.size)}


def verdict(ratio: dict) -> str:
    """'faster' / 'slower' when the interval excludes 1, else 'no change (inside the noise)'."""
    low, high = ratio["ci95"]
    return "faster" if high < 1.0 else "slower" if low > 1.0 else "no change (inside the noise)"


class NvmlEnergy:
    """GPU energy from NVML's total-energy counter (mJ since the driver loaded; Volta and newer).

    ``window(fn, min_seconds)`` calls ``fn`` until at least ``min_seconds`` have passed (the counter
    advances about every 100 ms, so windows of 5 s or more keep its error near 2%) and reads the counter
    at both synchronized edges. Without NVML, a GPU or a counter, every reading is ``unavailable`` with
    the reason, never 0.
    """

    def __init__(self, index: int = 0):
        self.nvml, self.handle, self.reason, self.driver, self.name = None, None, None, None, None
        try:
            import pynvml as nvml

            nvml.nvmlInit()
        except ImportError:
            self.reason = "nvidia-ml-py is not installed"
            return
        except Exception as err:  # NVMLError_LibraryNotFound on machines without a driver, ...
            self.reason = f"NVML unavailable: {type(err).__name__}: {err}"
            return
        try:
            self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
            self.driver = _text(nvml.nvmlSystemGetDriverVersion())
            self.name = _text(nvml.nvmlDeviceGetName(self.handle))
            nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except nvml.NVMLError as err:
            self.reason = f"NVML GPU {index}: {type(err).__name__}: {err}"
            return
        self.nvml = nvml

    def _read_j(self) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0

    def window(self, fn: Callable[[], object], min_seconds: float, device=None) -> dict:
        """{"status", "joules", "seconds", "calls"} of calling ``fn`` for at least ``min_seconds``."""

        def sync():
            if device is not None and torch.device(device).type == "cuda":
                torch.cuda.synchronize()

        sync()
        start_j = self._read_j() if self.nvml else None
        t0, calls = time.perf_counter(), 0
        while calls == 0 or time.perf_counter() - t0 < min_seconds:
            fn()
            calls += 1
        sync()
        seconds = time.perf_counter() - t0
        if self.nvml is None:
            return {"status": "unavailable", "reason": self.reason, "seconds": seconds, "calls": calls}
        joules = self._read_j() - start_j
        if joules < 0:
            return {
                "status": "unavailable",
                "reason": "energy counter went backwards (driver reload or GPU reset)",
                "seconds": seconds,
                "calls": calls,
            }
        return {
            "status": "measured",
            "joules": joules,
            "seconds": seconds,
            "calls": calls,
            "method": "NVML nvmlDeviceGetTotalEnergyConsumption at synchronized window edges",
        }

    def idle_power(self, seconds: float) -> dict:
        """Mean GPU power while nothing runs (the baseline subtracted for net energy)."""
        w = self.window(lambda: time.sleep(seconds), 0.0)
        if w["status"] != "measured":
            return w
        return {"status": "measured", "watts": w["joules"] / w["seconds"], "seconds": w["seconds"]}

    def close(self) -> None:
        if self.nvml is not None:
            self.nvml.nvmlShutdown()
            self.nvml = None


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict:
    import diffusers

    env = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "git_commit": _git_commit(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            device=torch.cuda.get_device_name(0),
            cuda=torch.version.cuda,
            gpu_memory_bytes=props.total_memory,
            multiprocessors=props.multi_processor_count,
        )
    else:
        env["device"] = "cpu"
    return env


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    return path


class Stopwatch:
    """Wall time since start, for a script that must finish inside a budget."""

    def __init__(self, budget_s: float):
        self.t0, self.budget_s = time.perf_counter(), budget_s

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed
