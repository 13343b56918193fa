"""Portfolio assets: position values (chunks of portfolios) and daily portfolio snapshots (one
INSERT ... SELECT over the position rows)."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Output, asset
from psycopg import sql

from sigmasight_pipeline.analytics import holdings, stress, valuation
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    TRADING_DAYS,
    TRANSIENT_RETRY,
    ids_in,
    load_events,
    load_positions,
    lookback,
    partition_days,
    portfolio_chunks,
    portfolios_in,
    positions_spec,
    run_scope,
    sessions_with_lookback,
    symbols_in,
)
from sigmasight_pipeline.checks import TableValidator, schema_check_spec
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import TableReader, TableWrite
from sigmasight_pipeline.resources.tables import query_frame
from sigmasight_pipeline.scope import Scope
from sigmasight_pipeline.settings import tlt_duration
from sigmasight_pipeline.sql_checks import SNAPSHOT_RULES
from sigmasight_pipeline.warning_checks import POSITIONS_VALUED_SPEC, unvalued_positions_warning

PORTFOLIO_GROUP = "portfolio"
# The day's numbers; the position's attributes (symbol, type, entry) stay in `positions`.
STORED_VALUE_COLUMNS = [
    "trade_date", "position_id", "portfolio_id", "quantity", "price", "price_date",
    "price_source", "market_value", "exposure", "cost_basis", "unrealized_pnl", "daily_pnl",
    "pnl_reason", "realized_pnl_usd", "realized_pnl_cum_usd",
]  # fmt: skip
SNAPSHOT_WINDOW = 90
PRICE_LOOKBACK = valuation.MAX_CARRY_FORWARD_SESSIONS + 1


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=PORTFOLIO_GROUP,
    kinds={"postgres", "pandas"},
    deps=[positions_spec],
    ins={"prices": AssetIn(partition_mapping=lookback(PRICE_LOOKBACK))},
    retry_policy=TRANSIENT_RETRY,
    check_specs=[schema_check_spec("position_values"), POSITIONS_VALUED_SPEC],
)
def position_values(
    context: AssetExecutionContext, prices: TableReader, database: PostgresResource
):
    """Price, market value (|q| x price x multiplier), exposure (q x price x multiplier),
    cost basis, unrealized, daily and realized P&L of every position on each day it is held,
    with the quantity and average cost of that day (from its events: a re-upload changes only
    the days from its effective session on). A missing close is carried forward up to 5
    sessions (flagged), then the row is `missing`. Computed in chunks of portfolios."""
    url = database.url()
    days = partition_days(context)
    sessions = sessions_with_lookback(days, PRICE_LOOKBACK)
    scope = run_scope(context)

    def chunks():
        for ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            where = portfolios_in(ids)
            positions = load_positions(url, where, context.run.run_id)
            held = holdings.daily_holdings(positions, load_events(url, where), days)
            closes = prices.frame(
                ["symbol", "trade_date", "close"],
                where=symbols_in(sorted(positions["symbol"].unique())),
            )
            yield valuation.position_values(positions, closes, sessions, days, held)

    validator = TableValidator("position_values")
    valued = unvalued_positions_warning()
    yield Output(
        TableWrite(
            chunks(),
            replace=scope.portfolio_filter(),
            columns=STORED_VALUE_COLUMNS,
            observers=[validator, valued],
            summaries=[valued.summary],
        )
    )
    yield validator.result()
    yield valued.result()


def _window_inputs(url: str, ids: list[int], days) -> tuple[pd.DataFrame, ...]:
    """What a chunk's returns need besides its position rows: the flows of the window, every
    realized event through its last day, the latest row before it and the starting equities
    the users set."""
    where = portfolios_in(ids)
    first, last = sql.Literal(days[0].date()), sql.Literal(days[-1].date())
    changes = query_frame(
        url,
        sql.SQL(
            "SELECT portfolio_id, change_date, amount_usd FROM sigmasight.equity_changes "
            "WHERE {} AND change_date BETWEEN {} AND {}"
        ).format(where, first, last),
    )
    realized = query_frame(
        url,
        sql.SQL(
            "SELECT portfolio_id, event_date, realized_pnl_usd FROM sigmasight.position_events "
            "WHERE {} AND realized_pnl_usd IS NOT NULL AND event_date <= {}"
        ).format(where, last),
    )
    previous = query_frame(
        url,
        sql.SQL(
            "SELECT DISTINCT ON (portfolio_id) portfolio_id, equity_usd, twr_cumulative "
            "FROM sigmasight.portfolio_returns WHERE {} AND trade_date < {} "
            "ORDER BY portfolio_id, trade_date DESC"
        ).format(where, first),
    )
    starting = query_frame(
        url,
        sql.SQL(
            "SELECT id AS portfolio_id, starting_equity_usd FROM sigmasight.portfolios "
            "WHERE {} AND starting_equity_usd IS NOT NULL"
        ).format(ids_in(ids, "id")),
    )
    return changes, realized, previous, starting.set_index("portfolio_id")["starting_equity_usd"]


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=PORTFOLIO_GROUP,
    kinds={"postgres", "pandas"},
    retry_policy=TRANSIENT_RETRY,
    check_specs=[schema_check_spec("portfolio_returns")],
)
def portfolio_returns(
    context: AssetExecutionContext, position_values: TableReader, database: PostgresResource
):
    """Per portfolio and day: the P&L of its positions (mark to market, realized included), the
    realized P&L of the day and to date, external flows (equity changes, at the start of the
    day), equity E = E_prev + flows + P&L and the time-weighted return P&L / (E_prev + flows),
    chained since the first row: a contribution is not a gain. A window chains onto the row
    before it; the first row starts from the equity the user set (`sigmasight equity start`)
    or the first day's gross value."""
    url = database.url()
    days = partition_days(context)
    scope = run_scope(context)

    def chunks():
        for ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            daily = position_values.totals(
                {"pnl_usd": "daily_pnl", "realized_pnl_usd": "realized_pnl_usd",
                 "gross_value_usd": "market_value"},
                ["trade_date", "portfolio_id"],
                portfolios_in(ids),
            )  # fmt: skip
            changes, realized, previous, starting = _window_inputs(url, ids, days)
            flows = holdings.daily_flows(changes, days)
            yield holdings.portfolio_returns(daily, flows, realized, previous, starting)

    validator = TableValidator("portfolio_returns")
    yield Output(TableWrite(chunks(), replace=scope.portfolio_filter(), observers=[validator]))
    yield validator.result()


