"""Sector exposures, the benchmark file loader and sector-name normalization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline.analytics.sectors import (
    DEFAULT_BENCHMARK_FILE,
    GICS_SECTORS,
    SECTOR_EXPOSURE_COLUMNS,
    UNCLASSIFIED,
    BenchmarkFileError,
    benchmark_weights_on,
    load_benchmark_sector_weights,
    normalize_sector,
    portfolio_sector_exposures,
)

WEIGHTS_2023 = dict(zip(GICS_SECTORS, [0.08, 0.11, 0.06, 0.04, 0.13, 0.13, 0.09, 0.29,
                                       0.02, 0.025, 0.025], strict=True))  # fmt: skip


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "weights.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(as_of: str, weights: dict[str, float]) -> list[str]:
    return [f"{as_of},{sector},{weight}" for sector, weight in weights.items()]


def test_shipped_file_loads_with_11_sectors_summing_to_one() -> None:
    bench = load_benchmark_sector_weights(DEFAULT_BENCHMARK_FILE)
    assert set(bench["sector"]) == set(GICS_SECTORS)
    assert bench.groupby("as_of")["weight"].sum().to_numpy() == pytest.approx(1.0, abs=1e-12)
    text = DEFAULT_BENCHMARK_FILE.read_text()
    assert "# source:" in text


def test_latest_as_of_on_or_before_the_day(tmp_path: Path) -> None:
    weights_2024 = {**WEIGHTS_2023, "Information Technology": 0.30, "Energy": 0.03}
    path = _write(
        tmp_path,
        ["# comment", "as_of,sector,weight", *_rows("2023-12-29", WEIGHTS_2023),
         *_rows("2024-12-31", weights_2024)],
    )  # fmt: skip
    bench = load_benchmark_sector_weights(path)
    days = pd.to_datetime(["2023-06-01", "2023-12-29", "2024-06-03", "2025-01-02"])
    picked = benchmark_weights_on(bench, days)
    as_of = picked.groupby("trade_date")["benchmark_as_of"].first()
    assert pd.Timestamp("2023-06-01") not in as_of.index  # before the first as_of
    assert as_of[pd.Timestamp("2023-12-29")] == pd.Timestamp("2023-12-29")
    assert as_of[pd.Timestamp("2024-06-03")] == pd.Timestamp("2023-12-29")
    assert as_of[pd.Timestamp("2025-01-02")] == pd.Timestamp("2024-12-31")
    it = picked.set_index(["trade_date", "sector"]).loc[
        (pd.Timestamp("2025-01-02"), "Information Technology"), "benchmark_weight"
    ]
    assert it == pytest.approx(0.30)


def test_rounded_weights_are_rescaled_within_tolerance(tmp_path: Path) -> None:
    rounded = {**WEIGHTS_2023, "Information Technology": 0.293}  # sums to 1.003
    bench = load_benchmark_sector_weights(
        _write(tmp_path, ["as_of,sector,weight", *_rows("2024-12-31", rounded)])
    )
    assert bench["weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert bench.set_index("sector").loc["Energy", "weight"] == pytest.approx(0.04 / 1.003)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: [rows[0], rows[1].replace("Energy", "Oil"), *rows[2:]],
         r"line 2: unknown sector 'Oil'"),
        (lambda rows: [rows[0], rows[1].replace("0.04", "0.14"), *rows[2:]],
         r"weights of as_of 2024-12-31 \(lines 2-12\) sum to 1.1000, not 1"),
        (lambda rows: [*rows, rows[3]], r"line 13: .* listed twice for as_of 2024-12-31"),
        (lambda rows: rows[:-1], r"as_of 2024-12-31 lacks sectors \['Utilities'\]"),
        (lambda rows: ["date,sector,weight", *rows[1:]], r"line 1: header must be"),
        (lambda rows: [rows[0], rows[1].replace("0.04", "four"), *rows[2:]],
         r"line 2: weight 'four' is not a number"),
        (lambda rows: [rows[0], rows[1].replace("2024-12-31", "31/31/2024"), *rows[2:]],
         r"line 2: as_of '31/31/2024' is not a date"),
    ],
)  # fmt: skip
def test_malformed_files_name_the_file_and_row(tmp_path: Path, edit, message: str) -> None:
    ordered = {"Energy": 0.04, **{k: v for k, v in WEIGHTS_2023.items() if k != "Energy"}}
    rows = ["as_of,sector,weight", *_rows("2024-12-31", ordered)]
    path = _write(tmp_path, edit(rows))
    with pytest.raises(BenchmarkFileError, match=message) as info:
        load_benchmark_sector_weights(path)
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkFileError, match="not found"):
        load_benchmark_sector_weights(tmp_path / "absent.csv")


def test_normalize_sector_maps_aliases_and_unknowns() -> None:
    raw = pd.Series(["Technology", "Healthcare", "financial services", "ETF", None,
                     "Consumer Cyclical", "Basic Materials", " Energy "])  # fmt: skip
    assert normalize_sector(raw).tolist() == [
        "Information Technology", "Health Care", "Financials", UNCLASSIFIED, UNCLASSIFIED,
        "Consumer Discretionary", "Materials", "Energy",
    ]  # fmt: skip


def test_sector_exposures_weights_and_active_weights(tmp_path: Path) -> None:
    bench = load_benchmark_sector_weights(
        _write(tmp_path, ["as_of,sector,weight", *_rows("2024-12-31", WEIGHTS_2023)])
    )
    day = pd.Timestamp("2025-01-02")
    exposures = pd.DataFrame(
        {"trade_date": day, "portfolio_id": 1,
         "underlying": ["AAPL", "AAPL", "MSFT", "JPM", "SPY", "XOM"],
         # AAPL stock 100k with a put at -30k delta-adjusted; short MSFT; JPM; an ETF; unpriced
         "exposure": [100_000.0, -30_000.0, -50_000.0, 40_000.0, 20_000.0, np.nan]}
    )  # fmt: skip
    sectors = pd.DataFrame(
        {"symbol": ["AAPL", "MSFT", "JPM", "SPY", "XOM"],
         "sector": ["Technology", "Information Technology", "Financials", "ETF", "Energy"]}
    )  # fmt: skip
    out = portfolio_sector_exposures(exposures, sectors, bench)
    assert list(out.columns) == list(SECTOR_EXPOSURE_COLUMNS)
    assert set(out["sector"]) == {*GICS_SECTORS, UNCLASSIFIED}
    by = out.set_index("sector")
    gross = 70_000 + 50_000 + 40_000 + 20_000
    it = by.loc["Information Technology"]
    assert it["long_exposure_usd"] == 70_000 and it["short_exposure_usd"] == -50_000
    assert it["gross_exposure_usd"] == 120_000 and it["net_exposure_usd"] == 20_000
    assert it["gross_weight"] == pytest.approx(120_000 / gross)
    assert it["net_weight"] == pytest.approx(20_000 / gross)
    assert it["active_weight"] == pytest.approx(20_000 / gross - 0.29)
    assert it["n_names"] == 2
    assert by.loc[UNCLASSIFIED, "benchmark_weight"] == 0.0
    assert by.loc[UNCLASSIFIED, "active_weight"] == pytest.approx(20_000 / gross)
    assert by.loc["Energy", "gross_exposure_usd"] == 0.0  # XOM unpriced: left out
    assert by.loc["Energy", "active_weight"] == pytest.approx(-0.04)
    assert out["gross_weight"].sum() == pytest.approx(1.0)
    assert out["benchmark_as_of"].eq(pd.Timestamp("2024-12-31")).all()
    assert out["reason"].isna().all()


def test_days_before_the_benchmark_have_a_reason(tmp_path: Path) -> None:
    bench = load_benchmark_sector_weights(
        _write(tmp_path, ["as_of,sector,weight", *_rows("2024-12-31", WEIGHTS_2023)])
    )
    exposures = pd.DataFrame(
        {"trade_date": "2024-06-03", "portfolio_id": 1, "underlying": ["JPM"], "exposure": [1.0]}
    )
    out = portfolio_sector_exposures(exposures, pd.DataFrame(columns=["symbol", "sector"]), bench)
    assert out["benchmark_weight"].isna().all() and out["active_weight"].isna().all()
    assert out["reason"].str.contains("no benchmark weights on or before the day").all()
    assert out.set_index("sector").loc[UNCLASSIFIED, "net_weight"] == 1.0  # no sector data
