"""Market data through the assets with hostile data: the real Polygon client against a fake
server serving zero closes, empty days, unknown symbols and options outside the plan; the files
provider with an unadjusted split; a bad key through the CLI. Nothing wrong passes silently,
partial failures keep what succeeded, and only what failed is asked again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import RunRequest, build_schedule_context, materialize

from sigmasight_pipeline import calendar, runs
from sigmasight_pipeline.assets import market, portfolio
from sigmasight_pipeline.assets.common import positions_spec
from sigmasight_pipeline.portfolio_csv import read_portfolio_csv
from sigmasight_pipeline.portfolios import create_user, load_portfolio
from sigmasight_pipeline.resources.database import (
    PROJECT_ROOT,
    PostgresResource,
    connect,
    transaction,
)
from sigmasight_pipeline.resources.io_manager import PostgresPandasIOManager, read_frame
from sigmasight_pipeline.resources.market_data import MarketDataResource, _provider
from sigmasight_pipeline.schedules import daily_after_close

STOCKS = """ticker,quantity,entry_price,entry_date,tags
AAPL,100,150,2026-06-01,tech
MSFT,-50,300,2026-06-01,
KO,30,60,2026-06-01,
"""
OPTIONS = """ticker,quantity,entry_price,entry_date,tags
AAPL270115C00050000,5,10,2026-06-01,options
QQQ270115C00500000,2,30,2026-06-01,options
NODATA,10,20,2026-06-01,broken
"""
DAYS = calendar.sessions("2026-08-03", "2026-10-30")  # 31+ sessions: options get model prices
ZERO_DAY, EMPTY_DAY = DAYS[-14].date(), DAYS[-8].date()


@pytest.fixture
def scratch_db(isolated_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """This module's database with a stock portfolio and an option portfolio; the market
    tables emptied before each test."""
    url = isolated_db_url
    monkeypatch.setenv("DATABASE_URL", url)
    with transaction(url) as conn:
        for table in ("prices", "price_issues", "returns", "position_value_blocks", "securities"):
            conn.execute(f"DELETE FROM sigmasight.{table}")
        conn.execute("DELETE FROM sigmasight.users")
        create_user(conn, "u", "pw")
        for name, text in (("stocks", STOCKS), ("options", OPTIONS)):
            csv = tmp_path / f"u__{name}.csv"
            csv.write_text(text)
            parsed = read_portfolio_csv(csv, today=pd.Timestamp("2026-11-20").date())
            load_portfolio(conn, "u", name, parsed)
    return url


def run_assets(url, assets, market_data, instance, select=None, days=DAYS):
    start, end = days[0].strftime("%Y-%m-%d"), days[-1].strftime("%Y-%m-%d")
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


def table(url: str, query: str, params=None) -> pd.DataFrame:
    with connect(url) as conn:
        return read_frame(conn, query, params)


@pytest.fixture
def polygon(fake_polygon, monkeypatch: pytest.MonkeyPatch, scratch_db: str):
    monkeypatch.setenv("POLYGON_API_KEY", "test-key")
    _provider.cache_clear()
    yield MarketDataResource(
        provider="polygon",
        polygon_base_url=fake_polygon.url,
        polygon_requests_per_minute=6000,
        database_url=scratch_db,
    )
    _provider.cache_clear()


def test_hostile_polygon_keeps_what_succeeded_and_names_what_did_not(
    scratch_db, fake_polygon, polygon, dagster_instance
):
    fake = fake_polygon
    fake.universe = ["AAPL", "MSFT", "KO", "SPY", "MTUM", "VTV", "VUG", "QUAL", "IWM", "SPLV"]
    fake.unknown = {"NODATA", "QQQ"}  # QQQ is held only as an option's underlying
    fake.bad_close("MSFT", ZERO_DAY, 0.0)
    fake.empty_days = {EMPTY_DAY}
    fake.options_forbidden = True  # the plan has no options

    assets = [market.securities, market.prices, market.returns, portfolio.position_values]
    result = run_assets(scratch_db, assets, polygon, dagster_instance)
    assert result.success

    prices = table(scratch_db, "SELECT * FROM sigmasight.prices")
    assert not ((prices["symbol"] == "MSFT") & (prices["trade_date"] == str(ZERO_DAY))).any()
    assert (prices["close"] > 0).all()
    stocks = prices[prices["source"] == "polygon"]
    assert str(EMPTY_DAY) not in set(stocks["trade_date"].dt.strftime("%Y-%m-%d"))
    option = prices[prices["symbol"] == "AAPL270115C00050000"]
    # Priced by the model once its underlying has 20 returns of history, every day after but
    # EMPTY_DAY (no underlying close that day).
    assert set(option["source"]) == {"model"} and len(option) == len(DAYS) - 20 - 1
    assert EMPTY_DAY not in set(option["trade_date"].dt.date)

    issues = table(scratch_db, "SELECT * FROM sigmasight.price_issues")
    by_key = issues.set_index(["symbol", issues["trade_date"].dt.date])
    zero = by_key.loc[("MSFT", ZERO_DAY)]
    assert zero["kind"] == "rejected" and "0.0" in zero["detail"]
    empty = issues[(issues["trade_date"].dt.date == EMPTY_DAY) & (issues["symbol"].str.len() < 6)]
    assert set(empty["kind"]) == {"not_published"} and "KO" in set(empty["symbol"])
    aapl_call = issues[issues["symbol"] == "AAPL270115C00050000"]
    assert set(aapl_call["kind"]) == {"failed"}
    assert aapl_call["detail"].str.contains("plan").all() and len(aapl_call) == len(DAYS)
    assert aapl_call["detail"].str.contains("priced by the model").sum() == len(option)
    for symbol in ("NODATA", "QQQ", "QQQ270115C00500000"):
        assert len(issues[issues["symbol"] == symbol]) == len(DAYS), symbol

    returns = table(scratch_db, "SELECT * FROM sigmasight.returns WHERE symbol = 'MSFT'")
    assert (returns["daily_return"] > -0.5).all()  # no -100 % day, no rebound
    missing_days = {ZERO_DAY, EMPTY_DAY} | {
        DAYS[list(DAYS.date).index(d) + 1].date() for d in (ZERO_DAY, EMPTY_DAY)
    }
    assert not set(returns["trade_date"].dt.date) & missing_days

    values = table(
        scratch_db,
        "SELECT v.*, p.symbol FROM sigmasight.position_values v "
        "JOIN sigmasight.positions p ON p.id = v.position_id",
    )
    msft = values[(values["symbol"] == "MSFT") & (values["trade_date"].dt.date == ZERO_DAY)]
    assert msft["price_source"].item() == "carried_forward"
    assert "close <= 0" in msft["pnl_reason"].item() or "carried" in msft["pnl_reason"].item()
    on_empty = values[values["trade_date"].dt.date == EMPTY_DAY]
    assert not on_empty["price_source"].eq("market").any()
    assert on_empty["pnl_reason"].notna().all()

    checks = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }
    complete = checks[("prices", "prices_complete")]
    assert not complete.passed
    named = complete.metadata["failing_keys"].value
    assert "NODATA" in named and "QQQ" in named
    assert not checks[("position_values", "positions_valued")].passed
    outcome = result.asset_materializations_for_node("prices")[0].metadata["outcome"].value
    assert "plan" in outcome and "not yet published" in outcome and "rejected" in outcome

    # The re-run asks only for what failed: the options and the empty day. Never a stored
    # pair, nor what the provider answered is bad (MSFT's zero) or has no data (NODATA, QQQ).
    served = len(fake.requests)
    again = run_assets(scratch_db, assets, polygon, dagster_instance, select=[market.prices])
    assert again.success
    paths = [r.path for r in fake.requests[served:] if "/reference/" not in r.path]
    assert any("O:AAPL270115C00050000" in p for p in paths)
    assert any(str(EMPTY_DAY) in p for p in paths)
    assert not any(("NODATA" in p or "/QQQ/" in p or "MSFT" in p) for p in paths), paths
    assert len(paths) <= 4, paths


def test_a_stop_keeps_what_was_fetched_and_says_why_in_one_line(
    scratch_db, fake_polygon, polygon, dagster_instance
):
    """A 403 on a stock call (the plan) stops the fetch: the bars fetched before (AAPL's range,
    asked before KO's) are stored, the rest are failed issues, and the run fails with the
    provider's reason."""
    fake = fake_polygon
    fake.universe = ["AAPL", "MSFT", "KO", "SPY", "MTUM", "VTV", "VUG", "QUAL", "IWM", "SPLV"]
    fake.unknown = {"NODATA", "QQQ"}
    fake.fail(403, match="/KO/")  # ranges are asked in ticker order: AAPL, IWM, KO, ...
    result = run_assets(scratch_db, [market.securities, market.prices], polygon, dagster_instance)
    assert not result.success
    prices = table(scratch_db, "SELECT * FROM sigmasight.prices WHERE source = 'polygon'")
    assert set(prices["symbol"]) >= {"AAPL"} and "KO" not in set(prices["symbol"])
    assert len(prices[prices["symbol"] == "AAPL"]) == len(DAYS)
    failed = table(scratch_db, "SELECT * FROM sigmasight.price_issues WHERE symbol = 'KO'")
    assert set(failed["kind"]) == {"failed"} and len(failed) == len(DAYS)
    assert failed["detail"].str.contains("plan").all()


def _cli_env(url: str, fake_polygon, home: Path, key: str) -> dict[str, str]:
    """The CLI's environment: `url`, a Dagster home of its own, Polygon at the fake server."""
    home.mkdir()
    (home / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DAGSTER_HOME": str(home),
        "SIGMASIGHT_NO_DOTENV": "1",
        "SIGMASIGHT_MARKET_DATA": "polygon",
        "POLYGON_BASE_URL": fake_polygon.url,
        "POLYGON_API_KEY": key,
        "POLYGON_REQUESTS_PER_MINUTE": "6000",
    }


def test_a_bad_key_is_one_line_at_the_top_of_the_cli_output(scratch_db, fake_polygon, tmp_path):
    env = _cli_env(scratch_db, fake_polygon, tmp_path / "dagster_home", "not-the-key")
    done = subprocess.run(
        [sys.executable, "-m", "sigmasight_pipeline.cli", "backfill", "--days", "2",
         "--end", DAYS[-1].strftime("%Y-%m-%d")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "Traceback" not in output
    lines = done.stdout.splitlines()
    top = lines.index("WHAT WENT WRONG (one line per cause):")
    assert "POLYGON_API_KEY" in lines[top + 1] and "401" in lines[top + 1]
    # The progress lines, read from the run's events while it ran, name each step once.
    steps = [line.split("] ", 1)[1] for line in lines if line.startswith("  [")]
    assert steps.count("prices: started") == 1 and steps.count("prices: FAILED") == 1, steps
    assert steps.index("securities: done") < steps.index("prices: started")


def test_a_cli_run_killed_in_a_pooled_step_gives_its_slot_back(scratch_db, fake_polygon, tmp_path):
    """`sigmasight backfill` killed (SIGKILL: no cleanup) while a market_data_api step waits on
    the provider: with no daemon to notice, the next CLI run marks the dead run failed, frees
    its pool slot and runs, where it had waited for that slot for ever."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    home = tmp_path / "dagster_home"
    env = _cli_env(scratch_db, fake_polygon, home, "test-key")
    command = [sys.executable, "-m", "sigmasight_pipeline.cli", "backfill", "--days", "2",
               "--end", DAYS[-1].strftime("%Y-%m-%d")]  # fmt: skip
    fake_polygon.slow(120)  # the first request hangs: its step holds the pool's one slot
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    instance = DagsterInstance.from_config(str(home))
    try:
        began = time.monotonic()
        while not any(r.fault == "slow" for r in fake_polygon.requests):
            assert first.poll() is None, first.stderr.read().decode()[-3000:]
            assert time.monotonic() - began < 240, "the first run never asked the provider"
            time.sleep(0.1)
        held = instance.event_log_storage.get_concurrency_info("market_data_api")
        assert held.claimed_slots, "the hanging step holds no slot"
        first.kill()
        first.wait()
        dead = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))
        assert len(dead) == 1

        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        assert f"run {dead[0].run_id} had died (run worker process {first.pid} is gone)" in (
            again.stdout
        )
        status = instance.get_run_by_id(dead[0].run_id).status
        assert status is DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info("market_data_api").claimed_slots
    finally:
        if first.poll() is None:
            first.kill()
        instance.dispose()


def test_an_unadjusted_split_is_flagged(scratch_db, tmp_path, dagster_instance):
    """A 7:1 split in a file of unadjusted closes: flagged as a jump with no split on record;
    with the split recorded in splits.csv, flagged as a split."""
    folder = tmp_path / "market"
    folder.mkdir()
    days = calendar.sessions("2026-09-01", "2026-10-30")
    rng = np.random.default_rng(7)
    for symbol in ("AAPL", "MSFT", "KO", "SPY", "MTUM", "VTV", "VUG", "QUAL", "IWM", "SPLV"):
        closes = 100 * np.cumprod(1 + rng.normal(0, 0.01, len(days)))
        if symbol == "KO":
            closes[30:] /= 7  # the split, not adjusted
        pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "close": closes.round(2)}).to_csv(
            folder / f"{symbol}.csv", index=False
        )
    _provider.cache_clear()
    files = MarketDataResource(provider="files", market_data_dir=str(folder))
    assets = [market.securities, market.prices, market.returns]
    result = run_assets(scratch_db, assets, files, dagster_instance, days=days)
    assert result.success
    query = "SELECT * FROM sigmasight.returns WHERE symbol = 'KO' AND flag IS NOT NULL"
    (flagged,) = table(scratch_db, query).itertuples()
    assert flagged.trade_date == days[30] and "no split on record" in flagged.flag
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["returns_plausible"].passed
    assert "KO" in checks["returns_plausible"].metadata["failing_keys"].value

    (folder / "splits.csv").write_text(
        f"symbol,execution_date,split_from,split_to\nKO,{days[30]:%Y-%m-%d},1,7\n"
    )
    _provider.cache_clear()
    again = run_assets(scratch_db, assets, files, dagster_instance, days=days)
    assert again.success
    (flagged,) = table(scratch_db, query).itertuples()
    assert flagged.flag == "split"
    _provider.cache_clear()


def test_the_daily_run_fetches_unpublished_sessions_again(scratch_db):
    day = DAYS[-1]
    with transaction(scratch_db) as conn:
        conn.execute(
            "INSERT INTO sigmasight.price_issues VALUES (%s, 'AAPL', 'not_published', 'x'), "
            "(%s, 'KO', 'not_published', 'x')",
            (DAYS[-3].date(), DAYS[-3].date()),
        )
    context = build_schedule_context(
        scheduled_execution_time=datetime(day.year, day.month, day.day, 18)
    )
    request = daily_after_close(context)
    assert isinstance(request, RunRequest)
    assert request.tags[runs.RANGE_START_TAG] == DAYS[-3].strftime("%Y-%m-%d")
    assert request.tags[runs.RANGE_END_TAG] == day.strftime("%Y-%m-%d")


def test_an_option_is_priced_from_its_first_entry_not_over_the_whole_history(
    scratch_db, dagster_instance, tmp_path
):
    """An option contract entered in the middle of the run has no price and no price issue
    before its entry date (nothing values it then); one held since before the run is priced on
    every session; stocks on every session."""
    late = "AAPL270115P00050000"
    text = f"ticker,quantity,entry_price,entry_date,tags\n{late},3,4,2026-10-03,options\n"
    csv = tmp_path / "u__late.csv"
    csv.write_text(text)
    with transaction(scratch_db) as conn:
        parsed = read_portfolio_csv(csv, today=pd.Timestamp("2026-11-20").date())
        load_portfolio(conn, "u", "late", parsed)
    _provider.cache_clear()
    synthetic = MarketDataResource(provider="synthetic")
    result = run_assets(scratch_db, [market.securities, market.prices], synthetic, dagster_instance)
    assert result.success
    priced = table(scratch_db, "SELECT symbol, trade_date FROM sigmasight.prices")
    days_of = priced.groupby("symbol")["trade_date"].agg(lambda d: sorted(pd.to_datetime(d)))
    assert days_of[late] == list(DAYS[DAYS >= "2026-10-05"])  # the Saturday entry: from Monday
    assert days_of["AAPL270115C00050000"] == list(DAYS)
    assert days_of["AAPL"] == list(DAYS)
    issues = table(scratch_db, "SELECT * FROM sigmasight.price_issues WHERE symbol = %s", [late])
    assert issues.empty
    _provider.cache_clear()
