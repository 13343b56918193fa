"""The inbox sensor's runs: one run per drop, scoped to the loaded portfolios, covering the
90-session window and its lookback.

The runs the sensor requests are executed in-process on the real instance with the tags the
daemon would give them (run key, sensor name). The daemon path itself (launch, queue, retries)
is tested end to end in test_daemon.py.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, RunRequest, SensorResult, build_sensor_context

from sigmasight_pipeline import calendar, intake, runs, sensors
from sigmasight_pipeline.portfolios import create_user
from sigmasight_pipeline.resources.database import PostgresResource, connect, transaction
from sigmasight_pipeline.scope import PORTFOLIOS_TAG
from sigmasight_pipeline.settings import BACKFILL_DAYS


@pytest.fixture
def db_url(isolated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This module's own database (runs it starts read DATABASE_URL), not the demo's."""
    monkeypatch.setenv("DATABASE_URL", isolated_db_url)
    return isolated_db_url


class Sensor:
    """The sensor on a real instance, its cursor carried from tick to tick."""

    def __init__(self, instance: DagsterInstance, url: str, inbox: Path) -> None:
        self.instance, self.url, self.inbox = instance, url, inbox
        self.cursor = sensors.make_cursor(intake.latest_load_id(url))

    def tick(self) -> SensorResult:
        context = build_sensor_context(
            instance=self.instance,
            resources={"database": PostgresResource(database_url=self.url)},
            cursor=self.cursor,
        )
        result = sensors.portfolio_inbox_sensor(context)
        assert isinstance(result, SensorResult)
        self.cursor = result.cursor
        return result

    def drop(self, name: str, text: str) -> None:
        path = self.inbox / name
        path.write_text(text)
        os.utime(path, (time.time() - 10, time.time() - 10))

    def execute(self, request: RunRequest) -> runs.RunOutcome:
        """Run a request in-process, tagged as the daemon tags a sensor's run, then the runs
        `backfill_next_stage` requests after it: one outcome for all (checks of every run)."""
        outcomes = runs.execute_request(self.instance, request)
        assert [o.success for o in outcomes] == [True, True], outcomes  # market, analytics
        return runs.RunOutcome(
            outcomes[-1].run_id,
            all(o.success for o in outcomes),
            sum(o.seconds for o in outcomes),
            outcomes[-1].partitions,
            tuple(c for o in outcomes for c in o.failed_checks),
            tuple(c for o in outcomes for c in o.warned_checks),
            tuple(c for o in outcomes for c in o.check_notes),
            tuple(c for o in outcomes for c in o.problems),
        )


@pytest.fixture
def user(db_url: str) -> Iterator[str]:
    name = f"sensor_{uuid.uuid4().hex[:10]}"
    with transaction(db_url) as conn:
        create_user(conn, name, "secret")
    yield name
    with transaction(db_url) as conn:
        conn.execute("DELETE FROM sigmasight.users WHERE username = %s", (name,))


@pytest.fixture
def sensor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, dagster_instance: DagsterInstance
) -> Sensor:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("SIGMASIGHT_INBOX", str(inbox))
    return Sensor(dagster_instance, db_url, inbox)


def _portfolio(tickers: list[str], option_root: str | None = None) -> str:
    rows = [f"{t},{(i + 1) * 10},{20 + i}.5,2026-01-05,core" for i, t in enumerate(tickers)]
    option = f"{option_root or tickers[0]}281215C00050000,2,3.25,2026-06-01,options"
    return "\n".join(["ticker,quantity,entry_price,entry_date,tags", *rows, option]) + "\n"


PORTFOLIO_TABLES = (
    "position_values", "position_greeks", "position_factor_exposures", "portfolio_greeks",
    "portfolio_factor_exposures", "portfolio_risk_metrics", "portfolio_snapshots",
    "portfolio_returns", "portfolio_volatility", "portfolio_correlation_matrices",
    "portfolio_concentration", "portfolio_sector_exposures", "portfolio_risk_decomposition",
    "position_risk_contributions", "portfolio_stress_results", "position_stress_pnl",
)  # fmt: skip


def _fingerprint(url: str, portfolio_id: int) -> dict[str, str]:
    """An md5 of every row a portfolio has in each portfolio-level table."""
    out = {}
    with connect(url) as conn:
        for table in PORTFOLIO_TABLES:
            out[table] = conn.execute(
                f"SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' "
                f"ORDER BY t::text)), '') FROM sigmasight.{table} t WHERE portfolio_id = %s",
                (portfolio_id,),
            ).fetchone()[0]
    return out


def _load_of(sensor: Sensor, user: str, name: str) -> intake.LoadRecord:
    (load,) = [
        x for x in intake.loads_after(sensor.url) if x.username == user and x.portfolio == name
    ]
    return load


