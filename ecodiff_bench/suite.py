"""Suite files: the pydantic schema, loading (with ``include``), and expansion into run specs.

A suite is a YAML mapping. Its smallest useful form::

    name: my-suite
    models: [digits-sdxl]
    methods:
      - {name: magnitude, ratios: [0.2]}
    energy: {country: FRA}

Rules:

* Unknown keys are refused at every level; every value is type-checked (no silent coercion of ``"4"``
  into ``4``). Errors list every problem as ``<field.path>: <what is wrong> (got ...; allowed: ...)``.
* ``include: base.yaml`` (or a list) merges the included mappings under this file's keys: mappings merge
  key by key, everything else (lists included) is replaced by the including file.
* Paths to files that travel with the suite (``include``, ``*.prompts_file``) are relative to the file
  that names them. All other paths (weights, reference sets, local models, outputs) are relative to the
  current working directory; ``~`` is expanded.
* Validation reads files (prompt lists) but writes nothing, loads no model and never touches the network.

:func:`expand` turns a suite into :class:`RunSpec` objects: per model one ``base`` spec, then one spec per
(method, seed, ratio). Each spec carries a ``record_id``: the sha256 of its canonical JSON, which covers
everything that can change a measurement (model and call settings, method, options, ratio, seed,
calibration and evaluation prompts by content, performance and energy settings, smoke) and nothing that
cannot (suite name, description, outputs, regression thresholds). A rerun skips specs whose record exists.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ecodiff_bench.errors import SuiteError
from ecodiff_bench.registry import Registry, UnknownNameError

SCHEMA_VERSION = 1
SUITES_DIR = Path(__file__).resolve().parents[1] / "suites"

# --------------------------------------------------------------------------------------------------
# Known names (kept here so that validating a suite never imports torch)
# --------------------------------------------------------------------------------------------------

FAMILIES = ("sdxl", "sdxl-turbo", "flux-dev", "flux-schnell")

#: Used when ``ecodiff_bench.models`` (the family registry) cannot be imported:
#: model name -> (family, default source, help).
_FALLBACK_MODELS: dict[str, tuple[str, str, str]] = {
    "sdxl": ("sdxl", "hub", "Stable Diffusion XL base 1.0"),
    "sdxl-turbo": ("sdxl-turbo", "hub", "SDXL-Turbo: SDXL distilled to 1-4 steps, no CFG"),
    "flux-dev": ("flux-dev", "hub", "FLUX.1-dev (guidance-distilled)"),
    "flux-schnell": ("flux-schnell", "hub", "FLUX.1-schnell (timestep-distilled)"),
    "digits-sdxl": ("sdxl", "zoo", "digits zoo model (sdxl architecture)"),
    "digits-sdxl-turbo": ("sdxl-turbo", "zoo", "digits zoo model (sdxl-turbo architecture)"),
    "digits-flux": ("flux-dev", "zoo", "digits zoo model (flux-dev architecture)"),
    "digits-flux-schnell": ("flux-schnell", "zoo", "digits zoo model (flux-schnell architecture)"),
}

DEFAULT_HUB_IDS = {
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-turbo": "stabilityai/sdxl-turbo",
    "flux-dev": "black-forest-labs/FLUX.1-dev",
    "flux-schnell": "black-forest-labs/FLUX.1-schnell",
}


@dataclass(frozen=True)
class KnownModel:
    name: str
    family: str
    default_source: str  # "zoo" | "hub"
    hub_id: str | None
    help: str


@functools.lru_cache(maxsize=1)
def _catalog() -> dict[str, KnownModel]:
    """Model names a suite may use: from the family registry (torch-free), or the fallback table."""
    try:
        from ecodiff_bench.models import MODELS as registry
    except ImportError:
        registry = None
    if registry is None:
        return {n: KnownModel(n, fam, src, DEFAULT_HUB_IDS.get(n) if src == "hub" else None, h)
                for n, (fam, src, h) in _FALLBACK_MODELS.items()}
    out = {}
    for name in registry.names():
        entry = registry.get(name)
        zoo = str(entry.source).startswith("zoo:")
        out[name] = KnownModel(name, entry.family, "zoo" if zoo else "hub", None if zoo else entry.source,
                               registry.help(name))
    return out


#: EcoDiff defaults that depend on the architecture (METHODS.md): beta_reg, and the learning rate of heads.
_ECODIFF_FAMILY_DEFAULTS = {
    "sdxl": {"beta_reg": 0.5, "lr_heads": None},
    "sdxl-turbo": {"beta_reg": 0.5, "lr_heads": None},
    "flux-dev": {"beta_reg": 0.01, "lr_heads": 0.5},
    "flux-schnell": {"beta_reg": 0.01, "lr_heads": 0.5},
}

METHODS: Registry[str] = Registry("method")
METHODS.register("ecodiff", "ecodiff", "learned hard-concrete masks over the whole denoising trajectory")
METHODS.register("taylor", "taylor", "Diff-Pruning: first-order Taylor importance over low-noise steps")
METHODS.register("magnitude", "magnitude", "weight-magnitude importance (no data)")
METHODS.register("random", "random", "random units (seeded); the floor any method must beat")

#: Metrics a suite can ask the evaluation stage for.
QUALITY_METRICS = ("fid", "frechet_distance", "clip_score", "ssim_vs_base", "psnr_vs_base", "recognisability")
QualityMetric = Literal["fid", "frechet_distance", "clip_score", "ssim_vs_base", "psnr_vs_base", "recognisability"]

#: Every canonical metric name (CONTRACTS.md); regression thresholds may name any of them.
METRIC_HELP: dict[str, str] = {
    "params": "parameters of the denoiser",
    "params_prunable": "parameters in prunable transformer-block units",
    "params_removed_frac": "fraction of prunable parameters removed",
    "units_removed_frac": "fraction of prunable units (heads, FFN units) removed",
    "disk_bytes": "size of the saved denoiser",
    "flops_per_step": "FLOPs of one denoiser call",
    "latency_image_s": "seconds per image (mean; p50/p90/p99 in details)",
    "latency_step_s": "seconds per denoising step",
    "compile_time_s": "torch.compile: first (compiling) call minus the steady-state mean call",
    "throughput_img_per_s": "images per second",
    "cuda_peak_allocated_bytes": "peak CUDA memory allocated",
    "cuda_peak_reserved_bytes": "peak CUDA memory reserved",
    "nvml_memory_used_bytes": "GPU memory in use (NVML)",
    "peak_rss_bytes": "peak resident memory of the process",
    "gpu_energy_image_j": "GPU energy per image, gross",
    "gpu_energy_image_net_j": "GPU energy per image, idle power subtracted",
    "idle_power_w": "idle GPU power before the run",
    "cpu_energy_image_j": "CPU energy per image (RAPL, or an estimate)",
    "energy_image_j": "total energy per image used for carbon",
    "gco2e_per_1000_images": "grams CO2-equivalent per 1,000 images",
    "fid": "Frechet Inception Distance against the reference set",
    "frechet_distance": "Frechet distance in the suite's feature extractor's space",
    "clip_score": "100 x cosine(image, prompt) in CLIP space",
    "ssim_vs_base": "SSIM against the unpruned model's images of the same seeds",
    "psnr_vs_base": "PSNR against the unpruned model's images of the same seeds",
    "recognisability": "accuracy of a digits classifier on generated digits",
    "pruning_energy_j": "energy spent computing the pruning plan",
    "pruning_time_s": "time spent computing the pruning plan",
}

BUILTIN_PROMPT_SETS = ("digits",)
BUILTIN_REFERENCES = ("digits-heldout",)
_SOURCE_KEYWORDS = ("zoo", "hub", "random-init")


def model_names() -> list[str]:
    """Names a suite may use under ``models[].name``."""
    return list(_catalog())


def known_model(name: str) -> KnownModel:
    cat = _catalog()
    if name not in cat:
        raise UnknownNameError("model", name, list(cat))
    return cat[name]


def family_of(model_name: str) -> str:
    return known_model(model_name).family


def is_digits(model_name: str) -> bool:
    """A model of the digits zoo (whose default source is the zoo)."""
    m = _catalog().get(model_name)
    return m is not None and m.default_source == "zoo"


def builtin_suites() -> dict[str, Path]:
    """Builtin suite names (``digits``, ``sdxl``, ...) -> their files."""
    if not SUITES_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SUITES_DIR.glob("*.yaml"))}


# --------------------------------------------------------------------------------------------------
# Helpers for errors raised from validators
# --------------------------------------------------------------------------------------------------


def _unknown_message(kind: str, name: str, known: Iterable[str]) -> str:
    """``Unknown model 'sdxll'. Did you mean: sdxl?`` (the registry's wording, without its list)."""
    return str(UnknownNameError(kind, name, list(known))).split(" Known:")[0]


def _fail(message: str, *, allowed: Iterable[Any] | str | None = None) -> PydanticCustomError:
    ctx: dict[str, Any] = {"message": message}
    if allowed is not None:
        ctx["allowed"] = allowed if isinstance(allowed, str) else ", ".join(str(a) for a in allowed)
    return PydanticCustomError("suite_value", "{message}", ctx)


class _Problems:
    """Cross-field problems found by a model validator; raised together so that all are reported."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, loc: tuple, message: str, *, got: Any = ..., allowed: Iterable[Any] | str | None = None):
        item: dict[str, Any] = {"loc": tuple(loc), "message": message}
        if got is not ...:
            item["got"] = got
        if allowed is not None:
            item["allowed"] = allowed if isinstance(allowed, str) else ", ".join(str(a) for a in allowed)
        self.items.append(item)

    def raise_if_any(self) -> None:
        if self.items:
            raise PydanticCustomError(
                "suite_problems", "{summary}", {"summary": "; ".join(i["message"] for i in self.items),
                                                 "problems": self.items})


def _check_unique(values: list, what: str) -> list:
    seen: set = set()
    for v in values:
        if v in seen:
            raise _fail(f"duplicate {what} {v!r}")
        seen.add(v)
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------

Dtype = Literal["float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]


class _ModelBase(_Strict):
    """One model to benchmark; ``None`` call settings mean the model's own default."""

    name: str
    label: str | None = Field(None, description="name used in records and reports (default: name)")
    steps: int | None = Field(None, gt=0)
    guidance: float | None = Field(None, ge=0)
    height: int | None = Field(None, gt=0)
    width: int | None = Field(None, gt=0)
    max_sequence_length: int | None = Field(None, gt=0)
    dtype: Dtype | None = None
    device: Device = "auto"

    @field_validator("name")
    @classmethod
    def _known_name(cls, v: str) -> str:
        if v not in _catalog():
            raise _fail(_unknown_message("model", v, model_names()), allowed=model_names())
        return v

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, v: int | None) -> int | None:
        if v is not None and v % 8:
            raise _fail("must be a multiple of 8", allowed="multiples of 8, e.g. 512, 1024")
        return v

    def call_overrides(self) -> dict[str, Any]:
        """The call settings this suite sets (short names: steps, guidance, ...); the rest are the model's."""
        fields = ("steps", "guidance", "height", "width", "max_sequence_length")
        return {f: getattr(self, f) for f in fields if getattr(self, f) is not None}

    @property
    def key(self) -> str:
        """The model's name in records: its label, or its name."""
        return self.label or self.name

    @property
    def family(self) -> str:
        return family_of(self.name)


