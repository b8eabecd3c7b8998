"""Pruning methods as a suite sees them: the harness's one place for method knowledge.

A method's suite options are generated from its config dataclass in ``pruning`` (``EcoDiffConfig``,
``TaylorConfig``): every field is an option with the field's type and default, so an option is declared
once, in pruning, and a field added there is accepted by suites without a change here. What this module
adds is what pruning cannot know:

* which config fields the harness sets itself (:data:`NOT_OPTIONS`),
* bounds and help for the options a suite sets (:data:`_RULES`), and options of the harness alone
  (``ecodiff.prompts``: how many calibration prompts to train on),
* defaults that depend on the architecture (:data:`ARCH_DEFAULTS`, the EcoDiff paper's per-model values),
* what ``--smoke`` shrinks (:data:`_SMOKE`).

Names, help texts, config classes and whether a method needs calibration prompts come from pruning's
method registry (:mod:`pruning.registry`). Every method also takes the plan's options ``ranking``,
``target`` and ``align``. The registry and :mod:`pruning.config` import no torch, so neither does
validating a suite.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, create_model, field_validator
from pydantic.fields import FieldInfo

from ecodiff_bench.core.registry import Registry
from ecodiff_bench.suite.problems import StrictModel, check_unique, fail
from ecodiff_bench.suite.recovery import RecoveryOptions
from pruning.config import PARAMETRIZATIONS, RANKINGS, TARGETS
from pruning.registry import METHODS as PRUNING_METHODS

#: Config fields that are not suite options, and why.
NOT_OPTIONS = {
    "seed": "set from the method's `seeds`",
    "progress": "the runner's progress display",
    "extra": "free-form, for experiments in code",
    "max_normalized_mse": "a divergence guard of mask training, not a tuning knob",
    "max_timesteps": "bounded by the scheduler's training timesteps",
    "target_sparsity": "each spec's ratio, for methods that train to it (see ratio_specific)",
}

#: Bounds, allowed values and help of options; a field without a rule keeps its type and default as they are.
_RULES: dict[str, dict[str, dict[str, Any]]] = {
    "ecodiff": {
        "epochs": {"gt": 0},
        "lr": {"gt": 0},
        "lr_heads": {"gt": 0, "description": "default: lr (SDXL), 0.5 (FLUX)"},
        "beta_reg": {"ge": 0, "description": "default: 0.5 (SDXL), 0.01 (FLUX)"},
        "accumulate": {"gt": 0, "description": "batches per optimizer step"},
        "batch": {"gt": 0, "description": "calibration samples run together as one batched trajectory"},
        "steps": {"gt": 0, "description": "optimizer steps (default: epochs over the calibration pairs)"},
        "controller": {
            "description": "lagrangian: masks trained to each ratio; none: the paper's fixed penalty"
        },
        "penalty": {"description": "weighting of the expected sparsity (params: as the plan counts)"},
        "dual_lr": {"gt": 0, "description": "learning rate of the Lagrange multipliers"},
        "warmup": {"ge": 0, "lt": 1, "description": "share of the steps over which the target ramps in"},
        "weight_decay": {"ge": 0},
        "noise_bound": {"gt": 0, "description": "bound of the mask noise in logits (default: unbounded)"},
        "parametrization": {"type": Literal[PARAMETRIZATIONS]},
    },
    "taylor": {
        "threshold": {"ge": 0, "le": 1, "description": "stop at the first step with loss < T * max"},
        "batch": {"gt": 0, "description": "calibration batch size"},
        "timestep_stride": {
            "gt": 0,
            "description": "visit every k-th training timestep (1: all, as the paper)",
        },
    },
}

#: Options of the harness alone (not passed to pruning).
_SUITE_OPTIONS: dict[str, dict[str, tuple[Any, FieldInfo]]] = {
    "ecodiff": {
        "prompts": (
            int | None,
            Field(None, gt=0, description="calibration prompts to train on (default: all)"),
        ),
    },
}

#: Defaults that depend on the architecture (``models.Family.arch``); a suite's ``None`` means "this".
ARCH_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "ecodiff": {"sdxl": {"beta_reg": 0.5, "lr_heads": None}, "flux": {"beta_reg": 0.01, "lr_heads": 0.5}},
}

#: What ``--smoke`` caps: option -> "epochs" or "steps" (the smoke section's) or "calibration" (the shrunk
#: calibration count).
_SMOKE: dict[str, dict[str, str]] = {
    "ecodiff": {"epochs": "epochs", "steps": "steps", "prompts": "calibration"},
    "taylor": {"batch": "calibration"},
}


class PlanOptions(StrictModel):
    """Options every method shares: how units are ranked, what the ratio counts, the FFN widths' multiple."""

    ranking: Literal[RANKINGS] = "global"
    target: Literal[TARGETS] = "params"
    align: int | None = Field(
        None, ge=1, description="round pruned FFN widths to a multiple (GPU tiles: 8, 64, 128)"
    )


#: The options every method takes, which are keyword arguments of ``pruning.plan`` (not of scoring).
PLAN_OPTIONS: tuple[str, ...] = tuple(PlanOptions.model_fields)


def _check_ratio(v: float) -> float:
    if not 0.0 < v < 1.0:
        raise fail("a ratio must lie strictly between 0 and 1", allowed="0 < ratio < 1")
    return v


Ratio = Annotated[float, AfterValidator(_check_ratio)]


