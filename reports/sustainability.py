"""The sustainability table: per pruned model, energy and carbon per 1,000 images against its base, the
energy it saves per image, its one-off energy (pruning, plus recovery for a recovered variant) and after
how many images that one-off energy has paid for itself.

The saving comes from the paired energy ratio of the same run; a ratio whose interval contains 1 saves
nothing measurable. Records without a paired ratio fall back to the difference of the separately measured
energies, said so in the row's notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ecodiff_bench.core.stats import change_sign, interval_of
from reports.cells import Group, Row
from reports.formatting import fmt_count, fmt_energy_kwh, fmt_value, sig
from reports.records import is_base, metric, number

ENERGY = "energy_image_j"
CARBON = "gco2e_per_1000_images"
PRUNING_ENERGY = "pruning_energy_j"
RECOVERY_ENERGY = "recovery_energy_j"


@dataclass
class SustainabilityRow:
    """One pruned model's row, as text (``notes``: why a figure is n/a, or how it was found)."""

    model: str
    label: str
    record: dict
    base_energy: str
    pruned_energy: str
    base_kwh_1k: str
    pruned_kwh_1k: str
    base_co2_1k: str
    pruned_co2_1k: str
    saving_kwh_1k: str
    saving_co2_1k: str
    pruning_cost: str  # the one-off energy: pruning, plus recovery for a recovered variant
    pruning_co2: str
    breakeven: str
    breakeven_images: float | None  # None: never / unknown
    notes: list[str] = field(default_factory=list)


def sustainability(groups: list[Group]) -> list[SustainabilityRow]:
    """One row per pruned record of every group, in the groups' order."""
    return [_row(group.model, row) for group in groups for row in group.rows if not is_base(row.record)]


def _row(model: str, row: Row) -> SustainabilityRow:
    pruned, base = row.record, row.base
    notes: list[str] = []
    pruned_joules = number(pruned, ENERGY)
    base_joules = number(base, ENERGY) if base else None
    pruned_grams = number(pruned, CARBON)  # per 1,000 images
    base_grams = number(base, CARBON) if base else None
    if pruned_joules is None:
        notes.append(f"pruned energy/image n/a: {_why_missing(pruned, ENERGY)}")
    if base_joules is None:
        notes.append(f"base energy/image n/a: {_why_missing(base, ENERGY)}")
    pruning_joules, recovery_joules, one_off_joules = _one_off_energy(pruned, notes)
    saving_joules, how, no_saving = _saving_per_image(pruned, base)
    if no_saving:
        notes.append(no_saving)
    elif how == "unpaired":
        notes.append("saving from separately measured energies (no paired ratio recorded)")
    # The run's carbon intensity (g/J), to express the one-off energy in gCO2e (an estimate).
    grams_per_joule = (
        pruned_grams / (1000 * pruned_joules) if (pruned_grams is not None and pruned_joules) else None
    )
    breakeven, breakeven_images = _breakeven(one_off_joules, saving_joules)
    return SustainabilityRow(
        model=model,
        label=row.label,
        record=pruned,
        base_energy=_joules(base_joules),
        pruned_energy=_joules(pruned_joules),
        base_kwh_1k=_kwh_per_1000(base_joules),
        pruned_kwh_1k=_kwh_per_1000(pruned_joules),
        base_co2_1k=_grams(base_grams),
        pruned_co2_1k=_grams(pruned_grams),
        saving_kwh_1k=("no measurable saving" if no_saving else "n/a")
        if saving_joules is None
        else fmt_energy_kwh(1000 * saving_joules),
        saving_co2_1k="n/a"
        if saving_joules is None or grams_per_joule is None
        else _grams(1000 * saving_joules * grams_per_joule),
        pruning_cost=_one_off_text(one_off_joules, pruning_joules, recovery_joules),
        pruning_co2="n/a"
        if one_off_joules is None or grams_per_joule is None
        else f"≈{sig(one_off_joules * grams_per_joule)} g (est.)",
        breakeven=breakeven,
        breakeven_images=breakeven_images,
        notes=notes,
    )


def _why_missing(record: dict | None, name: str) -> str:
    if record is None:
        return "no base record"
    stored = metric(record, name)
    return stored["note"] if stored else f"{name} not recorded"


def _one_off_energy(record: dict, notes: list[str]) -> tuple[float | None, float | None, float | None]:
    """(pruning, recovery, their sum) in J; the sum is None when a part is unknown (said in ``notes``).
    A variant without recovery has no recovery energy recorded: its one-off energy is its pruning's."""
    pruning = number(record, PRUNING_ENERGY)
    recovery = number(record, RECOVERY_ENERGY)
    recovered = metric(record, RECOVERY_ENERGY) is not None
    if pruning is None:
        notes.append(f"pruning energy n/a: {_why_missing(record, PRUNING_ENERGY)}")
    if recovered and recovery is None:
        notes.append(f"recovery energy n/a: {_why_missing(record, RECOVERY_ENERGY)}")
    if pruning is None or (recovered and recovery is None):
        return pruning, recovery, None
    return pruning, recovery, pruning + (recovery or 0.0)


def _saving_per_image(record: dict, base: dict | None) -> tuple[float | None, str, str]:
    """(energy saved per image in J, or None; how it was found; why there is none).

    From the paired energy ratio r of the same run: saving = e_pruned x (1/r - 1); none when r's interval
    contains 1 (no measurable saving). Records without a paired ratio fall back to the difference of the
    separately measured energies, said so.
    """
    pruned_joules = number(record, ENERGY)
    stored = metric(record, "energy_ratio_vs_base")
    if pruned_joules is not None and stored and stored["status"] != "unavailable" and stored["value"] > 0:
        ratio, interval = float(stored["value"]), interval_of(stored["details"])
        if change_sign(interval, no_change=1.0) == 0:
            low, high = interval
            return (
                None,
                "paired",
                f"no measurable energy saving (energy ratio {ratio:.3g}, interval {low:.3g}..{high:.3g})",
            )
        return pruned_joules * (1 / ratio - 1), "paired", ""
    base_joules = number(base, ENERGY) if base else None
    if pruned_joules is None or base_joules is None:
        return None, "", ""
    return base_joules - pruned_joules, "unpaired", ""


def _breakeven(one_off_joules: float | None, saving_joules: float | None) -> tuple[str, float | None]:
    """After how many images the saving per image has paid the one-off energy back (text, count)."""
    if saving_joules is None or one_off_joules is None:
        return "n/a", None
    if saving_joules <= 0:
        return "never (no energy saving per image)", None
    images = one_off_joules / saving_joules
    return f"{fmt_count(math.ceil(images))} images", images


def _one_off_text(total: float | None, pruning: float | None, recovery: float | None) -> str:
    """The one-off energy: pruning's, plus a recovered variant's distillation (both named)."""
    if total is None:
        return "n/a"
    text = f"{fmt_value(total, 'J')} ({fmt_energy_kwh(total)})"
    if recovery is not None and pruning is not None:
        text += f": pruning {fmt_value(pruning, 'J')} + recovery {fmt_value(recovery, 'J')}"
    return text


def _joules(joules: float | None) -> str:
    return "n/a" if joules is None else fmt_value(joules, "J")


def _kwh_per_1000(joules_per_image: float | None) -> str:
    return "n/a" if joules_per_image is None else fmt_energy_kwh(1000 * joules_per_image)


def _grams(grams: float | None) -> str:
    return "n/a" if grams is None else f"{sig(grams)} g"
