"""The read layer: typed queries over what the pipeline computed, for the frontend and scripts.

`SigmaSightReader` is a Dagster resource (usable from assets, sensors and scripts, and the one
thing the HTTP API in `sigmasight_pipeline.api` calls). Each query is plain parameterized SQL on
indexed columns (`sql/0005_read_api.sql`), one or two statements per call, never one per row,
and returns pydantic models.

The trading day ("as of")
    Every per-day query takes `as_of`. By default it is the portfolio's latest day in
    `portfolio_snapshots`: the snapshot is the last step of a day's materialization, so its
    presence marks the day as done. An explicit `as_of` must be a day with a snapshot too, and
    Greeks, factor exposures and risk metrics are read for exactly that day (never a silently
    older one): when a table has no rows for it, the query raises `NoDataError`.

MTD / YTD P&L
    The sum of the snapshots' `daily_pnl` from the first day of the month / year to `as_of`,
    reported only when the snapshots cover every NYSE session of that period on which the
    portfolio existed (from the later of the period start and its first position's entry date);
    otherwise null, and `coverage` says how many sessions were found of how many expected.

Connections
    A small thread-safe pool of autocommit connections (psycopg_pool is not a dependency):
    idle connections are reused, broken ones dropped, and a read that fails on a reused
    connection (e.g. after a server restart) is retried once on a fresh one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from functools import lru_cache
from typing import Any, Literal, TypeVar

import psycopg
from dagster import ConfigurableResource, InitResourceContext
from psycopg.rows import dict_row
from pydantic import BaseModel, Field, PrivateAttr

from sigmasight_pipeline.resources.database import database_url
from sigmasight_pipeline.resources.market_data import FACTOR_ETFS, SHORT_INTEREST_FACTOR

__all__ = [
    "FACTORS",
    "POSITION_TYPES",
    "Coverage",
    "FactorExposure",
    "FactorExposures",
    "GreekTotals",
    "Greeks",
    "GreeksView",
    "GroupBy",
    "NoDataError",
    "Overview",
    "PnL",
    "PortfolioAccess",
    "PortfolioRef",
    "Position",
    "PositionCounts",
    "PositionGreeks",
    "PositionGroup",
    "PositionTotals",
    "PositionType",
    "Positions",
    "RiskMetrics",
    "SigmaSightReader",
    "SnapshotHistory",
    "SnapshotPoint",
    "Tag",
    "TagMode",
    "TagRef",
    "User",
]

PositionType = Literal["LONG", "SHORT", "LC", "LP", "SC", "SP"]
GreeksView = Literal["portfolio", "longs", "shorts"]
TagMode = Literal["any", "all"]
GroupBy = Literal["type", "tag"]
POSITION_TYPES: tuple[str, ...] = ("LONG", "SHORT", "LC", "LP", "SC", "SP")
GREEKS_VIEWS: tuple[str, ...] = ("portfolio", "longs", "shorts")
# The eight factors in the PRD's order, with their ETF proxies (None: custom calculation).
FACTORS: tuple[tuple[str, str | None], ...] = (
    *FACTOR_ETFS.items(),
    (SHORT_INTEREST_FACTOR, None),
)
T = TypeVar("T")


class NoDataError(LookupError):
    """The portfolio has no computed data for the day asked (or none at all yet)."""


# ---------------------------------------------------------------------------------------------
# Models


class User(BaseModel):
    """An authenticated user."""

    id: int
    username: str
    role: Literal["user", "admin"]


class PortfolioRef(BaseModel):
    """A portfolio and its owner."""

    id: int
    name: str
    owner_id: int
    owner_username: str


class PortfolioAccess(BaseModel):
    """What `resolve_portfolio` found: whether the user exists, their role, the portfolio."""

    user_exists: bool
    role: str | None = None
    portfolio: PortfolioRef | None = None


class PositionCounts(BaseModel):
    """Positions held on the day, by type; `unpriced` have no price and add nothing to sums."""

    LONG: int
    SHORT: int
    LC: int
    LP: int
    SC: int
    SP: int
    total: int
    unpriced: int


class Coverage(BaseModel):
    """How much of a period (month or year to date) the snapshots cover."""

    period_start: date
    counted_from: date = Field(description="later of the period start and the first entry date")
    sessions_expected: int | None
    sessions_present: int
    complete: bool
    note: str | None = None


class PnL(BaseModel):
    """P&L on the day; MTD / YTD only when the snapshots cover the period (else null)."""

    daily: float
    mtd: float | None
    ytd: float | None
    unrealized: float
    trailing: float = Field(description="P&L over the trailing 90 sessions, from trailing_start")
    trailing_start: date
    mtd_coverage: Coverage
    ytd_coverage: Coverage


class Overview(BaseModel):
    """Portfolio overview on one trading day."""

    portfolio_id: int
    name: str
    as_of: date
    total_value: float
    long_exposure: float
    short_exposure: float
    gross_exposure: float
    net_exposure: float
    pnl: PnL
    position_counts: PositionCounts


class TagRef(BaseModel):
    """A tag as attached to a position."""

    id: int
    name: str
    color: str


class Position(BaseModel):
    """A position's value on the day (value columns null when it has no price)."""

    position_id: int
    symbol: str
    position_type: PositionType
    underlying: str
    option_right: str | None
    strike: float | None
    expiry: date | None
    quantity: float
    multiplier: int
    entry_date: date
    entry_price: float
    price: float | None
    price_date: date | None
    price_source: str
    market_value: float | None
    exposure: float | None
    cost_basis: float
    unrealized_pnl: float | None
    daily_pnl: float | None
    tags: list[TagRef]