class ZooModel(_ModelBase):
    """A model of the project's digits zoo (shipped weights)."""

    source: Literal["zoo"] = "zoo"

    @model_validator(mode="after")
    def _only_digits(self) -> ZooModel:
        if not is_digits(self.name):
            raise PydanticCustomError(
                "suite_problems", "zoo source", {"summary": "zoo source", "problems": [{
                    "loc": ("source",), "got": "zoo",
                    "message": f"the zoo only holds digits models, not {self.name!r}",
                    "allowed": "hub, random-init, or a local path"}]})
        return self


class HubModel(_ModelBase):
    """Weights from the Hugging Face Hub (or its local cache when ``allow_hub`` is false)."""

    source: Literal["hub"] = "hub"
    hub_id: str | None = Field(None, description="repository id; default: the family's official one")
    revision: str | None = None

    @model_validator(mode="after")
    def _hub_id_for_digits(self) -> HubModel:
        if self.hub_id is None and known_model(self.name).hub_id is None:
            raise PydanticCustomError(
                "suite_problems", "hub id", {"summary": "hub id", "problems": [{
                    "loc": ("hub_id",), "got": None,
                    "message": f"required: {self.name!r} has no official hub repository"}]})
        return self

    @property
    def resolved_hub_id(self) -> str:
        return self.hub_id or known_model(self.name).hub_id


class RandomInitModel(_ModelBase):
    """The full architecture with random weights (speed, memory and energy only)."""

    source: Literal["random-init"] = "random-init"


