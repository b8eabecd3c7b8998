"""The suite schema: pydantic models of every section, with unknown keys refused at every level, every
value type-checked (no silent coercion of ``"4"`` into ``4``), and cross-field checks that report every
problem at its own path. Validation reads prompt files but writes nothing and loads no model."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

from ecodiff_bench.core.errors import SuiteError
from ecodiff_bench.core.hashing import sha256_of
from ecodiff_bench.core.metrics import METRICS, QUALITY_METRICS
from ecodiff_bench.core.registry import UnknownNameError, suggest
from ecodiff_bench.core.thresholds import MetricThreshold
from ecodiff_bench.core.yamlfile import YamlError, read_text
from ecodiff_bench.suite.catalog import BUILTIN_PROMPT_SETS, BUILTIN_REFERENCES, is_digits, model_names
from ecodiff_bench.suite.methods import MethodSpec, needs_calibration
from ecodiff_bench.suite.problems import Problems, StrictModel, check_unique, fail, unknown_message
from ecodiff_bench.suite.sources import (
    HubModel,
    LocalModel,
    ModelSpec,
    RandomInitModel,
    ZooModel,
    model_shorthand,
)
from pruning.config import ATTENTION, CHANNELS_LAST, COMPILE_MODES

# -- prompts, calibration, evaluation ---------------------------------------------------------------------


#: A prompts file is plain text, one prompt per line; 64 MiB is far beyond any prompt set.
MAX_PROMPTS_FILE_BYTES = 64 * 1024 * 1024


def read_prompts_file(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with ``#`` are skipped.

    Raises :class:`~ecodiff_bench.core.yamlfile.YamlError` (a ValueError naming the file) for a file
    that cannot be read, is too large, or is not UTF-8 text.
    """
    text = read_text(Path(path).expanduser(), MAX_PROMPTS_FILE_BYTES)
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


class _PromptSource(StrictModel):
    """Prompts: a builtin set (``digits``), an inline list, or ``prompts_file`` (one per line)."""

    prompts: Literal["digits"] | list[str] | None = None
    prompts_file: str | None = None

    @field_validator("prompts", mode="before")
    @classmethod
    def _builtin_or_list(cls, v):
        if isinstance(v, str) and v not in BUILTIN_PROMPT_SETS:
            raise fail(
                unknown_message("builtin prompt set", v, BUILTIN_PROMPT_SETS),
                allowed=f"{', '.join(BUILTIN_PROMPT_SETS)}, an inline list, or prompts_file",
            )
        if v is not None and not isinstance(v, str | list):
            raise fail(
                "expected a builtin prompt set name or a list of prompts",
                allowed=f"{', '.join(BUILTIN_PROMPT_SETS)}, an inline list, or prompts_file",
            )
        return v

    @field_validator("prompts")
    @classmethod
    def _nonempty(cls, v):
        if isinstance(v, list) and (not v or any(not p.strip() for p in v)):
            raise fail("an inline prompt list needs at least one non-empty prompt")
        return v

    @field_validator("prompts_file")
    @classmethod
    def _file_exists(cls, v: str | None) -> str | None:
        if v is not None:
            p = Path(v).expanduser()
            if not p.is_file():
                raise fail(
                    f"prompts file not found: {p.resolve()}", allowed="a text file, one prompt per line"
                )
            try:
                prompts = read_prompts_file(p)
            except YamlError as e:
                raise fail(str(e), allowed="a UTF-8 text file, one prompt per line") from None
            if not prompts:
                raise fail(f"prompts file {p} holds no prompts")
        return v

    @model_validator(mode="after")
    def _one_source(self):
        if self.prompts is not None and self.prompts_file is not None:
            raise Problems.one(
                ("prompts_file",), "give either prompts or prompts_file, not both", got=self.prompts_file
            )
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

    def prompt_identity(self, limit: int | None) -> Any:
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
    """Prompt x seed pairs that calibrate data-driven methods (ecodiff, taylor): the first ``count`` prompts,
    each with the initial noises of seeds ``seed .. seed + seeds_per_prompt - 1``; never evaluated pairs."""

    count: int = Field(100, gt=0)
    seeds_per_prompt: int = Field(1, gt=0)
    seed: int = Field(1_000_000, ge=0, description="first calibration seed (outside the evaluation's seeds)")

    def pairs(self, count: int | None = None) -> list[tuple[str, int]]:
        """Seed-major (every prompt with the first seed, then the next), so that any prefix covers the prompts."""
        prompts = self.load_prompts()[: count or self.count]
        return [(p, self.seed + j) for j in range(self.seeds_per_prompt) for p in prompts]


