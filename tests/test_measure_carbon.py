"""Carbon from codecarbon's offline data: explicit country (no geolocation), regions, CSV rows."""

from __future__ import annotations

import csv

import pytest

from ecodiff_bench.core.values import Value
from ecodiff_bench.measure.carbon import (
    carbon_intensity,
    carbon_values,
    emissions_csv_columns,
    emissions_csv_row,
    write_emissions_csv,
)


def test_country_intensity_comes_from_codecarbon_data():
    from codecarbon.input import DataSource

    expected = DataSource().get_global_energy_mix_data()["FRA"]["carbon_intensity"]
    ci = carbon_intensity("fra")
    assert ci.country_iso_code == "FRA" and ci.country_name == "France"
    assert ci.g_per_kwh == pytest.approx(expected)
    assert "codecarbon" in ci.source


def test_regional_intensity():
    assert carbon_intensity("USA", "california").g_per_kwh != carbon_intensity("USA", "wyoming").g_per_kwh
    assert carbon_intensity("SWE", "se3").region == "SE3"


@pytest.mark.parametrize(
    ("country", "region", "match"),
    [
        (None, None, "country_iso_code: required"),
        ("", None, "country_iso_code: required"),
        ("FR", None, "alpha-3 code is 'FRA'"),
        ("XYZ", None, "country_iso_code: 'XYZ' is not"),
        ("USA", "califrnia", "Did you mean: california"),
        ("FRA", "ile-de-france", "region: codecarbon has regional data only for"),
    ],
)
def test_bad_location_is_an_error_naming_the_field(country, region, match):
    with pytest.raises(ValueError, match=match):
        carbon_intensity(country, region)


def test_gco2e_per_1000_images():
    energy = Value("energy_image_j", 3600.0, "J", "measured", False)  # 1 Wh per image
    out = carbon_values(energy, "DEU")["gco2e_per_1000_images"]
    ci = carbon_intensity("DEU").g_per_kwh
    assert out.value == pytest.approx(ci)  # 1000 Wh = 1 kWh
    assert out.unit == "gCO2e" and out.status == "estimated" and out.higher_is_better is False
    missing = Value.unavailable("energy_image_j", "J", "NVML library not found")
    assert carbon_values(missing, "DEU")["gco2e_per_1000_images"].status == "unavailable"
    with pytest.raises(ValueError, match="country_iso_code"):
        carbon_values(energy, None)


def test_emissions_csv_rows_have_codecarbon_columns(tmp_path):
    from codecarbon.output_methods.emissions_data import EmissionsData

    row = emissions_csv_row(
        duration_s=10.0,
        gpu_energy_j=36_000.0,
        cpu_energy_j=Value.unavailable("cpu", "J", "no RAPL"),
        country_iso_code="FRA",
        run_id="r1",
        gpu_model="H100",
        gpu_count=1,
    )
    assert list(row) == emissions_csv_columns() == list(EmissionsData.__dataclass_fields__)
    assert row["gpu_energy"] == pytest.approx(0.01)  # kWh
    assert row["cpu_energy"] == ""
    assert row["energy_consumed"] == pytest.approx(0.01)
    assert row["emissions"] == pytest.approx(0.01 * carbon_intensity("FRA").g_per_kwh / 1000)  # kg
    assert row["gpu_power"] == pytest.approx(3600.0)  # W
    path = write_emissions_csv([row, row], tmp_path / "emissions.csv")
    write_emissions_csv([row], path)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 3 and rows[0]["country_iso_code"] == "FRA"
    with pytest.raises(ValueError, match="not an emissions.csv column"):
        emissions_csv_row(
            duration_s=1, gpu_energy_j=1, cpu_energy_j=1, country_iso_code="FRA", extra={"x": 1}
        )