class PositionTotals(BaseModel):
    """Sums over a set of positions (unpriced ones add nothing and are counted apart)."""

    count: int
    unpriced: int
    market_value: float
    exposure: float
    long_exposure: float
    short_exposure: float
    unrealized_pnl: float
    daily_pnl: float


class PositionGroup(BaseModel):
    """One group of positions: a type, a tag, or (tag grouping) the untagged ones (key null)."""

    key: str | None
    tag: TagRef | None = None
    totals: PositionTotals
    position_ids: list[int]


class Positions(BaseModel):
    """Filtered positions on the day, their totals, and the groups when grouped."""

    portfolio_id: int
    as_of: date
    types: list[PositionType] | None
    tags: list[str] | None
    tag_mode: TagMode
    group_by: GroupBy | None
    totals: PositionTotals
    positions: list[Position]
    groups: list[PositionGroup] | None = None


class GreekTotals(BaseModel):
    """Position-level Greeks summed over a view."""

    delta: float
    gamma: float
    theta: float
    vega: float
    rho: float
    dollar_delta: float
    delta_adjusted_exposure: float
    fallback_count: int
    position_count: int


class PositionGreeks(BaseModel):
    """A position's Greeks: per contract (delta..rho) and for the position (position_*)."""

    position_id: int
    symbol: str
    position_type: PositionType
    quantity: float
    multiplier: int
    underlying: str
    underlying_price: float | None
    strike: float | None
    t_years: float | None
    volatility: float | None
    volatility_source: str | None
    option_price: float | None
    delta: float
    gamma: float
    theta: float
    vega: float
    rho: float
    position_delta: float
    position_gamma: float
    position_theta: float
    position_vega: float
    position_rho: float
    dollar_delta: float | None
    delta_adjusted_exposure: float | None
    source: str
    reason: str | None


class Greeks(BaseModel):
    """Greeks of a view: `portfolio` (all), `longs` (quantity > 0) or `shorts` (quantity < 0).

    `totals_source` is `stored` (portfolio_greeks) or `summed` (from the positions, when the
    aggregate row is missing)."""

    portfolio_id: int
    as_of: date
    view: GreeksView
    totals: GreekTotals
    totals_source: Literal["stored", "summed"]
    positions: list[PositionGreeks]


class FactorExposure(BaseModel):
    """A factor's portfolio beta and dollar exposure (null when not computable)."""

    factor: str
    etf: str | None
    beta: float | None
    dollar_exposure: float | None
    coverage: float | None


class FactorExposures(BaseModel):
    """The eight factors, in the PRD's order (then any other factor stored)."""

    portfolio_id: int
    as_of: date
    factors: list[FactorExposure]


class RiskMetrics(BaseModel):
    """Risk metrics on the day (null where there were too few observations; see reason)."""

    portfolio_id: int
    as_of: date
    beta: float | None
    volatility_ann: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    var_95_1d: float | None
    cvar_95_1d: float | None
    var_95_1d_hist: float | None
    cvar_95_1d_hist: float | None
    var_95_1d_hist_usd: float | None
    cvar_95_1d_hist_usd: float | None
    n_obs: int
    reason: str | None


