"""Benchmark: portfolio CSV intake through the inbox sensor, and the backfill it requests.

Run with ``uv run python -m sigmasight_pipeline.benchmarks.intake``. Everything happens on a
throwaway database and a throwaway Dagster instance (dagster.yaml, dagster-postgres), both
removed at the end:

- drop -> loaded: a settled file in the inbox to its positions committed, one real sensor
  evaluation (`build_sensor_context`) each: 50 rows and 100,000 rows, new and re-uploaded. A
  re-upload is a new version of the holdings: every row's quantity changed, so each position
  gets an `increase` or `decrease` event (a short moved toward zero) priced at the effective
  session's close (from the market data provider, the synthetic one here, for symbols with
  no stored close). The provider's own time for those closes is measured beside it.
- drop -> 90-day backfill finished, 50 positions of tickers new to the database: the sensor's
  tick (load, scoped market run requested), then that run and the runs that follow it
  (`runs.execute_request`: the symbol and portfolio assets over the window) executed
  in-process; the timing stops when the last run has finished.

Not included: the wait for the next tick (sensor interval 10 s), the settle time, and the
daemon's run launch (BENCHMARKS.md `## daemon` measures the whole path through the daemon).
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from dagster import DagsterInstance, RunRequest, SensorResult, build_sensor_context

from sigmasight_pipeline import intake, runs, sensors
from sigmasight_pipeline.holdings.prices import CLOSE_PRICE
from sigmasight_pipeline.portfolios import create_user
from sigmasight_pipeline.resources.database import (
    PROJECT_ROOT,
    PostgresResource,
    connect,
    create_database,
    database_url,
    drop_database,
    migrate,
    transaction,
)
from sigmasight_pipeline.resources.market_data import MarketDataResource

USER = "bench_user"
SMALL, BIG = 50, 100_000
SMALL_REPEATS, BIG_REPEATS = 5, 2
HEADER = "ticker,quantity,entry_price,entry_date,tags"
STOCKS = (
    "AAPL", "MSFT", "NVDA", "GOOGL", "AMZN", "META", "TSLA", "JPM", "V", "MA", "UNH", "HD", "PG",
    "JNJ", "XOM", "CVX", "KO", "PEP", "COST", "WMT", "MRK", "ABBV", "LLY", "AVGO", "ORCL", "CSCO",
    "ADBE", "CRM", "NFLX", "INTC", "AMD", "QCOM", "TXN", "IBM", "BA", "CAT", "GE", "HON", "DIS",
    "NKE",
)  # fmt: skip
ENV_KEYS = ("DATABASE_URL", "DAGSTER_HOME", "SIGMASIGHT_DAGSTER_PG_URL", "SIGMASIGHT_INBOX")


def small_portfolio(version: int = 0, prefix: str = "") -> str:
    """40 stocks (every fourth short) and 10 options on them; `version` changes quantities."""
    rows = [HEADER]
    for i, stock in enumerate(STOCKS):
        quantity = (100 + 10 * i + version) * (-1 if i % 4 == 3 else 1)
        rows.append(f'{prefix}{stock},{quantity},{50 + i}.25,2026-01-05,"core,bench"')
    for i, stock in enumerate(STOCKS[:10]):
        symbol = f"{prefix}{stock}281215{'CP'[i % 2]}{(60 + i * 5) * 1000:08d}"
        rows.append(f"{symbol},{(i % 3 + 1) * (-1 if i % 2 else 1)},3.{i}0,2026-06-01,options")
    return "\n".join(rows) + "\n"


def big_portfolio(rows: int = BIG, version: int = 0) -> str:
    """`rows` distinct positions: stocks Q00000..., every tenth an option, tags cycling;
    `version` changes every quantity.

    The options are AAPL puts expiring 2028-12-15, struck from $50.10 up in steps of 10 cents
    (AAPL trades near $46 in the synthetic market): every one has a positive close, so a
    re-upload can price its events. Puts struck near zero are worth nothing; the market has
    no close for them, and a load that needs one is refused."""
    tags = ['"tech,core"', "hedge", "", '"value,dividend,core"', "momentum"]
    lines = [HEADER]
    for i in range(rows):
        tag = tags[i % 5]
        if i % 10 == 9:
            symbol = f"AAPL281215P{50_000 + (i + 1) * 10:08d}"
            lines.append(f"{symbol},{i % 7 + 1 + version},{1 + i % 50}.25,2026-06-01,{tag}")
        else:
            quantity = (i % 900) - 450 or 1
            lines.append(f"Q{i:05d},{quantity + version},{10 + i % 300}.5,2026-01-05,{tag}")
    return "\n".join(lines) + "\n"


@contextmanager
def _bench_environment() -> Iterator[tuple[str, DagsterInstance, Path]]:
    """A migrated throwaway database with USER, a Dagster instance on it, an inbox."""
    server = database_url()
    name = f"sigmasight_bench_intake_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    saved = {key: os.environ.get(key) for key in ENV_KEYS}
    instance = None
    with tempfile.TemporaryDirectory(prefix="sigmasight_bench_intake_") as tmp:
        try:
            migrate(url)
            with transaction(url) as conn:
                create_user(conn, USER, "bench")
            home = Path(tmp) / "dagster"
            home.mkdir()
            (home / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
            inbox = Path(tmp) / "data" / "inbox"
            inbox.mkdir(parents=True)
            os.environ.update(
                DATABASE_URL=url,
                DAGSTER_HOME=str(home),
                SIGMASIGHT_DAGSTER_PG_URL="postgresql+psycopg2://" + url.split("://", 1)[1],
                SIGMASIGHT_INBOX=str(inbox),
            )
            instance = DagsterInstance.from_config(str(home))
            yield url, instance, inbox
        finally:
            if instance is not None:
                instance.dispose()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            drop_database(server, name)


class _Sensor:
    def __init__(self, url: str, instance: DagsterInstance, inbox: Path) -> None:
        self.url, self.instance, self.inbox = url, instance, inbox
        self.cursor: str | None = None

    def drop(self, name: str, text: str) -> None:
        path = self.inbox / name
        path.write_text(text)
        settled = time.time() - intake.SETTLE_SECONDS - 0.1
        os.utime(path, (settled, settled))

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

    def execute(self, request: RunRequest) -> list[runs.RunOutcome]:
        """The request's run and the runs that follow it (as the daemon would start them)."""
        outcomes = runs.execute_request(self.instance, request)
        if not all(o.success for o in outcomes):
            failed = [c for o in outcomes for c in (*o.failed_checks, *o.problems)]
            raise RuntimeError(f"run {request.run_key} or a following run failed ({failed})")
        return outcomes

    def positions(self, portfolio: str) -> tuple[int, float]:
        """The portfolio's open positions: how many, and their total quantity."""
        with connect(self.url) as conn:
            count, total = conn.execute(
                "SELECT count(*), coalesce(sum(s.quantity), 0) FROM sigmasight.positions s "
                "JOIN sigmasight.portfolios p ON p.id = s.portfolio_id WHERE p.name = %s",
                (portfolio,),
            ).fetchone()
            return int(count), float(total)


