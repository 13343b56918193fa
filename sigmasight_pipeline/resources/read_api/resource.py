"""`SigmaSightReader`: the Dagster resource that runs the read queries on pooled connections."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import date
from typing import TypeVar

import psycopg
from dagster import ConfigurableResource, InitResourceContext
from psycopg_pool import ConnectionPool
from pydantic import Field, PrivateAttr

from sigmasight_pipeline.resources.database import database_url
from sigmasight_pipeline.resources.read_api import (
    common,
    concentration,
    correlation,
    decomposition,
    history,
    portfolio,
    risk,
    stress,
    targets,
    users,
    volatility,
)
from sigmasight_pipeline.resources.read_api import positions as position_queries
from sigmasight_pipeline.resources.read_api import snapshots as snapshot_queries
from sigmasight_pipeline.resources.read_api import tags as tag_queries
from sigmasight_pipeline.resources.read_api.depth_models import (
    Concentration,
    CorrelationFormat,
    Correlations,
    RiskDecomposition,
    SectorExposures,
    StressResults,
    Volatility,
)
from sigmasight_pipeline.resources.read_api.history_models import (
    PortfolioHistory,
    PortfolioTargets,
)
from sigmasight_pipeline.resources.read_api.models import (
    FactorExposures,
    Greeks,
    GreeksView,
    GroupBy,
    Overview,
    PortfolioAccess,
    PortfolioRef,
    Positions,
    RiskMetrics,
    SnapshotHistory,
    Tag,
    TagMode,
    User,
)

T = TypeVar("T")
CHECK_CONNECT_TIMEOUT_S = 10


class SigmaSightReader(ConfigurableResource):
    """Typed, read-only queries over the pipeline's tables (see the package docstring).

    Usable from assets, sensors and scripts (`SigmaSightReader().overview(1)`) and by the API.
    Reads run on a `psycopg_pool.ConnectionPool` of autocommit connections, opened on first use:
    at most `pool_size` connections; a read waits up to `pool_timeout_s` for one, then raises
    `psycopg_pool.PoolTimeout` (a `psycopg.OperationalError`: the API answers 503), which is
    also what a read gets while the database is down. A read that fails because its pooled
    connection was dropped by the server (e.g. a restart) is retried once, after the pool has
    checked its idle connections and discarded the dead ones; connections are not checked on
    every checkout (a round trip per read).
    """

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; default: DATABASE_URL or the embedded server"
    )
    pool_size: int = Field(default=8, ge=1, description="most connections held open at once")
    pool_timeout_s: float = Field(
        default=10.0, gt=0, description="wait for a free connection, seconds"
    )

    _pool: ConnectionPool | None = PrivateAttr(default=None)
    _pool_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _dummy_hash: str | None = PrivateAttr(default=None)

    # -- lifecycle ------------------------------------------------------------------------------

    def url(self) -> str:
        """The database URL this reader uses."""
        return self.database_url or database_url()

    def pool(self) -> ConnectionPool:
        """The connection pool (opened on first use)."""
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ConnectionPool(
                        self.url(),
                        min_size=0,
                        max_size=self.pool_size,
                        timeout=self.pool_timeout_s,
                        kwargs={"autocommit": True},
                        name="sigmasight-reader",
                        open=True,
                    )
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
        """Run read-only `work` on a pooled connection; once more on another one when the
        first was broken (the pool discards it, and `check` the other idle ones)."""
        pool = self.pool()
        used: psycopg.Connection | None = None
        try:
            with pool.connection() as conn:
                used = conn
                return work(conn)
        except psycopg.OperationalError:
            if used is None or not used.broken:
                raise  # no connection to be had (PoolTimeout), or a live one failed
        pool.check()
        with pool.connection() as conn:
            return work(conn)

    def check(self) -> None:
        """Raise the database's own error if it or the schema is not there (a startup check on
        a direct connection, so the cause is not hidden behind a pool timeout)."""
        with psycopg.connect(
            self.url(), autocommit=True, connect_timeout=CHECK_CONNECT_TIMEOUT_S
        ) as conn:
            conn.execute(f"SELECT 1 FROM {common.SCHEMA}.portfolio_snapshots LIMIT 0")

    def warm_up(self) -> None:
        """Load the trading calendar now (about a second), not in the first overview request."""
        portfolio.session_count(date(2024, 1, 2), date(2024, 1, 31))

    # -- users and portfolios -------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches (argon2, via `portfolios.verify_password`)."""
        from sigmasight_pipeline.portfolios import hash_password, verify_password

        row = self._read(lambda c: users.user_row(c, username))
        if row is None:
            # Spend the same time as a real check, so timing does not reveal unknown names.
            if self._dummy_hash is None:
                self._dummy_hash = hash_password("not the password of anyone")
            verify_password(self._dummy_hash, password)
            return None
        if not verify_password(row["password_hash"], password):
            return None
        return User(id=row["id"], username=row["username"], role=row["role"])

    def portfolios_for(self, user_id: int, role: str) -> list[PortfolioRef]:
        """The portfolios a user may read: their own (first), or all of them for an admin."""
        return self._read(lambda c: users.portfolios_for(c, user_id, role))

    def resolve_portfolio(self, user_id: int, portfolio_id: int | None = None) -> PortfolioAccess:
        """Whether the user exists and the portfolio they may read: `portfolio_id`, or by
        default their first (an admin without portfolios: the first of all). The role is read
        from the database, so a demoted or deleted user loses access at once."""
        return self._read(lambda c: users.resolve_portfolio(c, user_id, portfolio_id))

    def latest_day(self, portfolio_id: int) -> date | None:
        """The portfolio's latest fully materialized day (its latest snapshot), or None."""
        return self._read(lambda c: common.latest_day(c, portfolio_id))

    # -- per-day queries ------------------------------------------------------------------------

    def overview(self, portfolio_id: int, as_of: date | None = None) -> Overview:
        """Value, exposures, both market betas, daily/MTD/YTD P&L and counts on the day."""
        return self._read(lambda c: portfolio.overview(c, portfolio_id, as_of))

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

        def work(conn: psycopg.Connection) -> Positions:
            return position_queries.positions(
                conn, portfolio_id, as_of, types, tags, tag_mode, group_by
            )

        return self._read(work)

    def greeks(
        self, portfolio_id: int, view: GreeksView = "portfolio", as_of: date | None = None
    ) -> Greeks:
        """Greeks summed over the view and per position (longs: quantity > 0, shorts: < 0)."""
        return self._read(lambda c: risk.greeks(c, portfolio_id, view, as_of))

    def factor_exposures(self, portfolio_id: int, as_of: date | None = None) -> FactorExposures:
        """Beta (with its method) and dollar exposure of the eight factors."""
        return self._read(lambda c: risk.factor_exposures(c, portfolio_id, as_of))

    def risk_metrics(self, portfolio_id: int, as_of: date | None = None) -> RiskMetrics:
        """Realized beta, volatility, Sharpe, Sortino, drawdown and VaR/CVaR on the day."""
        return self._read(lambda c: risk.risk_metrics(c, portfolio_id, as_of))

    # -- risk depth: volatility, correlations, concentration, sectors, decomposition, stress -

    def volatility(self, portfolio_id: int, as_of: date | None = None) -> Volatility:
        """Realized, EWMA, HAR and ex-ante volatility; per name held, its exposure and vols."""
        return self._read(lambda c: volatility.volatility(c, portfolio_id, as_of))

    def correlations(
        self, portfolio_id: int, as_of: date | None = None, form: CorrelationFormat = "matrix"
    ) -> Correlations:
        """The underlyings' correlation matrix (or pairs), clusters and summary measures."""
        return self._read(lambda c: correlation.correlations(c, portfolio_id, as_of, form))

    def concentration(
        self, portfolio_id: int, as_of: date | None = None, top: int = 10
    ) -> Concentration:
        """HHI, effective N, top-5/top-10, the largest name and the `top` names by weight."""
        return self._read(lambda c: concentration.concentration(c, portfolio_id, as_of, top))

    def sector_exposures(self, portfolio_id: int, as_of: date | None = None) -> SectorExposures:
        """Each sector's long/short/gross/net exposure, weights and the benchmark's weight."""
        return self._read(lambda c: concentration.sector_exposures(c, portfolio_id, as_of))

    def risk_decomposition(
        self, portfolio_id: int, as_of: date | None = None, top: int = 10
    ) -> RiskDecomposition:
        """Factor and specific variance, model volatility, the `top` contributing positions."""
        return self._read(lambda c: decomposition.risk_decomposition(c, portfolio_id, as_of, top))

    def stress_results(
        self, portfolio_id: int, as_of: date | None = None, worst: int = stress.WORST_POSITIONS
    ) -> StressResults:
        """Every scenario's P&L with its `worst` positions; the rate beta and $ per +100 bp."""
        return self._read(lambda c: stress.stress_results(c, portfolio_id, as_of, worst))

    # -- history, targets and tags ---------------------------------------------------------------

    def history(
        self, portfolio_id: int, start: date | None = None, end: date | None = None
    ) -> PortfolioHistory:
        """Position events and equity changes dated in [start, end] (either bound open), oldest
        first, with realized P&L and flow totals; empty lists when there are none."""
        return self._read(lambda c: history.history(c, portfolio_id, start, end))

    def targets(self, portfolio_id: int, as_of: date | None = None) -> PortfolioTargets:
        """Positions held on the day with a target price, their sign-aware expected returns and
        the portfolio's exposure-weighted expected return."""
        return self._read(lambda c: targets.targets(c, portfolio_id, as_of))

    def snapshots(
        self, portfolio_id: int, start: date | None = None, end: date | None = None
    ) -> SnapshotHistory:
        """Daily snapshots in [start, end] (either bound open) for charts; empty if none."""
        return self._read(lambda c: snapshot_queries.snapshots(c, portfolio_id, start, end))

    def tags(self, user_id: int) -> list[Tag]:
        """A user's tags with the number of their open positions (all portfolios) carrying
        each."""
        return self._read(lambda c: tag_queries.user_tags(c, user_id))

    def portfolio_tags(self, portfolio_id: int) -> list[Tag]:
        """The tags used by a portfolio's open positions with how many of them carry each."""
        return self._read(lambda c: tag_queries.portfolio_tags(c, portfolio_id))
