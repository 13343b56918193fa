"""The daemon path end to end: `sigmasight dev` (webserver, daemon, code server) on a database
with the demo loaded and backfilled, driven as a user drives it: a CSV dropped in the inbox,
the UI's Materialize button (the webserver's GraphQL API), the whole thing killed mid-run.

These are the slowest tests of the suite (about a minute each); they run in CI.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from sigmasight_pipeline import calendar, intake, run_reads, runs
from sigmasight_pipeline.checks import COMPANION_CHECKS
from sigmasight_pipeline.devserver import DevServer, wait_for_runs
from sigmasight_pipeline.portfolios import load_demo_portfolios
from sigmasight_pipeline.process_groups import group_members
from sigmasight_pipeline.resources.database import connect, transaction
from sigmasight_pipeline.resources.instance import prepare_environment
from sigmasight_pipeline.schedules import daily_after_close, daily_update_job
from sigmasight_pipeline.scope import PORTFOLIOS_TAG
from sigmasight_pipeline.settings import BACKFILL_DAYS
from sigmasight_pipeline_tests.conftest import (
    long_steps_started_first,
    overlapping,
    step_spans,
    throwaway_database,
)

pytestmark = pytest.mark.daemon

# A new stock, a new option contract on a new underlying (IBM), an option on an underlying the
# demo already holds (AAPL), and AAPL itself.
NEWCOMER_CSV = """ticker,quantity,entry_price,entry_date,tags
ZNEWCO,150,42.10,2026-06-01,new
IBM270115C00200000,3,12.50,2026-06-01,options
AAPL270115C00250000,-2,9.80,2026-06-01,options
AAPL,100,210.00,2026-06-01,core
"""


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A database with the demo portfolios backfilled (the CLI's two in-process runs) on an
    instance whose DAGSTER_HOME the dev server then uses."""
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "DAGSTER_HOME")}
    home = tmp_path_factory.mktemp("daemon_home")
    databases = throwaway_database(f"sigmasight_daemon_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    url = next(databases)
    try:
        os.environ["DAGSTER_HOME"] = str(home)
        prepare_environment(url, write_dotenv=False)
        with transaction(url) as conn:
            load_demo_portfolios(conn)
        instance = DagsterInstance.get()
        plan = runs.BackfillPlan.ending(calendar.latest_closed_session())
        outcomes = runs.backfill(instance, plan)
        assert all(o.success for o in outcomes), outcomes
        instance.dispose()
        yield {"url": url, "home": home, "plan": plan}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        databases.close()


@pytest.fixture(scope="module")
def dev(demo_env: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    inbox = tmp_path_factory.mktemp("daemon_data") / "inbox"
    server = DevServer(demo_env["url"], demo_env["home"], inbox)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _snapshot_days(url: str, portfolio_id: int, first: str) -> int:
    with connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM sigmasight.portfolio_snapshots "
            "WHERE portfolio_id = %s AND trade_date >= %s",
            (portfolio_id, first),
        ).fetchone()[0]


def _demo_fingerprint(url: str) -> str:
    with connect(url) as conn:
        return conn.execute(
            "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) "
            "FROM sigmasight.portfolio_snapshots t WHERE portfolio_id IN (1, 2, 3)"
        ).fetchone()[0]


def _drop(inbox: Path, name: str, text: str) -> float:
    path = inbox / name
    path.write_text(text)
    os.utime(path, (time.time() - 5, time.time() - 5))  # settled: the intake takes it now
    return time.perf_counter()


def measure_drop_to_snapshots(dev: DevServer, url: str, window_start: str, user: str) -> dict:
    """Drop NEWCOMER_CSV and wait for the portfolio's 90 snapshot days; the timings."""
    name = f"Newcomer {uuid.uuid4().hex[:6]}"
    dropped = _drop(dev.inbox, f"{user}__{name}.csv", NEWCOMER_CSV)
    loaded = None
    while time.perf_counter() - dropped < 600:
        loads = [x for x in intake.loads_after(url) if x.portfolio == name]
        if loads:
            loaded = loaded or time.perf_counter()
            if _snapshot_days(url, loads[0].portfolio_id, window_start) >= BACKFILL_DAYS:
                return {
                    "portfolio_id": loads[0].portfolio_id,
                    "loaded_s": loaded - dropped,
                    "snapshots_s": time.perf_counter() - dropped,
                    "dropped_at": time.time() - (time.perf_counter() - dropped),
                }
        time.sleep(0.5)
    raise TimeoutError(f"no snapshots for {name} 600 s after the drop: see {dev.log}")


def test_drop_to_snapshots_through_the_daemon(dev: DevServer, demo_env: dict) -> None:
    url, plan = demo_env["url"], demo_env["plan"]
    window_start = plan.key(plan.window[0])
    before = _demo_fingerprint(url)
    timing = measure_drop_to_snapshots(dev, url, window_start, "demo_user_1")
    print(f"\ndrop -> 90 sessions of snapshots through the daemon: {timing}")
    with connect(url) as conn:  # the sensor's load refreshed the planner's statistics itself
        (analyzed,) = conn.execute(
            "SELECT extract(epoch FROM last_analyze) >= %s FROM pg_stat_user_tables "
            "WHERE schemaname = 'sigmasight' AND relname = 'positions'",
            (timing["dropped_at"],),
        ).fetchone()
    assert analyzed

    instance = dev.instance()
    scoped = RunsFilter(tags={PORTFOLIOS_TAG: str(timing["portfolio_id"])})
    finished = wait_for_runs(instance, scoped, count=2)  # its market run, then its portfolio run
    assert [r.status for r in finished] == [DagsterRunStatus.SUCCESS] * 2
    for record in sorted(instance.get_run_records(scoped), key=lambda r: r.create_timestamp):
        at = {
            "created": record.create_timestamp.timestamp(),
            "started": record.start_time or 0.0,
            "ended": record.end_time or 0.0,
        }
        offsets = ", ".join(f"{k} +{v - timing['dropped_at']:.1f} s" for k, v in at.items())
        print(f"  {record.dagster_run.tags.get(runs.STAGE_TAG)} run: {offsets}")
    # The daemon's 90-session portfolio run had two steps in flight, the long ones first.
    spans = [step_spans(instance, r.run_id) for r in finished]
    portfolio_spans = next(s for s in spans if "portfolio_correlations" in s)
    assert overlapping(portfolio_spans), portfolio_spans
    assert long_steps_started_first(portfolio_spans), portfolio_spans
    # Each run worker removed the folder of the reads its steps shared (run_reads) at its end.
    temp = Path(tempfile.gettempdir())
    for r in finished:
        assert not list(temp.glob(f"{run_reads.FOLDER_PREFIX}*-{r.run_id[:8]}-*")), r.run_id
    # The companion tables' blocking checks ran in the daemon's portfolio run, over its rows.
    companion = {
        e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data
        for r in finished
        for e in instance.all_logs(r.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.check_name in COMPANION_CHECKS.values()
    }
    for table, check in COMPANION_CHECKS.items():
        with connect(url) as conn:
            (written,) = conn.execute(
                f"SELECT count(*) FROM sigmasight.{table} WHERE portfolio_id = %s",
                (timing["portfolio_id"],),
            ).fetchone()
        assert companion[check].passed
        assert companion[check].metadata["rows_checked"].value == written > 0
    # The stocks' stress P&L comes from the moves the daemon's run stored (stress_moves, a
    # symbol asset of that run): every stock of the new portfolio has one on every scenario.
    with connect(url) as conn:
        stock_rows, with_pnl, with_reason = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE r.pnl_usd <> 'NaN'), count(r.reason) "
            "FROM sigmasight.position_stress_results r "
            "JOIN sigmasight.positions p ON p.id = r.position_id "
            "WHERE r.portfolio_id = %s AND p.position_type IN ('LONG', 'SHORT')",
            (timing["portfolio_id"],),
        ).fetchone()
    assert stock_rows > 0 and with_pnl == stock_rows and with_reason == 0
    failed = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
    assert failed == []
    assert _demo_fingerprint(url) == before  # the demo portfolios' rows are untouched
    # No partition of any asset is marked failed for anyone.
    for key in (AssetKey("portfolio_snapshots"), AssetKey("position_values")):
        assert instance.fetch_failed_materializations(key, limit=1).records == []


