"""A synthetic book of portfolios for the scale benchmark (issue 10).

N portfolios x 50 positions: 35 stocks (long and short) and 15 options (OCC symbols) over a
universe of 600 underlyings, every choice deterministic from a seed. Portfolio i depends only on
(seed, i), so the book of 100 is the first 100 portfolios of the book of 1,000. Prices come from
the synthetic market (the default provider prices any ticker):

- entry dates: NYSE sessions in the ENTRY_SESSIONS before the backfill window;
- stocks: entry price = the synthetic close on the entry date; quantity = a notional of about
  $80k (log-normal) at that price, in lots of 10 above 100 shares; about 30 % short;
- options: one contract per underlying in a portfolio (15 distinct underlyings), expiry the third
  Friday of one of the EXPIRY_MONTHS months starting MIN_DAYS_TO_EXPIRY after the window end,
  strike at a listed increment within 10 % of the underlying's close on the entry date; entry
  price = the synthetic option close that day; 1 to 20 contracts, about 40 % short.

Files are in the seed format, named `<username>__<portfolio name>.csv`, PORTFOLIOS_PER_USER
portfolios per user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from sigmasight_pipeline.calendar import last_sessions, previous_sessions
from sigmasight_pipeline.resources.synthetic import (
    ETFS,
    KNOWN_SECURITIES,
    SYNTHETIC_MISSING_TICKERS,
    SyntheticMarket,
)

__all__ = [
    "Book",
    "PortfolioFile",
    "book_universe",
    "generate_book",
    "listed_strike",
    "occ_symbol",
]

DEFAULT_SEED = 10  # issue 10
UNIVERSE_SIZE = 600
STOCKS_PER_PORTFOLIO = 35
OPTIONS_PER_PORTFOLIO = 15
PORTFOLIOS_PER_USER = 50
ENTRY_SESSIONS = 120
MIN_DAYS_TO_EXPIRY = 45
EXPIRY_MONTHS = 6
STOCK_SHORT_SHARE = 0.3
OPTION_SHORT_SHARE = 0.4
MEDIAN_STOCK_NOTIONAL = 80_000.0
MONEYNESS = (0.90, 0.95, 1.00, 1.05, 1.10)
STOCK_THEMES = ("momentum", "value", "quality", "growth", "income", "hedge")
OPTION_STRATEGIES = {  # (right, long) -> tag
    ("C", True): "upside",
    ("C", False): "overwrite",
    ("P", True): "hedge",
    ("P", False): "income",
}
CSV_COLUMNS = ["ticker", "quantity", "entry_price", "entry_date", "tags"]
LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


@dataclass(frozen=True, eq=False)
class PortfolioFile:
    """One portfolio: its owner, its name and its rows (CSV_COLUMNS, seed format)."""

    username: str
    name: str
    positions: pd.DataFrame

    @property
    def file_name(self) -> str:
        return f"{self.username}__{self.name}.csv"

    def csv_text(self) -> str:
        return self.positions.to_csv(index=False, float_format="%.2f", lineterminator="\n")


@dataclass(frozen=True, eq=False)
class Book:
    """The portfolios of a book and the universe their underlyings are drawn from."""

    portfolios: list[PortfolioFile]
    universe: list[str]

    @property
    def users(self) -> list[str]:
        return list(dict.fromkeys(p.username for p in self.portfolios))

    @property
    def positions(self) -> int:
        return sum(len(p.positions) for p in self.portfolios)

    def write(self, folder: Path | str) -> list[Path]:
        """Write every portfolio as `<username>__<portfolio name>.csv` in `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for portfolio in self.portfolios:
            path = folder / portfolio.file_name
            path.write_text(portfolio.csv_text())
            paths.append(path)
        return paths


def book_universe(size: int = UNIVERSE_SIZE, seed: int = DEFAULT_SEED) -> list[str]:
    """`size` distinct stock tickers: the well-known names first, then made-up 3- and 4-letter
    tickers (never an ETF nor a ticker the synthetic market has no data for)."""
    excluded = ETFS | SYNTHETIC_MISSING_TICKERS
    tickers = [t for t in KNOWN_SECURITIES if t.isalpha() and t not in excluded][:size]
    taken = set(tickers) | excluded
    rng = np.random.default_rng([seed, 0])
    while len(tickers) < size:
        length = 3 if rng.random() < 0.6 else 4
        ticker = "".join(rng.choice(LETTERS, length))
        if ticker not in taken:
            taken.add(ticker)
            tickers.append(ticker)
    return tickers


def listed_strike(level: float) -> float:
    """`level` rounded to a listed strike increment: 0.5 under $25, 1 under $100, 5 under
    $500, 10 above."""
    step = 0.5 if level < 25 else 1.0 if level < 100 else 5.0 if level < 500 else 10.0
    return max(step, round(level / step) * step)


def occ_symbol(underlying: str, expiry: date, right: str, strike: float) -> str:
    """The OCC symbol: root + YYMMDD + C/P + strike x 1000 in 8 digits."""
    return f"{underlying}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"


def _expiries(end: pd.Timestamp) -> list[date]:
    first = end + pd.Timedelta(days=MIN_DAYS_TO_EXPIRY)
    fridays = pd.date_range(first, periods=EXPIRY_MONTHS, freq="WOM-3FRI")
    return [d.date() for d in fridays]


def _closes(market: SyntheticMarket, pairs: pd.DataFrame) -> pd.Series:
    """Synthetic close per (symbol, trade_date); ValueError naming a pair without a price."""
    wanted = pairs.drop_duplicates().sort_values(["symbol", "trade_date"])
    bars = market.fetch_bars(wanted).bars
    closes = bars.set_index(["symbol", "trade_date"])["close"]
    index = pd.MultiIndex.from_frame(pairs[["symbol", "trade_date"]])
    found = closes.reindex(index)
    if found.isna().any():
        symbol, day = found[found.isna()].index[0]
        raise ValueError(f"the synthetic market has no price for {symbol} on {day}")
    return pd.Series(found.to_numpy(), index=pairs.index)


def _draws(
    index: int, seed: int, universe: list[str], entry_days: list[date], expiries: list[date]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Portfolio `index`'s random choices: (stocks, options) before any price is known."""
    rng = np.random.default_rng([seed, 1, index])
    n_stocks, n_options = STOCKS_PER_PORTFOLIO, OPTIONS_PER_PORTFOLIO
    stocks = pd.DataFrame(
        {
            "symbol": rng.choice(universe, n_stocks, replace=False),
            "trade_date": [entry_days[i] for i in rng.integers(0, len(entry_days), n_stocks)],
            "short": rng.random(n_stocks) < STOCK_SHORT_SHARE,
            "notional": MEDIAN_STOCK_NOTIONAL * np.exp(0.5 * rng.standard_normal(n_stocks)),
            "theme": rng.choice(STOCK_THEMES, n_stocks),
        }
    )
    options = pd.DataFrame(
        {
            "symbol": rng.choice(universe, n_options, replace=False),  # the underlying
            "trade_date": [entry_days[i] for i in rng.integers(0, len(entry_days), n_options)],
            "expiry": [expiries[i] for i in rng.integers(0, len(expiries), n_options)],
            "right": rng.choice(["C", "P"], n_options),
            "moneyness": rng.choice(MONEYNESS, n_options),
            "contracts": rng.integers(1, 21, n_options),
            "short": rng.random(n_options) < OPTION_SHORT_SHARE,
        }
    )
    return stocks, options


def generate_book(
    portfolios: int,
    end: str | date,
    days: int = 90,
    seed: int = DEFAULT_SEED,
    universe_size: int = UNIVERSE_SIZE,
    portfolios_per_user: int = PORTFOLIOS_PER_USER,
) -> Book:
    """The book of `portfolios` portfolios for a `days`-session backfill ending at `end`."""
    if portfolios < 1 or days < 1 or portfolios_per_user < 1:
        raise ValueError("portfolios, days and portfolios_per_user must be at least 1")
    if universe_size < max(STOCKS_PER_PORTFOLIO, OPTIONS_PER_PORTFOLIO):
        raise ValueError(f"universe_size must be at least {STOCKS_PER_PORTFOLIO}")
    universe = book_universe(universe_size, seed)
    end_day = pd.Timestamp(end)
    window_start = last_sessions(end_day, days)[0]
    entry_days = [d.date() for d in previous_sessions(window_start, ENTRY_SESSIONS)]
    expiries = _expiries(end_day)
    draws = [_draws(i, seed, universe, entry_days, expiries) for i in range(portfolios)]
    stocks = pd.concat([s for s, _ in draws], keys=range(portfolios), names=["portfolio", "row"])
    options = pd.concat([o for _, o in draws], keys=range(portfolios), names=["portfolio", "row"])

    market = SyntheticMarket()
    stocks["price"] = _closes(market, stocks[["symbol", "trade_date"]]).round(2)
    shares = (stocks["notional"] / stocks["price"]).round()
    shares = shares.where(shares < 100, (shares / 10).round() * 10).clip(lower=1)
    stocks["quantity"] = np.where(stocks["short"], -shares, shares).astype(np.int64)
    stocks["tags"] = np.where(stocks["short"], "short,", "long,") + stocks["theme"]

    spot = _closes(market, options[["symbol", "trade_date"]])
    strikes = [listed_strike(level) for level in spot * options["moneyness"]]
    options["underlying"] = options["symbol"]
    options["symbol"] = [
        occ_symbol(u, e, r, k)
        for u, e, r, k in zip(
            options["underlying"], options["expiry"], options["right"], strikes, strict=True
        )
    ]
    options["price"] = _closes(market, options[["symbol", "trade_date"]]).round(2).clip(0.01)
    options["quantity"] = np.where(options["short"], -options["contracts"], options["contracts"])
    options["tags"] = [
        f"options,{OPTION_STRATEGIES[(right, not short)]}"
        for right, short in zip(options["right"], options["short"], strict=True)
    ]

    rows = pd.concat([stocks, options]).rename(columns={"symbol": "ticker", "price": "entry_price"})
    rows["entry_date"] = [d.isoformat() for d in rows["trade_date"]]
    files = []
    for i, frame in rows.groupby(level="portfolio", sort=True):  # stocks first, then options
        username = f"scale_pm_{i // portfolios_per_user + 1:03d}"
        name = f"Scale {i + 1:04d}"
        files.append(PortfolioFile(username, name, frame[CSV_COLUMNS].reset_index(drop=True)))
    return Book(files, universe)