class MethodEntry(StrictModel):
    """One entry of a suite's ``methods``: ratios, seeds, recovery (the options field is per method)."""

    ratios: list[Ratio]
    seeds: list[int] = Field(default_factory=lambda: [0], description="one pruning run per seed and ratio")
    recovery: RecoveryOptions | None = Field(
        None, description="also measure each pruned model after a short distillation toward its base"
    )

    @field_validator("ratios")
    @classmethod
    def _ratios_ok(cls, v: list[float]) -> list[float]:
        if not v:
            raise fail("at least one ratio is required", allowed="a list of numbers in (0, 1)")
        return check_unique(v, "ratio")

    @field_validator("seeds")
    @classmethod
    def _seeds_ok(cls, v: list[int]) -> list[int]:
        if not v:
            raise fail("at least one seed is required", allowed="a list of integers >= 0")
        if any(s < 0 for s in v):
            raise fail("seeds must be >= 0", allowed="integers >= 0")
        return check_unique(v, "seed")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    help: str
    needs_calibration: bool
    config: type  # pruning's config dataclass
    config_fields: tuple[str, ...]  # its fields (what pruning.score's ``options`` accepts)
    options: type[PlanOptions]  # the suite's options (generated)
    entry: type[MethodEntry]  # the suite's ``methods[]`` entry for this method (generated)

    def config_kwargs(self, options: dict[str, Any], seed: int) -> dict[str, Any]:
        """Resolved suite options -> pruning.score's ``options`` (the config's fields, and the seed)."""
        kwargs = {k: v for k, v in options.items() if k in self.config_fields}
        return {**kwargs, "seed": seed} if "seed" in self.config_fields else kwargs


def _option_fields(name: str, config: type) -> dict[str, tuple[Any, FieldInfo]]:
    rules = _RULES.get(name, {})
    arch_dependent = {k for defaults in ARCH_DEFAULTS.get(name, {}).values() for k in defaults}
    hints = typing.get_type_hints(config)
    fields: dict[str, tuple[Any, FieldInfo]] = {}
    for f in dataclasses.fields(config):
        if f.name in NOT_OPTIONS:
            continue
        rule = dict(rules.get(f.name, {}))
        typ = rule.pop("type", hints[f.name])
        if f.name in arch_dependent:  # None in a suite: the architecture's default, resolved at expansion
            typ, default = typ | None, None
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            raise TypeError(
                f"{name} option {f.name!r} has no plain default in pruning; list it in NOT_OPTIONS"
            )
        fields[f.name] = (typ, Field(default, **rule))
    unknown = set(rules) - set(fields)
    if unknown:
        raise TypeError(f"rules for {sorted(unknown)}, which are not options of {name!r}")
    return {**fields, **_SUITE_OPTIONS.get(name, {})}


def _build(name: str) -> MethodInfo:
    method = PRUNING_METHODS[name]
    title = "".join(part.capitalize() for part in name.split("-"))
    options = create_model(f"{title}Options", __base__=PlanOptions, **_option_fields(name, method.config))
    options.__doc__ = f"Options of {name} (from pruning.config.{method.config.__name__})."
    entry = create_model(
        f"{title}Method",
        __base__=MethodEntry,
        name=(Literal[name], ...),
        options=(options, Field(default_factory=options)),
    )
    config_fields = tuple(f.name for f in dataclasses.fields(method.config))
    return MethodInfo(
        name, method.help, method.needs_calibration, method.config, config_fields, options, entry
    )


METHODS: Registry[MethodInfo] = Registry("method")
for _name, _method in PRUNING_METHODS.items():
    METHODS.register(_name, _build(_name), help=_method.help)

METHOD_NAMES: tuple[str, ...] = tuple(METHODS.names())
_entries = tuple(METHODS.get(n).entry for n in METHOD_NAMES)
MethodSpec = Annotated[Union[_entries], Field(discriminator="name")]  # noqa: UP007 - a tuple of classes


def method_info(name: str) -> MethodInfo:
    return METHODS.get(name)


def needs_calibration(name: str) -> bool:
    return METHODS.get(name).needs_calibration


def resolved_options(entry: MethodEntry, family: str) -> dict[str, Any]:
    """A method's options with the architecture's defaults filled in (EcoDiff beta_reg, lr_heads)."""
    return _resolved(entry.name, entry.options, family)


def default_options(name: str, family: str) -> dict[str, Any]:
    """A method's options when a suite sets none, resolved for ``family``'s architecture."""
    return _resolved(name, METHODS.get(name).options(), family)


def _resolved(name: str, options: PlanOptions, family: str) -> dict[str, Any]:
    from ecodiff_bench.models import get_family

    opts = options.model_dump(mode="json")
    arch = ARCH_DEFAULTS.get(name, {}).get(get_family(family).arch, {})
    for key, default in arch.items():
        if opts[key] is None:
            opts[key] = default
    if "lr_heads" in arch and opts["lr_heads"] is None:  # pruning's own default: the learning rate
        opts["lr_heads"] = opts["lr"]
    return opts


def config_kwargs(name: str, options: dict[str, Any], seed: int) -> dict[str, Any]:
    return METHODS.get(name).config_kwargs(options, seed)


def ratio_specific(name: str, options: dict[str, Any]) -> bool:
    """Whether the method's scores with these options belong to one ratio (EcoDiff's masks trained to it),
    so that each ratio gets its own scores (pruning's registry says which methods and options)."""
    return PRUNING_METHODS[name].ratio_specific(options)


def shrink_for_smoke(
    name: str, options: dict[str, Any], *, epochs: int, steps: int, calibration: int
) -> None:
    """Cap the options ``--smoke`` shrinks, in place (``None`` means "all" and becomes the cap)."""
    caps = {"epochs": epochs, "steps": steps, "calibration": calibration}
    for option, cap in _SMOKE.get(name, {}).items():
        if options.get(option) is not None:
            options[option] = min(options[option], caps[cap])