def test_ui_materializes_one_partition(dev: DevServer, demo_env: dict) -> None:
    """The UI's Materialize button on one partition of two assets that do not need each other:
    the run worker runs them at the same time (a short run's two step threads)."""
    day = demo_env["plan"].key(demo_env["plan"].window[-1])
    began = time.perf_counter()
    run_id = dev.graphql_client().submit_job_execution(
        "__ASSET_JOB",
        asset_selection=[AssetKey("portfolio_snapshots"), AssetKey("portfolio_volatility")],
        tags={"dagster/partition": day},
    )
    instance = dev.instance()
    run = _wait_for_run(instance, run_id, began)
    print(f"\none partition from the UI: launch -> {run.status.value} in "
          f"{time.perf_counter() - began:.1f} s")  # fmt: skip
    assert run.status == DagsterRunStatus.SUCCESS, runs.run_problems(instance, run_id)
    spans = step_spans(instance, run_id)
    assert set(spans) == {"portfolio_snapshots", "portfolio_volatility"}
    assert overlapping(spans), spans


SCHEDULE_DRY_RUN = """
mutation ($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    ... on DryRunInstigationTick {
      evaluationResult {
        runRequests { runKey tags { key value } }
        skipReason
        error { message stack }
      }
    }
    ... on PythonError { message stack }
  }
}
"""
REPOSITORIES = (
    "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
)