class LocalModel(_ModelBase):
    """A pipeline saved in a local directory (``source`` is the path)."""

    source: str

    @property
    def path(self) -> Path:
        return Path(self.source).expanduser()


def _looks_like_path(s: str) -> bool:
    return "/" in s or "\\" in s or s.startswith((".", "~"))


def _model_tag(v: Any) -> str | None:
    if isinstance(v, BaseModel):
        v = v.model_dump()
    if not isinstance(v, dict):
        return None
    src = v.get("source")
    if src is None:
        name = v.get("name")
        known = _catalog().get(name) if isinstance(name, str) else None
        return known.default_source if known else "hub"
    if src in _SOURCE_KEYWORDS:
        return src
    return "path"


def _model_shorthand(v: Any, index: int) -> Any:
    """``- sdxl`` is short for ``- {name: sdxl}``; a source that is neither a keyword nor a path is refused."""
    if isinstance(v, str):
        return {"name": v}
    if isinstance(v, dict) and "source" in v:
        src = v["source"]
        if not isinstance(src, str) or (src not in _SOURCE_KEYWORDS and not _looks_like_path(src)):
            hint = difflib.get_close_matches(str(src), _SOURCE_KEYWORDS, n=1, cutoff=0.5)
            raise PydanticCustomError(
                "suite_problems", "bad source", {"summary": "bad source", "problems": [{
                    "loc": (index, "source"), "got": src,
                    "message": "unknown source" + (f". Did you mean: {hint[0]}?" if hint else ""),
                    "allowed": "zoo, hub, random-init, or a local path such as ./my-model"}]})
    return v


ModelSpec = Annotated[
    Annotated[ZooModel, Tag("zoo")]
    | Annotated[HubModel, Tag("hub")]
    | Annotated[RandomInitModel, Tag("random-init")]
    | Annotated[LocalModel, Tag("path")],
    Discriminator(_model_tag),
]


# --------------------------------------------------------------------------------------------------
# Pruning methods
# --------------------------------------------------------------------------------------------------


PLAN_OPTIONS = ("ranking", "target", "align")  # shared options that shape the plan, not the scores


class _Options(_Strict):
    """Options every method shares: how units are ranked, and what the ratio counts."""

    ranking: Literal["global", "per-kind", "per-layer"] = "global"
    target: Literal["params", "units"] = "params"
    align: int | None = Field(None, ge=1, description="round pruned FFN widths to a multiple (GPU tiles: 8, 64, 128)")


class EcoDiffOptions(_Options):
    lr: float = Field(0.1, gt=0)
    lr_heads: float | None = Field(None, gt=0, description="default: lr (SDXL), 0.5 (FLUX)")
    epochs: int = Field(4, gt=0)
    beta_reg: float | None = Field(None, ge=0, description="default: 0.5 (SDXL), 0.01 (FLUX)")
    parametrization: Literal["hard-concrete", "sigmoid", "binary"] = "hard-concrete"
    checkpointing: bool = True
    accumulate: int = Field(4, gt=0, description="optimizer step every N prompts")
    prompts: int | None = Field(None, gt=0, description="calibration prompts to train on (default: all)")


class TaylorOptions(_Options):
    threshold: float = Field(0.05, ge=0, le=1, description="stop at the first step with loss < T * max")
    batch: int = Field(4, gt=0, description="calibration batch size")
    timestep_stride: int = Field(10, gt=0, description="visit every k-th training timestep (1: all, as the paper)")


class MagnitudeOptions(_Options):
    pass


class RandomOptions(_Options):
    pass


def _check_ratio(v: float) -> float:
    if not 0.0 < v < 1.0:
        raise _fail("a ratio must lie strictly between 0 and 1", allowed="0 < ratio < 1")
    return v


Ratio = Annotated[float, AfterValidator(_check_ratio)]


class _MethodBase(_Strict):
    ratios: list[Ratio]
    seeds: list[int] = Field(default_factory=lambda: [0], description="one pruning run per seed and ratio")

    @field_validator("ratios")
    @classmethod
    def _ratios_ok(cls, v: list[float]) -> list[float]:
        if not v:
            raise _fail("at least one ratio is required", allowed="a list of numbers in (0, 1)")
        return _check_unique(v, "ratio")

    @field_validator("seeds")
    @classmethod
    def _seeds_ok(cls, v: list[int]) -> list[int]:
        if not v:
            raise _fail("at least one seed is required", allowed="a list of integers >= 0")
        if any(s < 0 for s in v):
            raise _fail("seeds must be >= 0", allowed="integers >= 0")
        return _check_unique(v, "seed")


class EcoDiffMethod(_MethodBase):
    name: Literal["ecodiff"]
    options: EcoDiffOptions = Field(default_factory=EcoDiffOptions)


class TaylorMethod(_MethodBase):
    name: Literal["taylor"]
    options: TaylorOptions = Field(default_factory=TaylorOptions)


class MagnitudeMethod(_MethodBase):
    name: Literal["magnitude"]
    options: MagnitudeOptions = Field(default_factory=MagnitudeOptions)


class RandomMethod(_MethodBase):
    name: Literal["random"]
    options: RandomOptions = Field(default_factory=RandomOptions)


MethodSpec = Annotated[EcoDiffMethod | TaylorMethod | MagnitudeMethod | RandomMethod, Field(discriminator="name")]
NEEDS_CALIBRATION = ("ecodiff", "taylor")


# --------------------------------------------------------------------------------------------------
# Prompts, calibration, evaluation
# --------------------------------------------------------------------------------------------------


