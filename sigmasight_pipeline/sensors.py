"""The portfolio inbox sensor: loads CSVs dropped in the inbox and backfills their portfolios.

Each tick runs the intake (`intake.process_inbox`: validate, load in one transaction, move to
processed/ or rejected/), then requests ONE run for every load recorded since its cursor (loads
by `sigmasight ingest` included):

- The runs are scoped to the loaded portfolios (`sigmasight/portfolios` tag, see `scope.py`):
  their position, risk and snapshot rows are recomputed, the other portfolios' rows are never
  touched, and a problem in the new file cannot fail anyone else's partitions. Symbol-level
  assets only recompute the scoped portfolios' symbols.
- The tick requests the backfill's market run: market data over the 90-session window ending
  at the latest closed session, and, when their tickers are new, the 61 sessions before it
  that the window's 60-session betas read. When it succeeds, `backfill_next_stage`
  (schedules.py) requests the analytics run over the window (runs.next_runs).

Run keys are `portfolio-<16 hex>`, the hex a sha256 of the batch's `load id:file sha256`
pairs: a tick repeated after a crash requests the same key, which Dagster launches once. Loads
are recorded in the database in the same transaction as the positions, so the cursor (the last
load id seen) and the database are the whole state: restart-safe.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from sigmasight_pipeline import calendar, intake
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.runs import (
    BETA_LOOKBACK_SESSIONS,
    RANGE_END_TAG,
    RANGE_START_TAG,
    BackfillPlan,
    history_is_complete,
    market_run,
)
from sigmasight_pipeline.scope import PORTFOLIOS_TAG, Scope
from sigmasight_pipeline.settings import BACKFILL_DAYS

SENSOR_NAME = "portfolio_inbox_sensor"
CURSOR_VERSION = 2
# A tick costs a folder listing and one query; a short interval keeps drop-to-run latency low.
SENSOR_INTERVAL_SECONDS = 10
# Sensor evaluations time out after 60 s: files left when this is spent wait for the next tick.
TICK_BUDGET_SECONDS = 40.0
DOWNSTREAM_OF_POSITIONS = AssetSelection.assets("positions").downstream(include_self=False)
MAX_NOTES = 10  # outcome lines quoted in a tick's skip reason
LOADS_TAG = "sigmasight/intake_loads"


def cursor_load_id(cursor: str | None) -> int | None:
    """The last load id a cursor has seen (None on the first tick)."""
    return json.loads(cursor).get("last_load_id") if cursor else None


def make_cursor(last_load_id: int | None) -> str:
    return json.dumps({"version": CURSOR_VERSION, "last_load_id": last_load_id})


def batch_request(
    url: str, loads: Sequence[intake.LoadRecord], days: int = BACKFILL_DAYS
) -> RunRequest:
    """The market run of a backfill scoped to the loaded portfolios (over the window, and the
    60-session history of new tickers); `backfill_next_stage` requests its analytics run."""
    plan = BackfillPlan.ending(calendar.latest_closed_session(), days, BETA_LOOKBACK_SESSIONS)
    pairs = "|".join(f"{load.id}:{load.sha256}" for load in sorted(loads, key=lambda x: x.id))
    digest = hashlib.sha256(pairs.encode()).hexdigest()
    scope = Scope.of([load.portfolio_id for load in loads])
    run = market_run(plan, scope=scope, with_history=not history_is_complete(url, plan, scope))
    return RunRequest(
        run_key=f"portfolio-{digest[:16]}",
        asset_selection=[AssetKey(a) for a in run.assets],
        tags={
            **run.tags,
            LOADS_TAG: ",".join(str(load.id) for load in sorted(loads, key=lambda x: x.id)),
        },
    )


def _materialization(load: intake.LoadRecord) -> AssetMaterialization:
    return AssetMaterialization(
        asset_key="positions",
        description=f"{load.username} / {load.portfolio}: {load.positions:,} positions",
        metadata={
            "load_id": load.id,
            "portfolio_id": load.portfolio_id,
            "portfolio": f"{load.username} / {load.portfolio}",
            "positions": load.positions,
            "replaced": load.replaced,
            "file": load.file_name,
            "stored_as": load.stored_as,
            "sha256": load.sha256,
            "loaded_by": load.loaded_by,
            "loaded_at": MetadataValue.timestamp(load.loaded_at),
        },
    )


def evaluate(
    context: SensorEvaluationContext, url: str, folders: intake.Folders | None = None
) -> SensorResult:
    """One tick (see the module docstring); `folders` defaults to `SIGMASIGHT_INBOX`'s."""
    began = time.perf_counter()
    last_load_id = cursor_load_id(context.cursor)
    outcomes = intake.process_inbox(
        url, folders, loaded_by="sensor", time_budget=TICK_BUDGET_SECONDS
    )
    notes: list[str] = []  # what the tick says in the UI when it requests no run
    for outcome in outcomes:
        bad = outcome.status in (intake.Status.REJECTED, intake.Status.SKIPPED)
        (context.log.warning if bad else context.log.info)(outcome.line())
        notes.append(outcome.line())

    requests: list[RunRequest] = []
    events: list[AssetMaterialization] = []
    new = intake.loads_after(url, last_load_id)
    if new:
        first_tick = last_load_id is None
        last_load_id = max(load.id for load in new)
        if first_tick:  # only the loads today's positions come from, not the whole history
            new = [load for load in new if load.current]
        events = [_materialization(load) for load in new]
        current = [load for load in new if load.current]
        if current:
            request = batch_request(url, current)
            requests.append(request)
            context.log.info(
                f"{request.run_key}: one run {request.tags[RANGE_START_TAG]}.."
                f"{request.tags[RANGE_END_TAG]} for portfolios {request.tags[PORTFOLIOS_TAG]}"
            )

    context.log.info(
        f"tick: {len(outcomes)} files, {len(requests)} run requests, "
        f"{time.perf_counter() - began:.2f} s"
    )
    skip = None
    if not requests:
        more = f"; ... and {len(notes) - MAX_NOTES} more" if len(notes) > MAX_NOTES else ""
        skip = "; ".join(notes[:MAX_NOTES]) + more or (
            f"no new portfolio files in {(folders or intake.Folders.around()).inbox}"
        )
    return SensorResult(
        run_requests=requests,
        cursor=make_cursor(last_load_id),
        asset_events=events,
        skip_reason=skip,
    )


@sensor(
    name=SENSOR_NAME,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    target=DOWNSTREAM_OF_POSITIONS,
    description=(
        "Loads portfolio CSVs (`<username>__<portfolio name>.csv`) dropped in SIGMASIGHT_INBOX "
        "(default data/inbox/), moves them to processed/ or rejected/ (with an .errors.json "
        "report), and backfills the 90 sessions to the latest closed one (plus their 61-session "
        "lookback) of every asset downstream of positions for the loaded portfolios only, in "
        "one run."
    ),
)
def portfolio_inbox_sensor(
    context: SensorEvaluationContext, database: PostgresResource
) -> SensorResult:
    """Inbox intake and the 90-day backfill of the portfolios it loads."""
    return evaluate(context, database.url())
