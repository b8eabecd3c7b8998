"""The cost of computing a method's scores over several attempts: time and energy summed, labelled.

Mask training checkpoints its progress, so an interrupted EcoDiff run resumes where it stopped. What
the resumed run measures is only its own part; the scores' true cost is the sum of every part. Each
attempt is therefore written to ``attempts.json`` next to the scores' cache when it starts and again
when it ends (finished or interrupted, with its measured time and energy). An attempt that never
recorded its end (the process was killed) is counted up to the last checkpoint it wrote, as an
estimate, with energy at the measured parts' mean power; without either figure it is left out and the
total says it is a lower bound.

When the final attempt started from scratch (it did not resume: ``resumed_from`` is 0 or absent, as for
methods without checkpoints), the earlier attempts left nothing behind and only the final one counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecodiff_bench.core.files import write_json_atomic
from ecodiff_bench.core.values import Value

FILE = "attempts.json"
CHECKPOINT = "checkpoint"  # the computation's checkpoints, a subfolder of the ledger's folder
OWN_RATIO = "this ratio's own mask training"  # scores trained to one ratio (pruning.ratio_specific)


class Attempts:
    """The ledger of one score folder (``cache/scores/<score key>``), or of one recovery
    (``cache/recovery/<recovery key>``, ``stage="recovery"``: its values are ``recovery_*``)."""

    def __init__(self, folder: Path, stage: str = "pruning"):
        self.file = folder / FILE
        self.checkpoint_dir = folder / CHECKPOINT
        self.stage = stage
        self.parts: list[dict] = self._read()

    def _read(self) -> list[dict]:
        try:
            parts = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []

    def _write(self) -> None:
        write_json_atomic(self.file, self.parts, indent=1)

    def begin(self) -> None:
        """Record a new attempt; one still marked running was killed: estimate it from its checkpoint."""
        for part in self.parts:
            if part.get("status") == "running":
                self._close_killed(part)
        self.parts.append({"status": "running", "started_unix": time.time(), "time_s": None, "energy": None})
        self._write()

    def _close_killed(self, part: dict) -> None:
        last = max((f.stat().st_mtime for f in self.checkpoint_dir.glob("*") if f.is_file()), default=None)
        started = part.get("started_unix")
        part["status"] = "killed"
        if last is not None and isinstance(started, int | float) and last > started:
            part["time_s"] = last - started  # up to its last checkpoint: what the next attempt built on
            part["time_estimated"] = True

    def end(self, status: str, time_s: float, energy: Value | None) -> None:
        part = self.parts[-1]
        part.update(status=status, time_s=time_s, energy=energy.to_dict() if energy else None)
        with suppress(OSError):  # the ledger must never hide the error that ended the attempt
            self._write()

    def totals(self, resumed_from: int | None, shared: bool = True) -> tuple[Value, Value]:
        """``<stage>_time_s`` and ``<stage>_energy_j`` over the parts that built the scores (or recovery);
        ``shared``: the scores serve every ratio of the method (False: trained to this ratio alone)."""
        parts = self.parts if resumed_from else self.parts[-1:]
        dropped = len(self.parts) - len(parts)
        args = (parts, dropped, self.stage, shared)
        return _time_total(*args), _energy_total(*args)


@dataclass
class Metered:
    """What :func:`metered` measured of the work it wrapped (set when the work finished)."""

    elapsed_s: float = 0.0
    window: Any = None  # the monitor's EnergyWindow


@contextmanager
def metered(monitor, attempts: Attempts | None, window: str, energy_name: str) -> Iterator[Metered]:
    """Time and meter the work inside as one attempt. When it raises (interrupted, failed) the part is
    recorded as interrupted with what it cost, so a resumed run still counts it, and the error goes on;
    when it finishes, the caller ends the attempt (it may first sum the energy over processes)."""
    if attempts:
        attempts.begin()
    out = Metered()
    t0 = time.perf_counter()
    monitor.begin_window(window)
    try:
        yield out
    except BaseException:
        spent = None
        with suppress(Exception):
            spent = monitor.end_window(window, sync=False).total_value(energy_name)
        monitor.cancel_window(window)
        if attempts:
            attempts.end("interrupted", time.perf_counter() - t0, spent)  # this process's devices
        raise
    out.window = monitor.end_window(window)
    out.elapsed_s = time.perf_counter() - t0


def _describe(parts: list[dict], dropped: int, stage: str, shared: bool) -> str:
    if stage == "recovery":
        text = "recovery time of this pruned model"
        if len(parts) > 1:
            text = f"sum of {len(parts)} parts of a resumed recovery"
    elif len(parts) == 1:
        text = "scoring time, " + ("shared by every ratio of this method" if shared else OWN_RATIO)
    else:
        kinds = ", ".join(
            f"{p['status']} {p['time_s']:.1f} s"
            if p.get("time_s") is not None
            else f"{p['status']} (time unknown)"
            for p in parts
        )
        text = f"sum of {len(parts)} parts of a resumed computation ({kinds}); " + (
            "shared by every ratio" if shared else OWN_RATIO
        )
    if dropped:
        text += f"; {dropped} earlier attempt(s) left nothing to resume from and are not counted"
    return text


def _time_total(parts: list[dict], dropped: int, stage: str, shared: bool) -> Value:
    known = [p for p in parts if p.get("time_s") is not None]
    total = sum(p["time_s"] for p in known)
    estimated = len(known) < len(parts) or any(p.get("time_estimated") for p in parts)
    note = _describe(parts, dropped, stage, shared)
    if len(known) < len(parts):
        note += "; a lower bound: a killed part without a checkpoint is not counted"
    details = {"parts": [{k: p.get(k) for k in ("status", "time_s", "time_estimated")} for p in parts]}
    status = "estimated" if estimated else "measured"
    return Value(f"{stage}_time_s", total, "s", status, False, note, details)


def _energy_of(part: dict, name: str) -> Value | None:
    return Value.from_dict({**part["energy"], "name": name}) if part.get("energy") else None


def _energy_total(parts: list[dict], dropped: int, stage: str, shared: bool) -> Value:
    name = f"{stage}_energy_j"
    energies = [_energy_of(p, name) for p in parts]
    if len(parts) == 1 and energies[0] is not None:  # the common case: one attempt, its own window
        return energies[0]
    metered = [(e, p) for e, p in zip(energies, parts, strict=True) if e is not None and e.available]
    if not metered:
        why = next((e.note for e in energies if e is not None), "no part of the computation was metered")
        return Value.unavailable(name, "J", why, False)
    total = sum(e.value for e, _ in metered)
    metered_s = sum(p["time_s"] for _, p in metered)
    unmetered = [p for e, p in zip(energies, parts, strict=True) if e is None or not e.available]
    note = _describe(parts, dropped, stage, shared)
    extra_s = sum(p["time_s"] for p in unmetered if p.get("time_s") is not None)
    if extra_s > 0 and metered_s > 0:
        total += total / metered_s * extra_s
        note += f"; {extra_s:.1f} s not metered (killed) estimated at the metered parts' mean power"
    if any(p.get("time_s") is None for p in unmetered):
        note += "; a lower bound: a killed part of unknown length is not counted"
    estimated = bool(unmetered) or any(e.status == "estimated" for e, _ in metered)
    status = "estimated" if estimated else "measured"
    return Value(name, total, "J", status, False, note, {"parts": len(parts)})
