"""Launching runs on the Dagster instance: the windowed backfill and per-run progress."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunRequest,
    RunsFilter,
)
from dagster._core.launcher import WorkerStatus
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
from psycopg import sql

from sigmasight_pipeline import calendar
from sigmasight_pipeline.executor import execute_in_process
from sigmasight_pipeline.resources.database import connect, reachable_database_url
from sigmasight_pipeline.resources.instance import run_process_status
from sigmasight_pipeline.resources.market_data import MARKET_ETFS
from sigmasight_pipeline.scope import Scope
from sigmasight_pipeline.settings import BACKFILL_DAYS

# Sessions of history the windows read before the first backfilled day: a 252-session
# volatility percentile of 21-day volatilities needs 272 returns, which need 273 closes (the
# 60-session betas need fewer).
LOOKBACK_SESSIONS = 273
# What the 60-session betas and volatilities of the window's first day need (the inbox sensor's
# runs, which must be quick, take this much history; the long volatility windows of new tickers
# fill in with the next backfill).
BETA_LOOKBACK_SESSIONS = 61
# A backfill runs in stages, each run over its sessions:
# 1. market data over the window and its lookback history (skipped when already complete);
MARKET_ASSETS = (
    "securities", "prices", "returns", "stress_scenarios", "stress_episodes",
)  # fmt: skip
# 2. the symbol-level analytics over the window (once for the whole book);
SYMBOL_ASSETS = (
    "short_interest", "factor_betas", "specific_risk", "symbol_volatility", "stress_moves",
)  # fmt: skip
# 3. the portfolio assets over the window: with stage 2 in one run, or one run per shard after
#    it. Each stage's runs are requested when the previous stage's run succeeds.
STAGE_TAG = "sigmasight/stage"  # market | symbols | portfolios | window (see window_run)
SHARDS_TAG = "sigmasight/shards"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
WINDOW_START_TAG = "sigmasight/window_start"
# The machine an in-process run (the CLI's) runs on: only there can its process be looked up.
MACHINE_TAG = "sigmasight/machine"

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BackfillPlan:
    """The sessions a backfill of `days` sessions ending at `end` covers."""

    window: pd.DatetimeIndex
    history: pd.DatetimeIndex

    @classmethod
    def ending(
        cls, end: pd.Timestamp, days: int = BACKFILL_DAYS, lookback: int = LOOKBACK_SESSIONS
    ) -> BackfillPlan:
        window = calendar.last_sessions(end, days)
        return cls(window, calendar.previous_sessions(window[0], lookback))

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
    """Say each step's start and end while the run goes, reading only the events after the
    last ones seen (the run's whole log, re-read every half second, cost the run's own thread
    time)."""
    kinds = {
        DagsterEventType.STEP_START,
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.STEP_FAILURE,
    }
    verbs = {
        DagsterEventType.STEP_START: "started",
        DagsterEventType.STEP_SUCCESS: "done",
        DagsterEventType.STEP_FAILURE: "FAILED",
    }
    began, cursor = time.perf_counter(), None
    while True:
        stopping = stop.wait(0.5)
        page = instance.get_records_for_run(run_id, cursor=cursor, of_type=kinds)
        for record in page.records:
            event = record.event_log_entry.dagster_event
            if event is not None:
                progress(
                    f"  [{time.perf_counter() - began:5.1f}s] {event.step_key}: "
                    f"{verbs[event.event_type]}"
                )
        cursor = page.cursor
        if stopping and not page.has_more:
            return


@contextmanager
def _collector_skips_what_is_alive() -> Iterator[None]:
    """While the block runs, the cyclic garbage collector skips the objects alive when it
    began (Dagster, pandas, the definitions: ~280,000 objects, alive until the process ends).
    A daily run's full collections at 1,000 portfolios took 1.55 s, 0.90 s skipping them.
    Objects made in the block are collected as usual; afterwards everything is as before."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def this_machine() -> str:
    """Where a pid means this process: the host name and, on Linux, the pid namespace
    (containers can share the host's name, never its pids)."""
    try:
        return f"{socket.gethostname()}/pidns:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return socket.gethostname()