def _drop_to_loaded(
    sensor: _Sensor, portfolio: str, make: Callable[[int], str], rows: int, repeats: int
) -> list[float]:
    """Seconds from a settled drop to its positions loaded, one tick each; each repeat drops
    a changed file (so it replaces the previous positions)."""
    seconds = []
    for version in range(repeats):
        text = make(version)
        sensor.drop(f"{USER}__{portfolio}.csv", text)
        began = time.perf_counter()
        sensor.tick()
        seconds.append(time.perf_counter() - began)
        # The file's own positions, not those of an earlier version a refused load left.
        expected, found = (rows, _total_quantity(text)), sensor.positions(portfolio)
        if found != expected:
            raise RuntimeError(
                f"{portfolio}, version {version}: expected {expected} (positions, total "
                f"quantity) after the tick, not {found}: was the file rejected? (see "
                f"{sensor.inbox / 'rejected'})"
            )
    return seconds


class _Pricing(NamedTuple):
    """The events a load priced at a session's close, and the provider asked for them."""

    events: dict[str, int]  # by kind
    closes: int  # distinct (symbol, session)
    provider: str
    provider_seconds: float  # the provider alone, asked for the same closes again


def _closes_asked(sensor: _Sensor, portfolio: str) -> _Pricing:
    """The portfolio's events priced at a session's close (`holdings.prices.CLOSE_PRICE`),
    and the seconds the market data provider takes alone to give those closes again."""
    with connect(sensor.url) as conn:
        rows = conn.execute(
            "SELECT e.kind, s.symbol, e.event_date FROM sigmasight.position_events e "
            "JOIN sigmasight.positions s ON s.id = e.position_id "
            "JOIN sigmasight.portfolios p ON p.id = e.portfolio_id "
            "WHERE p.name = %s AND starts_with(e.price_source, %s)",
            (portfolio, CLOSE_PRICE),
        ).fetchall()
    events = pd.DataFrame(rows, columns=["kind", "symbol", "trade_date"])
    wanted = events[["symbol", "trade_date"]].drop_duplicates()
    provider = MarketDataResource().get_provider()
    began = time.perf_counter()
    provider.fetch_bars(wanted)
    seconds = time.perf_counter() - began
    by_kind = events["kind"].value_counts().sort_index()
    return _Pricing({k: int(n) for k, n in by_kind.items()}, len(wanted), provider.name, seconds)