def read_prompts_file(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with ``#`` are skipped."""
    text = Path(path).expanduser().read_text(encoding="utf-8")
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


class _PromptSource(_Strict):
    """Prompts: a builtin set (``digits``), an inline list, or ``prompts_file`` (one per line)."""

    prompts: Literal["digits"] | list[str] | None = None
    prompts_file: str | None = None

    @field_validator("prompts", mode="before")
    @classmethod
    def _builtin_or_list(cls, v):
        if isinstance(v, str) and v not in BUILTIN_PROMPT_SETS:
            raise _fail(_unknown_message("builtin prompt set", v, BUILTIN_PROMPT_SETS),
                        allowed=f"{', '.join(BUILTIN_PROMPT_SETS)}, an inline list, or prompts_file")
        if v is not None and not isinstance(v, str | list):
            raise _fail("expected a builtin prompt set name or a list of prompts",
                        allowed=f"{', '.join(BUILTIN_PROMPT_SETS)}, an inline list, or prompts_file")
        return v

    @field_validator("prompts")
    @classmethod
    def _nonempty(cls, v):
        if isinstance(v, list) and (not v or any(not p.strip() for p in v)):
            raise _fail("an inline prompt list needs at least one non-empty prompt")
        return v

    @field_validator("prompts_file")
    @classmethod
    def _file_exists(cls, v: str | None) -> str | None:
        if v is not None:
            p = Path(v).expanduser()
            if not p.is_file():
                raise _fail(f"prompts file not found: {p.resolve()}", allowed="a text file, one prompt per line")
            if not read_prompts_file(p):
                raise _fail(f"prompts file {p} holds no prompts")
        return v

    @model_validator(mode="after")
    def _one_source(self):
        if self.prompts is not None and self.prompts_file is not None:
            raise PydanticCustomError(
                "suite_problems", "both", {"summary": "both", "problems": [{
                    "loc": ("prompts_file",), "got": self.prompts_file,
                    "message": "give either prompts or prompts_file, not both"}]})
        return self

    @property
    def has_prompts(self) -> bool:
        return self.prompts is not None or self.prompts_file is not None

    def load_prompts(self) -> list[str]:
        """The prompt list (builtin sets come from the zoo, imported lazily)."""
        if self.prompts_file is not None:
            return read_prompts_file(self.prompts_file)
        if self.prompts == "digits":
            from ecodiff_bench.zoo.data import PROMPTS  # numpy only

            return list(PROMPTS)
        if isinstance(self.prompts, list):
            return list(self.prompts)
        raise SuiteError("no prompts configured (set prompts or prompts_file)")

    def _prompt_identity(self, limit: int | None) -> Any:
        """What the prompts are, by content, for hashing (never a path)."""
        if self.prompts is None and self.prompts_file is None:
            return None
        if isinstance(self.prompts, str):
            return {"builtin": self.prompts}
        items = self.load_prompts()
        if limit is not None:
            items = items[:limit]
        blob = json.dumps(items, ensure_ascii=False).encode()
        return {"n": len(items), "sha256": hashlib.sha256(blob).hexdigest()}


class Calibration(_PromptSource):
    """Prompts that calibrate data-driven methods (ecodiff, taylor); the first ``count`` are used."""

    count: int = Field(100, gt=0)


class OpenClip(_Strict):
    """An open_clip model; ``pretrained`` is a tag (``openai``) or a local checkpoint path."""

    name: str = "ViT-B-32"
    pretrained: str = "openai"


class DigitsClip(_Strict):
    """The zoo's small CLIP trained on digits."""

    name: Literal["digits-clip"]


def _clip_tag(v: Any) -> str:
    name = v.get("name") if isinstance(v, dict) else getattr(v, "name", None)
    return "digits-clip" if name == "digits-clip" else "open_clip"


ClipSpec = Annotated[
    Annotated[OpenClip, Tag("open_clip")] | Annotated[DigitsClip, Tag("digits-clip")], Discriminator(_clip_tag)
]


class Evaluation(_PromptSource):
    """Image quality. Sample i uses prompt ``i % len(prompts)`` and generation seed ``seed + i``."""

    samples: int = Field(100, gt=0, description="images per model (compare FID only at equal N)")
    seed: int = Field(0, ge=0, description="generation seed of the first sample")
    metrics: list[QualityMetric] = Field(default_factory=list)
    reference: str | None = Field(
        None, description="real images for fid / frechet_distance: 'digits-heldout', a directory, or a .npz")
    feature_extractor: Literal["inception", "digits-clip"] = Field(
        "inception", description="feature space of frechet_distance (fid always uses Inception)")
    inception_weights: str | None = Field(None, description="local Inception weights for fid (offline)")
    clip: ClipSpec = Field(default_factory=OpenClip)

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, v: list[str]) -> list[str]:
        return _check_unique(v, "metric")


# --------------------------------------------------------------------------------------------------
# Performance, energy, outputs, regression, smoke
# --------------------------------------------------------------------------------------------------


class Latency(_Strict):
    """Repeat until both ``min_reps`` and ``min_seconds`` are reached (or ``max_reps``)."""

    warmup: int = Field(2, ge=0)
    min_reps: int = Field(5, gt=0)
    min_seconds: float = Field(5.0, ge=0)
    max_reps: int = Field(100, gt=0)

    @model_validator(mode="after")
    def _order(self) -> Latency:
        if self.max_reps < self.min_reps:
            raise PydanticCustomError(
                "suite_problems", "reps", {"summary": "reps", "problems": [{
                    "loc": ("max_reps",), "got": self.max_reps,
                    "message": f"max_reps must be >= min_reps ({self.min_reps})"}]})
        return self


class Inference(_Strict):
    """How the denoiser runs while measured (``pruning.inference``), the same for base and pruned models."""

    attention: Literal["sdpa", "math"] = Field("sdpa", description="fused SDPA kernels, or the unfused reference")
    channels_last: Literal["auto", "on", "off"] = Field("auto", description="auto: U-Nets on CUDA")
    compile: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] | None = Field(
        None, description="torch.compile mode (compile time is reported apart as compile_time_s)")
    fullgraph: bool = Field(False, description="with compile: a graph break is an error")

    @model_validator(mode="after")
    def _fullgraph_needs_compile(self) -> Inference:
        if self.fullgraph and self.compile is None:
            raise _fail("fullgraph needs compile set to a mode", allowed="compile: default, reduce-overhead, ...")
        return self


class Performance(_Strict):
    latency: Latency = Field(default_factory=Latency)
    inference: Inference = Field(default_factory=Inference)
    batch_size: int = Field(1, gt=0)
    interleave: bool = Field(True, description="alternate base and pruned repetitions (thermal drift)")
    prompt: str | None = Field(None, description="prompt for timing (default: the first evaluation prompt)")


