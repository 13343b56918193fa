"""Market data assets with the Polygon provider (real client, fake server) and bad data."""

from __future__ import annotations

import socket

import pandas as pd
import pytest
from dagster import materialize

from sigmasight_pipeline import calendar, runs
from sigmasight_pipeline.analytics import valuation
from sigmasight_pipeline.assets import market, portfolio
from sigmasight_pipeline.assets.common import positions_spec
from sigmasight_pipeline.portfolio_csv import read_portfolio_csv
from sigmasight_pipeline.portfolios import create_user, load_portfolio
from sigmasight_pipeline.resources.database import (
    PostgresResource,
    connect,
    create_database,
    database_url,
    drop_database,
    migrate,
    transaction,
)
from sigmasight_pipeline.resources.io_manager import PostgresPandasIOManager, read_frame
from sigmasight_pipeline.resources.market_data import MarketDataResource, _provider
from sigmasight_pipeline.resources.synthetic import SyntheticMarket

PORTFOLIO = """ticker,quantity,entry_price,entry_date,tags
AAPL,100,150,2026-06-01,tech
MSFT,-50,300,2026-06-01,
NODATA,10,20,2026-06-01,broken
AAPL270115C00200000,5,10,2026-06-01,options
"""


@pytest.fixture
def scratch_db(tmp_path):
    server = database_url()
    name = f"sigmasight_market_{abs(hash(tmp_path)) % 10**8}"
    url = create_database(server, name)
    migrate(url)
    csv = tmp_path / "u__p.csv"
    csv.write_text(PORTFOLIO)
    with transaction(url) as conn:
        create_user(conn, "u", "pw")
        load_portfolio(
            conn, "u", "p", read_portfolio_csv(csv, today=pd.Timestamp("2026-11-20").date())
        )
    yield url
    drop_database(server, name)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_assets(url, assets, start, end, market_data, instance, select=None):
    return materialize(
        [positions_spec, *assets],
        selection=[a.key for a in (select or assets)],
        instance=instance,
        tags=runs.range_tags(start, end),
        resources={
            "database": PostgresResource(database_url=url),
            "io_manager": PostgresPandasIOManager(database_url=url),
            "market_data": market_data,
        },
        raise_on_error=False,
    )


def test_polygon_backfill_fetches_once_and_matches_the_source(
    scratch_db, fake_polygon, dagster_instance, monkeypatch
):
    monkeypatch.setenv("POLYGON_API_KEY", "test-key")
    # yfinance enrichment must fail fast and offline: point it at a closed loopback port.
    proxy = f"http://127.0.0.1:{closed_port()}"
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, proxy)
    fake_polygon.unknown = {"NODATA"}
    fake_polygon.fail(429, times=2, retry_after=0)
    _provider.cache_clear()
    resource = MarketDataResource(
        provider="polygon", polygon_base_url=fake_polygon.url, polygon_requests_per_minute=6000
    )
    days = calendar.sessions("2026-10-01", "2026-10-30")
    start, end = days[0].strftime("%Y-%m-%d"), days[-1].strftime("%Y-%m-%d")
    result = run_assets(
        scratch_db, [market.securities, market.prices], start, end, resource, dagster_instance
    )
    assert result.success
    with connect(scratch_db) as conn:
        prices = read_frame(conn, "SELECT * FROM sigmasight.prices")
        securities = read_frame(conn, "SELECT * FROM sigmasight.securities")
    assert set(prices["source"]) == {"polygon"}
    assert "NODATA" not in set(prices["symbol"])  # no data: absent, reported, never zero
    expected = SyntheticMarket().daily_bars(
        prices.assign(trade_date=prices["trade_date"].dt.date)[["symbol", "trade_date"]]
    )
    merged = prices.merge(
        expected.assign(trade_date=pd.to_datetime(expected["trade_date"])),
        on=["symbol", "trade_date"],
        suffixes=("", "_src"),
    )
    assert len(merged) == len(prices) == (len(securities) - 1) * len(days)
    assert (merged["close"] - merged["close_src"]).abs().max() < 1e-6
    assert securities["sector"].isna().all()  # enrichment failed offline, run not blocked
    materialization = result.asset_materializations_for_node("prices")[0]
    assert materialization.metadata["missing"].value == len(days)

    served = len(fake_polygon.requests)
    again = run_assets(
        scratch_db,
        [market.securities, market.prices],
        start,
        end,
        resource,
        dagster_instance,
        select=[market.prices],
    )
    assert again.success
    repeated = [r.path for r in fake_polygon.requests[served:]]
    # Only the ticker with no data is asked again (it may have data now); stored pairs never.
    assert repeated and all("NODATA" in path for path in repeated), repeated
    _provider.cache_clear()


def test_missing_prices_are_flagged_not_zero(scratch_db, dagster_instance):
    days = calendar.sessions("2026-10-01", "2026-10-15")
    start, end = days[0].strftime("%Y-%m-%d"), days[-1].strftime("%Y-%m-%d")
    resource = MarketDataResource(provider="synthetic")
    result = run_assets(
        scratch_db,
        [market.securities, market.prices, portfolio.position_values],
        start,
        end,
        resource,
        dagster_instance,
    )
    assert result.success
    with connect(scratch_db) as conn:
        values = read_frame(conn, "SELECT * FROM sigmasight.position_values")
    broken = values[values["symbol"] == "NODATA"]
    assert len(broken) == len(days)
    assert (broken["price_source"] == "missing").all()
    assert broken[["price", "market_value", "exposure", "daily_pnl"]].isna().all().all()
    assert (values.loc[values["symbol"] != "NODATA", "price_source"] == "market").all()


def test_carry_forward_is_flagged_and_bounded():
    sessions = calendar.sessions("2026-10-01", "2026-10-15")
    prices = pd.DataFrame(
        {"symbol": "AAA", "trade_date": sessions, "close": range(1, len(sessions) + 1)}
    )
    prices = prices[prices["trade_date"] != sessions[5]]
    positions = pd.DataFrame(
        {
            "id": [1],
            "portfolio_id": [1],
            "symbol": ["AAA"],
            "position_type": ["LONG"],
            "quantity": [2.0],
            "multiplier": [1],
            "entry_price": [1.0],
            "entry_date": [sessions[0]],
            "expiry": [pd.NaT],
        }
    )
    values = valuation.position_values(positions, prices, sessions, sessions[1:])
    gap = values[values["trade_date"] == sessions[5]].iloc[0]
    assert gap["price_source"] == "carried_forward" and gap["price"] == 5
    assert gap["price_date"] == sessions[4]
    assert gap["daily_pnl"] == 0.0
    after = values[values["trade_date"] == sessions[6]].iloc[0]
    assert after["daily_pnl"] == 2 * (7 - 5)
