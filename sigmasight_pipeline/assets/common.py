"""What every asset module shares: partitions, backfill and retry policies, the run's scope,
and positions read in chunks of portfolios."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    Backoff,
    Jitter,
    RetryPolicy,
    TimeWindowPartitionMapping,
)
from dagster._core.storage.tags import PRIORITY_TAG
from psycopg import sql

from sigmasight_pipeline import calendar
from sigmasight_pipeline.analytics.instruments import OPTION_TYPES, is_option_symbol
from sigmasight_pipeline.resources.io_manager import TableReader
from sigmasight_pipeline.resources.market_data import MARKET_ETFS
from sigmasight_pipeline.resources.tables import query_frame, render
from sigmasight_pipeline.run_reads import shared_read
from sigmasight_pipeline.scope import Scope

TRADING_DAYS = calendar.trading_day_partitions()
SINGLE_RUN = BackfillPolicy.single_run()
PARTITIONED = {"partition_expr": "trade_date"}
# Transient failures (a dropped connection, a provider timeout past its own retries) retry the
# step; errors that would fail again (bad input, a bad key) raise Failure(allow_retries=False).
TRANSIENT_RETRY = RetryPolicy(
    max_retries=2, delay=5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)
# The longest portfolio steps (and the first of the factor exposures' chain of three): with two
# steps in flight, a ready step with this tag starts before the others, so the run does not end
# on one of them running alone.
START_EARLY = {PRIORITY_TAG: "1"}
# Assets that call the market data provider, and assets that replace symbol-level rows shared
# by every portfolio: one step of each pool at a time across all runs (dagster.yaml pools).
MARKET_DATA_API_POOL = "market_data_api"
SYMBOL_TABLES_POOL = "symbol_tables"
# Portfolio assets compute and write about this many position-days at a time: 1,250 positions
# (about 25 portfolios of 50 positions) over a 90-session window, the whole book up to
# MAX_POSITIONS_PER_CHUNK for a daily run. A run has two steps in flight (executor.py), so it
# holds two chunks at once. The window run on 200 portfolios: one step at a time with 2,500
# positions per chunk, 116 s and 1.41 GB peak RSS; two steps with 1,250, 98 s and 1.12 GB.
POSITION_DAYS_PER_CHUNK = 112_500
MIN_POSITIONS_PER_CHUNK = 1_250
# The bound that keeps a short run's memory flat however large the book: a chunk's reads grow
# with its positions (their rows, their options' prices over the volatility lookback) and its
# portfolios (their returns over up to 273 sessions). The daily run of 1,000 portfolios, one
# chunk of 50,000 positions, peaked at 931 MB RSS.
MAX_POSITIONS_PER_CHUNK = 50_000

positions_spec = AssetSpec(
    key=AssetKey("positions"),
    description=(
        "Portfolio positions (sigmasight.positions), written by CSV intake (`sigmasight ingest`, "
        "the inbox sensor, `sigmasight demo`), not computed here."
    ),
    group_name="portfolio",
    kinds={"postgres"},
)

POSITION_COLUMNS = (
    "id", "portfolio_id", "symbol", "quantity", "entry_price", "entry_date", "position_type",
    "underlying", "option_right", "strike", "expiry", "multiplier",
)  # fmt: skip


def run_scope(context: AssetExecutionContext) -> Scope:
    """The portfolios this run works on (see `sigmasight_pipeline.scope`)."""
    return Scope.from_tags(context.run.tags)


def shared_frame(
    reader: TableReader,
    columns: Sequence[str],
    where: sql.Composable,
    run_id: str | None,
) -> pd.DataFrame:
    """`reader.frame(columns, where)`, read once per run (`shared_read`): for reads that
    several steps make of the same chunk."""
    query = render(reader.query(columns, where))
    return shared_read(run_id, ("frame", reader.url, query), lambda: reader.frame(columns, where))


def load_positions(url: str, portfolios: sql.Composable, run_id: str | None = None) -> pd.DataFrame:
    """Positions of the portfolios `portfolios` selects (a predicate on portfolio_id);
    entry_date and expiry as datetime64. With `run_id`, read once per run (`shared_read`)."""
    query = sql.SQL("SELECT {} FROM sigmasight.positions WHERE {} ORDER BY id").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in POSITION_COLUMNS), portfolios
    )

    def read() -> pd.DataFrame:
        frame = query_frame(url, query)
        if frame.empty:
            frame = pd.DataFrame(columns=list(POSITION_COLUMNS))
        for column in ("entry_date", "expiry"):
            frame[column] = pd.to_datetime(frame[column], cache=False)
        return frame

    return shared_read(run_id, ("positions", url, render(query)), read)


EVENT_COLUMNS = ("id", "position_id", "event_date", "kind", "quantity_change", "price")


def load_events(url: str, portfolios: sql.Composable) -> pd.DataFrame:
    """The position events (the holdings' history) of the portfolios `portfolios` selects."""
    query = sql.SQL("SELECT {} FROM sigmasight.position_events WHERE {} ORDER BY id").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in EVENT_COLUMNS), portfolios
    )
    frame = query_frame(url, query)
    if frame.empty:
        frame = pd.DataFrame(columns=list(EVENT_COLUMNS))
    frame["event_date"] = pd.to_datetime(frame["event_date"], cache=False)
    return frame


