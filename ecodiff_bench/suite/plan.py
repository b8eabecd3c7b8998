"""A run plan: one ``run``, ``prune`` or ``validate`` of a suite, resolved once by
:func:`~ecodiff_bench.suite.expand.expand` from the suite after ``--only`` and ``--smoke``.

It holds the specs (one per measured model, each with every setting it is measured with), the
:class:`RunLayout` of every path the run writes, the idle baseline to measure, and what the records'
provenance says about the suite. The runner, scorer, recoverer, evaluator and CLI read the plan and its
specs; none of them goes back to the suite, so no setting can be read in two states (smoked and not).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecodiff_bench.core.hashing import CACHE_DIGITS, MODEL_DIGITS, RECORD_DIGITS, short
from ecodiff_bench.core.paths import within

if TYPE_CHECKING:
    from ecodiff_bench.suite.schema import Outputs
    from ecodiff_bench.suite.spec import RunSpec


@dataclass(frozen=True)
class RunLayout:
    """Every path a run writes: under ``root`` (``outputs.dir``, or ``--out``), except the store, which
    ``outputs.store`` may put elsewhere; ``emissions.csv`` lies beside the store. Folders named after a
    record id or a key use the prefix lengths of :mod:`ecodiff_bench.core.hashing`."""

    root: Path
    store: Path
    root_field: str = "outputs.dir"  # the setting ``root`` came from, for messages
    store_field: str = "outputs.dir"  # the setting ``store`` came from

    @classmethod
    def of(cls, outputs: Outputs, out: str | os.PathLike | None = None) -> RunLayout:
        """The layout of a suite's ``outputs``; ``out`` (``--out``) replaces ``outputs.dir``."""
        root_field = "outputs.dir" if out is None else "--out"
        root = Path(outputs.dir if out is None else out).expanduser()
        if outputs.store:
            return cls(root, Path(outputs.store).expanduser(), root_field, "outputs.store")
        return cls(root, root / "store.sqlite", root_field, root_field)

    @property
    def emissions(self) -> Path:
        """codecarbon's emissions.csv, one row per measured model, beside the store."""
        return self.store.parent / "emissions.csv"

    @property
    def cache(self) -> Path:
        """Work shared between specs and reruns: scores, recoveries, base images, reference statistics."""
        return self.root / "cache"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def scores(self, spec: RunSpec) -> Path:
        """A method's scores (and their checkpoints and attempts), one folder per score key."""
        return self.cache / "scores" / short(spec.score_key, CACHE_DIGITS)

    def recovery(self, spec: RunSpec) -> Path:
        """A recovery's checkpoints and attempts, one folder per recovery key."""
        return self.cache / "recovery" / short(spec.recovery_key, CACHE_DIGITS)

    def base_images(self, spec: RunSpec) -> Path:
        """A base model's evaluation images, the reference of its pruned models' SSIM/PSNR."""
        return self.cache / "base-images" / f"{short(spec.record_id, RECORD_DIGITS)}.safetensors"

    def artifacts(self, spec: RunSpec) -> Path:
        """A record's own files: sample grid, power timeline, training curves."""
        return self.root / "artifacts" / short(spec.record_id, RECORD_DIGITS)

    def model_dir(self, spec: RunSpec) -> Path:
        """A pruned model's folder, ``<model>-<record method>-<percent>-<id>``; the label is a plain name
        (the suite checks it) and is checked again here."""
        name = f"{spec.model}-{spec.record_method}-{round(spec.ratio * 100)}-{short(spec.record_id, MODEL_DIGITS)}"
        return within(self.root / "models", name, what="model folder")

    def store_relative(self, paths: Mapping[str, str | os.PathLike]) -> dict[str, str]:
        """Artifact paths relative to the store's folder, so a report renders from any working directory."""
        folder = self.store.resolve().parent
        return {k: os.path.relpath(Path(v).resolve(), folder) for k, v in paths.items()}


@dataclass(frozen=True)
class RunPlan:
    """What one run of a suite does, resolved once (see the module's docstring)."""

    suite: str  # the suite's name: records, the store's run lock, the report's selection
    source: str | None  # the file (or builtin name) it was loaded from, for messages
    suite_hash: str  # sha256 of the suite as given (before --smoke): the records' suite_hash
    smoke: bool
    specs: tuple[RunSpec, ...]  # per model its base, then its pruned (and recovered) variants
    layout: RunLayout
    idle_baseline_s: float  # the smoke section's under --smoke
    provenance: Mapping[str, Any]  # suite file, smoke, regression thresholds: into every record
    report_formats: tuple[str, ...]
    positions: Mapping[str, int]  # each model's index in the suite file's ``models`` (messages)

    def by_model(self) -> Iterator[tuple[str, list[RunSpec]]]:
        """(model key, its specs) in order; each model's base spec comes first."""
        for key, group in groupby(self.specs, key=lambda s: s.model):
            yield key, list(group)

    def model_field(self, key: str, field: str) -> str:
        """A model's setting as the suite file names it: ``models[1].device``."""
        return f"models[{self.positions[key]}].{field}"