class Energy(_Strict):
    """Energy is always measured where a counter exists; carbon needs the grid's country (no default)."""

    carbon: bool = True
    country: str | None = Field(None, description="ISO 3166-1 alpha-3 code, e.g. FRA, USA, DEU")
    region: str | None = Field(None, description="codecarbon region within the country, e.g. california")
    idle_baseline_s: float = Field(10.0, ge=0)
    sample_interval_s: float = Field(0.1, gt=0, description="power timeline sampling interval")

    @field_validator("country")
    @classmethod
    def _iso3(cls, v: str | None) -> str | None:
        if v is None:
            return v
        code = v.strip().upper()
        try:
            import pycountry
        except ImportError:  # pragma: no cover - codecarbon depends on it
            pycountry = None
        if pycountry is None:
            if not re.fullmatch(r"[A-Z]{3}", code):
                raise _fail("not an ISO 3166-1 alpha-3 code", allowed="three letters, e.g. FRA, USA, DEU")
            return code
        if len(code) == 3 and pycountry.countries.get(alpha_3=code) is not None:
            return code
        known = [c.alpha_3 for c in pycountry.countries]
        hint = ""
        if len(code) == 2 and (c := pycountry.countries.get(alpha_2=code)) is not None:
            hint = f" Did you mean: {c.alpha_3}?"
        else:
            close = difflib.get_close_matches(code, known, n=1, cutoff=0.6)
            hint = f" Did you mean: {close[0]}?" if close else ""
        raise _fail(f"not an ISO 3166-1 alpha-3 country code.{hint}", allowed="e.g. FRA, USA, DEU, GBR, CHN")


ReportFormat = Literal["html", "md"]


class Outputs(_Strict):
    dir: str = "results"
    store: str | None = Field(None, description="SQLite results store (default: <dir>/store.sqlite)")
    report: list[ReportFormat] = Field(default_factory=lambda: ["html", "md"])

    @field_validator("report", mode="before")
    @classmethod
    def _report_bool(cls, v):
        if v is True:
            return ["html", "md"]
        if v is False or v is None:
            return []
        if isinstance(v, str):
            return [v]
        return v

    @property
    def dir_path(self) -> Path:
        return Path(self.dir).expanduser()

    @property
    def store_path(self) -> Path:
        return Path(self.store).expanduser() if self.store else self.dir_path / "store.sqlite"


class _OwnThreshold(_Strict):
    """Allowed change of one metric against the baseline (absolute and/or relative)."""

    max_increase: float | None = Field(None, ge=0)
    max_decrease: float | None = Field(None, ge=0)
    max_increase_frac: float | None = Field(None, ge=0)
    max_decrease_frac: float | None = Field(None, ge=0)
    required: bool = False

    @model_validator(mode="after")
    def _at_least_one(self) -> _OwnThreshold:
        bounds = ("max_increase", "max_decrease", "max_increase_frac", "max_decrease_frac")
        if all(getattr(self, k) is None for k in bounds):
            raise _fail("a threshold needs at least one bound", allowed=", ".join(bounds))
        return self


try:  # the regression gate's own schema, so that a suite's thresholds are exactly what the gate accepts
    from reports.gate import MetricThreshold as Threshold
except ImportError:  # pragma: no cover - reports is part of this distribution
    Threshold = _OwnThreshold


class Regression(_Strict):
    thresholds: dict[str, Threshold] = Field(default_factory=dict)

    @field_validator("thresholds")
    @classmethod
    def _known_metrics(cls, v: dict[str, Threshold]) -> dict[str, Threshold]:
        p = _Problems()
        for name in v:
            if name not in METRIC_HELP:
                p.add((name,), _unknown_message("metric", name, METRIC_HELP), got=name, allowed=METRIC_HELP)
        p.raise_if_any()
        return v


class Smoke(_Strict):
    """What ``--smoke`` shrinks to (never grows)."""

    samples: int = Field(8, gt=0)
    reps: int = Field(2, gt=0)
    epochs: int = Field(1, gt=0)
    calibration_count: int = Field(4, gt=0)
    idle_baseline_s: float = Field(1.0, ge=0)


# --------------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------------


class Suite(_Strict):
    name: str
    description: str = ""
    models: list[ModelSpec]
    methods: list[MethodSpec] = Field(default_factory=list)
    calibration: Calibration = Field(default_factory=Calibration)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    performance: Performance = Field(default_factory=Performance)
    energy: Energy = Field(default_factory=Energy)
    outputs: Outputs = Field(default_factory=Outputs)
    regression: Regression = Field(default_factory=Regression)
    allow_hub: bool = Field(False, description="allow downloads from the Hugging Face Hub (offline otherwise)")
    smoke: Smoke = Field(default_factory=Smoke)

    _source: str | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
            raise _fail("not a valid suite name", allowed="letters, digits, '.', '_' and '-' (no spaces)")
        return v

    @field_validator("models", mode="before")
    @classmethod
    def _models_shorthand(cls, v):
        if isinstance(v, list):
            return [_model_shorthand(m, i) for i, m in enumerate(v)]
        return v

    @field_validator("models")
    @classmethod
    def _models_nonempty(cls, v: list) -> list:
        if not v:
            raise _fail("at least one model is required", allowed=model_names())
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Suite:
        p = _Problems()
        seen: dict[str, int] = {}
        for i, m in enumerate(self.models):
            if m.key in seen:
                p.add(("models", i, "label" if m.label else "name"),
                      f"duplicate model {m.key!r} (also models[{seen[m.key]}]); give one a distinct label",
                      got=m.key)
            seen.setdefault(m.key, i)
        mseen: dict[str, int] = {}
        for i, meth in enumerate(self.methods):
            if meth.name in mseen:
                p.add(("methods", i, "name"), f"duplicate method {meth.name!r} (also methods[{mseen[meth.name]}])",
                      got=meth.name)
            mseen.setdefault(meth.name, i)

        if self.energy.carbon and self.energy.country is None:
            p.add(("energy", "country"),
                  "required when energy.carbon is true (no default grid: carbon depends on it)", got=None,
                  allowed="an ISO 3166-1 alpha-3 code such as FRA, USA, DEU; or set energy.carbon: false")

        calibrated = [m.name for m in self.methods if m.name in NEEDS_CALIBRATION]
        if calibrated and not self.calibration.has_prompts:
            p.add(("calibration", "prompts"), f"required by method(s) {', '.join(calibrated)}", got=None,
                  allowed="'digits', an inline list, or calibration.prompts_file")
        if calibrated and self.calibration.has_prompts and not isinstance(self.calibration.prompts, str):
            n = len(self.calibration.load_prompts())
            if self.calibration.count > n:
                p.add(("calibration", "count"), f"asks for more prompts than the {n} available",
                      got=self.calibration.count, allowed=f"1..{n}")
        for i, meth in enumerate(self.methods):
            if isinstance(meth, EcoDiffMethod) and meth.options.prompts is not None \
                    and meth.options.prompts > self.calibration.count:
                p.add(("methods", i, "options", "prompts"), "exceeds calibration.count",
                      got=meth.options.prompts, allowed=f"1..{self.calibration.count}")

        ev = self.evaluation
        if ev.metrics and not ev.has_prompts:
            p.add(("evaluation", "prompts"), "required when evaluation.metrics is not empty", got=None,
                  allowed="'digits', an inline list, or evaluation.prompts_file")
        needs_ref = [m for m in ev.metrics if m in ("fid", "frechet_distance")]
        if needs_ref and ev.reference is None:
            p.add(("evaluation", "reference"), f"required by {', '.join(needs_ref)}", got=None,
                  allowed="'digits-heldout', a directory of images, or a .npz statistics file")
        if "fid" in ev.metrics and ev.inception_weights is None and not self.allow_hub:
            p.add(("evaluation", "inception_weights"),
                  "required by fid when allow_hub is false (the weights would be downloaded)", got=None,
                  allowed="a local path to pt_inception-2015-12-05 weights, or allow_hub: true")
        non_digits = [m.name for m in self.models if not is_digits(m.name)]
        if non_digits:
            if "recognisability" in ev.metrics:
                p.add(("evaluation", "metrics"), f"recognisability applies to digits models only, not "
                      f"{', '.join(non_digits)}", got="recognisability")
            if "frechet_distance" in ev.metrics and ev.feature_extractor == "digits-clip":
                p.add(("evaluation", "feature_extractor"), f"digits-clip only embeds digits, not the "
                      f"images of {', '.join(non_digits)}", got="digits-clip", allowed="inception")
            if "clip_score" in ev.metrics and isinstance(ev.clip, DigitsClip):
                p.add(("evaluation", "clip", "name"), f"digits-clip only scores digits models, not "
                      f"{', '.join(non_digits)}", got="digits-clip", allowed="an open_clip model, e.g. ViT-B-32")
        if ev.reference in BUILTIN_REFERENCES and non_digits and needs_ref:
            p.add(("evaluation", "reference"), f"{ev.reference} holds digits; not a reference for "
                  f"{', '.join(non_digits)}", got=ev.reference)
        p.raise_if_any()
        return self

    # -- conveniences --------------------------------------------------------------------------

    @property
    def source(self) -> str | None:
        """The file (or builtin name) the suite was loaded from."""
        return self._source

    def model(self, key: str) -> ZooModel | HubModel | RandomInitModel | LocalModel:
        for m in self.models:
            if m.key == key:
                return m
        raise UnknownNameError("model in this suite", key, [m.key for m in self.models])

    def select(self, only: Iterable[str] | None = None, out: str | Path | None = None) -> Suite:
        """A copy restricted to the models named in ``only`` (labels) and/or writing under ``out``.

        Record ids do not change: neither the model list nor outputs enter a run's hash.
        """
        update: dict[str, Any] = {}
        if only:
            wanted = list(only)
            for key in wanted:
                self.model(key)  # raises with a suggestion
            update["models"] = [m for m in self.models if m.key in wanted]
        if out is not None:
            outputs = self.outputs.model_dump()
            outputs["dir"] = str(out)
            update["outputs"] = Outputs.model_validate(outputs)
        new = self.model_copy(update=update)
        new._source = self._source
        return new

    def content_hash(self) -> str:
        """sha256 of the whole validated suite (its ``suite_hash`` in records)."""
        return _sha256(self.model_dump(mode="json"))


