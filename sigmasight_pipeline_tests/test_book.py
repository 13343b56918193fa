"""The scale benchmark's book generator: valid seed-format files, the book the issue describes,
prices from the synthetic market, deterministic and nested by size (pure: no database)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline.analytics.instruments import is_stock_symbol, parse_occ
from sigmasight_pipeline.benchmarks.book import (
    OPTIONS_PER_PORTFOLIO,
    STOCKS_PER_PORTFOLIO,
    book_universe,
    generate_book,
    listed_strike,
    occ_symbol,
)
from sigmasight_pipeline.calendar import is_session, last_sessions
from sigmasight_pipeline.portfolio_csv import read_portfolio_csv
from sigmasight_pipeline.portfolios import portfolio_file_owner
from sigmasight_pipeline.resources.synthetic import (
    ETFS,
    KNOWN_SECURITIES,
    SYNTHETIC_MISSING_TICKERS,
    SyntheticMarket,
)

END = date(2026, 11, 20)
DAYS = 90


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """A 12-portfolio book written to disk and read back by the intake's parser: one row per
    position with the file's owner and portfolio name."""
    book = generate_book(12, END, DAYS, portfolios_per_user=5)
    folder = tmp_path_factory.mktemp("book")
    frames = []
    for path in book.write(folder):
        username, name = portfolio_file_owner(path)
        positions = read_portfolio_csv(path, today=END).positions  # raises on any bad row
        frames.append(positions.assign(username=username, portfolio=name))
    return pd.concat(frames, ignore_index=True)


def _closes(symbols: pd.Series, days: pd.Series) -> np.ndarray:
    wanted = pd.DataFrame({"symbol": symbols.to_numpy(), "trade_date": days.to_numpy()})
    bars = SyntheticMarket().fetch_bars(wanted).bars.set_index(["symbol", "trade_date"])
    return bars["close"].reindex(pd.MultiIndex.from_frame(wanted)).to_numpy()


def test_every_file_is_a_valid_portfolio_of_35_stocks_and_15_options(parsed: pd.DataFrame):
    assert parsed.groupby(["username", "portfolio"]).size().tolist() == [50] * 12
    assert parsed["username"].unique().tolist() == ["scale_pm_001", "scale_pm_002", "scale_pm_003"]
    assert parsed.groupby("username")["portfolio"].nunique().tolist() == [5, 5, 2]
    is_option = parsed["option_right"].notna()
    per_portfolio = is_option.groupby(parsed["portfolio"]).sum()
    assert (per_portfolio == OPTIONS_PER_PORTFOLIO).all()
    assert (50 - per_portfolio == STOCKS_PER_PORTFOLIO).all()
    types = set(parsed["position_type"])
    assert {"LONG", "SHORT", "LC", "SC", "LP", "SP"} <= types


def test_underlyings_come_from_a_universe_of_600_stock_tickers(parsed: pd.DataFrame):
    universe = book_universe()
    assert len(universe) == len(set(universe)) == 600
    assert all(is_stock_symbol(t) for t in universe)
    assert not set(universe) & (ETFS | SYNTHETIC_MISSING_TICKERS)
    assert set(parsed["underlying"]) <= set(universe)
    known = [t for t in KNOWN_SECURITIES if t.isalpha()]
    assert universe[: len(known)] == known  # the well-known names first, then made-up ones
    assert book_universe(seed=11)[: len(known)] == known
    assert book_universe(seed=11)[len(known) :] != universe[len(known) :]


def test_entry_dates_are_sessions_before_the_window(parsed: pd.DataFrame):
    window_start = last_sessions(END, DAYS)[0].date()
    entry = parsed["entry_date"]
    assert (entry < window_start).all()
    assert all(is_session(d) for d in entry.unique())


def test_prices_are_the_synthetic_closes_on_the_entry_date(parsed: pd.DataFrame):
    closes = _closes(parsed["symbol"], parsed["entry_date"])
    assert not np.isnan(closes).any()
    np.testing.assert_allclose(parsed["entry_price"], np.maximum(closes, 0.01), atol=0.005)


def test_options_expire_after_the_window_with_strikes_near_the_money(parsed: pd.DataFrame):
    options = parsed[parsed["option_right"].notna()]
    assert (options["expiry"] > END).all()
    assert options["expiry"].nunique() > 1
    assert all(d.weekday() == 4 and 15 <= d.day <= 21 for d in options["expiry"])  # 3rd Friday
    spot = _closes(options["underlying"], options["entry_date"])
    moneyness = options["strike"].to_numpy() / spot
    assert ((moneyness > 0.85) & (moneyness < 1.15)).all()
    assert (options["quantity"].abs() <= 20).all()
    assert (options["quantity"] == options["quantity"].round()).all()


def test_stock_notionals_are_plausible(parsed: pd.DataFrame):
    stocks = parsed[parsed["option_right"].isna()]
    notional = (stocks["quantity"].abs() * stocks["entry_price"]).to_numpy()
    assert 40_000 < np.median(notional) < 160_000
    assert notional.min() > 1_000
    assert 0.15 < (stocks["quantity"] < 0).mean() < 0.45


def test_deterministic_and_the_smaller_book_is_a_prefix_of_the_larger():
    small = generate_book(3, END, DAYS)
    again = generate_book(3, END, DAYS)
    large = generate_book(5, END, DAYS)
    other_seed = generate_book(3, END, DAYS, seed=11)
    texts = [p.csv_text() for p in small.portfolios]
    assert texts == [p.csv_text() for p in again.portfolios]
    assert texts == [p.csv_text() for p in large.portfolios[:3]]
    assert [p.file_name for p in small.portfolios] == [p.file_name for p in large.portfolios[:3]]
    assert texts != [p.csv_text() for p in other_seed.portfolios]
    assert small.positions == 150 and large.positions == 250


def test_book_write_names_files_owner_and_portfolio(tmp_path: Path):
    paths = generate_book(2, END, DAYS).write(tmp_path)
    assert [p.name for p in paths] == [
        "scale_pm_001__Scale 0001.csv",
        "scale_pm_001__Scale 0002.csv",
    ]
    assert paths[0].read_text().splitlines()[0] == "ticker,quantity,entry_price,entry_date,tags"


def test_occ_symbol_and_listed_strikes():
    symbol = occ_symbol("AAPL", date(2027, 1, 15), "C", 202.5)
    assert symbol == "AAPL270115C00202500"
    contract = parse_occ(symbol)
    assert (contract.underlying, contract.expiry, contract.right, contract.strike) == (
        "AAPL", date(2027, 1, 15), "C", 202.5
    )  # fmt: skip
    assert occ_symbol("KO", date(2027, 3, 19), "P", 7.5) == "KO270319P00007500"
    cases = {0.1: 0.5, 23.3: 23.5, 24.9: 25.0, 25.4: 25.0, 99.6: 100.0, 101.0: 100.0,
             497.0: 495.0, 512.0: 510.0}  # fmt: skip
    assert {level: listed_strike(level) for level in cases} == cases


@pytest.mark.parametrize(
    "kwargs", [{"portfolios": 0}, {"days": 0}, {"portfolios_per_user": 0}, {"universe_size": 20}]
)
def test_bad_arguments_are_refused(kwargs: dict):
    arguments = {"portfolios": 1, "end": END} | kwargs
    with pytest.raises(ValueError):
        generate_book(**arguments)
