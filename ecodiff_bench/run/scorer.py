"""Method scores (unit importances) per ``score_key``: computed once, kept in memory and on disk, and
metered, since computing them is the pruning's own cost. A method's scores serve every ratio, except those
trained to one (EcoDiff's controlled masks, ``pruning.ratio_specific``): the spec's ratio is then their
target, and its score key is the ratio's own.

On several processes the ranks compute the scores together (the methods shard their calibration);
rank 0 alone reads and writes the cache and hands what it read to the others.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from pathlib import Path

from safetensors.torch import load_file, save_file

import pruning
from ecodiff_bench.core.files import atomic_path, write_json_atomic
from ecodiff_bench.measure import energy
from ecodiff_bench.run import distributed
from ecodiff_bench.run.attempts import CHECKPOINT, Attempts, metered
from ecodiff_bench.suite import RunLayout, RunSpec
from ecodiff_bench.suite.methods import PLAN_OPTIONS, config_kwargs


class Scorer:
    """Scores per ``score_key``: memory, then the disk cache (``layout.scores(spec)``), then computed."""

    def __init__(self, layout: RunLayout, monitor: energy.EnergyMonitor):
        self.layout, self.monitor, self.memo = layout, monitor, {}

    def scores(self, spec: RunSpec, pipe, settings: dict) -> pruning.Scores:
        if spec.score_key not in self.memo:
            folder = self.layout.scores(spec)
            writer = distributed.world().writer
            if distributed.broadcast_json((folder / "scores.safetensors").exists() if writer else None):
                values = info = None
                with distributed.together("reading cached scores"):
                    if writer:
                        info = json.loads((folder / "info.json").read_text())
                        values = load_file(folder / "scores.safetensors")
                info, values = distributed.broadcast_json(info), distributed.broadcast_tensors(values)
                self.memo[spec.score_key] = pruning.Scores(spec.method, values, info)
            else:
                self.memo[spec.score_key] = self._compute(spec, pipe, settings, folder)
        return self.memo[spec.score_key]

    def _compute(self, spec: RunSpec, pipe, settings: dict, folder: Path) -> pruning.Scores:
        with ExitStack() as stack:  # the others resume from rank 0's checkpoint, in a folder of their own
            writer = distributed.world().writer
            mine = None if writer else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            checkpoint = distributed.share_folder(folder / CHECKPOINT, mine)  # as is on one process
            return self._metered(spec, pipe, settings, folder, checkpoint)

    def _metered(self, spec: RunSpec, pipe, settings: dict, folder: Path, checkpoint: Path) -> pruning.Scores:
        writer = distributed.world().writer
        prompts = None
        if spec.calibration:
            count = min(spec.calibration.count, spec.options.get("prompts") or spec.calibration.count)
            prompts = spec.calibration.pairs(count)  # (prompt, seed) pairs, never the evaluation's
        options = config_kwargs(spec.method, spec.options, spec.seed)
        own_ratio = pruning.ratio_specific(spec.method, options)
        if own_ratio:
            options["target_sparsity"] = spec.ratio
        attempts = Attempts(folder) if writer else None
        with (
            distributed.together("scoring"),  # the methods agree on failures in their own sections too
            metered(self.monitor, attempts, "scoring", "pruning_energy_j") as m,
        ):
            result = pruning.score(
                pipe, spec.method, prompts, sampling=settings, options=options, checkpoint_dir=checkpoint
            )
        energy_value = distributed.sum_value(m.window.total_value("pruning_energy_j"))  # every rank's devices
        if not writer:
            return result
        attempts.end("finished", m.elapsed_s, energy_value)
        time_value, energy_value = attempts.totals(result.info.get("resumed_from"), shared=not own_ratio)
        result.info["pruning_time_s"] = time_value.value
        result.info["pruning_time"] = time_value.to_dict()
        result.info["pruning_energy"] = energy_value.to_dict()
        write_json_atomic(folder / "info.json", result.info)  # before the scores: their file marks "done"
        with atomic_path(folder / "scores.safetensors") as tmp:
            save_file({k: v.float().contiguous() for k, v in result.values.items()}, tmp)
        return result

    def plan(self, spec: RunSpec, pipe, settings: dict) -> pruning.PruningPlan:
        plan_options = {k: spec.options[k] for k in PLAN_OPTIONS}  # ranking, target, align: pruning.plan's
        return pruning.plan(pipe, self.scores(spec, pipe, settings), spec.ratio, **plan_options)
