"""Benchmark: the daemon path (`sigmasight dev`: webserver, daemon, code server) against the
CLI's in-process runs, on the demo book.

- Drop to snapshots: a CSV holding a new stock, a new option on a new underlying and an option
  on a held underlying is dropped in the inbox; the clock runs until the new portfolio has its
  90 sessions of snapshots (the sensor's tick, its run's creation, queue, launch and work).
- One partition from the UI: the Materialize button on one partition of portfolio_snapshots
  (the webserver's GraphQL API, as the UI calls it), from launch to success.
- The 90-session window run (every portfolio asset over the window) launched through the
  daemon, against the same run in-process (`runs.materialize`, as `sigmasight backfill`), as
  a ratio. The in-process side runs first, on the same database and instance.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from sigmasight_pipeline import calendar, runs
from sigmasight_pipeline.devserver import TERMINAL, DevServer
from sigmasight_pipeline.portfolios import load_demo_portfolios
from sigmasight_pipeline.resources.database import (
    create_database,
    database_url,
    drop_database,
    migrate,
    transaction,
)
from sigmasight_pipeline.resources.instance import prepare_environment
from sigmasight_pipeline.settings import BACKFILL_DAYS

NEWCOMER_CSV = """ticker,quantity,entry_price,entry_date,tags
ZNEWCO,150,42.10,2026-06-01,new
IBM270115C00200000,3,12.50,2026-06-01,options
AAPL270115C00250000,-2,9.80,2026-06-01,options
AAPL,100,210.00,2026-06-01,core
"""


def _wait(instance: DagsterInstance, run_id: str, timeout: float = 900) -> DagsterRunStatus:
    began = time.perf_counter()
    while (status := instance.get_run_by_id(run_id).status) not in TERMINAL:
        if time.perf_counter() - began > timeout:
            raise TimeoutError(f"run {run_id} still {status.value} after {timeout:.0f} s")
        time.sleep(0.2)
    return status


def drop_to_snapshots(dev: DevServer, url: str, window_start: str) -> float:
    """Seconds from a drop in the inbox to the new portfolio's 90 snapshot days."""
    from sigmasight_pipeline import intake
    from sigmasight_pipeline.resources.database import connect

    name = f"Newcomer {uuid.uuid4().hex[:6]}"
    path = dev.inbox / f"demo_user_1__{name}.csv"
    path.write_text(NEWCOMER_CSV)
    os.utime(path, (time.time() - 5, time.time() - 5))
    dropped = time.perf_counter()
    while time.perf_counter() - dropped < 900:
        loads = [x for x in intake.loads_after(url) if x.portfolio == name]
        if loads:
            with connect(url) as conn:
                days = conn.execute(
                    "SELECT count(*) FROM sigmasight.portfolio_snapshots "
                    "WHERE portfolio_id = %s AND trade_date >= %s",
                    (loads[0].portfolio_id, window_start),
                ).fetchone()[0]
            if days >= BACKFILL_DAYS:
                return time.perf_counter() - dropped
        time.sleep(0.25)
    raise TimeoutError(f"no snapshots for {name} 900 s after the drop: see {dev.log}")


def run() -> list[dict]:
    server = database_url()
    name = f"sigmasight_bench_daemon_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "DAGSTER_HOME")}
    home = Path(tempfile.mkdtemp(prefix="sigmasight_bench_daemon_"))
    dev = None
    try:
        migrate(url)
        os.environ["DAGSTER_HOME"] = str(home)
        prepare_environment(url, write_dotenv=False)
        with transaction(url) as conn:
            load_demo_portfolios(conn)
        instance = DagsterInstance.get()
        plan = runs.BackfillPlan.ending(calendar.latest_closed_session())
        assert all(o.success for o in runs.backfill(instance, plan))
        window_run = runs.next_runs(runs.market_run(plan).tags)[0]  # symbols + portfolios
        cli = runs.materialize(instance, list(window_run.assets), window_run.start, window_run.end)
        assert cli.success, cli.problems

        dev = DevServer(url, home, home / "data" / "inbox")
        startup = dev.start()
        client = dev.graphql_client()

        began = time.perf_counter()
        run_id = client.submit_job_execution(
            "__ASSET_JOB",
            asset_selection=[AssetKey(a) for a in window_run.assets],
            tags=window_run.tags,
        )
        status = _wait(instance, run_id)
        daemon_window = time.perf_counter() - began
        assert status is DagsterRunStatus.SUCCESS, status

        day = plan.key(plan.window[-1])
        began = time.perf_counter()
        run_id = client.submit_job_execution(
            "__ASSET_JOB",
            asset_selection=[AssetKey("portfolio_snapshots")],
            tags={"dagster/partition": day},
        )
        status = _wait(instance, run_id)
        one_partition = time.perf_counter() - began
        assert status is DagsterRunStatus.SUCCESS, status

        drop = drop_to_snapshots(dev, url, plan.key(plan.window[0]))
        instance.dispose()
    finally:
        if dev is not None:
            dev.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        drop_database(server, name)
    setup = f"demo book (3 portfolios, 76 positions); `sigmasight dev` ready in {startup:.1f} s"
    return [
        {
            "benchmark": "CSV drop -> 90 sessions of snapshots, through the daemon",
            "seconds": drop,
            "target_s": 90.0,
            "notes": f"{setup}; the sensor ticks every 10 s; a scoped market run over the "
            "window and its 61-session lookback, then (backfill_next_stage) the scoped symbol "
            "and portfolio run over the window",
        },
        {
            "benchmark": "one partition of portfolio_snapshots from the UI (launch -> success)",
            "seconds": one_partition,
            "target_s": 15.0,
            "notes": "GraphQL launch as the Materialize button; queue, run worker start, work",
        },
        {
            "benchmark": "90-session window run: daemon (launch -> success) / CLI in-process",
            "seconds": daemon_window,
            "reference_s": cli.seconds,
            "ratio": daemon_window / cli.seconds,
            "target_s": 1.5 * cli.seconds,
            "notes": f"every portfolio asset over {window_run.start}..{window_run.end}; "
            "ratio = daemon / CLI (target at most 1.5)",
        },
    ]
