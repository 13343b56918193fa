"""The portfolio inbox sensor: loads CSVs dropped in the inbox and backfills their portfolios.

Each tick runs the intake (`intake.process_inbox`: validate, load in one transaction, move to
processed/ or rejected/), then plans runs for every load recorded since its cursor (loads by
`sigmasight ingest` included):

- One batch per tick, whatever the number of new loads: every run recomputes all portfolios,
  so two files dropped together need one backfill, not two.
- The window run materializes every asset downstream of `positions` over the last 90 sessions
  ending at the latest closed session, in one run (the single-run backfill range tags).
- The window reads 60 sessions of history before its first day (betas, volatilities). When the
  `returns` of any held underlying or factor ETF are incomplete over those sessions (a new
  ticker), a history run of the market assets over them goes first; the batch waits in the
  cursor and a later tick requests the window run once that run has finished (looked up on the
  instance by run key).

Run keys are `portfolio-<16 hex>` (window) and `portfolio-<16 hex>-history`, the hex a sha256
of the batch's `load id:file sha256` pairs: a tick repeated after a crash requests the same
keys, which Dagster launches once. Loads are recorded in the database in the same transaction
as the positions, so the cursor (last load id seen, pending batches) and the database are the
whole state: restart-safe.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.storage.tags import RUN_KEY_TAG

from sigmasight_pipeline import calendar, intake
from sigmasight_pipeline.resources.database import PostgresResource, connect
from sigmasight_pipeline.resources.market_data import FACTOR_ETFS
from sigmasight_pipeline.runs import MARKET_ASSETS, BackfillPlan, range_tags
from sigmasight_pipeline.settings import BACKFILL_DAYS

SENSOR_NAME = "portfolio_inbox_sensor"
CURSOR_VERSION = 1
# Sensor evaluations time out after 60 s: files left when this is spent wait for the next tick.
TICK_BUDGET_SECONDS = 40.0
DOWNSTREAM_OF_POSITIONS = AssetSelection.assets("positions").downstream(include_self=False)
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
MAX_NOTES = 10  # outcome lines quoted in a tick's skip reason
STAGE_TAG = "sigmasight/intake_stage"
LOADS_TAG = "sigmasight/intake_loads"


@dataclass(frozen=True)
class Batch:
    """The loads one backfill covers, and the sessions of its window and history runs."""

    key: str
    loads: list[int]
    window: tuple[str, str]
    history: tuple[str, str]

    @property
    def history_key(self) -> str:
        return f"{self.key}-history"


@dataclass
class SensorState:
    """The cursor: the last load id planned, and batches waiting for their history run."""

    last_load_id: int | None = None
    pending: list[Batch] = field(default_factory=list)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> SensorState:
        if not cursor:
            return cls()
        data = json.loads(cursor)
        pending = [
            Batch(b["key"], list(b["loads"]), tuple(b["window"]), tuple(b["history"]))
            for b in data.get("pending", [])
        ]
        return cls(data.get("last_load_id"), pending)

    def to_cursor(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "last_load_id": self.last_load_id,
                "pending": [asdict(batch) for batch in self.pending],
            },
            sort_keys=True,
        )


@cache
def window_assets() -> tuple[AssetKey, ...]:
    """Every asset downstream of `positions`, from the code location's asset graph."""
    from sigmasight_pipeline.definitions import defs  # definitions imports this module

    return tuple(sorted(DOWNSTREAM_OF_POSITIONS.resolve(defs.resolve_asset_graph())))


def plan_batch(loads: Sequence[intake.LoadRecord], days: int = BACKFILL_DAYS) -> Batch:
    """The batch for `loads`: window = the last `days` sessions to the latest closed one."""
    plan = BackfillPlan.ending(calendar.latest_closed_session(), days)
    pairs = "|".join(f"{load.id}:{load.sha256}" for load in sorted(loads, key=lambda x: x.id))
    digest = hashlib.sha256(pairs.encode()).hexdigest()
    return Batch(
        key=f"portfolio-{digest[:16]}",
        loads=sorted(load.id for load in loads),
        window=(plan.key(plan.window[0]), plan.key(plan.window[-1])),
        history=(plan.key(plan.history[0]), plan.key(plan.history[-1])),
    )