class OpenClip(StrictModel):
    """An open_clip model; ``pretrained`` is a tag (``openai``) or a local checkpoint path."""

    name: str = "ViT-B-32"
    pretrained: str = "openai"


class DigitsClip(StrictModel):
    """The zoo's small CLIP trained on digits."""

    name: Literal["digits-clip"]


def _clip_tag(v: Any) -> str:
    name = v.get("name") if isinstance(v, dict) else getattr(v, "name", None)
    return "digits-clip" if name == "digits-clip" else "open_clip"


ClipSpec = Annotated[
    Annotated[OpenClip, Tag("open_clip")] | Annotated[DigitsClip, Tag("digits-clip")],
    Discriminator(_clip_tag),
]


class Evaluation(_PromptSource):
    """Image quality. Sample i uses prompt ``i % len(prompts)`` and generation seed ``seed + i``."""

    samples: int = Field(100, gt=0, description="images per model (compare FID only at equal N)")
    seed: int = Field(0, ge=0, description="generation seed of the first sample")
    metrics: list[Literal[QUALITY_METRICS]] = Field(default_factory=list)
    reference: str | None = Field(
        None, description="real images for fid / frechet_distance: 'digits-heldout', a directory, or a .npz"
    )
    feature_extractor: Literal["inception", "digits-clip"] = Field(
        "inception", description="feature space of frechet_distance (fid always uses Inception)"
    )
    inception_weights: str | None = Field(None, description="local Inception weights for fid (offline)")
    clip: ClipSpec = Field(default_factory=OpenClip)

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, v: list[str]) -> list[str]:
        return check_unique(v, "metric")


# -- performance, energy, outputs, regression, smoke -------------------------------------------------------


