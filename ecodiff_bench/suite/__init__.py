"""Suite files: what to benchmark, validated before anything runs. A suite is a YAML mapping; its smallest
useful form::

    name: my-suite
    models: [digits-sdxl]
    methods:
      - {name: magnitude, ratios: [0.2]}
    energy: {country: FRA}

* :mod:`.catalog`   model names (from the model registry), builtin prompt sets, reference sets, suites
* :mod:`.methods`   pruning methods and their options, generated from pruning's method registry
* :mod:`.sources`   ``models[]``: zoo, hub, random-init or a local directory (a ModelRef), call settings
* :mod:`.schema`    every other section, and the cross-field checks of the whole suite
* :mod:`.problems`  errors as ``<field.path>: <what is wrong> (got ...; allowed: ...)``
* :mod:`.loading`   the file: ``include``, suite-relative paths, builtin names
* :mod:`.spec`      a run spec and its record id, the content hash that lets a rerun skip finished work
* :mod:`.plan`      RunPlan (the specs, RunLayout of every output path, idle baseline, provenance inputs)
* :mod:`.expand`    suite -> RunPlan, after ``--smoke``; the keys of shared work (scores, plans, recovery)

Paths to files that travel with the suite (``include``, ``*.prompts_file``) are relative to the file that
names them; all other paths (weights, reference sets, local models, outputs) are relative to the working
directory; ``~`` is expanded. Validation reads files (prompt lists) but writes nothing, loads no model,
never touches the network and does not import torch (pruning's registry and settings, :mod:`pruning.registry` and
:mod:`pruning.config`, import none).
"""

from ecodiff_bench.suite.catalog import (
    SUITES_DIR,
    builtin_suites,
    family_of,
    is_digits,
    known_model,
    model_names,
)
from ecodiff_bench.suite.expand import apply_smoke, expand
from ecodiff_bench.suite.loading import deep_merge, load_suite, resolve_suite_path, validate_suite
from ecodiff_bench.suite.methods import METHODS, method_info, needs_calibration
from ecodiff_bench.suite.plan import RunLayout, RunPlan
from ecodiff_bench.suite.schema import Calibration, Evaluation, Suite, read_prompts_file
from ecodiff_bench.suite.sources import HubModel, LocalModel, ModelSpec, RandomInitModel, ZooModel
from ecodiff_bench.suite.spec import RunSpec

__all__ = [
    "METHODS",
    "SUITES_DIR",
    "Calibration",
    "Evaluation",
    "HubModel",
    "LocalModel",
    "ModelSpec",
    "RandomInitModel",
    "RunLayout",
    "RunPlan",
    "RunSpec",
    "Suite",
    "ZooModel",
    "apply_smoke",
    "builtin_suites",
    "deep_merge",
    "expand",
    "family_of",
    "is_digits",
    "known_model",
    "load_suite",
    "method_info",
    "model_names",
    "needs_calibration",
    "read_prompts_file",
    "resolve_suite_path",
    "validate_suite",
]