def _total_quantity(text: str) -> float:
    return float(pd.read_csv(io.StringIO(text), usecols=["quantity"])["quantity"].sum())


def _drop_to_backfilled(sensor: _Sensor) -> tuple[float, list[str]]:
    """Seconds from a 50-position drop to its 90-day window analytics finished; the steps."""
    steps = []
    began = time.perf_counter()
    sensor.drop(f"{USER}__Backfilled.csv", small_portfolio(prefix="B"))
    step = time.perf_counter()
    (request,) = sensor.tick().run_requests
    steps.append(f"tick {time.perf_counter() - step:.2f} s")
    for outcome, stage in zip(sensor.execute(request), ("market", "portfolio"), strict=True):
        steps.append(f"{stage} run {outcome.seconds:.1f} s ({outcome.partitions} sessions)")
    return time.perf_counter() - began, steps


def run() -> list[dict]:
    """Drop -> loaded (50, 100,000 rows) and drop -> 90-day backfill (50 positions)."""
    with _bench_environment() as (url, instance, inbox):
        sensor = _Sensor(url, instance, inbox)
        backfill_s, steps = _drop_to_backfilled(sensor)
        small = _drop_to_loaded(sensor, "Small", small_portfolio, SMALL, SMALL_REPEATS)
        big = _drop_to_loaded(sensor, "Big", lambda v: big_portfolio(BIG, v), BIG, BIG_REPEATS)
        pricing = _closes_asked(sensor, "Big")
    per_tick = "one sensor tick (validate, load in one transaction, move, plan runs)"
    return [
        {
            "benchmark": f"drop -> loaded, {SMALL} rows",
            "seconds": statistics.median(small[1:]),
            "notes": (
                f"{per_tick}; median of {SMALL_REPEATS - 1} replacing drops "
                f"({', '.join(f'{s:.3f}' for s in small[1:])} s), first (new portfolio) "
                f"{small[0]:.3f} s"
            ),
        },
        {
            "benchmark": f"drop -> loaded, {BIG:,} rows (new portfolio)",
            "seconds": big[0],
            "notes": f"{per_tick}; 10% options, 1.4 tags per position",
        },
        {
            "benchmark": f"drop -> loaded, {BIG:,} rows (re-upload, every quantity changed)",
            "seconds": big[1],
            "notes": (
                f"{per_tick}; diffed against the {BIG:,} open positions: "
                + ", ".join(f"{n:,} {kind}" for kind, n in pricing.events.items())
                + f" events, priced at the effective session's close ({pricing.closes:,} "
                f"closes, stored or asked of the provider); the {pricing.provider} provider "
                f"alone took {pricing.provider_seconds:.1f} s to give those closes, asked "
                "again after the load"
            ),
        },
        {
            "benchmark": f"drop -> 90-day backfill finished, {SMALL} positions (new tickers)",
            "seconds": backfill_s,
            "notes": (
                "tick, then the scoped market run (the window and the 61 sessions before it) "
                "and the symbol and portfolio run over the 90-session window, executed "
                f"in-process: {'; '.join(steps)}. Excludes the wait for a tick (10 s interval) "
                "and the daemon's run launch"
            ),
        },
    ]


def main() -> None:
    for row in run():
        print(f"{row['benchmark']}: {row['seconds']:.3f} s\n    {row['notes']}")


if __name__ == "__main__":
    main()
