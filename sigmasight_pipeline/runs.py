"""Launching runs on the Dagster instance: the windowed backfill and per-run progress."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import pandas as pd
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    RunRequest,
)
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
from psycopg import sql

from sigmasight_pipeline import calendar
from sigmasight_pipeline.resources.database import connect, reachable_database_url
from sigmasight_pipeline.scope import Scope
from sigmasight_pipeline.settings import BACKFILL_DAYS

# Sessions of history the windows read before the first backfilled day: 60-session betas and
# volatilities need 60 returns, which need 61 closes.
LOOKBACK_SESSIONS = 61
# Symbol-level assets: run over the window and its lookback before the portfolio assets.
MARKET_ASSETS = (
    "securities", "prices", "returns", "short_interest", "factor_betas",
)  # fmt: skip
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BackfillPlan:
    """The sessions a backfill of `days` sessions ending at `end` covers."""

    window: pd.DatetimeIndex
    history: pd.DatetimeIndex

    @classmethod
    def ending(cls, end: pd.Timestamp, days: int = BACKFILL_DAYS) -> BackfillPlan:
        window = calendar.last_sessions(end, days)
        return cls(window, calendar.previous_sessions(window[0], LOOKBACK_SESSIONS))

    @staticmethod
    def key(day: pd.Timestamp) -> str:
        return day.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    seconds: float
    partitions: int
    failed_checks: tuple[str, ...] = ()  # blocking or error-severity checks that failed
    warned_checks: tuple[str, ...] = ()  # warning checks that flagged rows
    check_notes: tuple[str, ...] = ()  # one line per failed or warning check: what and where
    problems: tuple[str, ...] = ()  # one line per cause: failed steps, missing market data


def range_tags(start: str, end: str) -> dict[str, str]:
    """The tags Dagster uses for a single run over a partition range."""
    return {RANGE_START_TAG: start, RANGE_END_TAG: end}


def _watch_steps(instance: DagsterInstance, run_id: str, progress: Progress, stop: threading.Event):
    kinds = {
        DagsterEventType.STEP_START,
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.STEP_FAILURE,
    }
    began, shown = time.perf_counter(), 0
    while True:
        stopping = stop.wait(0.5)
        entries = instance.all_logs(run_id, of_type=kinds)
        for entry in entries[shown:]:
            event = entry.dagster_event
            if event is None:
                continue
            verb = {
                DagsterEventType.STEP_START: "started",
                DagsterEventType.STEP_SUCCESS: "done",
                DagsterEventType.STEP_FAILURE: "FAILED",
            }[event.event_type]
            progress(f"  [{time.perf_counter() - began:5.1f}s] {event.step_key}: {verb}")
        shown = len(entries)
        if stopping:
            return


def materialize(
    instance: DagsterInstance,
    assets: Sequence[str],
    start: str | None = None,
    end: str | None = None,
    progress: Progress | None = None,
    tags: dict[str, str] | None = None,
) -> RunOutcome:
    """One in-process run on the instance materializing `assets` over [start, end] (the run's
    `tags` may scope it to some portfolios, see `scope.py`)."""
    from sigmasight_pipeline.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    run_id = str(uuid.uuid4())
    run_tags = dict(tags or {})
    if start and end:
        run_tags.update(range_tags(start, end))
    stop = threading.Event()
    watcher = None
    if progress:
        watcher = threading.Thread(
            target=_watch_steps, args=(instance, run_id, progress, stop), daemon=True
        )
        watcher.start()
    began = time.perf_counter()
    try:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[AssetKey(a) for a in assets],
            tags=run_tags,
            run_id=run_id,
            raise_on_error=False,
            # Failures are summarized in one line each (`problems`), not as stack traces.
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
    finally:
        stop.set()
        if watcher:
            watcher.join()
    partitions = len(calendar.sessions(start, end)) if start and end else 0
    evaluations = [e for e in result.get_asset_check_evaluations() if not e.passed]
    failed = tuple(
        e.asset_check_key.to_user_string()
        for e in evaluations
        if e.severity is not AssetCheckSeverity.WARN
    )
    warned = tuple(
        e.asset_check_key.to_user_string()
        for e in evaluations
        if e.severity is AssetCheckSeverity.WARN
    )
    seconds = time.perf_counter() - began
    notes = tuple(check_note(e) for e in evaluations)
    problems = tuple(run_problems(instance, run_id))
    return RunOutcome(run_id, result.success, seconds, partitions, failed, warned, notes, problems)


def run_problems(instance: DagsterInstance, run_id: str) -> list[str]:
    """One line per cause of trouble in a run: each failed step's error (its first line) and
    what the market data run could not price (the prices asset's `outcome`)."""
    lines = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        error = event.step_failure_data.error if event and event.step_failure_data else None
        cause = error
        while cause is not None and cause.cause is not None and not _user_message(cause):
            cause = cause.cause
        message = _user_message(cause) if cause is not None else ""
        lines.append(f"step {entry.step_key} failed: {message or 'see the run in the UI'}")
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is None or materialization.asset_key != AssetKey("prices"):
            continue
        outcome = materialization.metadata.get("outcome")
        text = str(getattr(outcome, "value", outcome) or "")
        lines += [line.removeprefix("- ") for line in text.splitlines() if line != "complete"]
        break  # every partition of a range run carries the same outcome
    return lines


def _user_message(error) -> str:
    """The first line of an error's message, without Dagster's wrapper text."""
    text = (error.message or "").strip().splitlines()
    return text[0].strip() if text else ""


def check_note(evaluation) -> str:
    """One line for a failed check: its key, how many rows failed and the first keys."""
    meta = {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}
    failing = meta.get("rows_failing")
    checked = meta.get("rows_checked")
    keys = str(meta.get("failing_keys") or "").replace("\n", " ").replace("- ", "")
    counts = f"{failing:,} of {checked:,} rows" if failing is not None and checked else ""
    by = meta.get("by_check") or meta.get("reasons") or ""
    by = str(by).replace("\n", " ").replace("- ", "")
    parts = [p for p in (counts, by, f"e.g. {keys[:200]}" if keys and keys != "none" else "") if p]
    return f"{evaluation.asset_check_key.to_user_string()}: " + "; ".join(parts)


def execute_request(instance: DagsterInstance, request: RunRequest) -> RunOutcome:
    """Run a sensor's range RunRequest in this process, tagged as the daemon tags it."""
    from sigmasight_pipeline.sensors import SENSOR_NAME

    tags = {**request.tags, RUN_KEY_TAG: request.run_key or "", SENSOR_NAME_TAG: SENSOR_NAME}
    return materialize(
        instance,
        [key.to_user_string() for key in request.asset_selection or []],
        request.tags[RANGE_START_TAG],
        request.tags[RANGE_END_TAG],
        tags=tags,
    )


def partitioned_assets() -> list[str]:
    from sigmasight_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    return sorted(
        key.to_user_string()
        for key in graph.materializable_asset_keys
        if graph.get(key).partitions_def is not None
    )


@dataclass(frozen=True)
class PlannedRun:
    """One run of a backfill: the assets it materializes, its partition range and its tags
    (the range, and for a shard its scope)."""

    assets: tuple[str, ...]
    start: str
    end: str
    tags: dict[str, str]


def plan_runs(
    plan: BackfillPlan, shards: int = 1, with_history: bool = True
) -> tuple[PlannedRun, list[PlannedRun]]:
    """The market run (symbol-level assets over the window, and its lookback history when
    `with_history`) and one run of the portfolio assets over the window per shard (a shard is
    the portfolios whose id % shards == i; one shard is the whole book, unscoped)."""
    if shards < 1:
        raise ValueError(f"shards={shards}: expected at least 1")
    first = plan.key(plan.history[0] if with_history else plan.window[0])
    start, last = plan.key(plan.window[0]), plan.key(plan.window[-1])
    market = PlannedRun(tuple(MARKET_ASSETS), first, last, range_tags(first, last))
    assets = tuple(a for a in partitioned_assets() if a not in MARKET_ASSETS)
    scopes = [Scope()] if shards == 1 else [Scope(shard=(i, shards)) for i in range(shards)]
    portfolio_runs = [
        PlannedRun(assets, start, last, {**range_tags(start, last), **scope.tags()})
        for scope in scopes
    ]
    return market, portfolio_runs


def history_is_complete(url: str, plan: BackfillPlan) -> bool:
    """True when every stock and ETF of the universe has a return on every session of the
    plan's lookback history but the first (whose return needs a close before it): the market
    run can then start at the window and not recompute the history."""
    days = plan.history
    query = sql.SQL(
        """
        SELECT count(*) FROM sigmasight.securities s
        LEFT JOIN (
            SELECT symbol, count(*) AS n FROM sigmasight.returns
            WHERE trade_date BETWEEN {first} AND {last} GROUP BY symbol
        ) r USING (symbol)
        WHERE s.security_type <> 'OPTION' AND coalesce(r.n, 0) < {need}
        """
    ).format(
        first=sql.Literal(days[1].date()),
        last=sql.Literal(days[-1].date()),
        need=sql.Literal(len(days) - 1),
    )
    with connect(url) as conn:
        incomplete = conn.execute(query).fetchone()[0]
        stored = conn.execute("SELECT count(*) FROM sigmasight.securities").fetchone()[0]
    return stored > 0 and incomplete == 0


def _execute_planned(run: PlannedRun) -> RunOutcome:
    """A planned run in this process, on the instance of DAGSTER_HOME (a shard's worker)."""
    instance = DagsterInstance.get()
    try:
        return materialize(instance, list(run.assets), run.start, run.end, tags=run.tags)
    finally:
        instance.dispose()


def backfill(
    instance: DagsterInstance,
    plan: BackfillPlan,
    progress: Progress | None = None,
    shards: int = 1,
    url: str | None = None,
) -> list[RunOutcome]:
    """The market run: symbol-level assets (market data, returns, betas) over the window and
    its lookback history, so every day of the window has full 60-session betas and
    volatilities (the history is skipped when it is already complete); then the portfolio
    assets over the window: one run, or one run per shard, the shards in parallel processes."""
    say = progress or (lambda _: None)
    with_history = not history_is_complete(url or reachable_database_url(), plan)
    market, portfolio_runs = plan_runs(plan, shards, with_history)
    sessions = len(calendar.sessions(market.start, market.end))
    say(f"market data {market.start}..{market.end} ({sessions} sessions): one run")
    outcomes = [materialize(instance, list(market.assets), market.start, market.end, progress)]
    if not outcomes[-1].success:
        return outcomes
    first = portfolio_runs[0]
    what = "one run" if shards == 1 else f"{shards} shard runs in parallel"
    say(f"portfolio analytics {first.start}..{first.end} ({len(plan.window)} sessions): {what}")
    if shards == 1:
        run = portfolio_runs[0]
        outcomes.append(
            materialize(instance, list(run.assets), run.start, run.end, progress, tags=run.tags)
        )
        return outcomes
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=shards, mp_context=context) as pool:
        outcomes += list(pool.map(_execute_planned, portfolio_runs))
    return outcomes


def materialized_days(instance: DagsterInstance, asset: str = "portfolio_snapshots") -> list[str]:
    """Partition keys of `asset` that have been materialized on this instance."""
    records = instance.get_materialized_partitions(AssetKey(asset))
    return sorted(records)
