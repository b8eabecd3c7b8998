"""Recovered variants: a pruned model distilled toward its unpruned model, metered like the pruning.

Per ``recovery_key`` (same plan, recovery options and calibration) the training checkpoints under
``<layout.recovery(spec)>/checkpoint`` let an interrupted recovery resume; its time and energy are summed over
the attempts (:class:`~ecodiff_bench.run.attempts.Attempts`, stage ``recovery``), so the record states
the whole cost. The plan that is saved with the recovered model records how it was recovered
(``plan.info["recovery"]``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pruning
from ecodiff_bench.core.files import write_json_atomic
from ecodiff_bench.core.values import Value
from ecodiff_bench.measure import energy
from ecodiff_bench.run.attempts import CHECKPOINT, Attempts, metered
from ecodiff_bench.suite import RunLayout, RunSpec
from ecodiff_bench.suite.recovery import config_kwargs


@dataclass
class Recovered:
    plan: pruning.PruningPlan  # the plan, with info["recovery"] (options and summary)
    values: dict[str, Value]  # recovery_time_s, recovery_energy_j
    curve: list[dict]


def calibration_samples(spec: RunSpec) -> list[tuple[str, int]]:
    """What recovery trains on: the suite's calibration prompt x seed pairs (seeds no evaluation uses)."""
    return spec.calibration.pairs()


class Recoverer:
    def __init__(self, layout: RunLayout, monitor: energy.EnergyMonitor):
        self.layout, self.monitor = layout, monitor

    def recover(
        self, spec: RunSpec, pruned, base_pipe, plan: pruning.PruningPlan, settings: dict
    ) -> Recovered:
        """Distil ``pruned`` (in place) toward ``base_pipe``'s denoiser as ``spec.recovery`` says."""
        folder = self.layout.recovery(spec)
        config = pruning.RecoveryConfig(**config_kwargs(spec.recovery, spec.seed))
        attempts = Attempts(folder, stage="recovery")
        with metered(self.monitor, attempts, "recovery", "recovery_energy_j") as m:
            info = pruning.recover(
                pruned,
                pruning.denoiser_of(base_pipe),
                calibration_samples(spec),
                settings,
                config,
                checkpoint_dir=folder / CHECKPOINT,
            )
        attempts.end("finished", m.elapsed_s, m.window.total_value("recovery_energy_j"))
        time_value, energy_value = attempts.totals(info["resumed_from"])
        summary = {k: v for k, v in info.items() if k != "curve"}
        write_json_atomic(folder / "info.json", {**summary, "curve": info["curve"]})
        recovered_plan = copy.deepcopy(plan)
        recovered_plan.info["recovery"] = {"options": spec.recovery, **summary}
        values = {"recovery_time_s": time_value, "recovery_energy_j": energy_value}
        return Recovered(recovered_plan, values, info["curve"])
