"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

# Tests (and the CLI processes they start) must not rewrite the checkout's .env, which points
# the plain dagster CLI at the developer's own instance.
os.environ.setdefault("SIGMASIGHT_NO_DOTENV", "1")

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from sigmasight_pipeline_tests.fake_polygon import FakePolygon


def step_spans(instance: DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's (start, end) timestamps in a run."""
    from dagster import DagsterEventType

    started: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            spans[event.step_key] = (started[event.step_key], entry.timestamp)
    return spans


def overlapping(spans: dict[str, tuple[float, float]]) -> list[tuple[str, str]]:
    """The pairs of steps that ran at the same time."""
    items = sorted(spans.items(), key=lambda kv: kv[1])
    return [
        (a, b)
        for i, (a, (_, a_end)) in enumerate(items)
        for b, (b_start, _) in items[i + 1 :]
        if b_start < a_end
    ]


def long_steps_started_first(spans: dict[str, tuple[float, float]]) -> bool:
    """Whether portfolio_correlations (tagged START_EARLY) started no later than
    portfolio_concentration and portfolio_greeks, which position_greeks readies with it and
    which sort before it by name: the order a run without the tag takes."""
    first = spans["portfolio_correlations"][0]
    return first <= spans["portfolio_concentration"][0] and first <= spans["portfolio_greeks"][0]


@pytest.fixture
def fake_polygon() -> Iterator[FakePolygon]:
    """A fake Polygon server on 127.0.0.1 serving SyntheticMarket bars (API key "test-key").

    Set `.universe` (the stocks grouped-daily answers with), `.unknown`, `.page_size` or queue
    faults (`fail`, `slow`, `malformed`) before use; `.log` records every request.
    """
    import pandas as pd

    from sigmasight_pipeline.resources.synthetic import SyntheticMarket
    from sigmasight_pipeline_tests.fake_polygon import FakePolygon

    market = SyntheticMarket()

    def bars(symbol: str, days: list) -> pd.DataFrame:
        return market.daily_bars(pd.DataFrame({"symbol": [symbol] * len(days), "trade_date": days}))

    with FakePolygon(bars) as fake:
        yield fake


def store_rows(url: str, table: str, rows: list[dict]) -> None:
    """Append `rows` to `table` as the IO manager stores them (a table of `blocks.BLOCKS`
    in its blocks table), in a transaction of their own."""
    import pandas as pd

    from sigmasight_pipeline.resources.blocks import stored_rows
    from sigmasight_pipeline.resources.database import SCHEMA
    from sigmasight_pipeline.resources.tables import arrow_connection, ingest

    stored, frame = stored_rows(url, SCHEMA, table, pd.DataFrame(rows))
    with arrow_connection(url) as conn:
        ingest(conn, url, SCHEMA, stored, frame)


def throwaway_database(name: str) -> Iterator[str]:
    """A migrated database `name` on the embedded server (or `DATABASE_URL`'s server), dropped
    when the generator closes."""
    from sigmasight_pipeline.resources.database import (
        create_database,
        database_url,
        drop_database,
        migrate,
    )

    server = database_url()
    url = create_database(server, name)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(server, name)


@contextmanager
def database_before(migration: str) -> Iterator[str]:
    """A throwaway database with only the migrations before `migration` applied (a database
    of an earlier version, to fill and then migrate), dropped afterwards."""
    import uuid

    from yoyo import get_backend, read_migrations

    from sigmasight_pipeline.resources.database import (
        SQL_DIR,
        create_database,
        database_url,
        drop_database,
        yoyo_url,
    )

    server = database_url()
    name = f"sigmasight_mig_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    try:
        backend = get_backend(yoyo_url(url))
        with backend.lock():
            earlier = read_migrations(str(SQL_DIR)).filter(lambda m: m.id < migration)
            backend.apply_migrations(backend.to_apply(earlier))
        yield url
    finally:
        drop_database(server, name)


@pytest.fixture(scope="session")
def session_db_url() -> Iterator[str]:
    """The session's database; one per process, so pytest-xdist workers never share."""
    yield from throwaway_database(f"sigmasight_test_{os.getpid()}")


DEMO_END = "2026-11-20"


@pytest.fixture(scope="session")
def db_url(session_db_url: str) -> str:
    """The session's database (modules that must not share it override this fixture)."""
    return session_db_url


@pytest.fixture(scope="module")
def isolated_db_url() -> Iterator[str]:
    """A database of the module's own, for tests that load portfolios and run the pipeline:
    the demo backfill's tables stay exactly as the demo made them."""
    import uuid

    yield from throwaway_database(f"sigmasight_iso_{os.getpid()}_{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="session")
def dagster_instance(session_db_url: str, tmp_path_factory: pytest.TempPathFactory):
    """The real Dagster instance (dagster.yaml, dagster-postgres) on the test database, with
    DATABASE_URL pointing every resource at that database."""
    import os

    from dagster import DagsterInstance

    from sigmasight_pipeline.resources.instance import prepare_environment

    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "DATABASE_URL")}
    os.environ["DAGSTER_HOME"] = str(tmp_path_factory.mktemp("dagster_home"))
    prepare_environment(session_db_url, write_dotenv=False)
    instance = DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def demo_backfill(session_db_url: str, dagster_instance):
    """Demo users and portfolios loaded and the 90-session backfill ending DEMO_END run (the
    two runs `sigmasight demo` makes). Returns the plan and the run outcomes."""
    import pandas as pd

    from sigmasight_pipeline import runs
    from sigmasight_pipeline.portfolios import load_demo_portfolios
    from sigmasight_pipeline.resources.database import transaction

    with transaction(session_db_url) as conn:
        load_demo_portfolios(conn, today=pd.Timestamp(DEMO_END).date())
    plan = runs.BackfillPlan.ending(pd.Timestamp(DEMO_END))
    outcomes = runs.backfill(dagster_instance, plan)
    assert all(o.success for o in outcomes), outcomes
    return plan, outcomes
