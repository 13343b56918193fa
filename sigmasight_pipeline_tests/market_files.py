"""A small, real-looking market data folder for the `files` provider, written by tests.

`write_market_files(folder)` writes plausible daily history (cent-rounded closes from a seeded
random walk at realistic levels, OHLC around the close, volumes) for a few symbols, in both
formats, with the faults a real vendor dump has, and returns what it planted:

* AAPL.csv: all columns; a zero close on one day and a gap (a missing day) on another.
* MSFT.parquet: all columns; two different rows for one date.
* SPY.csv: date and close only, a header in another case and order; one day's row has an
  unreadable date.
* BRK-B.csv: a class share spelled with a dash; a close that is not a number.
* AAPL250718C00200000.csv: an OCC option (cents, some days without trades).
* securities.csv and splits.csv (NVDA 10:1 on 2024-06-10, AAPL 4:1 on 2020-08-31).
No file for NVDA (held, so "failed") nor for the option AAPL250718P00150000 (absent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from sigmasight_pipeline.calendar import last_sessions

LEVELS = {"AAPL": 212.0, "MSFT": 455.0, "SPY": 590.0, "BRK-B": 480.0}
OPTION = "AAPL250718C00200000"


@dataclass
class MarketFiles:
    folder: Path
    days: list[date]
    closes: dict[str, pd.Series]  # the true closes written (before planted faults)
    zero_close: tuple[str, date] = ("", date.min)
    gap: tuple[str, date] = ("", date.min)
    duplicate: tuple[str, date] = ("", date.min)
    bad_date_line: int = 0
    undated: tuple[str, date] = ("", date.min)
    bad_close: tuple[str, date] = ("", date.min)
    option_days: list[date] = field(default_factory=list)


def _history(symbol: str, days: list[date], rng: np.random.Generator) -> pd.DataFrame:
    level = LEVELS[symbol]
    returns = rng.normal(0.0004, 0.015, len(days))
    close = np.round(level * np.exp(np.cumsum(returns) - returns.sum()), 2)
    spread = np.abs(rng.normal(0, 0.008, len(days))) * close
    open_ = np.round(close * (1 + rng.normal(0, 0.005, len(days))), 2)
    high = np.round(np.maximum(open_, close) + spread, 2)
    low = np.round(np.minimum(open_, close) - spread, 2)
    volume = rng.integers(5_000_000, 60_000_000, len(days))
    return pd.DataFrame(
        {
            "date": [d.isoformat() for d in days],
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }
    )


def write_market_files(folder: Path, end: str = "2025-06-30", sessions: int = 40) -> MarketFiles:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20250630)
    days = [d.date() for d in last_sessions(end, sessions)]
    planted = MarketFiles(folder, days, {})

    aapl = _history("AAPL", days, rng)
    planted.closes["AAPL"] = pd.Series(aapl["close"].to_numpy(), index=days)
    planted.zero_close = ("AAPL", days[10])
    aapl.loc[10, "close"] = 0.0
    planted.gap = ("AAPL", days[20])
    aapl = aapl.drop(index=20)
    aapl.to_csv(folder / "AAPL.csv", index=False)

    msft = _history("MSFT", days, rng)
    planted.closes["MSFT"] = pd.Series(msft["close"].to_numpy(), index=days)
    planted.duplicate = ("MSFT", days[15])
    twin = msft.iloc[[15]].assign(close=msft.loc[15, "close"] + 1.37)
    msft = pd.concat([msft.iloc[:16], twin, msft.iloc[16:]], ignore_index=True)
    msft["date"] = pd.to_datetime(msft["date"])
    msft.to_parquet(folder / "MSFT.parquet", index=False)

    spy = _history("SPY", days, rng)[["close", "date"]].rename(columns={"date": "Date"})
    planted.closes["SPY"] = pd.Series(spy["close"].to_numpy(), index=days)
    planted.undated = ("SPY", days[5])
    lines = spy.drop(index=5).to_csv(index=False).splitlines()
    lines.insert(6, "591.20,06/31/2025")  # a US-style, impossible date where days[5] belongs
    planted.bad_date_line = 7
    (folder / "SPY.csv").write_text("\n".join(lines) + "\n")

    brk = _history("BRK-B", days, rng)
    planted.closes["BRK-B"] = pd.Series(brk["close"].to_numpy(), index=days)
    planted.bad_close = ("BRK-B", days[5])
    brk["close"] = brk["close"].astype(object)
    brk.loc[5, "close"] = "n/a"
    brk.to_csv(folder / "BRK-B.csv", index=False)

    traded = [d for i, d in enumerate(days) if i % 7 != 3]
    option = pd.DataFrame(
        {
            "date": [d.isoformat() for d in traded],
            "close": np.round(np.linspace(14.2, 6.85, len(traded)), 2),
            "volume": rng.integers(0, 900, len(traded)),
        }
    )
    planted.option_days = traded
    planted.closes[OPTION] = pd.Series(option["close"].to_numpy(), index=traded)
    option.to_csv(folder / f"{OPTION}.csv", index=False)

    (folder / "securities.csv").write_text(
        "symbol,sector,industry\n"
        'AAPL,Information Technology,"Technology Hardware, Storage & Peripherals"\n'
        "MSFT,Information Technology,Software\n"
        "SPY,ETF,Index ETF\n"
    )
    (folder / "splits.csv").write_text(
        "symbol,execution_date,split_from,split_to\n"
        "NVDA,2024-06-10,1,10\n"
        "AAPL,2020-08-31,1,4\n"
        "AAPL,someday,1,2\n"
    )
    return planted