def history_complete(url: str, portfolio_ids: Sequence[int], history: tuple[str, str]) -> bool:
    """True when every underlying held by these portfolios and every factor ETF has a return
    on each history session but the first (whose return needs a close before the history)."""
    days = calendar.sessions(*history)
    first, last, need = days[1].date(), days[-1].date(), len(days) - 1
    with connect(url) as conn:
        row = conn.execute(
            """
            WITH wanted AS (
                SELECT DISTINCT underlying AS symbol FROM sigmasight.positions
                WHERE portfolio_id = ANY(%(ids)s)
                UNION SELECT unnest(%(etfs)s::text[])
            ), have AS (
                SELECT symbol, count(*) AS n FROM sigmasight.returns
                WHERE trade_date BETWEEN %(first)s AND %(last)s AND symbol IN (SELECT symbol
                FROM wanted) GROUP BY symbol
            )
            SELECT count(*) FROM wanted LEFT JOIN have USING (symbol)
            WHERE coalesce(have.n, 0) < %(need)s
            """,
            {
                "ids": list(portfolio_ids),
                "etfs": list(FACTOR_ETFS.values()),
                "first": first,
                "last": last,
                "need": need,
            },
        ).fetchone()
    return row is not None and int(row[0]) == 0


def _tags(batch: Batch, stage: str, start: str, end: str) -> dict[str, str]:
    loads = ",".join(str(i) for i in batch.loads)
    return {**range_tags(start, end), STAGE_TAG: stage, LOADS_TAG: loads}


def history_request(batch: Batch) -> RunRequest:
    """Market data (securities, prices, returns, short interest) over the history sessions."""
    return RunRequest(
        run_key=batch.history_key,
        asset_selection=[AssetKey(name) for name in MARKET_ASSETS],
        tags=_tags(batch, "history", *batch.history),
    )


def window_request(batch: Batch) -> RunRequest:
    """Every asset downstream of positions over the window, one run."""
    return RunRequest(
        run_key=batch.key,
        asset_selection=list(window_assets()),
        tags=_tags(batch, "window", *batch.window),
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
    state = SensorState.from_cursor(context.cursor)
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
    waiting = list(state.pending)
    state.pending = []
    for batch in waiting:
        request, done = _follow_up(context, batch, notes)
        if request is not None:
            requests.append(request)
        if not done:
            state.pending.append(batch)

    new = intake.loads_after(url, state.last_load_id)
    if new:
        first_tick = state.last_load_id is None
        state.last_load_id = max(load.id for load in new)
        if first_tick:  # only the loads today's positions come from, not the whole history
            new = [load for load in new if load.current]
        events = [_materialization(load) for load in new]
        current = [load for load in new if load.current]
        if current:
            batch = plan_batch(current)
            portfolios = sorted({load.portfolio_id for load in current})
            if history_complete(url, portfolios, batch.history):
                requests.append(window_request(batch))
                context.log.info(f"{batch.key}: window run {batch.window[0]}..{batch.window[1]}")
            else:
                requests.append(history_request(batch))
                state.pending.append(batch)
                context.log.info(
                    f"{batch.key}: history run {batch.history[0]}..{batch.history[1]} first "
                    "(new tickers); the window run follows once it has finished"
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
        cursor=state.to_cursor(),
        asset_events=events,
        skip_reason=skip,
    )


def _follow_up(
    context: SensorEvaluationContext, batch: Batch, notes: list[str]
) -> tuple[RunRequest | None, bool]:
    """(the request to make, whether the batch is done) for a batch waiting for its history
    run: the window run once that run has finished."""
    runs = context.instance.get_runs(filters=RunsFilter(tags={RUN_KEY_TAG: batch.history_key}))
    if not runs:  # never launched (or deleted): ask again, the run key keeps it to one run
        return history_request(batch), False
    run = runs[0]
    if run.status not in TERMINAL:
        notes.append(f"{batch.key}: waiting for history run {run.run_id[:8]} ({run.status.value})")
        return None, False
    if run.status is not DagsterRunStatus.SUCCESS:
        context.log.warning(
            f"{batch.key}: history run {run.run_id[:8]} {run.status.value}; requesting the "
            "window run anyway (its first days may lack 60-session history)"
        )
    return window_request(batch), True


@sensor(
    name=SENSOR_NAME,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    target=DOWNSTREAM_OF_POSITIONS,
    description=(
        "Loads portfolio CSVs (`<username>__<portfolio name>.csv`) dropped in SIGMASIGHT_INBOX "
        "(default data/inbox/), moves them to processed/ or rejected/ (with an .errors.json "
        "report), and backfills the last 90 trading days of every asset downstream of positions "
        "in one run."
    ),
)
def portfolio_inbox_sensor(
    context: SensorEvaluationContext, database: PostgresResource
) -> SensorResult:
    """Inbox intake and the 90-day backfill of the portfolios it loads."""
    return evaluate(context, database.url())