class Latency(StrictModel):
    """Timing and energy rounds (a pruned model paired with its base, see ecodiff_bench.measure.paired):
    at least ``min_reps`` rounds and ``min_seconds`` of timed calls, then until the interval of every
    ratio is within ``precision`` of it, or ``max_seconds`` or ``max_reps`` is reached."""

    warmup: int = Field(2, ge=0)
    min_reps: int = Field(5, gt=0)
    min_seconds: float = Field(5.0, ge=0)
    max_reps: int = Field(100, gt=0)
    max_seconds: float = Field(60.0, ge=0, description="time budget of one model's rounds")
    precision: float = Field(
        0.02, gt=0, lt=1, description="stop when the interval's half-width is within this share"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the intervals")

    @model_validator(mode="after")
    def _order(self) -> Latency:
        if self.max_reps < self.min_reps:
            raise Problems.one(
                ("max_reps",), f"max_reps must be >= min_reps ({self.min_reps})", got=self.max_reps
            )
        return self


class Inference(StrictModel):
    """How the denoiser runs while measured (``pruning.inference``), the same for base and pruned models."""

    attention: Literal[ATTENTION] = Field("sdpa", description="fused SDPA kernels, or the unfused reference")
    channels_last: Literal[CHANNELS_LAST] = Field("auto", description="auto: U-Nets on CUDA")
    compile: Literal[COMPILE_MODES] | None = Field(
        None, description="torch.compile mode (compile time is reported apart as compile_time_s)"
    )
    fullgraph: bool = Field(False, description="with compile: a graph break is an error")

    @model_validator(mode="after")
    def _fullgraph_needs_compile(self) -> Inference:
        if self.fullgraph and self.compile is None:
            raise Problems.one(
                ("fullgraph",),
                "fullgraph needs compile set to a mode",
                got=True,
                allowed=f"compile: {', '.join(COMPILE_MODES)}",
            )
        return self


class Performance(StrictModel):
    latency: Latency = Field(default_factory=Latency)
    inference: Inference = Field(default_factory=Inference)
    batch_size: int = Field(1, gt=0)
    interleave: bool = Field(True, description="alternate base and pruned repetitions (thermal drift)")
    prompt: str | None = Field(None, description="prompt for timing (default: the first evaluation prompt)")


class Energy(StrictModel):
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
                raise fail("not an ISO 3166-1 alpha-3 code", allowed="three letters, e.g. FRA, USA, DEU")
            return code
        if len(code) == 3 and pycountry.countries.get(alpha_3=code) is not None:
            return code
        if len(code) == 2 and (c := pycountry.countries.get(alpha_2=code)) is not None:
            hint = f" Did you mean: {c.alpha_3}?"
        else:
            hint = suggest(code, [c.alpha_3 for c in pycountry.countries])
        raise fail(f"not an ISO 3166-1 alpha-3 country code.{hint}", allowed="e.g. FRA, USA, DEU, GBR, CHN")


ReportFormat = Literal["html", "md"]


class Outputs(StrictModel):
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


class Regression(StrictModel):
    thresholds: dict[str, MetricThreshold] = Field(default_factory=dict)

    @field_validator("thresholds")
    @classmethod
    def _known_metrics(cls, v: dict[str, MetricThreshold]) -> dict[str, MetricThreshold]:
        p = Problems()
        for name in v:
            if name not in METRICS:
                p.add((name,), unknown_message("metric", name, METRICS), got=name, allowed=METRICS)
        p.raise_if_any()
        return v


class Smoke(StrictModel):
    """What ``--smoke`` shrinks to (never grows)."""

    samples: int = Field(8, gt=0)
    reps: int = Field(2, gt=0)
    epochs: int = Field(1, gt=0)
    steps: int = Field(4, gt=0, description="at most this many EcoDiff optimizer steps")
    calibration_count: int = Field(4, gt=0)
    idle_baseline_s: float = Field(1.0, ge=0)
    recovery_steps: int = Field(2, gt=0)


# -- the suite ---------------------------------------------------------------------------------------------


class Suite(StrictModel):
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
    allow_hub: bool = Field(
        False, description="allow downloads from the Hugging Face Hub (offline otherwise)"
    )
    smoke: Smoke = Field(default_factory=Smoke)

    _source: str | None = PrivateAttr(default=None)
    _positions: dict[str, int] | None = PrivateAttr(default=None)  # models' places in the file (select)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
            raise fail("not a valid suite name", allowed="letters, digits, '.', '_' and '-' (no spaces)")
        return v

    @field_validator("models", mode="before")
    @classmethod
    def _models_shorthand(cls, v):
        if isinstance(v, list):
            return [model_shorthand(m, i) for i, m in enumerate(v)]
        return v

    @field_validator("models")
    @classmethod
    def _models_nonempty(cls, v: list) -> list:
        if not v:
            raise fail("at least one model is required", allowed=model_names())
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Suite:
        p = Problems()
        self._check_unique_entries(p)
        self._check_energy(p)
        self._check_calibration(p)
        self._check_evaluation(p)
        p.raise_if_any()
        return self

    def _check_unique_entries(self, p: Problems) -> None:
        seen: dict[str, int] = {}
        for i, m in enumerate(self.models):
            if m.key in seen:
                p.add(
                    ("models", i, "label" if m.label else "name"),
                    f"duplicate model {m.key!r} (also models[{seen[m.key]}]); give one a distinct label",
                    got=m.key,
                )
            seen.setdefault(m.key, i)
        mseen: dict[str, int] = {}
        for i, meth in enumerate(self.methods):
            if meth.name in mseen:
                p.add(
                    ("methods", i, "name"),
                    f"duplicate method {meth.name!r} (also methods[{mseen[meth.name]}])",
                    got=meth.name,
                )
            mseen.setdefault(meth.name, i)

    def _check_energy(self, p: Problems) -> None:
        if self.energy.carbon and self.energy.country is None:
            p.add(
                ("energy", "country"),
                "required when energy.carbon is true (no default grid: carbon depends on it)",
                got=None,
                allowed="an ISO 3166-1 alpha-3 code such as FRA, USA, DEU; or set energy.carbon: false",
            )

    def _check_calibration(self, p: Problems) -> None:
        calibrated = [m.name for m in self.methods if needs_calibration(m.name)]
        calibrated += [
            f"{m.name} (recovery)" for m in self.methods if m.recovery and m.name not in calibrated
        ]
        if calibrated and not self.calibration.has_prompts:
            p.add(
                ("calibration", "prompts"),
                f"required by method(s) {', '.join(calibrated)}",
                got=None,
                allowed="'digits', an inline list, or calibration.prompts_file",
            )
        if calibrated and self.calibration.has_prompts and not isinstance(self.calibration.prompts, str):
            n = len(self.calibration.load_prompts())
            if self.calibration.count > n:
                p.add(
                    ("calibration", "count"),
                    f"asks for more prompts than the {n} available",
                    got=self.calibration.count,
                    allowed=f"1..{n}",
                )
        if calibrated and self.calibration.has_prompts and self.evaluation.has_prompts:
            self._check_disjoint(p)
        for i, meth in enumerate(self.methods):
            prompts = getattr(meth.options, "prompts", None)  # the calibration prompts a method trains on
            if prompts is not None and prompts > self.calibration.count:
                p.add(
                    ("methods", i, "options", "prompts"),
                    "exceeds calibration.count",
                    got=prompts,
                    allowed=f"1..{self.calibration.count}",
                )

    def _check_disjoint(self, p: Problems) -> None:
        """No method may calibrate on a (prompt, seed) pair that the evaluation generates."""
        cal, ev = self.calibration, self.evaluation
        prompts = ev.load_prompts()
        evaluated = {(prompts[i % len(prompts)], ev.seed + i) for i in range(ev.samples)}
        shared = [pair for pair in cal.pairs() if pair in evaluated]
        if shared:
            p.add(
                ("calibration", "seed"),
                f"{len(shared)} calibration prompt x seed pair(s) are also evaluated, e.g. {shared[0]!r}: "
                "a method must never calibrate on its evaluation set",
                got=cal.seed,
                allowed=f"a first seed whose {cal.seeds_per_prompt} seed(s) avoid the evaluation's seeds "
                f"{ev.seed}..{ev.seed + ev.samples - 1}",
            )

    def _check_evaluation(self, p: Problems) -> None:
        ev = self.evaluation
        if ev.metrics and not ev.has_prompts:
            p.add(
                ("evaluation", "prompts"),
                "required when evaluation.metrics is not empty",
                got=None,
                allowed="'digits', an inline list, or evaluation.prompts_file",
            )
        needs_ref = [m for m in ev.metrics if m in ("fid", "frechet_distance")]
        if needs_ref and ev.reference is None:
            p.add(
                ("evaluation", "reference"),
                f"required by {', '.join(needs_ref)}",
                got=None,
                allowed="'digits-heldout', a directory of images, or a .npz statistics file",
            )
        if "fid" in ev.metrics and ev.inception_weights is None and not self.allow_hub:
            p.add(
                ("evaluation", "inception_weights"),
                "required by fid when allow_hub is false (the weights would be downloaded)",
                got=None,
                allowed="a local path to pt_inception-2015-12-05 weights, or allow_hub: true",
            )
        non_digits = [m.name for m in self.models if not is_digits(m.name)]
        if non_digits:
            if "recognisability" in ev.metrics:
                p.add(
                    ("evaluation", "metrics"),
                    f"recognisability applies to digits models only, not {', '.join(non_digits)}",
                    got="recognisability",
                )
            if "frechet_distance" in ev.metrics and ev.feature_extractor == "digits-clip":
                p.add(
                    ("evaluation", "feature_extractor"),
                    f"digits-clip only embeds digits, not the images of {', '.join(non_digits)}",
                    got="digits-clip",
                    allowed="inception",
                )
            if "clip_score" in ev.metrics and isinstance(ev.clip, DigitsClip):
                p.add(
                    ("evaluation", "clip", "name"),
                    f"digits-clip only scores digits models, not {', '.join(non_digits)}",
                    got="digits-clip",
                    allowed="an open_clip model, e.g. ViT-B-32",
                )
        if ev.reference in BUILTIN_REFERENCES and non_digits and needs_ref:
            p.add(
                ("evaluation", "reference"),
                f"{ev.reference} holds digits; not a reference for {', '.join(non_digits)}",
                got=ev.reference,
            )

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

    def select(self, only: Iterable[str] | None = None) -> Suite:
        """A copy restricted to the models named in ``only`` (labels); record ids do not change (the model
        list does not enter a run's hash). Where a run writes is its plan's (:func:`~.expand.expand`)."""
        update: dict[str, Any] = {}
        if only:
            wanted = list(only)
            for key in wanted:
                self.model(key)  # raises with a suggestion
            update["models"] = [m for m in self.models if m.key in wanted]
        new = self.model_copy(update=update)
        new._source = self._source
        new._positions = {m.key: self.position(m.key) for m in self.models}
        return new

    def position(self, key: str) -> int:
        """The index of model ``key`` in the suite file's ``models`` (kept by :meth:`select`)."""
        if self._positions is not None and key in self._positions:
            return self._positions[key]
        return [m.key for m in self.models].index(key)

    def content_hash(self) -> str:
        """sha256 of the whole validated suite (its ``suite_hash`` in records)."""
        return sha256_of(self.model_dump(mode="json"))