def test_a_drop_is_one_scoped_run_over_the_window_and_its_lookback(
    sensor: Sensor, user: str
) -> None:
    """New tickers and a new option contract: one request (its market run, then the analytics
    run the run status sensor asks for) gives the new portfolio 90 sessions of
    snapshots with full 60-session history, and leaves another portfolio's rows as they were."""
    tickers = [f"Z{uuid.uuid4().hex[:4].upper()}{c}" for c in "ABC"]  # unknown to the DB
    plan = runs.BackfillPlan.ending(
        calendar.latest_closed_session(), lookback=runs.BETA_LOOKBACK_SESSIONS
    )
    window = (plan.key(plan.window[0]), plan.key(plan.window[-1]))

    sensor.drop(f"{user}__First.csv", _portfolio(["AAPL", "MSFT"]))
    (first,) = sensor.tick().run_requests
    assert sensor.execute(first).success
    other = _load_of(sensor, user, "First").portfolio_id
    before = _fingerprint(sensor.url, other)
    assert all(not v.startswith("0:") for v in before.values()), before

    # A new stock, a new option on it, and (AAPL) an underlying the other portfolio holds.
    sensor.drop(f"{user}__Fresh.csv", _portfolio([*tickers, "AAPL"]))
    (request,) = sensor.tick().run_requests
    load = _load_of(sensor, user, "Fresh")
    assert request.tags[PORTFOLIOS_TAG] == str(load.portfolio_id)
    assert request.tags[runs.RANGE_START_TAG] == plan.key(plan.history[0])
    assert request.tags[runs.RANGE_END_TAG] == window[1]
    assert set(request.asset_selection) == {AssetKey(a) for a in runs.MARKET_ASSETS}
    assert AssetKey("prices") in request.asset_selection

    outcome = sensor.execute(request)
    assert outcome.success, outcome
    with connect(sensor.url) as conn:
        first_day, last_day, days = conn.execute(
            "SELECT min(trade_date)::text, max(trade_date)::text, count(*) "
            "FROM sigmasight.portfolio_snapshots WHERE portfolio_id = %s AND trade_date >= %s",
            (load.portfolio_id, window[0]),
        ).fetchone()
        n_obs = conn.execute(
            "SELECT min(n_obs) FROM sigmasight.factor_betas "
            "WHERE symbol = ANY(%s) AND trade_date = %s",
            (tickers, window[0]),
        ).fetchone()[0]
        null_pnl = conn.execute(
            "SELECT count(*) FROM sigmasight.position_values WHERE portfolio_id = %s "
            "AND price_source <> 'missing' AND daily_pnl IS NULL",
            (load.portfolio_id,),
        ).fetchone()[0]
    assert (first_day, last_day, days) == (*window, BACKFILL_DAYS)
    assert n_obs == 60  # the first day of the window has its full 60-session history
    assert null_pnl == 0  # first sessions are measured, never NULL
    assert _fingerprint(sensor.url, other) == before  # the other portfolio is untouched

    third = sensor.tick()
    assert not third.run_requests and "no new portfolio files" in third.skip_reason.skip_message


def test_a_portfolio_that_cannot_be_valued_loads_and_fails_nobody(
    sensor: Sensor, user: str
) -> None:
    """An underlying with no data at all (the synthetic NODATA ticker) and an option on it:
    the run succeeds, the rows say why, a warning check names them, others are untouched."""
    sensor.drop(f"{user}__Good.csv", _portfolio(["MSFT"]))
    first = sensor.execute(sensor.tick().run_requests[0])
    assert first.success, first.check_notes
    good = _load_of(sensor, user, "Good").portfolio_id
    before = _fingerprint(sensor.url, good)

    sensor.drop(f"{user}__Bad.csv", _portfolio(["NODATA", "KO"], option_root="NODATA"))
    (request,) = sensor.tick().run_requests
    outcome = sensor.execute(request)
    assert outcome.success, outcome
    assert "position_values:positions_valued" in outcome.warned_checks
    bad = _load_of(sensor, user, "Bad").portfolio_id
    with connect(sensor.url) as conn:
        reasons = conn.execute(
            "SELECT DISTINCT p.symbol, v.price_source, v.pnl_reason "
            "FROM sigmasight.position_values v "
            "JOIN sigmasight.positions p ON p.id = v.position_id WHERE v.portfolio_id = %s "
            "AND (v.price_source = 'missing' OR v.pnl_reason IS NOT NULL)",
            (bad,),
        ).fetchall()
        snapshots = conn.execute(
            "SELECT count(*), max(unpriced_count) FROM sigmasight.portfolio_snapshots "
            "WHERE portfolio_id = %s",
            (bad,),
        ).fetchone()
    assert {symbol for symbol, *_ in reasons} >= {"NODATA"}
    assert snapshots[0] > 0 and snapshots[1] >= 1
    assert _fingerprint(sensor.url, good) == before


def test_cursor_round_trip_and_first_start(sensor: Sensor, user: str) -> None:
    assert sensors.cursor_load_id(sensors.make_cursor(7)) == 7
    assert sensors.cursor_load_id(None) is None

    sensor.drop(f"{user}__One.csv", _portfolio(["AAPL"]))
    sensor.tick()
    load = _load_of(sensor, user, "One")
    sensor.cursor = None  # a sensor started for the first time: current loads get a backfill
    (request,) = sensor.tick().run_requests
    assert str(load.id) in request.tags[sensors.LOADS_TAG].split(",")
    assert str(load.portfolio_id) in request.tags[PORTFOLIOS_TAG].split(",")