def with_positions(
    frame: pd.DataFrame,
    positions: pd.DataFrame,
    columns: Sequence[str] = ("symbol", "position_type", "underlying"),
) -> pd.DataFrame:
    """Rows keyed by position_id with the positions' attributes (the position-day tables do
    not repeat them)."""
    attributes = positions[["id", *columns]].rename(columns={"id": "position_id"})
    return frame.merge(attributes, on="position_id", how="left")


def positions_per_chunk(sessions: int) -> int:
    """How many positions a chunk of a run over `sessions` sessions holds (see
    POSITION_DAYS_PER_CHUNK)."""
    by_rows = POSITION_DAYS_PER_CHUNK // max(1, sessions)
    return min(MAX_POSITIONS_PER_CHUNK, max(MIN_POSITIONS_PER_CHUNK, by_rows))


def portfolio_chunks(url: str, scope: Scope, sessions: int) -> Iterator[list[int]]:
    """The scope's portfolio ids in chunks of about `positions_per_chunk(sessions)` positions
    (a portfolio is never split) for a run over `sessions` sessions, so memory stays bounded
    whatever the size of the book and a short run is not cut into many small chunks."""
    limit = positions_per_chunk(sessions)
    counts = query_frame(
        url,
        sql.SQL(
            "SELECT portfolio_id, count(*) AS n FROM sigmasight.positions WHERE {} "
            "GROUP BY portfolio_id ORDER BY portfolio_id"
        ).format(scope.portfolio_filter()),
    )
    chunk: list[int] = []
    size = 0
    for portfolio_id, n in zip(counts["portfolio_id"], counts["n"], strict=True):
        if chunk and size + n > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(int(portfolio_id))
        size += int(n)
    if chunk:
        yield chunk


def portfolios_in(ids: Sequence[int]) -> sql.Composable:
    return Scope.of(ids).portfolio_filter()


def scope_symbols(url: str, scope: Scope) -> list[str] | None:
    """Symbols a scoped run works on: what its portfolios hold, their underlyings and the
    factor and rates ETFs; None for an unscoped run (every symbol)."""
    if scope.is_everything:
        return None
    held = query_frame(
        url,
        sql.SQL(
            "SELECT symbol FROM sigmasight.positions WHERE {0} "
            "UNION SELECT underlying FROM sigmasight.positions WHERE {0}"
        ).format(scope.portfolio_filter()),
    )
    return sorted(set(held["symbol"]) | set(MARKET_ETFS))


def universe_symbols(url: str, scope: Scope) -> list[str]:
    """Every symbol a run's symbol-level assets compute: the scope's (`scope_symbols`), or
    every security for an unscoped run."""
    symbols = scope_symbols(url, scope)
    if symbols is None:
        symbols = sorted(query_frame(url, "SELECT symbol FROM sigmasight.securities")["symbol"])
    return symbols


def stock_symbols(url: str, scope: Scope) -> list[str]:
    """`universe_symbols` without the options: what the per-symbol assets built on returns
    compute (returns, betas, volatility, specific risk)."""
    return [s for s in universe_symbols(url, scope) if not is_option_symbol(s)]


def all_of(*clauses: sql.Composable) -> sql.Composable:
    """The SQL conjunction of `clauses`."""
    return sql.SQL(" AND ").join(sql.SQL("({})").format(c) for c in clauses)