# --------------------------------------------------------------------------------------------------
# Error formatting
# --------------------------------------------------------------------------------------------------


def _fmt_path(loc: Iterable) -> str:
    out = ""
    for el in loc:
        if isinstance(el, int):
            out += f"[{el}]"
        else:
            out += ("." if out else "") + str(el)
    return out or "<suite>"


def _fmt_value(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, str):
        return repr(v)
    try:
        s = json.dumps(v, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # pragma: no cover - defensive
        s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _clean_loc(loc: tuple, data: Any) -> list:
    """Drop the union tags pydantic inserts into error locations, by walking the input alongside."""
    out: list = []
    cur = data
    for el in loc:
        if isinstance(el, int):
            out.append(el)
            cur = cur[el] if isinstance(cur, list) and 0 <= el < len(cur) else None
        elif isinstance(cur, dict) and el in cur:
            out.append(el)
            cur = cur[el]
        elif not _is_tag(el):
            out.append(el)
            cur = None
    return out


_TAGS = {"zoo", "hub", "random-init", "path", "open_clip", "digits-clip", "ecodiff", "taylor", "magnitude",
         "random"}


def _is_tag(el: str) -> bool:
    return el in _TAGS or "[" in el or el in ("str", "int", "float", "bool", "none")


def _strip_annotated(tp: Any) -> tuple[Any, list]:
    meta: list = []
    while get_origin(tp) is Annotated:
        args = get_args(tp)
        tp, meta = args[0], meta + list(args[1:])
    return tp, meta


def _model_class_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc`` (raw loc, tags included)."""
    tp: Any = root
    for el in loc:
        tp, _ = _strip_annotated(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(el) if isinstance(el, str) else None
            if field is None:
                return None
            tp = field.annotation
            continue
        origin = get_origin(tp)
        if origin in (Union, UnionType):
            chosen = None
            for member in get_args(tp):
                inner, meta = _strip_annotated(member)
                tags = [m.tag for m in meta if isinstance(m, Tag)]
                lit = None
                if isinstance(inner, type) and issubclass(inner, BaseModel) and "name" in inner.model_fields:
                    ann = inner.model_fields["name"].annotation
                    lit = get_args(ann)[0] if get_origin(ann) is Literal else None
                if el in tags or el == lit or el == getattr(inner, "__name__", None):
                    chosen = inner
                    break
            if chosen is None:
                return None
            tp = chosen
        elif origin is list and isinstance(el, int):
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        else:
            return None
    tp, _ = _strip_annotated(tp)
    if get_origin(tp) in (Union, UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            tp = members[0]
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


_KIND_OF_LIST = {"methods": "method", "models": "model"}
_KEY_HINTS = {"hub_id": "applies only with source: hub", "revision": "applies only with source: hub",
              "pretrained": "applies only to open_clip models, not digits-clip"}
_BOUND_TEXT = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _describe(err: dict, loc: tuple, data: Any, root: type[BaseModel]) -> list[tuple[list, str, Any, str | None]]:
    """(path, message, got, allowed) lines for one pydantic error."""
    typ, ctx = err["type"], err.get("ctx") or {}
    path = _clean_loc(loc, data)
    got = err.get("input", ...)
    if typ == "suite_problems":
        return [(path + list(p["loc"]), p["message"], p.get("got", ...), p.get("allowed"))
                for p in ctx["problems"]]
    if typ == "suite_value":
        return [(path, ctx["message"], got, ctx.get("allowed"))]
    if typ == "extra_forbidden":
        cls = _model_class_at(root, loc[:-1])
        allowed = list(cls.model_fields) if cls else None
        key = str(loc[-1])
        hint = difflib.get_close_matches(key, allowed or [], n=1, cutoff=0.6)
        msg = "unknown key" + (f". Did you mean: {hint[0]}?" if hint else "")
        if key in _KEY_HINTS and not hint:
            msg += f" ({key} {_KEY_HINTS[key]})"
        return [(path, msg, got, ", ".join(allowed) if allowed else None)]
    if typ == "missing":
        return [(path, "required field is missing", ..., None)]
    if typ == "literal_error":
        expected = ctx.get("expected", "")
        options = re.findall(r"'([^']*)'", expected)
        hint = difflib.get_close_matches(str(got), options, n=1, cutoff=0.6) if isinstance(got, str) else []
        msg = "not an allowed value" + (f". Did you mean: {hint[0]}?" if hint else "")
        return [(path, msg, got, expected.replace("'", ""))]
    if typ in ("union_tag_invalid", "union_tag_not_found"):
        field = str(ctx.get("discriminator", "name")).strip("'")
        list_name = next((p for p in reversed(path) if isinstance(p, str)), "")
        kind = _KIND_OF_LIST.get(list_name, field)
        allowed = str(ctx.get("expected_tags", "")).replace("'", "")
        if typ == "union_tag_not_found":
            return [(path + [field], "required field is missing", ..., allowed)]
        tag = str(ctx.get("tag"))
        return [(path + [field], _unknown_message(kind, tag, [a.strip() for a in allowed.split(",")]),
                 tag, allowed)]
    if typ in ("model_type", "dict_type", "model_attributes_type"):
        return [(path, "expected a mapping (key: value pairs)", got, None)]
    msg = str(ctx["error"]) if typ == "value_error" and "error" in ctx else err["msg"]
    msg = msg[0].lower() + msg[1:] if msg else msg
    bounds = " and ".join(f"{_BOUND_TEXT[k]} {ctx[k]}" for k in _BOUND_TEXT if k in ctx)
    return [(path, msg, got, bounds or None)]


def format_validation_error(exc: ValidationError, data: Any, root: type[BaseModel] = None) -> list[str]:
    """One line per problem: ``<field.path>: <what is wrong> (got <value>; allowed: ...)``.

    Errors that share a path (a value that fits none of a union's members) are merged into one line.
    """
    root = root or Suite
    merged: dict[str, dict[str, Any]] = {}
    for err in exc.errors(include_url=False):
        for path, msg, got, allowed in _describe(err, tuple(err["loc"]), data, root):
            key = _fmt_path(path)
            entry = merged.setdefault(key, {"msgs": [], "got": got, "allowed": []})
            if msg not in entry["msgs"]:
                entry["msgs"].append(msg)
            if allowed and allowed not in entry["allowed"]:
                entry["allowed"].append(allowed)
    lines = []
    for key, e in merged.items():
        detail = []
        if e["got"] is not ...:
            detail.append(f"got {_fmt_value(e['got'])}")
        if e["allowed"]:
            detail.append("allowed: " + " or ".join(e["allowed"]))
        tail = f" ({'; '.join(detail)})" if detail else ""
        lines.append(f"{key}: {' or '.join(e['msgs'])}{tail}")
    return lines


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"file not found: {path}") from None
    except OSError as e:
        raise SuiteError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(s for s in (e.context, e.problem) if s)
        raise SuiteError(f"{where}: YAML syntax error: {what} (line {mark.line + 1})" if mark
                         else f"{where}: YAML syntax error: {what}") from None
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: YAML error: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a mapping of keys to values (got a {type(data).__name__})")
    return data


_LOCAL_FILE_KEYS = (("calibration", "prompts_file"), ("evaluation", "prompts_file"))


def _anchor_local_paths(data: dict, base_dir: Path) -> None:
    """Make the suite-relative paths of one file absolute, before files are merged."""
    for section, key in _LOCAL_FILE_KEYS:
        sec = data.get(section)
        if isinstance(sec, dict) and isinstance(sec.get(key), str):
            p = Path(sec[key]).expanduser()
            sec[key] = str(p if p.is_absolute() else (base_dir / p).resolve())


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``: mappings merge recursively, anything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_raw(path: Path, stack: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in stack:
        chain = " -> ".join(p.name for p in (*stack, path))
        raise SuiteError(f"include: cycle detected ({chain})")
    data = _read_yaml(path)
    _anchor_local_paths(data, path.parent)
    includes = data.pop("include", None)
    if includes is None:
        return data
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise SuiteError(f"include: expected a file name or a list of file names (got {_fmt_value(includes)}) "
                         f"in {path}")
    merged: dict = {}
    for inc in includes:
        inc_path = Path(inc).expanduser()
        inc_path = inc_path if inc_path.is_absolute() else path.parent / inc_path
        if not inc_path.is_file():
            raise SuiteError(f"include: file not found: {inc_path.resolve()} (got {inc!r}; included from {path})")
        merged = deep_merge(merged, _load_raw(inc_path, (*stack, path)))
    return deep_merge(merged, data)


def resolve_suite_path(path_or_name: str | Path) -> Path:
    """A suite file path, or a builtin suite name such as ``digits``."""
    p = Path(path_or_name).expanduser()
    if p.is_file():
        return p
    s = str(path_or_name)
    looks_like_file = _looks_like_path(s) or s.endswith((".yaml", ".yml"))
    builtins = builtin_suites()
    if not looks_like_file:
        if s in builtins:
            return builtins[s]
        raise UnknownNameError("suite", s, list(builtins))
    raise SuiteError(f"suite file not found: {p.resolve()}"
                     + (f" (builtin suites: {', '.join(builtins)})" if builtins else ""))


def validate_suite(data: dict, source: str | None = None) -> Suite:
    """Validate an already-merged mapping (no ``include`` here); raises :class:`SuiteError`."""
    try:
        suite = Suite.model_validate(data)
    except ValidationError as e:
        raise SuiteError(format_validation_error(e, data), source=source) from None
    suite._source = source
    return suite


def load_suite(path_or_name: str | Path) -> Suite:
    """Load, merge includes, and validate a suite file or builtin suite name."""
    path = resolve_suite_path(path_or_name)
    source = str(path_or_name)
    try:
        data = _load_raw(path)
    except SuiteError as e:
        raise SuiteError(e.problems, source=source) from None
    if "name" not in _read_yaml(path):
        data["name"] = path.stem  # a suite's name is its own, never inherited from an include
    return validate_suite(data, source=source)


# --------------------------------------------------------------------------------------------------
# Expansion
# --------------------------------------------------------------------------------------------------


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _sha256(obj: Any) -> str:
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()


class RunSpec(_Strict):
    """One measured model: the base of a model, or one (method, ratio, seed) applied to it."""

    suite: str
    model: str = Field(description="the model's key in the suite (label or name)")
    family: str
    model_spec: ModelSpec
    method: Literal["base", "ecodiff", "taylor", "magnitude", "random"]
    ratio: float
    seed: int
    options: dict[str, Any] = Field(default_factory=dict, description="method options, defaults resolved")
    calibration: Calibration | None = None
    evaluation: Evaluation
    performance: Performance
    energy: Energy
    allow_hub: bool = False
    smoke: bool = False
    record_id: str = Field(description="sha256 of hash_payload(): skip the spec when this record exists")
    base_id: str | None = Field(None, description="record_id of the same model's base spec")
    score_key: str | None = Field(None, description="same scores/logits for every ratio, ranking and target")
    plan_key: str | None = Field(None, description="same pruned model (plan) regardless of evaluation settings")

    @property
    def is_base(self) -> bool:
        return self.method == "base"

    def hash_payload(self) -> dict[str, Any]:
        return _spec_payload(self.model_spec, self.method, self.ratio, self.seed, self.options,
                             self.calibration, self.evaluation, self.performance, self.energy, self.smoke,
                             self.model)

    def short(self) -> str:
        return self.record_id[:12]


def _model_payload(m: BaseModel, key: str) -> dict[str, Any]:
    d = m.model_dump(mode="json")
    d["key"] = key
    return d


def _calibration_payload(cal: Calibration | None) -> Any:
    if cal is None:
        return None
    return {"count": cal.count, "prompts": cal._prompt_identity(cal.count)}


def _evaluation_payload(ev: Evaluation) -> dict[str, Any]:
    d = ev.model_dump(mode="json", exclude={"prompts", "prompts_file"})
    d["prompts"] = ev._prompt_identity(ev.samples)
    return d


def _spec_payload(model_spec, method, ratio, seed, options, calibration, evaluation, performance, energy,
                  smoke, key) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "model": _model_payload(model_spec, key),
        "method": method,
        "ratio": ratio,
        "seed": seed,
        "options": options,
        "calibration": _calibration_payload(calibration),
        "evaluation": _evaluation_payload(evaluation),
        "performance": performance.model_dump(mode="json"),
        "energy": energy.model_dump(mode="json"),
        "smoke": smoke,
    }


def resolved_options(method: BaseModel, family: str) -> dict[str, Any]:
    """A method's options with family-dependent defaults filled in (EcoDiff beta_reg, lr_heads)."""
    opts = method.options.model_dump(mode="json")
    if method.name == "ecodiff":
        fam = _ECODIFF_FAMILY_DEFAULTS[family]
        if opts["beta_reg"] is None:
            opts["beta_reg"] = fam["beta_reg"]
        if opts["lr_heads"] is None:
            opts["lr_heads"] = fam["lr_heads"] if fam["lr_heads"] is not None else opts["lr"]
    return opts


def apply_smoke(suite: Suite) -> Suite:
    """The suite shrunk as ``--smoke`` asks: fewer samples, repetitions, epochs and calibration prompts."""
    sm = suite.smoke
    d = suite.model_dump(mode="python")
    ev = d["evaluation"]
    ev["samples"] = min(ev["samples"], sm.samples)
    lat = d["performance"]["latency"]
    lat["warmup"] = min(lat["warmup"], 1)
    lat["min_reps"] = min(lat["min_reps"], sm.reps)
    lat["max_reps"] = max(lat["min_reps"], min(lat["max_reps"], sm.reps))
    lat["min_seconds"] = 0.0
    d["energy"]["idle_baseline_s"] = min(d["energy"]["idle_baseline_s"], sm.idle_baseline_s)
    cal = d["calibration"]
    cal["count"] = min(cal["count"], sm.calibration_count)
    for meth in d["methods"]:
        opts = meth["options"]
        if meth["name"] == "ecodiff":
            opts["epochs"] = min(opts["epochs"], sm.epochs)
            if opts["prompts"] is not None:
                opts["prompts"] = min(opts["prompts"], cal["count"])
        if meth["name"] == "taylor":
            opts["batch"] = min(opts["batch"], cal["count"])
    out = validate_suite(d, source=suite.source)
    return out


def expand(suite: Suite, smoke: bool = False) -> list[RunSpec]:
    """Run specs in order: per model its base, then per method, seed and ratio a pruned spec."""
    s = apply_smoke(suite) if smoke else suite
    common = {"evaluation": s.evaluation, "performance": s.performance, "energy": s.energy, "smoke": smoke}
    specs: list[RunSpec] = []
    for m in s.models:
        family = m.family
        base_payload = _spec_payload(m, "base", 0.0, 0, {}, None, key=m.key, **common)
        base_id = _sha256(base_payload)
        specs.append(RunSpec(suite=s.name, model=m.key, family=family, model_spec=m, method="base", ratio=0.0,
                             seed=0, allow_hub=s.allow_hub, record_id=base_id, **common))
        for meth in s.methods:
            opts = resolved_options(meth, family)
            cal = s.calibration if meth.name in NEEDS_CALIBRATION else None
            for seed in meth.seeds:
                score_opts = {k: v for k, v in opts.items() if k not in PLAN_OPTIONS}
                score_key = _sha256({"schema": SCHEMA_VERSION, "model": _model_payload(m, m.key),
                                     "method": meth.name, "seed": seed, "options": score_opts,
                                     "calibration": _calibration_payload(cal), "smoke": smoke})
                for ratio in meth.ratios:
                    payload = _spec_payload(m, meth.name, ratio, seed, opts, cal, key=m.key, **common)
                    plan_key = _sha256({"score_key": score_key, "ratio": ratio,
                                        **{k: opts[k] for k in PLAN_OPTIONS if opts.get(k) is not None}})
                    specs.append(RunSpec(
                        suite=s.name, model=m.key, family=family, model_spec=m, method=meth.name, ratio=ratio,
                        seed=seed, options=opts, calibration=cal, allow_hub=s.allow_hub,
                        record_id=_sha256(payload), base_id=base_id, score_key=score_key, plan_key=plan_key,
                        **common))
    return specs
