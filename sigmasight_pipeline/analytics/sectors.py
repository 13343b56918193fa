"""GICS sector exposures of each portfolio against the S&P 500 sector weights.

Pure pandas; vectorized over a chunk of portfolios and days.

Conventions
-----------
* A position counts on its underlying's sector at its dollar exposure on the underlying:
  stocks at signed exposure, options at delta-adjusted exposure. Exposures are netted per
  underlying first (as in `analytics.concentration`), then a name is long (> 0) or short (< 0).
* Per (day, portfolio, sector): long_exposure_usd (>= 0), short_exposure_usd (<= 0, the sign
  convention of portfolio_snapshots), gross = long - short, net = long + short;
  gross_weight = sector gross / portfolio gross; net_weight = sector net / portfolio gross (the
  portfolio's gross, not its net, so weights stay bounded for market-neutral books; for a
  long-only book both equal the usual weight); active_weight = net_weight - benchmark_weight.
* Sectors are the 11 GICS sectors; yfinance's names are mapped onto them (`SECTOR_ALIASES`);
  anything else (ETFs, no data) is "Unclassified", whose benchmark weight is 0. Every
  portfolio gets a row for each of the 11 sectors (zero exposure: active weight = minus the
  benchmark's) plus Unclassified when it holds such names.
* Benchmark: `load_benchmark_sector_weights` reads a dated CSV (as_of, sector, weight; the
  shipped file is data/benchmark_sector_weights.csv, S&P 500 weights with the source in its
  header); each day uses the latest as_of on or before it (NaN with a reason if none).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.concentration import name_exposures

__all__ = [
    "DATA_DIR",
    "DEFAULT_BENCHMARK_FILE",
    "GICS_SECTORS",
    "SECTOR_ALIASES",
    "SECTOR_EXPOSURE_COLUMNS",
    "UNCLASSIFIED",
    "BenchmarkFileError",
    "benchmark_weights_on",
    "load_benchmark_sector_weights",
    "normalize_sector",
    "portfolio_sector_exposures",
]

DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # the repo's data/ folder
DEFAULT_BENCHMARK_FILE = DATA_DIR / "benchmark_sector_weights.csv"
GICS_SECTORS = (
    "Communication Services", "Consumer Discretionary", "Consumer Staples", "Energy",
    "Financials", "Health Care", "Industrials", "Information Technology", "Materials",
    "Real Estate", "Utilities",
)  # fmt: skip
UNCLASSIFIED = "Unclassified"
# Other spellings (yfinance / Morningstar names, the pre-2018 telecom sector) -> GICS.
SECTOR_ALIASES = {
    "technology": "Information Technology",
    "information technology": "Information Technology",
    "healthcare": "Health Care",
    "financial services": "Financials",
    "financial": "Financials",
    "consumer cyclical": "Consumer Discretionary",
    "consumer defensive": "Consumer Staples",
    "basic materials": "Materials",
    "telecommunication services": "Communication Services",
    "telecommunications": "Communication Services",
    **{s.lower(): s for s in GICS_SECTORS},
}
SUM_TOLERANCE = 0.005
SECTOR_EXPOSURE_COLUMNS = (
    "trade_date", "portfolio_id", "sector", "long_exposure_usd", "short_exposure_usd",
    "gross_exposure_usd", "net_exposure_usd", "gross_weight", "net_weight", "benchmark_weight",
    "active_weight", "n_names", "benchmark_as_of", "reason",
)  # fmt: skip


class BenchmarkFileError(ValueError):
    """The benchmark weights file is malformed; the message names the file and row."""


def normalize_sector(sectors: pd.Series) -> pd.Series:
    """GICS sector names from raw sector strings (case-insensitive aliases); else Unclassified."""
    key = sectors.astype("string").str.strip().str.lower()
    return key.map(SECTOR_ALIASES).fillna(UNCLASSIFIED).astype(object)


def load_benchmark_sector_weights(path: str | Path = DEFAULT_BENCHMARK_FILE) -> pd.DataFrame:
    """Read and validate a dated benchmark file: columns as_of, sector, weight (a fraction).

    Lines starting with ``#`` are comments. Every as_of must list each of the 11 GICS sectors
    exactly once (exact GICS names), weights in [0, 1] summing to 1 within 0.005 (published
    weights are rounded); each as_of is then rescaled to sum to exactly 1. Any violation raises
    `BenchmarkFileError` naming the file and the line (or the as_of). Returns as_of (naive
    Timestamp), sector, weight sorted by as_of, sector.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchmarkFileError(f"{path}: benchmark sector weights file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        numbered = [(n, line) for n, line in enumerate(handle, start=1) if line.strip()]
    numbered = [(n, line) for n, line in numbered if not line.lstrip().startswith("#")]
    if not numbered:
        raise BenchmarkFileError(f"{path}: no header and no rows")
    reader = csv.reader(line for _, line in numbered)
    header = [h.strip() for h in next(reader)]
    if header != ["as_of", "sector", "weight"]:
        raise BenchmarkFileError(
            f"{path} line {numbered[0][0]}: header must be as_of,sector,weight, got {header}"
        )
    rows = []
    for (line_no, _), fields in zip(numbered[1:], reader, strict=True):
        where = f"{path} line {line_no}"
        if len(fields) != 3:
            raise BenchmarkFileError(f"{where}: expected 3 fields, got {len(fields)}")
        raw_date, sector, raw_weight = (f.strip() for f in fields)
        try:
            as_of = pd.Timestamp(raw_date)
        except ValueError as exc:
            raise BenchmarkFileError(f"{where}: as_of {raw_date!r} is not a date") from exc
        if sector not in GICS_SECTORS:
            raise BenchmarkFileError(
                f"{where}: unknown sector {sector!r}; expected one of {list(GICS_SECTORS)}"
            )
        try:
            weight = float(raw_weight)
        except ValueError as exc:
            raise BenchmarkFileError(f"{where}: weight {raw_weight!r} is not a number") from exc
        if not 0.0 <= weight <= 1.0:
            raise BenchmarkFileError(f"{where}: weight {weight} is not a fraction in [0, 1]")
        rows.append((as_of.normalize(), sector, weight, line_no))
    if not rows:
        raise BenchmarkFileError(f"{path}: no weight rows")
    frame = pd.DataFrame(rows, columns=["as_of", "sector", "weight", "line"])
    dupes = frame[frame.duplicated(["as_of", "sector"], keep="first")]
    if not dupes.empty:
        first = dupes.iloc[0]
        raise BenchmarkFileError(
            f"{path} line {first['line']}: {first['sector']} listed twice for "
            f"as_of {first['as_of'].date()}"
        )
    for as_of, block in frame.groupby("as_of"):
        absent = sorted(set(GICS_SECTORS) - set(block["sector"]))
        if absent:
            raise BenchmarkFileError(f"{path}: as_of {as_of.date()} lacks sectors {absent}")
        total = block["weight"].sum()
        if abs(total - 1.0) > SUM_TOLERANCE:
            raise BenchmarkFileError(
                f"{path}: weights of as_of {as_of.date()} (lines {block['line'].min()}-"
                f"{block['line'].max()}) sum to {total:.4f}, not 1 (tolerance {SUM_TOLERANCE})"
            )
    frame["weight"] = frame["weight"] / frame.groupby("as_of")["weight"].transform("sum")
    return frame.drop(columns="line").sort_values(["as_of", "sector"]).reset_index(drop=True)


def benchmark_weights_on(benchmark: pd.DataFrame, days: pd.DatetimeIndex | list) -> pd.DataFrame:
    """The benchmark in force on each day: trade_date, benchmark_as_of, sector, benchmark_weight.

    Uses the latest as_of on or before the day; days before the first as_of are left out.
    """
    days = pd.DatetimeIndex(pd.to_datetime(list(days))).normalize().unique()
    as_ofs = pd.DatetimeIndex(sorted(benchmark["as_of"].unique()))
    pos = as_ofs.searchsorted(days, side="right") - 1
    known = pos >= 0
    picks = pd.DataFrame({"trade_date": days[known], "benchmark_as_of": as_ofs[pos[known]]})
    table = benchmark.rename(columns={"as_of": "benchmark_as_of", "weight": "benchmark_weight"})
    return picks.merge(table, on="benchmark_as_of", how="inner")


def portfolio_sector_exposures(
    exposures: pd.DataFrame, sectors: pd.DataFrame, benchmark: pd.DataFrame
) -> pd.DataFrame:
    """`SECTOR_EXPOSURE_COLUMNS` per (trade_date, portfolio_id, sector); see module docstring.

    ``exposures``: trade_date, portfolio_id, underlying, exposure (e.g.
    `analytics.exposures.risk_exposures`; rows with a missing exposure are left out).
    ``sectors``: symbol, sector (the securities table; raw names are normalized). ``benchmark``:
    from `load_benchmark_sector_weights`.
    """
    names = name_exposures(exposures)
    if names.empty:
        return pd.DataFrame(columns=list(SECTOR_EXPOSURE_COLUMNS))
    lookup = sectors.drop_duplicates("symbol").set_index("symbol")["sector"]
    names["sector"] = normalize_sector(names["underlying"].map(lookup))
    names["long"] = names["exposure"].clip(lower=0.0)
    names["short"] = names["exposure"].clip(upper=0.0)
    names["held"] = names["exposure"].ne(0)
    keys = ["trade_date", "portfolio_id"]
    by_sector = names.groupby([*keys, "sector"]).agg(
        long_exposure_usd=("long", "sum"),
        short_exposure_usd=("short", "sum"),
        n_names=("held", "sum"),
    )
    portfolios = names[keys].drop_duplicates()
    grid = portfolios.merge(pd.DataFrame({"sector": GICS_SECTORS}), how="cross")
    extra = by_sector.reset_index()[[*keys, "sector"]]
    grid = pd.concat([grid, extra[extra["sector"].eq(UNCLASSIFIED)]], ignore_index=True)
    out = grid.merge(by_sector.reset_index(), on=[*keys, "sector"], how="left")
    for column in ("long_exposure_usd", "short_exposure_usd", "n_names"):
        out[column] = out[column].fillna(0)
    out["n_names"] = out["n_names"].astype(int)
    out["gross_exposure_usd"] = out["long_exposure_usd"] - out["short_exposure_usd"]
    out["net_exposure_usd"] = out["long_exposure_usd"] + out["short_exposure_usd"]
    gross = out.groupby(keys)["gross_exposure_usd"].transform("sum")
    positive = gross > 0
    out["gross_weight"] = np.where(
        positive, out["gross_exposure_usd"] / gross.where(positive), np.nan
    )
    out["net_weight"] = np.where(positive, out["net_exposure_usd"] / gross.where(positive), np.nan)

    bench = benchmark_weights_on(benchmark, out["trade_date"].unique())
    out = out.merge(bench, on=["trade_date", "sector"], how="left")
    dated = out[["trade_date"]].merge(
        bench[["trade_date", "benchmark_as_of"]].drop_duplicates(), on="trade_date", how="left"
    )["benchmark_as_of"]
    out["benchmark_as_of"] = dated.to_numpy()
    has_benchmark = out["benchmark_as_of"].notna()
    unclassified = out["sector"].eq(UNCLASSIFIED)
    out.loc[unclassified & has_benchmark, "benchmark_weight"] = 0.0
    out["active_weight"] = out["net_weight"] - out["benchmark_weight"]
    first = benchmark["as_of"].min().date() if not benchmark.empty else None
    no_gross = pd.Series(np.where(out["gross_weight"].isna(), "no gross exposure", ""))
    no_bench = pd.Series(
        np.where(has_benchmark, "", f"no benchmark weights on or before the day (first {first})")
    )
    joined = (no_gross + "; " + no_bench).str.strip("; ")
    out["reason"] = joined.where(joined != "", None).astype(object).to_numpy()
    out = out.sort_values([*keys, "sector"], kind="stable").reset_index(drop=True)
    return out[list(SECTOR_EXPOSURE_COLUMNS)]
