"""Reading one run record: its metrics, labels, device, process count and artifact files.

Records are the JSON form of :class:`ecodiff_bench.core.record.RunRecord` (every top-level field present);
metric directions come from the metric catalog. The bottom of the reports package: every other module may
import this one, and it imports none of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecodiff_bench.core import metrics as catalog

# Where a quality metric's sample count is: its Value's details (FrechetDistance: num_samples, CLIP score:
# n, recognisability: n_samples), else the evaluation's sample count in the record's settings.
SAMPLE_DETAIL_KEYS = ("n_samples", "num_samples", "n")
# Figures that add up over processes, or depend on how many share the machine: flagged across world sizes.
WORLD_SENSITIVE = ("throughput_img_per_s",)


# -- metrics ------------------------------------------------------------------------------------------
def metric(record: dict, name: str) -> dict | None:
    return record["metrics"].get(name)


def number(record: dict, name: str) -> float | None:
    """The metric's value when it is available, else None."""
    stored = metric(record, name)
    if not stored or stored["status"] == "unavailable":
        return None
    return float(stored["value"])


def direction(name: str, stored: dict | None) -> bool | None:
    """Whether higher is better for ``name``: the catalog's word (a stored value's for foreign metrics)."""
    return catalog.direction(name, stored["higher_is_better"] if stored else None)


def sample_count(record: dict, name: str) -> int | None:
    """How many images the quality metric ``name`` was computed from (None when unknown)."""
    stored = metric(record, name)
    if not stored or stored["status"] == "unavailable":
        return None
    for key in SAMPLE_DETAIL_KEYS:
        if isinstance(stored["details"].get(key), (int, float)):
            return int(stored["details"][key])
    samples = record["settings"].get("samples")
    return int(samples) if isinstance(samples, (int, float)) else None


# -- what a record is ---------------------------------------------------------------------------------
def is_base(record: dict) -> bool:
    return record["method"] == "base"


def label(record: dict, with_seed: bool = False) -> str:
    text = "base" if is_base(record) else f"{record['method']} @{100 * float(record['ratio']):.4g}%"
    if with_seed and record["seed"] is not None:
        text += f" (seed {record['seed']})"
    return text


def full_label(record: dict) -> str:
    return f"{record['model']} · {label(record, with_seed=True)}"


# -- where and how it was measured --------------------------------------------------------------------
def device_of(record: dict) -> str:
    """The device a record was measured on, from its provenance (see ecodiff_bench.run.provenance).

    Order: provenance.device_name / gpu_name; a run device ("cuda:1", "cpu") from provenance.device or
    settings.device picks the GPU (torch.cuda_devices, else gpu.gpus[*].name) or the CPU model; without a
    run device the first GPU, else the CPU model.
    """
    prov = record.get("provenance") or {}
    settings = record.get("settings") or {}
    for key in ("device_name", "gpu_name"):
        if isinstance(prov.get(key), str) and prov[key]:
            return prov[key]
    run_device = prov.get("device") or settings.get("device") or ""
    if isinstance(run_device, dict):
        run_device = run_device.get("name") or ""
    run_device = str(run_device)
    if run_device and not run_device.startswith(("cuda", "cpu", "mps")):
        return run_device
    cpu = prov.get("cpu") if isinstance(prov.get("cpu"), str) else None
    if run_device.startswith("cpu"):
        return f"CPU: {cpu or 'unknown model'}"
    gpu_names = _gpu_names(prov)
    if gpu_names:
        index = 0
        if ":" in run_device and run_device.split(":", 1)[1].isdigit():
            index = int(run_device.split(":", 1)[1])
        return gpu_names[index] if index < len(gpu_names) else gpu_names[0]
    if cpu:
        return f"CPU: {cpu}"
    return "unknown device"


def _gpu_names(prov: dict) -> list[str]:
    """The GPUs a run saw: torch's device list, else NVML's (``gpu.gpus[*].name``, or a plain name)."""
    torch_info = prov.get("torch") if isinstance(prov.get("torch"), dict) else {}
    names = [str(n) for n in (torch_info.get("cuda_devices") or [])]
    gpu = prov.get("gpu")
    if not names and isinstance(gpu, dict):
        names = [str(g.get("name")) for g in gpu.get("gpus") or [] if isinstance(g, dict) and g.get("name")]
    elif not names and isinstance(gpu, str) and gpu:
        names = [gpu]
    return names


def world_size_of(record: dict) -> int:
    """How many processes measured the record together (``provenance.world_size``; 1 before it existed)."""
    size = (record.get("provenance") or {}).get("world_size")
    return size if isinstance(size, int) and size >= 1 else 1


def commit_of(record: dict) -> str:
    """The git commit the record was measured with (``provenance.git.commit``)."""
    git = record["provenance"].get("git")
    commit = git.get("commit") if isinstance(git, dict) else None
    return str(commit) if commit else "unknown"


# -- artifact files -----------------------------------------------------------------------------------
@dataclass
class Artifact:
    record: dict
    kind: str
    path: Path | None
    problem: str | None  # why it cannot be used (None when path exists)

    @property
    def ok(self) -> bool:
        return self.problem is None


def resolve_artifact(record: dict, kind: str, roots: list[Path]) -> Artifact:
    """Find a record's artifact file: absolute paths as given; relative ones under each root in turn."""
    raw = record["artifacts"].get(kind)
    if not raw:
        return Artifact(record, kind, None, f"no '{kind}' artifact recorded")
    path = Path(raw)
    candidates = [path] if path.is_absolute() else [root / path for root in roots] + [path]
    for candidate in candidates:
        if candidate.is_file():
            return Artifact(record, kind, candidate, None)
    return Artifact(record, kind, None, f"'{kind}' artifact not found at {raw}")


def load_json_artifact(artifact: Artifact) -> tuple[Any, str | None]:
    """(the artifact's JSON, None), or (None, why it cannot be read)."""
    if not artifact.ok:
        return None, artifact.problem
    try:
        return json.loads(artifact.path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return None, f"could not read {artifact.path}: {exc}"