def _evaluate_schedule(dev: DevServer, name: str, day: str) -> dict:
    """The UI's "Test schedule" on the tick of `day` (its 18:00 in New York): the schedule
    evaluated by the code server, as the daemon does at that tick."""
    client = dev.graphql_client()
    (repository,) = client._execute(REPOSITORIES)["repositoriesOrError"]["nodes"]
    selector = {
        "repositoryLocationName": repository["location"]["name"],
        "repositoryName": repository["name"],
        "scheduleName": name,
    }
    tick = datetime.combine(datetime.fromisoformat(day).date(), clock(17, 59))
    when = tick.replace(tzinfo=ZoneInfo(calendar.TIMEZONE)).timestamp()
    result = client._execute(SCHEDULE_DRY_RUN, {"selector": selector, "timestamp": when})
    evaluation = result["scheduleDryRun"]["evaluationResult"]
    assert evaluation["error"] is None, evaluation["error"]
    return evaluation


def test_daily_schedule_tick_runs_its_session_and_an_unpublished_one(
    dev: DevServer, demo_env: dict
) -> None:
    """The daily schedule's tick evaluated by the code server ("Test schedule" in the UI) and
    its run launched ("Launch all runs") through the run queue: a holiday's tick is skipped; a
    session whose previous one had no bars published runs both as one range run, which
    succeeds and writes every demo portfolio's snapshot on both days."""
    url, plan = demo_env["url"], demo_env["plan"]
    day, before = plan.key(plan.window[-1]), plan.key(plan.window[-2])
    holiday = calendar.holidays(day, plan.window[-1] + timedelta(days=120))[0]  # a weekday
    closed = _evaluate_schedule(dev, daily_after_close.name, f"{holiday:%Y-%m-%d}")
    assert closed["runRequests"] == [] and "not an NYSE trading day" in closed["skipReason"]

    with transaction(url) as conn:
        conn.execute(
            "INSERT INTO sigmasight.price_issues (trade_date, symbol, kind, detail) "
            "VALUES (%s, 'AAPL', 'not_published', 'no bars yet (test)')",
            (before,),
        )
        conn.execute(
            "DELETE FROM sigmasight.portfolio_snapshots "
            "WHERE trade_date IN (%s, %s) AND portfolio_id IN (1, 2, 3)",
            (before, day),
        )
    evaluation = _evaluate_schedule(dev, daily_after_close.name, day)
    (request,) = evaluation["runRequests"]
    tags = {t["key"]: t["value"] for t in request["tags"]}
    assert request["runKey"] == f"daily-{day}-from-{before}"
    assert runs.range_tags(before, day).items() <= tags.items()

    began = time.perf_counter()
    run_id = dev.graphql_client().submit_job_execution(daily_update_job.name, tags=tags)
    instance = dev.instance()
    run = _wait_for_run(instance, run_id, began)
    print(f"\nthe schedule's tick on {day} (from {before}): {run.status.value} in "
          f"{time.perf_counter() - began:.1f} s")  # fmt: skip
    assert run.status == DagsterRunStatus.SUCCESS, runs.run_problems(instance, run_id)
    with connect(url) as conn:
        written = conn.execute(
            "SELECT trade_date::text, count(*) FROM sigmasight.portfolio_snapshots "
            "WHERE trade_date IN (%s, %s) AND portfolio_id IN (1, 2, 3) GROUP BY 1 ORDER BY 1",
            (before, day),
        ).fetchall()
    assert written == [(before, 3), (day, 3)]


