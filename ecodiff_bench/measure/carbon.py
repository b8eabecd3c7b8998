"""Carbon: energy first, carbon second. gCO2e = energy (kWh) x the grid carbon intensity (gCO2e/kWh)
of the suite's country (ISO 3166-1 alpha-3) and, where codecarbon has regional data, region.

Intensities come from codecarbon's bundled data through its own ``Emissions``/``DataSource`` classes,
offline (no Electricity Maps token, no geolocation). We check the country and region against that data
first, because codecarbon itself falls back silently: an unknown country becomes the world average and
an unknown region becomes the national figure. Here a missing or unknown country is an error naming the
field; nothing is ever guessed.

Metric names (the catalog, ecodiff_bench.core.metrics): ``gco2e_per_1000_images``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import platform
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecodiff_bench.core.registry import suggest
from ecodiff_bench.core.values import Value

__all__ = [
    "CarbonIntensity",
    "carbon_intensity",
    "carbon_values",
    "emissions_csv_columns",
    "emissions_csv_row",
    "emissions_row_for_record",
    "gco2e",
    "write_emissions_csv",
]

J_PER_KWH = 3.6e6
# codecarbon has sub-national data only for these countries (see codecarbon.core.emissions)
_REGIONAL_COUNTRIES = ("USA", "CAN", "CHN", "SWE", "NOR", "FIN")
_NORDIC = {"SWE": {"SE1", "SE2", "SE3", "SE4"}, "NOR": {"NO1", "NO2", "NO3", "NO4", "NO5"}, "FIN": {"FI"}}


@dataclasses.dataclass(frozen=True)
class CarbonIntensity:
    country_iso_code: str
    region: str | None
    country_name: str
    g_per_kwh: float
    source: str


@functools.lru_cache(maxsize=1)
def _data_source():
    from codecarbon.input import DataSource

    return DataSource()


def _codecarbon_version() -> str:
    try:
        from codecarbon import __version__
    except ImportError:
        return "unknown"
    return str(__version__)


def _regions_of(country: str) -> list[str]:
    ds = _data_source()
    if country in _NORDIC:
        return sorted(_NORDIC[country])
    if country == "CHN":
        data = ds.get_china_provincial_emissions_data()["data"]
        return sorted(n for p in data.values() for n in p["names"])
    try:
        data = ds.get_country_emissions_data(country.lower())
    except Exception:  # codecarbon raises DataSourceException when only an energy mix exists (CAN)
        data = ds.get_country_energy_mix_data(country.lower())
    return sorted(k for k in data if not k.startswith("_"))


@functools.lru_cache(maxsize=256)
def carbon_intensity(country_iso_code: str | None, region: str | None = None) -> CarbonIntensity:
    """Grid carbon intensity from codecarbon's offline data. ``country_iso_code`` is required (ISO
    3166-1 alpha-3, e.g. "FRA", "USA"); ``region`` only where codecarbon has regional data (US states,
    Canadian provinces, Chinese provinces, Nordic bidding zones), else it must be None.
    """
    country, name = _known_country(country_iso_code)
    region = _known_region(country, region)
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata

    emissions = Emissions(_data_source())
    kg = emissions.get_private_infra_emissions(
        Energy(kWh=1.0), GeoMetadata(country_iso_code=country, country_name=name, region=region)
    )
    where = f"{name} ({country}{', ' + region if region else ''})"
    return CarbonIntensity(
        country,
        region,
        name,
        float(kg) * 1000.0,
        f"codecarbon {_codecarbon_version()} offline data for {where}",
    )


def _known_country(country_iso_code: str | None) -> tuple[str, str]:
    """(alpha-3 code, country name) of a country codecarbon has data for; else an error naming the field."""
    if country_iso_code is None or not str(country_iso_code).strip():
        raise ValueError(
            "country_iso_code: required to compute carbon (ISO 3166-1 alpha-3, e.g. 'FRA', "
            "'USA', 'DEU'); ecodiff-bench never geolocates and has no default country"
        )
    country = str(country_iso_code).strip().upper()
    mix = _data_source().get_global_energy_mix_data()
    if country in mix:
        return country, str(mix[country].get("country_name", country))
    hint = suggest(country, mix, n=3, cutoff=0.5)
    if len(country) == 2:
        try:
            import pycountry

            match = pycountry.countries.get(alpha_2=country)
        except (ImportError, LookupError):
            match = None
        if match is not None:
            hint = f" {country!r} is an alpha-2 code; the alpha-3 code is {match.alpha_3!r}."
    raise ValueError(
        f"country_iso_code: {country_iso_code!r} is not an ISO 3166-1 alpha-3 code known to "
        f"codecarbon {_codecarbon_version()}.{hint} ({len(mix)} codes, "
        "e.g. FRA, DEU, USA, GBR, JPN)"
    )


def _known_region(country: str, region: str | None) -> str | None:
    """The region as codecarbon spells it, or None for the national figure; an unknown one is an error."""
    if region is None or not str(region).strip():
        return None
    region = str(region).strip()
    if country not in _REGIONAL_COUNTRIES:
        raise ValueError(
            f"region: codecarbon has regional data only for {', '.join(_REGIONAL_COUNTRIES)}; "
            f"got region {region!r} for {country}. Leave region empty to use the national "
            "figure."
        )
    regions = _regions_of(country)
    key = region.upper() if country in _NORDIC else region.lower()
    if key not in regions:
        raise ValueError(
            f"region: {region!r} is not a region codecarbon knows for {country}."
            f"{suggest(key, regions, n=3, cutoff=0.5)} (known: {', '.join(regions[:12])}"
            f"{', ...' if len(regions) > 12 else ''})"
        )
    return key


def gco2e(energy_j: float, intensity: CarbonIntensity) -> float:
    """Grams of CO2-equivalent for ``energy_j`` joules."""
    return energy_j / J_PER_KWH * intensity.g_per_kwh


def carbon_values(
    energy_image_j: Value, country_iso_code: str | None, region: str | None = None
) -> dict[str, Value]:
    """``gco2e_per_1000_images`` from a per-image energy Value (normally ``energy_image_j``).

    An unavailable energy gives an unavailable carbon figure (with the energy's reason). Carbon is always
    "estimated": it applies an average grid intensity to the energy.
    """
    intensity = carbon_intensity(country_iso_code, region)  # raises on a missing/unknown country first
    name = "gco2e_per_1000_images"
    if not energy_image_j.available:
        return {name: Value.unavailable_of(name, f"energy unavailable: {energy_image_j.note}")}
    per_1000 = gco2e(energy_image_j.value * 1000.0, intensity)
    note = f"{energy_image_j.name} x 1000 x {intensity.g_per_kwh:.4g} gCO2e/kWh ({intensity.source})"
    if energy_image_j.status == "estimated":
        note += "; the energy itself is estimated"
    return {
        name: Value.of(
            name,
            per_1000,
            "estimated",
            note=note,
            details={
                "carbon_intensity_g_per_kwh": intensity.g_per_kwh,
                "country_iso_code": intensity.country_iso_code,
                "region": intensity.region,
                "energy_name": energy_image_j.name,
                "energy_j_per_image": energy_image_j.value,
            },
        )
    }


# --------------------------------------------------------------------------------------------------
# emissions.csv rows (the columns of codecarbon's own output, taken from codecarbon's EmissionsData)
# --------------------------------------------------------------------------------------------------
def emissions_csv_columns() -> list[str]:
    from codecarbon.output_methods.emissions_data import EmissionsData

    return [f.name for f in dataclasses.fields(EmissionsData)]


def _kwh(value: Value | float | None) -> float | str:
    if value is None:
        return ""
    if isinstance(value, Value):
        return "" if not value.available else value.value / J_PER_KWH
    return float(value) / J_PER_KWH


def emissions_csv_row(
    *,
    duration_s: float,
    gpu_energy_j: Value | float | None,
    cpu_energy_j: Value | float | None,
    country_iso_code: str | None,
    region: str | None = None,
    project_name: str = "ecodiff-bench",
    run_id: str = "",
    experiment_id: str = "",
    timestamp: datetime | None = None,
    gpu_model: str = "",
    gpu_count: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One row with codecarbon's emissions.csv columns (same names and units: kWh, kg, W, seconds).

    Energies are given in joules (or as Values in J); an unavailable energy leaves its cell empty and
    is left out of ``energy_consumed`` (the row then says so in no column: callers should keep the
    Values too). RAM energy is not measured here: empty. Without a country (carbon not asked for) the
    emissions and the country are left empty; the energies are still written.
    """
    intensity = None if country_iso_code is None else carbon_intensity(country_iso_code, region)
    gpu_kwh, cpu_kwh = _kwh(gpu_energy_j), _kwh(cpu_energy_j)
    total_kwh = sum(x for x in (gpu_kwh, cpu_kwh) if x != "")
    emissions_kg = "" if intensity is None else total_kwh * intensity.g_per_kwh / 1000.0
    hours = duration_s / 3600.0 if duration_s > 0 else None

    def power_w(kwh):
        return "" if kwh == "" or hours is None else kwh / hours * 1000.0

    row: dict[str, Any] = {c: "" for c in emissions_csv_columns()}
    row.update(
        {
            "timestamp": (timestamp or datetime.now(UTC)).isoformat(timespec="seconds"),
            "project_name": project_name,
            "run_id": run_id,
            "experiment_id": experiment_id,
            "duration": duration_s,
            "emissions": emissions_kg,
            "emissions_rate": emissions_kg / duration_s if duration_s > 0 and emissions_kg != "" else "",
            "cpu_power": power_w(cpu_kwh),
            "gpu_power": power_w(gpu_kwh),
            "cpu_energy": cpu_kwh,
            "gpu_energy": gpu_kwh,
            "energy_consumed": total_kwh,
            "country_name": intensity.country_name if intensity else "",
            "country_iso_code": intensity.country_iso_code if intensity else "",
            "region": (intensity.region or "") if intensity else "",
            **_machine_columns(),
            "gpu_count": "" if gpu_count is None else gpu_count,
            "gpu_model": gpu_model,
        }
    )
    for k, v in (extra or {}).items():
        if k not in row:
            raise ValueError(f"extra: {k!r} is not an emissions.csv column (columns: {list(row)})")
        row[k] = v
    return row


def _machine_columns() -> dict[str, Any]:
    """The columns that describe this machine and how it was tracked (codecarbon's meanings)."""
    try:
        import psutil

        ram_gb = psutil.virtual_memory().total / 2**30
    except ImportError:
        ram_gb = ""
    return {
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "codecarbon_version": _codecarbon_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "ram_total_size": ram_gb,
        "tracking_mode": "process",
        "on_cloud": "N",
        "pue": 1,
    }


def emissions_row_for_record(
    record: Mapping[str, Any], country_iso_code: str | None, region: str | None = None
) -> dict[str, Any] | None:
    """The emissions.csv row of one run record: the energy of its timed generation windows (from
    ``energy_image_j``'s details), or None when the record has no energy figure."""
    e = (record.get("metrics") or {}).get("energy_image_j")
    if not e or e.get("status") == "unavailable":
        return None
    d = e.get("details") or {}
    gpus = [g for g in (d.get("gpu_names") or []) if g]
    return emissions_csv_row(
        duration_s=float(d.get("duration_s") or 0.0),
        gpu_energy_j=d.get("gpu_j"),
        cpu_energy_j=d.get("cpu_j"),
        country_iso_code=country_iso_code,
        region=region,
        project_name=f"ecodiff-bench/{record.get('suite', '')}",
        run_id=str(record.get("run_id", "")),
        experiment_id=str(record.get("record_id", "")),
        gpu_model=", ".join(sorted(set(gpus))),
        gpu_count=len(gpus) or None,
    )


def write_emissions_csv(
    rows: Iterable[Mapping[str, Any]], path: str | os.PathLike, *, append: bool = True
) -> Path:
    """Write rows with codecarbon's header (appending keeps a single header, as codecarbon does)."""
    path = Path(path)
    columns = emissions_csv_columns()
    new = not path.exists() or not append or path.stat().st_size == 0
    with path.open("w" if not append else "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path
