"""The pruning methods, registered once: name, help, config class, whether they calibrate, their scorer.

Everything that needs to know the methods (``pruning.score``, the harness's suite options, ``ls methods``)
reads this table, and importing it does not import torch: a method's functions are named as
``"module:function"`` and imported on first use. Every scorer has one signature::

    scorer(pipe, groups, calibration, sampling, config, checkpoint_dir) -> (scores, info)

with ``calibration`` None for the data-free methods. A method whose plans carry more than the cut names a
plan annotator, ``annotator(plan, scores, info) -> None``, which adds to ``plan.info`` (and may warn).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from .config import EcoDiffConfig, MagnitudeConfig, RandomConfig, TaylorConfig


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    config: type
    needs_calibration: bool
    scorer: str  # "module:function" relative to pruning.methods, imported on first use
    # (option, value) with which this method's scores serve every ratio; None: scores always do
    every_ratio_when: tuple[str, Any] | None = None
    plan_annotator: str | None = None  # "module:function", see the module docstring; None: nothing to add

    def make_config(self, options: dict | None = None):
        """The method's config from ``options``, unknown names refused with the allowed ones listed."""
        options = dict(options or {})
        known = [f.name for f in dataclasses.fields(self.config)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"unknown {self.name} option(s) {', '.join(unknown)}; allowed: {', '.join(known) or 'none'}"
            )
        return self.config(**options)

    def ratio_specific(self, options: dict | None = None) -> bool:
        """Whether scores with these options belong to one pruning ratio (masks trained to it)."""
        if self.every_ratio_when is None:
            return False
        option, value = self.every_ratio_when
        default = {f.name: f.default for f in dataclasses.fields(self.config)}[option]
        return (options or {}).get(option, default) != value

    def score_function(self):
        return _imported(self.scorer)

    def annotate_plan(self, plan, scores: dict, info: dict) -> None:
        """Record in ``plan.info`` what a plan cut from this method's ``scores`` (logged ``info``) carries."""
        if self.plan_annotator is not None:
            _imported(self.plan_annotator)(plan, scores, info)


def _imported(reference: str):
    """The function a ``"module:function"`` reference names, the module relative to pruning.methods."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(f"pruning.methods.{module}"), name)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "ecodiff",
            "learned hard-concrete masks, end-to-end trajectory objective (EcoDiff)",
            EcoDiffConfig,
            needs_calibration=True,
            scorer="ecodiff:ecodiff_scores",
            every_ratio_when=("controller", "none"),
            plan_annotator="ecodiff:annotate_plan",
        ),
        Method(
            "taylor",
            "first-order Taylor importance over low-noise timesteps (Diff-Pruning)",
            TaylorConfig,
            needs_calibration=True,
            scorer="taylor:taylor_scores",
        ),
        Method(
            "magnitude",
            "mean absolute weight of each unit",
            MagnitudeConfig,
            needs_calibration=False,
            scorer="simple:score_magnitude",
        ),
        Method(
            "random",
            "uniformly random scores (seeded)",
            RandomConfig,
            needs_calibration=False,
            scorer="simple:score_random",
        ),
    )
}
DATA_FREE = tuple(name for name, m in METHODS.items() if not m.needs_calibration)


def method(name: str) -> Method:
    """The registered method called ``name``; an unknown name is refused with the known ones."""
    if name not in METHODS:
        raise ValueError(f"unknown pruning method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def ratio_specific(name: str, options: dict | None = None) -> bool:
    """Whether ``name``'s scores with these options belong to one pruning ratio (to be cached per ratio).

    EcoDiff's default controlled training learns masks for its target ratio; every other method (and
    EcoDiff with ``controller: none``) scores units once for every ratio.
    """
    return method(name).ratio_specific(options)