def _wait_for_run(instance: DagsterInstance, run_id: str, began: float):
    """The run once it has ended (at most 300 s after `began`)."""
    while (run := instance.get_run_by_id(run_id)).status not in runs_terminal():
        assert time.perf_counter() - began < 300, f"run {run_id} still {run.status}"
        time.sleep(0.25)
    return run


def runs_terminal() -> set[DagsterRunStatus]:
    return {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def test_killed_mid_run_resumes_and_processes_the_file_once(dev: DevServer, demo_env: dict) -> None:
    """Everything killed (SIGKILL to webserver, daemon, code server and run worker) while the
    sensor's run works: the next start fails the dead run and retries it; the file is loaded
    once and the portfolio gets its snapshots."""
    url, plan = demo_env["url"], demo_env["plan"]
    name = f"Crash {uuid.uuid4().hex[:6]}"
    _drop(dev.inbox, f"demo_user_2__{name}.csv", NEWCOMER_CSV)
    instance = dev.instance()
    began = time.perf_counter()
    while True:
        loads = [x for x in intake.loads_after(url) if x.portfolio == name]
        started = loads and instance.get_runs(
            filters=RunsFilter(
                tags={PORTFOLIOS_TAG: str(loads[0].portfolio_id)},
                statuses=[DagsterRunStatus.STARTED],
            )
        )
        # Inside the run's steps: killed at its first step (a fixed wait let a short run end
        # before the kill on a fast day).
        if started and instance.all_logs(started[0].run_id, of_type=DagsterEventType.STEP_START):
            break
        assert time.perf_counter() - began < 300, "the sensor's run never started"
        time.sleep(0.1)
    dev.stop(signal.SIGKILL)
    dev.start()
    portfolio_id = loads[0].portfolio_id
    window_start = plan.key(plan.window[0])
    while _snapshot_days(url, portfolio_id, window_start) < BACKFILL_DAYS:
        assert time.perf_counter() - began < 600, f"no snapshots after the restart: {dev.log}"
        time.sleep(1.0)
    filters = RunsFilter(tags={PORTFOLIOS_TAG: str(portfolio_id)})
    scoped = wait_for_runs(instance, filters, count=2)  # the dead run and its retry
    assert {r.status for r in scoped} == {DagsterRunStatus.FAILURE, DagsterRunStatus.SUCCESS}
    assert len([x for x in intake.loads_after(url) if x.portfolio == name]) == 1
    processed = list((dev.inbox.parent / "processed").glob(f"*{name}.csv"))
    assert len(processed) == 1 and not list(dev.inbox.glob("*.csv"))


def test_sigterm_to_sigmasight_dev_alone_stops_every_dagster_process(dev: DevServer) -> None:
    """A supervisor (systemd, supervisord, `docker stop`) signals `sigmasight dev` alone: the
    webserver, daemon and code servers stop with it and nothing is left running."""
    assert dev.process is not None
    groups = dev.process_groups()
    assert len(groups) == 2  # sigmasight dev's, and its services' own
    processes = [pid for group in groups for pid in group_members(group)]
    assert len(processes) >= 5  # sigmasight dev, dagster dev, webserver, daemon, code server
    try:
        os.kill(dev.process.pid, signal.SIGTERM)
        assert dev.process.wait(timeout=90) == 0, f"see {dev.log}"
        assert not [pid for group in groups for pid in group_members(group)]
    finally:
        dev.stop()  # the module's last test: a worker runs its tests in the module's order