SNAPSHOT_COLUMNS = [
    "trade_date", "portfolio_id", "total_value", "long_exposure", "short_exposure",
    "gross_exposure", "net_exposure", "daily_pnl", "window_pnl", "window_start", "unrealized_pnl",
    "position_count", "long_count", "short_count", "lc_count", "lp_count", "sc_count", "sp_count",
    "unpriced_count", "delta", "gamma", "theta", "vega", "dollar_delta",
    "delta_adjusted_exposure", "beta_market", "beta_momentum", "beta_value", "beta_growth",
    "beta_quality", "beta_size", "beta_low_volatility", "beta_rates", "pnl_usd_per_100bp",
    "short_interest_exposure", "volatility_ann", "sharpe", "max_drawdown", "var_95_1d",
    "cvar_95_1d", "realized_pnl_usd", "realized_pnl_cum_usd", "flows_usd", "equity_usd",
    "twr_daily", "twr_cumulative",
]  # fmt: skip

# Daily portfolio totals of the position rows, the trailing-window P&L over `window_start`
# .. day (calendar sessions, passed in as `days`), and the day's Greeks, betas and risk metrics.
# Every table joined carries the run's date range itself: the planner does not carry a range
# across `t.trade_date = x.trade_date`, and without it read each joined table whole. OFFSET 0
# keeps the positions' join out of the view's unnest (see greeks._HELD).
SNAPSHOT_SELECT = """
WITH days (trade_date, window_start) AS (
    SELECT d::date, w::date FROM unnest({days}::date[], {starts}::date[]) AS t(d, w)
), totals AS (
    SELECT v.trade_date, v.portfolio_id,
           coalesce(sum(v.market_value), 0) AS total_value,
           coalesce(sum(greatest(v.exposure, 0)), 0) AS long_exposure,
           coalesce(sum(least(v.exposure, 0)), 0) AS short_exposure,
           coalesce(sum(v.exposure), 0) AS net_exposure,
           coalesce(sum(v.daily_pnl), 0) AS daily_pnl,
           coalesce(sum(v.unrealized_pnl), 0) AS unrealized_pnl,
           count(*) FILTER (WHERE v.quantity <> 0) AS position_count,
           count(*) FILTER (WHERE v.quantity <> 0 AND p.position_type = 'LONG') AS long_count,
           count(*) FILTER (WHERE v.quantity <> 0 AND p.position_type = 'SHORT') AS short_count,
           count(*) FILTER (WHERE v.quantity <> 0 AND p.position_type = 'LC') AS lc_count,
           count(*) FILTER (WHERE v.quantity <> 0 AND p.position_type = 'LP') AS lp_count,
           count(*) FILTER (WHERE v.quantity <> 0 AND p.position_type = 'SC') AS sc_count,
           count(*) FILTER (WHERE v.quantity <> 0 AND p.position_type = 'SP') AS sp_count,
           count(*) FILTER (WHERE v.price_source = 'missing') AS unpriced_count
    FROM (SELECT * FROM sigmasight.position_values v
          WHERE v.trade_date BETWEEN {day0} AND {last} AND {scope} OFFSET 0) v
    JOIN sigmasight.positions p ON p.id = v.position_id
    GROUP BY v.trade_date, v.portfolio_id
), stored AS (
    -- the trailing window's sessions before the run: the daily P&L of the stored snapshots
    SELECT trade_date, portfolio_id, daily_pnl FROM sigmasight.portfolio_snapshots
    WHERE trade_date >= {first} AND trade_date < {day0} AND {portfolios}
), unstored AS (
    -- and of a portfolio-day without a snapshot, its position rows (by the portfolio-day index)
    SELECT m.trade_date, m.portfolio_id, s.daily_pnl
    FROM (
        SELECT e.d::date AS trade_date, p.id AS portfolio_id
        FROM unnest({earlier}::date[]) AS e(d) CROSS JOIN sigmasight.portfolios p
        WHERE {scope_ids}
        EXCEPT SELECT trade_date, portfolio_id FROM stored
    ) m CROSS JOIN LATERAL (
        SELECT coalesce(sum(v.daily_pnl), 0) AS daily_pnl, count(*) AS n
        FROM sigmasight.position_values v
        WHERE v.portfolio_id = m.portfolio_id AND v.trade_date = m.trade_date
    ) s
    WHERE s.n > 0
), pnl AS (
    SELECT trade_date, portfolio_id, daily_pnl FROM totals
    UNION ALL SELECT trade_date, portfolio_id, daily_pnl FROM stored
    UNION ALL SELECT trade_date, portfolio_id, daily_pnl FROM unstored
), trail AS (
    SELECT d.trade_date, t.portfolio_id, d.window_start, sum(t.daily_pnl) AS window_pnl
    FROM days d JOIN pnl t ON t.trade_date BETWEEN d.window_start AND d.trade_date
    GROUP BY d.trade_date, t.portfolio_id, d.window_start
), betas AS MATERIALIZED (
    SELECT trade_date, portfolio_id,
           max(beta) FILTER (WHERE factor = 'Market') AS beta_market,
           max(beta) FILTER (WHERE factor = 'Momentum') AS beta_momentum,
           max(beta) FILTER (WHERE factor = 'Value') AS beta_value,
           max(beta) FILTER (WHERE factor = 'Growth') AS beta_growth,
           max(beta) FILTER (WHERE factor = 'Quality') AS beta_quality,
           max(beta) FILTER (WHERE factor = 'Size') AS beta_size,
           max(beta) FILTER (WHERE factor = 'Low Volatility') AS beta_low_volatility,
           max(beta) FILTER (WHERE factor = 'Rates') AS beta_rates,
           max(dollar_exposure) FILTER (WHERE factor = 'Rates') * {tlt_100bp}
               AS pnl_usd_per_100bp,
           max(beta) FILTER (WHERE factor = 'Short Interest') AS short_interest_exposure
    FROM sigmasight.portfolio_factor_exposures
    WHERE trade_date BETWEEN {day0} AND {last} AND {portfolios}
    GROUP BY trade_date, portfolio_id
)
SELECT t.trade_date, t.portfolio_id, t.total_value, t.long_exposure, t.short_exposure,
       t.long_exposure - t.short_exposure, t.net_exposure, t.daily_pnl, w.window_pnl,
       w.window_start, t.unrealized_pnl, t.position_count, t.long_count, t.short_count,
       t.lc_count, t.lp_count, t.sc_count, t.sp_count, t.unpriced_count,
       g.delta, g.gamma, g.theta, g.vega, g.dollar_delta, g.delta_adjusted_exposure,
       b.beta_market, b.beta_momentum, b.beta_value, b.beta_growth, b.beta_quality, b.beta_size,
       b.beta_low_volatility, b.beta_rates, b.pnl_usd_per_100bp, b.short_interest_exposure,
       r.volatility_ann, r.sharpe, r.max_drawdown, r.var_95_1d, r.cvar_95_1d,
       pr.realized_pnl_usd, pr.realized_pnl_cum_usd, pr.flows_usd, pr.equity_usd, pr.twr_daily,
       pr.twr_cumulative
FROM totals t
JOIN trail w USING (trade_date, portfolio_id)
LEFT JOIN sigmasight.portfolio_greeks g
       ON g.trade_date = t.trade_date AND g.portfolio_id = t.portfolio_id AND g.view = 'portfolio'
          AND g.trade_date BETWEEN {day0} AND {last}
LEFT JOIN betas b ON b.trade_date = t.trade_date AND b.portfolio_id = t.portfolio_id
LEFT JOIN sigmasight.portfolio_risk_metrics r
       ON r.trade_date = t.trade_date AND r.portfolio_id = t.portfolio_id
          AND r.trade_date BETWEEN {day0} AND {last}
LEFT JOIN sigmasight.portfolio_returns pr
       ON pr.trade_date = t.trade_date AND pr.portfolio_id = t.portfolio_id
          AND pr.trade_date BETWEEN {day0} AND {last}
"""


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=PORTFOLIO_GROUP,
    kinds={"postgres", "sql"},
    ins={
        "position_values": AssetIn(partition_mapping=lookback(SNAPSHOT_WINDOW - 1)),
        "portfolio_greeks": AssetIn(),
        "portfolio_factor_exposures": AssetIn(),
        "portfolio_risk_metrics": AssetIn(),
        "portfolio_returns": AssetIn(),
    },
    retry_policy=TRANSIENT_RETRY,
    check_specs=[SNAPSHOT_RULES.spec()],
)
def portfolio_snapshots(
    context: AssetExecutionContext,
    position_values: TableReader,
    portfolio_greeks: TableReader,
    portfolio_factor_exposures: TableReader,
    portfolio_risk_metrics: TableReader,
    portfolio_returns: TableReader,
    database: PostgresResource,
):
    """Per portfolio and day: total value, long/short/gross/net exposure, position counts by
    type (positions held at the close), daily P&L and P&L over the trailing 90 sessions
    (window_pnl, from window_start), realized P&L (day and to date), flows, equity and the
    time-weighted return (portfolio_returns), the portfolio Greeks, the factor and rate betas
    ($ per +100 bp) and the risk metrics of the day. One INSERT ... SELECT: Postgres sums the
    position rows, nothing is read into Python. The trailing P&L takes the sessions before
    the run from the stored snapshots' daily P&L (from the position rows for a portfolio-day
    without one), so a daily run sums one day of position rows, not 90."""
    days = partition_days(context)
    scope = run_scope(context)
    select = snapshot_select(days, scope)
    replace = scope.portfolio_filter()
    yield Output(TableWrite(replace=replace, insert_select=select, columns=SNAPSHOT_COLUMNS))
    yield SNAPSHOT_RULES.run(database.url(), days, replace)


def snapshot_select(days: pd.DatetimeIndex, scope: Scope) -> sql.Composed:
    """SNAPSHOT_SELECT over the sessions `days` and the portfolios of `scope`."""
    sessions = sessions_with_lookback(days, SNAPSHOT_WINDOW - 1)
    window_starts = [sessions[max(0, i - (SNAPSHOT_WINDOW - 1))] for i in range(len(sessions))][
        -len(days) :
    ]
    return sql.SQL(SNAPSHOT_SELECT).format(
        days=sql.Literal([d.date() for d in days]),
        starts=sql.Literal([d.date() for d in window_starts]),
        first=sql.Literal(sessions[0].date()),
        last=sql.Literal(days[-1].date()),
        day0=sql.Literal(days[0].date()),
        earlier=sql.Literal([d.date() for d in sessions[sessions < days[0]]]),
        scope=scope.portfolio_filter("v.portfolio_id"),
        scope_ids=scope.portfolio_filter("p.id"),
        portfolios=scope.portfolio_filter(),
        tlt_100bp=sql.Literal(float(stress.rate_shock_return(100.0, tlt_duration()))),
    )
