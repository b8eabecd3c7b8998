"""Provenance of a measurement: code version, package versions, machine, GPU, driver, power limit, date.

Everything that can be missing is reported as missing with the reason (e.g. ``{"status": "unavailable",
"reason": ...}`` for GPUs without NVML), never guessed.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "collect_provenance", "cpu_model", "git_info", "gpu_info", "package_versions"]

# distribution names (pip) of the packages whose versions change results
PACKAGES = (
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "accelerate",
    "safetensors",
    "torchmetrics",
    "torch-fidelity",
    "open-clip-torch",
    "codecarbon",
    "nvidia-ml-py",
    "numpy",
    "scipy",
    "ecodiff-bench",
)


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the repository holding ``path`` (default: this package), read-only."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except FileNotFoundError:
        return {"commit": None, "reason": "git is not installed"}
    except subprocess.CalledProcessError as err:
        msg = (err.stderr or "").strip().splitlines()
        return {"commit": None, "reason": msg[-1] if msg else "not a git repository"}
    except subprocess.TimeoutExpired:
        return {"commit": None, "reason": "git timed out"}
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        dirty = None
    return {"commit": commit, "dirty": dirty}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _decode(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def gpu_info() -> dict[str, Any]:
    """GPU names, driver, power limits and memory from NVML; unavailable (with the reason) without it."""
    from ecodiff_bench.measure._nvml import NvmlSession, describe_nvml_error

    with NvmlSession() as s:
        if not s.ok:
            return {"status": "unavailable", "reason": s.reason or "NVML unavailable"}
        nvml = s.nvml
        out: dict[str, Any] = {"status": "ok", "gpus": []}
        try:
            out["driver"] = _decode(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError as err:
            out["driver"] = None
            out["driver_reason"] = describe_nvml_error(nvml, err)
        for g in s.gpus:
            entry: dict[str, Any] = {
                "index": g.index,
                "visible_index": g.visible_index,
                "name": g.name,
                "uuid": g.uuid,
            }
            for key, fn, scale in (
                ("power_limit_w", "nvmlDeviceGetEnforcedPowerLimit", 1e-3),
                ("power_management_limit_w", "nvmlDeviceGetPowerManagementLimit", 1e-3),
            ):
                try:
                    entry[key] = getattr(nvml, fn)(g.handle) * scale
                except (nvml.NVMLError, AttributeError) as err:
                    entry[key] = None
                    entry[key + "_reason"] = (
                        describe_nvml_error(nvml, err) if isinstance(err, nvml.NVMLError) else str(err)
                    )
            try:
                entry["memory_total_bytes"] = int(nvml.nvmlDeviceGetMemoryInfo(g.handle).total)
            except nvml.NVMLError as err:
                entry["memory_total_bytes"] = None
                entry["memory_reason"] = describe_nvml_error(nvml, err)
            out["gpus"].append(entry)
        return out


def _torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"torch": None}
    info: dict[str, Any] = {"cuda_runtime": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.backends.cudnn.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
    if torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    info["num_threads"] = torch.get_num_threads()
    return info


def collect_provenance(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance dict of a run record (``extra`` is merged in: seeds, metric settings, ...)."""
    prov: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "torch": _torch_info(),
        "gpu": gpu_info(),
        "env": {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS") if k in os.environ},
    }
    if extra:
        prov.update(extra)
    return prov
