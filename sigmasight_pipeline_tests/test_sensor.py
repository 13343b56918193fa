"""The inbox sensor's runs: history first when tickers are new, then the 90-day window run.

The runs the sensor requests are executed in-process on the real instance with the tags the
daemon would give them (run key, sensor name), so the sensor finds them the way it would find
the daemon's runs.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SensorResult,
    build_sensor_context,
)
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from sigmasight_pipeline import calendar, intake, runs, sensors
from sigmasight_pipeline.portfolios import create_user
from sigmasight_pipeline.resources.database import PostgresResource, connect, transaction
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
        self.cursor = sensors.SensorState(last_load_id=intake.latest_load_id(url)).to_cursor()

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
        """Run a request in-process, tagged as the daemon tags a sensor's run."""
        return runs.execute_request(self.instance, request)


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


def _portfolio(tickers: list[str]) -> str:
    rows = [f"{t},{(i + 1) * 10},{20 + i}.5,2026-01-05,core" for i, t in enumerate(tickers)]
    option = f"{tickers[0]}261218C00050000,2,3.25,2026-06-01,options"
    return "\n".join(["ticker,quantity,entry_price,entry_date,tags", *rows, option]) + "\n"


def test_new_tickers_get_history_then_the_90_day_window_run(sensor: Sensor, user: str) -> None:
    tickers = [f"Z{uuid.uuid4().hex[:4].upper()}{c}" for c in "ABC"]  # unknown to the DB
    sensor.drop(f"{user}__Fresh.csv", _portfolio(tickers))
    plan = runs.BackfillPlan.ending(calendar.latest_closed_session())
    window = (plan.key(plan.window[0]), plan.key(plan.window[-1]))

    first = sensor.tick()
    (history,) = first.run_requests
    assert history.run_key.endswith("-history")
    assert history.tags[runs.RANGE_START_TAG] == plan.key(plan.history[0])
    assert history.tags[runs.RANGE_END_TAG] == plan.key(plan.history[-1])
    assert {k.to_user_string() for k in history.asset_selection} == set(runs.MARKET_ASSETS)
    assert sensors.SensorState.from_cursor(sensor.cursor).pending  # restart-safe: in the cursor

    assert sensor.execute(history).success
    second = sensor.tick()
    (request,) = second.run_requests
    assert request.run_key == history.run_key.removesuffix("-history")
    assert (request.tags[runs.RANGE_START_TAG], request.tags[runs.RANGE_END_TAG]) == window
    assert set(request.asset_selection) == set(sensors.window_assets())
    assert sensors.SensorState.from_cursor(sensor.cursor).pending == []

    outcome = sensor.execute(request)
    assert outcome.success, outcome
    (load,) = [load for load in intake.loads_after(sensor.url) if load.username == user]
    with connect(sensor.url) as conn:
        days = conn.execute(
            "SELECT min(trade_date)::text, max(trade_date)::text, count(*) "
            "FROM sigmasight.portfolio_snapshots WHERE portfolio_id = %s",
            (load.portfolio_id,),
        ).fetchone()
        n_obs = conn.execute(
            "SELECT min(n_obs) FROM sigmasight.factor_betas "
            "WHERE symbol = ANY(%s) AND trade_date = %s",
            (tickers, window[0]),
        ).fetchone()[0]
    assert days == (*window, BACKFILL_DAYS)
    assert n_obs == 60  # the first day of the window has its full 60-session history

    third = sensor.tick()
    assert not third.run_requests and "no new portfolio files" in third.skip_reason.skip_message

    # Another portfolio of the same tickers: the history is there, so the window run at once.
    sensor.drop(f"{user}__Same.csv", _portfolio(tickers[::-1]))
    (direct,) = sensor.tick().run_requests
    assert direct.tags[sensors.STAGE_TAG] == "window" and not direct.run_key.endswith("history")


def test_waiting_failed_and_missing_history_runs(sensor: Sensor, user: str) -> None:
    sensor.drop(f"{user}__Fresh.csv", _portfolio([f"Y{uuid.uuid4().hex[:5].upper()}"]))
    (history,) = sensor.tick().run_requests

    # Not launched (the daemon never got it): asked again, same key, still pending.
    (again,) = sensor.tick().run_requests
    assert again.run_key == history.run_key
    assert len(sensors.SensorState.from_cursor(sensor.cursor).pending) == 1

    run = sensor.instance.add_run(
        DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=DagsterRunStatus.STARTED,
            tags={RUN_KEY_TAG: history.run_key, SENSOR_NAME_TAG: sensors.SENSOR_NAME},
        )
    )
    waiting = sensor.tick()
    assert not waiting.run_requests
    assert "waiting for history run" in waiting.skip_reason.skip_message

    sensor.instance.report_run_failed(run)  # failed: the window run is requested anyway
    (window,) = sensor.tick().run_requests
    assert window.run_key == history.run_key.removesuffix("-history")
    assert sensors.SensorState.from_cursor(sensor.cursor).pending == []


def test_cursor_round_trip_and_first_start(sensor: Sensor, user: str) -> None:
    state = sensors.SensorState(
        7, [sensors.Batch("portfolio-0123456789abcdef", [6, 7], ("a", "b"), ("c", "d"))]
    )
    assert sensors.SensorState.from_cursor(state.to_cursor()) == state

    sensor.drop(f"{user}__One.csv", _portfolio(["AAPL"]))
    sensor.tick()
    (load,) = [load for load in intake.loads_after(sensor.url) if load.username == user]
    sensor.cursor = None  # a sensor started for the first time: current loads get a backfill
    (request,) = sensor.tick().run_requests
    assert str(load.id) in request.tags[sensors.LOADS_TAG].split(",")