def ids_in(ids: Iterable[int], column: str = "position_id") -> sql.Composable:
    """SQL selecting rows of these ids (a literal list: for a few hundred at most, see
    `option_positions_of`)."""
    return sql.SQL("{} = ANY({}::integer[])").format(
        sql.Identifier(column), sql.Literal([int(i) for i in ids])
    )


def option_positions_of(portfolios: sql.Composable) -> sql.Composable:
    """SQL selecting rows (by position_id) of the option positions of the portfolios
    `portfolios` selects: a semi-join, which Postgres hashes (a literal list of ids, as
    `ids_in` builds, is compared row by row: 4.9 s for the 15,000 option positions of a
    1,000-portfolio daily run, 0.2 s this way)."""
    return sql.SQL(
        "position_id IN (SELECT id FROM sigmasight.positions WHERE {} AND position_type = ANY({}))"
    ).format(portfolios, sql.Literal(list(OPTION_TYPES)))


def symbols_in(symbols: Sequence[str] | None, column: str = "symbol") -> sql.Composable:
    """SQL selecting rows of these symbols (everything when None)."""
    if symbols is None:
        return sql.SQL("TRUE")
    return sql.SQL("{} = ANY({}::text[])").format(sql.Identifier(column), sql.Literal(symbols))


def underlyings_of(portfolios: sql.Composable, also: Sequence[str] = ()) -> sql.Composable:
    """SQL selecting rows (by symbol) of the underlyings that the positions of the portfolios
    `portfolios` selects put exposure on (a stock's own symbol, an option's underlying), and of
    the symbols `also`."""
    held = sql.SQL("symbol IN (SELECT underlying FROM sigmasight.positions WHERE {})").format(
        portfolios
    )
    return sql.SQL("({} OR {})").format(held, symbols_in(list(also))) if also else held


def scope_underlyings(url: str, scope: Scope) -> list[str]:
    """The underlyings the scope's positions put exposure on (`underlyings_of`), sorted."""
    held = query_frame(
        url,
        sql.SQL("SELECT DISTINCT underlying FROM sigmasight.positions WHERE {}").format(
            scope.portfolio_filter()
        ),
    )
    return sorted(held["underlying"].dropna())


class UnderlyingRows:
    """A per-symbol table's rows (factor_betas, returns, ...) for every underlying of a run's
    scope, read once by a step; `of(symbols)` gives a chunk's. A backfill's chunks of
    portfolios share most of their underlyings: read chunk by chunk, 1,000 portfolios read the
    same rows about 40 times. What it holds grows with the scope's underlyings, not with its
    portfolios."""

    def __init__(
        self, reader: TableReader, columns: Sequence[str], scope: Scope, also: Sequence[str] = ()
    ) -> None:
        self.frame = reader.frame(list(columns), underlyings_of(scope.portfolio_filter(), also))
        # Symbols as integer codes: a chunk's rows are then an integer membership test.
        self._codes, self._symbols = pd.factorize(self.frame["symbol"])

    def of(self, symbols: Iterable[str]) -> pd.DataFrame:
        """The rows of `symbols`."""
        wanted = self._symbols.get_indexer(pd.Index(list(symbols), dtype=object))
        rows = np.isin(self._codes, wanted[wanted >= 0])
        return self.frame[rows].reset_index(drop=True)


def partition_days(context: AssetExecutionContext) -> pd.DatetimeIndex:
    """The sessions of the partitions this run materializes."""
    return pd.DatetimeIndex(pd.to_datetime(context.partition_keys))


def sessions_with_lookback(days: pd.DatetimeIndex, lookback: int) -> pd.DatetimeIndex:
    """`lookback` sessions before days[0], then every session up to days[-1]."""
    before = calendar.previous_sessions(days[0], lookback) if lookback else pd.DatetimeIndex([])
    return before.append(calendar.sessions(days[0], days[-1]))


def lookback(sessions: int) -> TimeWindowPartitionMapping:
    """The partitions of the run plus `sessions` trading days before them."""
    return TimeWindowPartitionMapping(
        start_offset=-sessions, allow_nonexistent_upstream_partitions=True
    )