class SnapshotPoint(BaseModel):
    """One day of portfolio history; cumulative_pnl sums daily_pnl from the range's first day."""

    trade_date: date
    total_value: float
    long_exposure: float
    short_exposure: float
    gross_exposure: float
    net_exposure: float
    daily_pnl: float
    cumulative_pnl: float
    unrealized_pnl: float
    position_count: int
    delta: float | None
    dollar_delta: float | None
    beta_market: float | None
    volatility_ann: float | None
    sharpe: float | None
    max_drawdown: float | None
    var_95_1d: float | None


class SnapshotHistory(BaseModel):
    """Snapshots in [start, end] (null bounds: from the first / to the latest day)."""

    portfolio_id: int
    start: date | None
    end: date | None
    points: list[SnapshotPoint]


class Tag(BaseModel):
    """A user's tag and how many of their positions carry it."""

    id: int
    name: str
    color: str
    position_count: int


# ---------------------------------------------------------------------------------------------
# Connections


class _ConnectionPool:
    """At most `size` autocommit connections, reused LIFO; broken ones are dropped."""

    def __init__(self, url: str, size: int, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False

    @contextmanager
    def connection(self, fresh: bool = False) -> Iterator[tuple[psycopg.Connection, bool]]:
        """A connection and whether it was reused; returned to the pool when healthy."""
        if not self._slots.acquire(timeout=self.timeout_s):
            raise psycopg.OperationalError("no database connection free (pool exhausted)")
        conn: psycopg.Connection | None = None
        try:
            with self._lock:
                if fresh:
                    stale, self._idle = self._idle, []
                else:
                    stale = []
                    conn = self._idle.pop() if self._idle else None
            for old in stale:
                old.close()
            reused = conn is not None and not conn.closed
            if not reused:
                conn = psycopg.connect(self.url, autocommit=True)
            assert conn is not None
            yield conn, reused
        finally:
            if conn is not None:
                healthy = (
                    not conn.closed
                    and not conn.broken
                    and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                )
                with self._lock:
                    keep = healthy and not self._closed
                    if keep:
                        self._idle.append(conn)
                if not keep:
                    conn.close()
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


@lru_cache(maxsize=4096)
def _session_count(start: date, end: date) -> int | None:
    """NYSE sessions in [start, end]; None when the trading calendar does not cover them."""
    from sigmasight_pipeline import calendar

    if start > end:
        return 0
    try:
        return len(calendar.sessions(start, end))
    except Exception:  # dates outside the calendar's bounds
        return None


def _coverage(
    period: str, period_start: date, day: date, inception: date | None, present: int
) -> Coverage:
    counted_from = max(period_start, inception) if inception else period_start
    expected = _session_count(counted_from, day)
    complete = expected is not None and present >= expected
    note = None
    if expected is None:
        note = f"no trading calendar for {counted_from}..{day}: {period} P&L not reported"
    elif not complete:
        note = (
            f"snapshots cover {present} of {expected} sessions from {counted_from} to {day}: "
            f"{period} P&L not reported"
        )
    return Coverage(
        period_start=period_start,
        counted_from=counted_from,
        sessions_expected=expected,
        sessions_present=present,
        complete=complete,
        note=note,
    )


def _totals(rows: Sequence[Position]) -> PositionTotals:
    def total(values: Iterator[float | None]) -> float:
        return float(sum(v for v in values if v is not None))

    exposures = [p.exposure for p in rows if p.exposure is not None]
    return PositionTotals(
        count=len(rows),
        unpriced=sum(1 for p in rows if p.price_source == "missing"),
        market_value=total(p.market_value for p in rows),
        exposure=float(sum(exposures)),
        long_exposure=float(sum(e for e in exposures if e > 0)),
        short_exposure=float(sum(e for e in exposures if e < 0)),
        unrealized_pnl=total(p.unrealized_pnl for p in rows),
        daily_pnl=total(p.daily_pnl for p in rows),
    )


def _groups(rows: list[Position], group_by: GroupBy) -> list[PositionGroup]:
    if group_by == "type":
        by_type: dict[str, list[Position]] = {}
        for p in rows:
            by_type.setdefault(p.position_type, []).append(p)
        return [
            PositionGroup(
                key=t, totals=_totals(by_type[t]), position_ids=[p.position_id for p in by_type[t]]
            )
            for t in POSITION_TYPES
            if t in by_type
        ]
    tags: dict[int, TagRef] = {}
    by_tag: dict[int | None, list[Position]] = {}
    for p in rows:
        for tag in p.tags:
            tags[tag.id] = tag
            by_tag.setdefault(tag.id, []).append(p)
        if not p.tags:
            by_tag.setdefault(None, []).append(p)
    order = sorted(tags, key=lambda i: (tags[i].name.lower(), i))
    groups = [
        PositionGroup(
            key=tags[i].name,
            tag=tags[i],
            totals=_totals(by_tag[i]),
            position_ids=[p.position_id for p in by_tag[i]],
        )
        for i in order
    ]
    if None in by_tag:
        untagged = by_tag[None]
        groups.append(
            PositionGroup(
                key=None, totals=_totals(untagged), position_ids=[p.position_id for p in untagged]
            )
        )
    return groups


def _clean_names(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    names = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    return names or None


# ---------------------------------------------------------------------------------------------
# SQL

_S = "sigmasight"
# Positions are listed in the PRD's type order (LONG SHORT LC LP SC SP), then by symbol.
_TYPE_ORDER = "array_position(ARRAY['LONG','SHORT','LC','LP','SC','SP']::text[], {col})"

# The portfolio asked for (if the user may read it), else the user's first, else (admin) the
# first of all; each branch an index lookup, the first non-empty one wins.
_RESOLVE_PORTFOLIO = f"""
WITH u AS (SELECT id, role FROM {_S}.users WHERE id = %(uid)s),
candidates AS (
    SELECT 1 AS rank, p.id, p.name, p.owner_id
    FROM u JOIN {_S}.portfolios p ON p.id = %(pid)s::integer
    WHERE p.owner_id = u.id OR u.role = 'admin'
    UNION ALL
    (SELECT 2, p.id, p.name, p.owner_id
     FROM u JOIN {_S}.portfolios p ON p.owner_id = u.id
     WHERE %(pid)s::integer IS NULL
     ORDER BY p.id LIMIT 1)
    UNION ALL
    (SELECT 3, p.id, p.name, p.owner_id
     FROM u CROSS JOIN {_S}.portfolios p
     WHERE %(pid)s::integer IS NULL AND u.role = 'admin'
     ORDER BY p.id LIMIT 1)
)
SELECT u.role, c.id, c.name, c.owner_id, o.username AS owner_username
FROM u
LEFT JOIN LATERAL (SELECT * FROM candidates ORDER BY rank LIMIT 1) c ON true
LEFT JOIN {_S}.users o ON o.id = c.owner_id
"""

_PORTFOLIOS_OWNED = f"""
SELECT p.id, p.name, p.owner_id, o.username AS owner_username
FROM {_S}.portfolios p JOIN {_S}.users o ON o.id = p.owner_id
WHERE p.owner_id = %(uid)s
ORDER BY p.id
"""

_PORTFOLIOS_ALL = f"""
SELECT p.id, p.name, p.owner_id, o.username AS owner_username
FROM {_S}.portfolios p JOIN {_S}.users o ON o.id = p.owner_id
ORDER BY (p.owner_id = %(uid)s) DESC, p.id
"""

_DAY = f"""
SELECT max(trade_date) AS day FROM {_S}.portfolio_snapshots
WHERE portfolio_id = %(pid)s AND (%(as_of)s::date IS NULL OR trade_date = %(as_of)s::date)
"""

_OVERVIEW = f"""
WITH d AS (
    SELECT max(trade_date) AS day FROM {_S}.portfolio_snapshots
    WHERE portfolio_id = %(pid)s AND (%(as_of)s::date IS NULL OR trade_date = %(as_of)s::date)
)
SELECT s.*, p.name,
       date_trunc('month', s.trade_date)::date AS month_start,
       date_trunc('year', s.trade_date)::date AS year_start,
       m.pnl AS mtd_pnl, m.n AS mtd_n, y.pnl AS ytd_pnl, y.n AS ytd_n,
       (SELECT min(entry_date) FROM {_S}.positions WHERE portfolio_id = %(pid)s) AS inception
FROM d
JOIN {_S}.portfolio_snapshots s ON s.portfolio_id = %(pid)s AND s.trade_date = d.day
JOIN {_S}.portfolios p ON p.id = s.portfolio_id
CROSS JOIN LATERAL (
    SELECT sum(daily_pnl) AS pnl, count(*) AS n FROM {_S}.portfolio_snapshots
    WHERE portfolio_id = %(pid)s
      AND trade_date BETWEEN date_trunc('month', d.day)::date AND d.day
) m
CROSS JOIN LATERAL (
    SELECT sum(daily_pnl) AS pnl, count(*) AS n FROM {_S}.portfolio_snapshots
    WHERE portfolio_id = %(pid)s
      AND trade_date BETWEEN date_trunc('year', d.day)::date AND d.day
) y
"""

_POSITIONS = f"""
WITH wanted AS (
    SELECT t.id, lower(t.name) AS lname
    FROM {_S}.tags t JOIN {_S}.portfolios pf ON pf.owner_id = t.user_id
    WHERE pf.id = %(pid)s AND lower(t.name) = ANY(%(tags)s::text[])
)
SELECT v.position_id, v.symbol, v.position_type, p.underlying, p.option_right, p.strike,
       p.expiry, v.quantity, v.multiplier, v.entry_date, v.entry_price, v.price, v.price_date,
       v.price_source, v.market_value, v.exposure, v.cost_basis, v.unrealized_pnl, v.daily_pnl,
       COALESCE((
           SELECT json_agg(json_build_object('id', t.id, 'name', t.name, 'color', t.color)
                           ORDER BY lower(t.name), t.id)
           FROM {_S}.position_tags pt JOIN {_S}.tags t ON t.id = pt.tag_id
           WHERE pt.position_id = v.position_id
       ), '[]'::json) AS tags
FROM {_S}.position_values v
JOIN {_S}.positions p ON p.id = v.position_id
WHERE v.portfolio_id = %(pid)s AND v.trade_date = %(day)s
  AND (%(types)s::text[] IS NULL OR v.position_type = ANY(%(types)s::text[]))
  AND (%(tags)s::text[] IS NULL OR (
      SELECT count(DISTINCT w.lname)
      FROM {_S}.position_tags pt JOIN wanted w ON w.id = pt.tag_id
      WHERE pt.position_id = v.position_id
  ) >= %(need)s)
ORDER BY {_TYPE_ORDER.format(col="v.position_type")}, v.symbol, v.position_id
"""
# tag_mode "any": need = 1; "all": need = the number of distinct names asked.

_GREEK_COLUMNS = (
    "delta, gamma, theta, vega, rho, dollar_delta, delta_adjusted_exposure, fallback_count, "
    "position_count"
)

_PORTFOLIO_GREEKS = f"""
SELECT {_GREEK_COLUMNS} FROM {_S}.portfolio_greeks
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s AND view = %(view)s
"""

_POSITION_GREEKS = f"""
SELECT position_id, symbol, position_type, quantity, multiplier, underlying, underlying_price,
       strike, t_years, volatility, volatility_source, option_price, delta, gamma, theta, vega,
       rho, position_delta, position_gamma, position_theta, position_vega, position_rho,
       dollar_delta, delta_adjusted_exposure, source, reason
FROM {_S}.position_greeks
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
  AND (%(view)s = 'portfolio' OR (%(view)s = 'longs' AND quantity > 0)
       OR (%(view)s = 'shorts' AND quantity < 0))
ORDER BY {_TYPE_ORDER.format(col="position_type")}, symbol, position_id
"""

_ANY_GREEKS = f"""
SELECT 1 FROM {_S}.portfolio_greeks WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
UNION ALL
SELECT 1 FROM {_S}.position_greeks WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
LIMIT 1
"""

_FACTORS = f"""
SELECT factor, beta, dollar_exposure, coverage FROM {_S}.portfolio_factor_exposures
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
ORDER BY factor
"""

_RISK = f"""
SELECT beta, volatility_ann, sharpe, sortino, max_drawdown, var_95_1d, cvar_95_1d,
       var_95_1d_hist, cvar_95_1d_hist, var_95_1d_hist_usd, cvar_95_1d_hist_usd, n_obs, reason
FROM {_S}.portfolio_risk_metrics
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
"""

_SNAPSHOTS = f"""
SELECT trade_date, total_value, long_exposure, short_exposure, gross_exposure, net_exposure,
       daily_pnl, sum(daily_pnl) OVER (ORDER BY trade_date) AS cumulative_pnl, unrealized_pnl,
       position_count, delta, dollar_delta, beta_market, volatility_ann, sharpe, max_drawdown,
       var_95_1d
FROM {_S}.portfolio_snapshots
WHERE portfolio_id = %(pid)s AND trade_date BETWEEN %(start)s AND %(end)s
ORDER BY trade_date
"""

_TAGS = f"""
SELECT t.id, t.name, t.color,
       (SELECT count(*) FROM {_S}.position_tags pt WHERE pt.tag_id = t.id) AS position_count
FROM {_S}.tags t
WHERE t.user_id = %(uid)s
ORDER BY lower(t.name), t.id
"""

_USER = f"SELECT id, username, role, password_hash FROM {_S}.users WHERE username = %(username)s"


# ---------------------------------------------------------------------------------------------
# The resource


class SigmaSightReader(ConfigurableResource):
    """Typed, read-only queries over the pipeline's tables (see the module docstring).

    Usable from assets, sensors and scripts (`SigmaSightReader().overview(1)`) and by the API.
    """

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; default: DATABASE_URL or the embedded server"
    )
    pool_size: int = Field(default=8, description="most connections held open at once")
    pool_timeout_s: float = Field(default=10.0, description="wait for a free connection, seconds")

    _pool: _ConnectionPool | None = PrivateAttr(default=None)
    _pool_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _dummy_hash: str | None = PrivateAttr(default=None)

    # -- lifecycle ------------------------------------------------------------------------------

    def url(self) -> str:
        """The database URL this reader uses."""
        return self.database_url or database_url()

    def _get_pool(self) -> _ConnectionPool:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = _ConnectionPool(self.url(), self.pool_size, self.pool_timeout_s)
        return self._pool

    def close(self) -> None:
        """Close the pooled connections (the reader reopens on next use)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self.close()

    def _read(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run read-only `work` on a pooled connection; retried once on a fresh connection
        when a reused one fails at the connection level (e.g. the server restarted)."""
        pool = self._get_pool()
        with pool.connection() as (conn, reused):
            try:
                return work(conn)
            except psycopg.OperationalError:
                if not reused or not conn.broken:
                    raise
        with pool.connection(fresh=True) as (conn, _):
            return work(conn)

    def _rows(self, conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[dict]:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall()

    def _day(self, conn: psycopg.Connection, portfolio_id: int, as_of: date | None) -> date:
        rows = self._rows(conn, _DAY, {"pid": portfolio_id, "as_of": as_of})
        day = rows[0]["day"] if rows else None
        if day is None:
            raise NoDataError(_no_snapshot(portfolio_id, as_of))
        return day

    def check(self) -> None:
        """Raise if the database or the schema is not there (a cheap startup check)."""
        self._read(lambda conn: conn.execute(f"SELECT 1 FROM {_S}.portfolio_snapshots LIMIT 0"))

    def warm_up(self) -> None:
        """Load the trading calendar now (about a second), not in the first overview request."""
        _session_count(date(2024, 1, 2), date(2024, 1, 31))

    # -- users and portfolios -------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches (argon2, via `portfolios.verify_password`)."""
        from sigmasight_pipeline.portfolios import hash_password, verify_password

        rows = self._read(lambda c: self._rows(c, _USER, {"username": username}))
        if not rows:
            # Spend the same time as a real check, so timing does not reveal unknown names.
            if self._dummy_hash is None:
                self._dummy_hash = hash_password("not the password of anyone")
            verify_password(self._dummy_hash, password)
            return None
        row = rows[0]
        if not verify_password(row["password_hash"], password):
            return None
        return User(id=row["id"], username=row["username"], role=row["role"])

    def portfolios_for(self, user_id: int, role: str) -> list[PortfolioRef]:
        """The portfolios a user may read: their own (first), or all of them for an admin."""
        query = _PORTFOLIOS_ALL if role == "admin" else _PORTFOLIOS_OWNED
        rows = self._read(lambda c: self._rows(c, query, {"uid": user_id}))
        return [PortfolioRef(**r) for r in rows]

    def resolve_portfolio(self, user_id: int, portfolio_id: int | None = None) -> PortfolioAccess:
        """Whether the user exists and the portfolio they may read: `portfolio_id`, or by
        default their first (an admin without portfolios: the first of all). The role is read
        from the database, so a demoted or deleted user loses access at once."""
        params = {"uid": user_id, "pid": portfolio_id}
        rows = self._read(lambda c: self._rows(c, _RESOLVE_PORTFOLIO, params))
        if not rows:
            return PortfolioAccess(user_exists=False)
        row = rows[0]
        portfolio = None
        if row["id"] is not None:
            portfolio = PortfolioRef(
                id=row["id"],
                name=row["name"],
                owner_id=row["owner_id"],
                owner_username=row["owner_username"],
            )
        return PortfolioAccess(user_exists=True, role=row["role"], portfolio=portfolio)

    def latest_day(self, portfolio_id: int) -> date | None:
        """The portfolio's latest fully materialized day (its latest snapshot), or None."""
        rows = self._read(lambda c: self._rows(c, _DAY, {"pid": portfolio_id, "as_of": None}))
        return rows[0]["day"] if rows else None

    # -- per-day queries ------------------------------------------------------------------------

    def overview(self, portfolio_id: int, as_of: date | None = None) -> Overview:
        """Value, exposures, daily/MTD/YTD P&L and position counts on the day (one query)."""
        params = {"pid": portfolio_id, "as_of": as_of}
        rows = self._read(lambda c: self._rows(c, _OVERVIEW, params))
        if not rows:
            raise NoDataError(_no_snapshot(portfolio_id, as_of))
        r = rows[0]
        day: date = r["trade_date"]
        mtd = _coverage("MTD", r["month_start"], day, r["inception"], int(r["mtd_n"]))
        ytd = _coverage("YTD", r["year_start"], day, r["inception"], int(r["ytd_n"]))
        return Overview(
            portfolio_id=portfolio_id,
            name=r["name"],
            as_of=day,
            total_value=r["total_value"],
            long_exposure=r["long_exposure"],
            short_exposure=r["short_exposure"],
            gross_exposure=r["gross_exposure"],
            net_exposure=r["net_exposure"],
            pnl=PnL(
                daily=r["daily_pnl"],
                mtd=float(r["mtd_pnl"]) if mtd.complete else None,
                ytd=float(r["ytd_pnl"]) if ytd.complete else None,
                unrealized=r["unrealized_pnl"],
                trailing=r["window_pnl"],
                trailing_start=r["window_start"],
                mtd_coverage=mtd,
                ytd_coverage=ytd,
            ),
            position_counts=PositionCounts(
                LONG=r["long_count"],
                SHORT=r["short_count"],
                LC=r["lc_count"],
                LP=r["lp_count"],
                SC=r["sc_count"],
                SP=r["sp_count"],
                total=r["position_count"],
                unpriced=r["unpriced_count"],
            ),
        )

    def positions(
        self,
        portfolio_id: int,
        as_of: date | None = None,
        types: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        tag_mode: TagMode = "any",
        group_by: GroupBy | None = None,
    ) -> Positions:
        """Positions held on the day with value, exposure and P&L; filtered by type and by tag
        names (case-insensitive; `any` or `all` of them), grouped by type or tag if asked."""
        type_list = _clean_names([t.upper() for t in types] if types is not None else None)
        bad = [t for t in type_list or [] if t not in POSITION_TYPES]
        if bad:
            raise ValueError(f"unknown position type(s) {bad}; expected any of {POSITION_TYPES}")
        if tag_mode not in ("any", "all"):
            raise ValueError(f"tag_mode must be 'any' or 'all', not {tag_mode!r}")
        if group_by not in (None, "type", "tag"):
            raise ValueError(f"group_by must be 'type' or 'tag', not {group_by!r}")
        tag_list = _clean_names(tags)
        lowered = list(dict.fromkeys(t.lower() for t in tag_list)) if tag_list else None
        need = 1 if tag_mode == "any" or not lowered else len(lowered)

        def work(conn: psycopg.Connection) -> tuple[date, list[dict]]:
            day = self._day(conn, portfolio_id, as_of)
            params = {
                "pid": portfolio_id,
                "day": day,
                "types": type_list,
                "tags": lowered,
                "need": need,
            }
            return day, self._rows(conn, _POSITIONS, params)

        day, rows = self._read(work)
        items = [Position.model_validate(r) for r in rows]
        return Positions(
            portfolio_id=portfolio_id,
            as_of=day,
            types=type_list,  # type: ignore[arg-type]
            tags=tag_list,
            tag_mode=tag_mode,
            group_by=group_by,
            totals=_totals(items),
            positions=items,
            groups=_groups(items, group_by) if group_by else None,
        )

    def greeks(
        self, portfolio_id: int, view: GreeksView = "portfolio", as_of: date | None = None
    ) -> Greeks:
        """Greeks summed over the view and per position (longs: quantity > 0, shorts: < 0)."""
        if view not in GREEKS_VIEWS:
            raise ValueError(f"view must be one of {GREEKS_VIEWS}, not {view!r}")

        def work(conn: psycopg.Connection) -> tuple[date, list[dict], list[dict]]:
            day = self._day(conn, portfolio_id, as_of)
            params = {"pid": portfolio_id, "day": day, "view": view}
            stored = self._rows(conn, _PORTFOLIO_GREEKS, params)
            rows = self._rows(conn, _POSITION_GREEKS, params)
            # A view may be empty (no shorts); only a day without any Greeks is missing data.
            if not stored and not rows and not self._rows(conn, _ANY_GREEKS, params):
                raise NoDataError(f"no Greeks for portfolio {portfolio_id} on {day}")
            return day, stored, rows

        day, stored, rows = self._read(work)
        positions = [PositionGreeks.model_validate(r) for r in rows]
        if stored:
            totals, source = GreekTotals.model_validate(stored[0]), "stored"
        else:
            totals, source = _sum_greeks(positions), "summed"
        return Greeks(
            portfolio_id=portfolio_id,
            as_of=day,
            view=view,
            totals=totals,
            totals_source=source,  # type: ignore[arg-type]
            positions=positions,
        )

    def factor_exposures(self, portfolio_id: int, as_of: date | None = None) -> FactorExposures:
        """Beta and dollar exposure of the eight factors (null where not computable)."""

        def work(conn: psycopg.Connection) -> tuple[date, list[dict]]:
            day = self._day(conn, portfolio_id, as_of)
            return day, self._rows(conn, _FACTORS, {"pid": portfolio_id, "day": day})

        day, rows = self._read(work)
        if not rows:
            raise NoDataError(f"no factor exposures for portfolio {portfolio_id} on {day}")
        stored = {r["factor"]: r for r in rows}
        known = {name for name, _ in FACTORS}
        factors = [
            FactorExposure(
                factor=name,
                etf=etf,
                beta=stored.get(name, {}).get("beta"),
                dollar_exposure=stored.get(name, {}).get("dollar_exposure"),
                coverage=stored.get(name, {}).get("coverage"),
            )
            for name, etf in FACTORS
        ]
        factors += [FactorExposure(etf=None, **r) for r in rows if r["factor"] not in known]
        return FactorExposures(portfolio_id=portfolio_id, as_of=day, factors=factors)

    def risk_metrics(self, portfolio_id: int, as_of: date | None = None) -> RiskMetrics:
        """Beta, volatility, Sharpe, Sortino, drawdown and VaR/CVaR on the day."""

        def work(conn: psycopg.Connection) -> tuple[date, list[dict]]:
            day = self._day(conn, portfolio_id, as_of)
            return day, self._rows(conn, _RISK, {"pid": portfolio_id, "day": day})

        day, rows = self._read(work)
        if not rows:
            raise NoDataError(f"no risk metrics for portfolio {portfolio_id} on {day}")
        return RiskMetrics(portfolio_id=portfolio_id, as_of=day, **rows[0])

    # -- history and tags -----------------------------------------------------------------------

    def snapshots(
        self, portfolio_id: int, start: date | None = None, end: date | None = None
    ) -> SnapshotHistory:
        """Daily snapshots in [start, end] (either bound open) for charts; empty if none."""
        if start is not None and end is not None and start > end:
            raise ValueError(f"start ({start}) is after end ({end})")
        params = {"pid": portfolio_id, "start": start or date.min, "end": end or date.max}
        rows = self._read(lambda c: self._rows(c, _SNAPSHOTS, params))
        return SnapshotHistory(
            portfolio_id=portfolio_id,
            start=start,
            end=end,
            points=[SnapshotPoint.model_validate(r) for r in rows],
        )

    def tags(self, user_id: int) -> list[Tag]:
        """A user's tags with the number of positions carrying each."""
        rows = self._read(lambda c: self._rows(c, _TAGS, {"uid": user_id}))
        return [Tag.model_validate(r) for r in rows]


def _sum_greeks(positions: list[PositionGreeks]) -> GreekTotals:
    return GreekTotals(
        delta=sum(p.position_delta for p in positions),
        gamma=sum(p.position_gamma for p in positions),
        theta=sum(p.position_theta for p in positions),
        vega=sum(p.position_vega for p in positions),
        rho=sum(p.position_rho for p in positions),
        dollar_delta=sum(p.dollar_delta or 0.0 for p in positions),
        delta_adjusted_exposure=sum(p.delta_adjusted_exposure or 0.0 for p in positions),
        fallback_count=sum(1 for p in positions if p.source == "fallback"),
        position_count=len(positions),
    )


def _no_snapshot(portfolio_id: int, as_of: date | None) -> str:
    if as_of is None:
        return f"no snapshots for portfolio {portfolio_id} yet"
    return f"no snapshot for portfolio {portfolio_id} on {as_of}"
