"""CPU energy: RAPL package counters (wraparound handled), and codecarbon's CPU power table for the
estimate used when RAPL cannot be read (TDP x this process's CPU time / logical CPUs)."""

from __future__ import annotations

import functools
import os
import resource
from pathlib import Path


class RaplReader:
    """Package-level RAPL counters (``intel-rapl:N``; AMD exposes the same interface). Sub-domains
    (core, uncore, dram: ``intel-rapl:N:M``) are inside the package figure and skipped; ``psys`` (the
    whole platform) is skipped when package domains exist, to avoid counting twice.
    """

    def __init__(self, root: str | os.PathLike = "/sys/class/powercap"):
        self.root = Path(root)
        self.domains: list[tuple[str, Path, int]] = []  # (name, energy_uj path, max_energy_range_uj)
        self.reason: str | None = None
        self._scan()

    @property
    def ok(self) -> bool:
        return bool(self.domains)

    def _scan(self) -> None:
        if not self.root.is_dir():
            self.reason = f"RAPL not available ({self.root} does not exist)"
            return
        found = []
        denied = []
        for d in sorted(self.root.glob("intel-rapl:*")):
            if d.name.count(":") != 1 or not (d / "energy_uj").exists():
                continue
            try:
                name = (d / "name").read_text().strip()
            except OSError:
                name = d.name
            try:
                int((d / "energy_uj").read_text())
            except PermissionError:
                denied.append(str(d / "energy_uj"))
                continue
            except (OSError, ValueError) as err:
                denied.append(f"{d / 'energy_uj'} ({err})")
                continue
            try:
                max_range = int((d / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                max_range = 2**32  # the width most kernels report when the file is missing
            found.append((name, d / "energy_uj", max_range))
        if any(n.startswith("package") for n, _, _ in found):
            found = [x for x in found if not x[0].startswith("psys")]
        self.domains = found
        if not found:
            if denied:
                self.reason = (
                    "RAPL counters not readable (permission denied on "
                    f"{', '.join(denied)}; Linux restricts energy_uj to root)"
                )
            else:
                self.reason = f"no RAPL package domain under {self.root}"

    def read(self) -> dict[str, int]:
        return {str(path): int(path.read_text()) for _, path, _ in self.domains}

    def joules(self, start: dict[str, int], end: dict[str, int]) -> float:
        """Energy between two readings. A counter that went down wrapped once at max_energy_range_uj;
        more than one wrap inside a window cannot be seen (at 200 W a 2^32 uJ counter wraps in ~6 h;
        package counters with a 262 kJ range wrap in ~20 min), so keep windows shorter than that.
        """
        total_uj = 0
        for _, path, max_range in self.domains:
            a, b = start[str(path)], end[str(path)]
            total_uj += b - a if b >= a else b + max_range - a
        return total_uj / 1e6


def process_cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (threads included)."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


@functools.lru_cache(maxsize=1)
def codecarbon_cpu_tdp() -> tuple[str, float | None]:
    """(CPU model, TDP in W) from codecarbon's table; codecarbon falls back to 4 W per thread for CPUs
    it does not know. Cached: the lookup costs about a second."""
    from codecarbon.core.cpu import TDP

    tdp = TDP()
    return str(tdp.model), (float(tdp.tdp) if tdp.tdp else None)
