"""Measurement trackers: latency, memory/size/FLOPs, energy (NVML, RAPL), carbon (codecarbon, offline).

Every number is an :class:`ecodiff_bench.core.values.Value` with a unit, a status (measured / estimated /
unavailable, with the reason) and a direction; metric names are those of the catalog
(``ecodiff_bench.core.metrics``). Nothing here imports torch at module import time.
"""

from ecodiff_bench.measure.carbon import (
    CarbonIntensity,
    carbon_intensity,
    carbon_values,
    emissions_csv_columns,
    emissions_csv_row,
    gco2e,
    write_emissions_csv,
)
from ecodiff_bench.measure.cpu_energy import RaplReader
from ecodiff_bench.measure.energy import (
    EnergyMonitor,
    EnergyWindow,
    GpuEnergy,
    UnknownWindowError,
    measure_energy,
)
from ecodiff_bench.measure.latency import LatencySampler, Timer, interleaved, latency_values, time_callable
from ecodiff_bench.measure.memory import MemoryTracker, count_parameters, disk_size, flops_per_step
from ecodiff_bench.measure.power import PowerSampler

__all__ = [
    "CarbonIntensity",
    "EnergyMonitor",
    "EnergyWindow",
    "GpuEnergy",
    "LatencySampler",
    "MemoryTracker",
    "PowerSampler",
    "RaplReader",
    "Timer",
    "UnknownWindowError",
    "carbon_intensity",
    "carbon_values",
    "count_parameters",
    "disk_size",
    "emissions_csv_columns",
    "emissions_csv_row",
    "flops_per_step",
    "gco2e",
    "interleaved",
    "latency_values",
    "measure_energy",
    "time_callable",
    "write_emissions_csv",
]