RISK_ROW_COLUMNS = [
    "trade_date", "position_id", "portfolio_id", "symbol", "position_type", "quantity",
    "multiplier", "underlying", "price", "market_value", "exposure", "underlying_price",
    "strike", "t_years", "rate", "volatility", "delta", "gamma", "vega",
    "delta_adjusted_exposure", "source",
]  # fmt: skip


def position_risk_rows(
    positions: pd.DataFrame,
    values: pd.DataFrame,
    greeks: pd.DataFrame,
) -> pd.DataFrame:
    """Every position-day of a chunk held at the day's close, with its attributes and Greeks,
    stocks included (delta 1 per share, delta-adjusted exposure = exposure): what the risk
    assets start from.

    values: position_values rows (trade_date, position_id, portfolio_id, quantity, price,
    market_value, exposure); greeks: position_greeks rows of the options (underlying_price,
    strike, t_years, rate, volatility, delta, gamma, vega, delta_adjusted_exposure, source).
    A position's `exposure` on its underlying is its delta-adjusted exposure.
    """
    rows = with_positions(
        values, positions, ("symbol", "position_type", "multiplier", "underlying")
    ).merge(
        greeks.drop(columns=["portfolio_id"], errors="ignore"),
        on=["trade_date", "position_id"],
        how="left",
    )
    is_stock = rows["position_type"].isin(["LONG", "SHORT"])
    rows.loc[is_stock, "underlying_price"] = rows.loc[is_stock, "price"]
    rows.loc[is_stock, "delta"] = 1.0
    rows.loc[is_stock, ["gamma", "vega"]] = 0.0
    rows.loc[is_stock, "delta_adjusted_exposure"] = rows.loc[is_stock, "exposure"]
    rows.loc[is_stock, "source"] = "stock"
    held = rows["quantity"] != 0  # a position closed on the day holds nothing at its close
    return rows.loc[held].reindex(columns=RISK_ROW_COLUMNS).reset_index(drop=True)


def on_underlyings(rows: pd.DataFrame) -> pd.DataFrame:
    """The dollar exposure each position puts on its underlying (options delta-adjusted):
    trade_date, position_id, portfolio_id, underlying, exposure."""
    return rows[["trade_date", "position_id", "portfolio_id", "underlying"]].assign(
        exposure=rows["delta_adjusted_exposure"]
    )


# What the factor exposures and the risk metrics read of a chunk's values and Greeks.
EXPOSURE_COLUMNS = ["trade_date", "position_id", "portfolio_id", "exposure"]
DELTA_EXPOSURE_COLUMNS = ["trade_date", "position_id", "delta_adjusted_exposure"]
RISK_VALUE_COLUMNS = [
    "trade_date", "position_id", "portfolio_id", "quantity", "price", "market_value", "exposure",
]  # fmt: skip
RISK_GREEK_COLUMNS = [
    "trade_date", "position_id", "underlying_price", "strike", "t_years", "rate", "volatility",
    "delta", "gamma", "vega", "delta_adjusted_exposure", "source",
]  # fmt: skip


def read_risk_rows(
    url: str,
    ids: Sequence[int],
    position_values: TableReader,
    position_greeks: TableReader,
    where: sql.Composable | None = None,
    run_id: str | None = None,
) -> pd.DataFrame:
    """`position_risk_rows` of the portfolios `ids`, on the days of the readers' slices
    (narrowed by `where`, e.g. the run's days only); `run_id` as in `load_positions`."""
    portfolios = portfolios_in(ids)
    clause = portfolios if where is None else all_of(portfolios, where)
    values, greeks = RISK_VALUE_COLUMNS, RISK_GREEK_COLUMNS

    def read() -> pd.DataFrame:
        return position_risk_rows(
            load_positions(url, portfolios, run_id),
            position_values.frame(values, clause),
            position_greeks.frame(greeks, clause),
        )

    key = (
        render(position_values.query(values, clause)),
        render(position_greeks.query(greeks, clause)),
    )
    return shared_read(run_id, ("risk rows", url, *key), read)


def run_days(days: pd.DatetimeIndex) -> sql.Composable:
    """SQL selecting the run's own sessions (not the lookback a reader's slice may add)."""
    return sql.SQL("trade_date BETWEEN {} AND {}").format(
        sql.Literal(days[0].date()), sql.Literal(days[-1].date())
    )