def fail_dead_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed the in-process runs of this machine whose process is gone (killed, or its
    machine restarted) and give back the pool slots they held; one line per run.

    The daemon's run monitoring does this for every run when it runs (dagster.yaml), but the
    CLI works without the daemon: a `sigmasight backfill` killed inside a pooled step
    (`market_data_api`, `symbol_tables`) kept that slot, and every later run waited for it."""
    runs = instance.get_runs(
        filters=RunsFilter(
            statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED],
            tags={MACHINE_TAG: this_machine()},
        )
    )
    lines = []
    for run in runs:
        status, why = run_process_status(instance, run)
        if status is not WorkerStatus.FAILED:
            continue
        instance.report_run_failed(run, f"{why}: marked failed by a later run on this machine")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        lines.append(f"run {run.run_id} had died ({why}): marked failed, its pool slots freed")
    return lines


def materialize(
    instance: DagsterInstance,
    assets: Sequence[str],
    start: str | None = None,
    end: str | None = None,
    progress: Progress | None = None,
    tags: dict[str, str] | None = None,
    steps_at_once: int | None = None,
) -> RunOutcome:
    """One in-process run on the instance materializing `assets` over [start, end] (the run's
    `tags` may scope it to some portfolios, see `scope.py`), up to `steps_at_once` steps at a
    time (default: the executor's, `executor.MAX_CONCURRENT_STEPS`)."""
    from sigmasight_pipeline.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    run_id = str(uuid.uuid4())
    run_tags = {**(tags or {}), MACHINE_TAG: this_machine()}
    if start and end:
        run_tags.update(range_tags(start, end))
    for line in fail_dead_runs(instance):
        (progress or log.warning)(line)
    stop = threading.Event()
    watcher = None
    if progress:
        watcher = threading.Thread(
            target=_watch_steps, args=(instance, run_id, progress, stop), daemon=True
        )
        watcher.start()
    executor_config = (
        {"execution": {"config": {"max_concurrent": steps_at_once}}} if steps_at_once else {}
    )
    began = time.perf_counter()
    try:
        with _collector_skips_what_is_alive():
            result = execute_in_process(
                job,
                instance,
                asset_selection=[AssetKey(a) for a in assets],
                tags=run_tags,
                run_id=run_id,
                # Failures are summarized in one line each (`problems`), not as stack traces.
                run_config={
                    "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                    **executor_config,
                },
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
    if not lines:  # the run itself failed (its executor, a resource): the error's first line
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE):
            data = entry.dagster_event.event_specific_data if entry.dagster_event else None
            error = getattr(data, "error", None)
            message = error.to_string().strip().splitlines()[0] if error else entry.message
            lines.append(f"run failed: {message}")
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


def execute_request(instance: DagsterInstance, request: RunRequest) -> list[RunOutcome]:
    """Run a sensor's range RunRequest in this process, tagged as the daemon tags it, then the
    runs `backfill_next_stage` would request after it (as the daemon would)."""
    from sigmasight_pipeline.sensors import SENSOR_NAME

    tags = {**request.tags, RUN_KEY_TAG: request.run_key or "", SENSOR_NAME_TAG: SENSOR_NAME}
    outcomes = [
        materialize(
            instance,
            [key.to_user_string() for key in request.asset_selection or []],
            request.tags[RANGE_START_TAG],
            request.tags[RANGE_END_TAG],
            tags=tags,
        )
    ]
    stage = next_runs(tags) if outcomes[-1].success else []
    while stage:
        results = [
            materialize(instance, list(r.assets), r.start, r.end, tags=r.tags) for r in stage
        ]
        outcomes += results
        stage = next_runs(stage[0].tags) if all(r.success for r in results) else []
    return outcomes


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
    """One run of a backfill: its stage, the assets it materializes, its partition range and
    its tags (the range, the stage, the book's scope or shard)."""

    stage: str
    assets: tuple[str, ...]
    start: str
    end: str
    tags: dict[str, str]


def portfolio_assets() -> tuple[str, ...]:
    return tuple(a for a in partitioned_assets() if a not in (*MARKET_ASSETS, *SYMBOL_ASSETS))


def market_run(
    plan: BackfillPlan, shards: int = 1, scope: Scope | None = None, with_history: bool = True
) -> PlannedRun:
    """The first run of a backfill; its tags carry what follows (`next_runs`)."""
    if shards < 1:
        raise ValueError(f"shards={shards}: expected at least 1")
    first = plan.key(plan.history[0] if with_history else plan.window[0])
    last = plan.key(plan.window[-1])
    tags = {
        **range_tags(first, last),
        STAGE_TAG: "market",
        SHARDS_TAG: str(shards),
        WINDOW_START_TAG: plan.key(plan.window[0]),
        **(scope or Scope()).tags(),
    }
    return PlannedRun("market", MARKET_ASSETS, first, last, tags)


def window_run(plan: BackfillPlan) -> PlannedRun:
    """Every asset over the window in one run, as the daily schedule's run does: a backfill of
    one shard whose lookback history is already complete (a daily run) pays for one run's
    start and its steps' inputs once, not for a market run and then a portfolio run."""
    first, last = plan.key(plan.window[0]), plan.key(plan.window[-1])
    tags = {
        **range_tags(first, last),
        STAGE_TAG: "window",
        SHARDS_TAG: "1",
        WINDOW_START_TAG: first,
    }
    assets = (*MARKET_ASSETS, *SYMBOL_ASSETS, *portfolio_assets())
    return PlannedRun("window", assets, first, last, tags)


def next_runs(tags: Mapping[str, str]) -> list[PlannedRun]:
    """The runs that follow a backfill run that succeeded, from its tags: after the market
    run, the symbol analytics and the portfolio assets over the window in one run, or (with
    shards) the symbol analytics alone; after that, one portfolio run per shard."""
    stage = tags.get(STAGE_TAG)
    start, last = tags.get(WINDOW_START_TAG), tags.get(RANGE_END_TAG)
    if stage not in ("market", "symbols") or not start or not last:
        return []
    shards = int(tags.get(SHARDS_TAG, "1"))
    scope = Scope.from_tags(tags)
    base = {**range_tags(start, last), SHARDS_TAG: str(shards), WINDOW_START_TAG: start}
    if stage == "market" and (shards == 1 or not scope.is_everything):
        assets = (*SYMBOL_ASSETS, *portfolio_assets())
        return [PlannedRun("portfolios", assets, start, last, {**base, STAGE_TAG: "portfolios",
                                                                 **scope.tags()})]  # fmt: skip
    if stage == "market":
        return [PlannedRun("symbols", SYMBOL_ASSETS, start, last, {**base, STAGE_TAG: "symbols"})]
    return [
        PlannedRun(
            "portfolios",
            portfolio_assets(),
            start,
            last,
            {**base, STAGE_TAG: "portfolios", **Scope(shard=(i, shards)).tags()},
        )
        for i in range(shards)
    ]


def history_is_complete(url: str, plan: BackfillPlan, scope: Scope | None = None) -> bool:
    """True when every stock the scope's portfolios hold or underlie (all portfolios by
    default), and every factor ETF, has a return on every session of the plan's lookback
    history but the first (whose return needs a close before it): the market run can then
    start at the window and not recompute the history. Read from the positions, not from the
    securities table: a stock first held since the last run is not in that table until the
    run's `securities` step, and its history still has to be fetched. Counted per wanted
    symbol on the primary key: 75 ms at 1,000 portfolios, not 650 ms as one aggregate of the
    whole range (measured when returns still held the options' rows, sql/0020)."""
    days = plan.history
    scope = scope or Scope()
    query = sql.SQL(
        """
        WITH wanted (symbol) AS (
            SELECT underlying FROM sigmasight.positions WHERE {held}
            UNION SELECT unnest({etfs}::text[])
        )
        SELECT count(*) FILTER (WHERE r.n < {need}) FROM wanted
        CROSS JOIN LATERAL (
            SELECT count(*) AS n FROM sigmasight.returns
            WHERE returns.symbol = wanted.symbol AND trade_date BETWEEN {first} AND {last}
        ) r
        """
    ).format(
        held=scope.portfolio_filter(),
        etfs=sql.Literal(list(MARKET_ETFS)),
        first=sql.Literal(days[1].date()),
        last=sql.Literal(days[-1].date()),
        need=sql.Literal(len(days) - 1),
    )
    with connect(url) as conn:
        (incomplete,) = conn.execute(query).fetchone()
    return incomplete == 0  # the factor ETFs are always wanted: an empty database is incomplete


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
    """A backfill's runs, each stage after the previous one succeeded (see MARKET_ASSETS):
    market data over the window and its lookback history (skipped when the history is already
    complete), then the symbol analytics and the portfolio assets over the window: one run,
    or a symbol run then one run per shard, the shards in parallel processes. With one shard
    and the history complete, everything is one run (`window_run`)."""
    say = progress or (lambda _: None)
    with_history = not history_is_complete(url or reachable_database_url(), plan)
    if shards == 1 and not with_history:
        stage = [window_run(plan)]
    else:
        stage = [market_run(plan, shards, with_history=with_history)]
    outcomes: list[RunOutcome] = []
    while stage:
        first = stage[0]
        sessions = len(calendar.sessions(first.start, first.end))
        what = "one run" if len(stage) == 1 else f"{len(stage)} shard runs in parallel"
        say(f"{first.stage} {first.start}..{first.end} ({sessions} sessions): {what}")
        if len(stage) == 1:
            run = stage[0]
            results = [
                materialize(instance, list(run.assets), run.start, run.end, progress, tags=run.tags)
            ]
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=len(stage), mp_context=context) as pool:
                results = list(pool.map(_execute_planned, stage))
        outcomes += results
        if not all(r.success for r in results):
            return outcomes
        stage = next_runs(first.tags)
    return outcomes


def materialized_days(instance: DagsterInstance, asset: str = "portfolio_snapshots") -> list[str]:
    """Partition keys of `asset` that have been materialized on this instance."""
    records = instance.get_materialized_partitions(AssetKey(asset))
    return sorted(records)
