"""Option Greeks per position (chunks of portfolios) and their portfolio sums (one SQL
statement)."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Output, asset
from psycopg import sql

from sigmasight_pipeline.analytics import greeks, market
from sigmasight_pipeline.analytics.instruments import OPTION_TYPES
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    TRADING_DAYS,
    TRANSIENT_RETRY,
    all_of,
    load_positions,
    lookback,
    option_positions_of,
    partition_days,
    portfolio_chunks,
    portfolios_in,
    run_days,
    run_scope,
    sessions_with_lookback,
    symbols_in,
    with_positions,
)
from sigmasight_pipeline.checks import TableValidator, schema_check_spec
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import TableReader, TableWrite
from sigmasight_pipeline.scope import Scope
from sigmasight_pipeline.settings import risk_free_rate
from sigmasight_pipeline.sql_checks import PORTFOLIO_GREEKS_RULES

RISK_GROUP = "risk"
VOL_LOOKBACK = market.REALIZED_VOL_WINDOW + 1
HELD_COLUMNS = ["trade_date", "position_id", "portfolio_id", "quantity"]
OPTION_ATTRIBUTES = (
    "symbol", "position_type", "multiplier", "underlying", "option_right", "strike", "expiry",
)  # fmt: skip
# Option positions only: a stock's Greeks are delta 1 per share and zero else, added where
# needed (portfolio_greeks, the read API) from position_values.
STORED_GREEK_COLUMNS = [
    "trade_date", "position_id", "portfolio_id", "underlying_price", "strike", "t_years", "rate",
    "volatility", "volatility_source", "iv_converged", "option_price", "delta", "gamma",
    "theta", "vega", "rho", "position_delta", "position_gamma", "position_theta",
    "position_vega", "position_rho", "dollar_delta", "delta_adjusted_exposure", "source",
    "reason",
]  # fmt: skip


def position_greeks_chunk(
    positions: pd.DataFrame, held: pd.DataFrame, prices: pd.DataFrame, sessions: pd.DatetimeIndex
) -> pd.DataFrame:
    """Greeks of the option positions held in one chunk of portfolios (inputs as the asset
    reads them: position values' rows, the positions, the prices with their lookback)."""
    options = positions[positions["position_type"].isin(OPTION_TYPES)]
    held = with_positions(held, options, OPTION_ATTRIBUTES)
    held = held[held["symbol"].notna()]
    closes = market.close_matrix(prices, sessions)
    underlyings = closes.columns.intersection(held["underlying"].unique())
    vols = market.realized_volatility(closes[underlyings])  # the options' own: never used
    price_source = prices.set_index(["symbol", "trade_date"])["source"]
    days_held = held["trade_date"]
    held["underlying_price"] = market.lookup(closes, days_held, held["underlying"])
    held["realized_vol"] = market.lookup(vols, days_held, held["underlying"])
    held["option_price"] = market.lookup(closes, days_held, held["symbol"])
    sources = price_source.reindex(pd.MultiIndex.from_arrays([held["symbol"], held["trade_date"]]))
    held["option_price_is_market"] = (sources.notna() & sources.ne("model")).to_numpy()
    return greeks.position_greeks(held, risk_free_rate())


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=RISK_GROUP,
    kinds={"postgres", "pandas"},
    ins={"prices": AssetIn(partition_mapping=lookback(VOL_LOOKBACK))},
    retry_policy=TRANSIENT_RETRY,
    check_specs=[schema_check_spec("position_greeks")],
)
def position_greeks(
    context: AssetExecutionContext,
    prices: TableReader,
    position_values: TableReader,
    database: PostgresResource,
):
    """Black-Scholes Greeks per contract and per position for every held position and day.
    Volatility: implied from the option's market price where it converges, else the
    underlying's 30-session realized volatility; inputs and the choice are stored. Expired
    options are zero; missing inputs use the seed's fallback table, marked `fallback`.
    Computed in chunks of portfolios."""
    url = database.url()
    days = partition_days(context)
    sessions = sessions_with_lookback(days, VOL_LOOKBACK)
    scope = run_scope(context)

    def chunks():
        for ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            positions = load_positions(url, portfolios_in(ids), context.run.run_id)
            options = positions[positions["position_type"].isin(OPTION_TYPES)]
            if options.empty:
                continue
            held = position_values.frame(
                HELD_COLUMNS,
                where=all_of(portfolios_in(ids), option_positions_of(portfolios_in(ids))),
            )
            # The underlyings over the lookback (their realized volatility); the contracts on
            # the run's days only (their price on the day held): in a daily run, 30 of every
            # 31 option rows read were a contract's lookback, never used.
            underlyings = sorted(set(options["underlying"]))
            contracts = sorted(set(options["symbol"]) - set(underlyings))
            columns = ["symbol", "trade_date", "close", "source"]
            chunk_prices = pd.concat(
                [
                    prices.frame(columns, where=symbols_in(underlyings)),
                    prices.frame(columns, where=all_of(symbols_in(contracts), run_days(days))),
                ],
                ignore_index=True,
            )
            yield position_greeks_chunk(positions, held, chunk_prices, sessions)

    validator = TableValidator("position_greeks")
    yield Output(
        TableWrite(
            chunks(),
            replace=scope.portfolio_filter(),
            columns=STORED_GREEK_COLUMNS,
            observers=[validator],
        )
    )
    yield validator.result()


PORTFOLIO_GREEKS_COLUMNS = [
    "trade_date", "portfolio_id", "view", "delta", "gamma", "theta", "vega", "rho",
    "dollar_delta", "delta_adjusted_exposure", "fallback_count", "position_count",
]  # fmt: skip
# Views: the whole portfolio, its long positions (quantity > 0) and its short positions; a
# position closed on the day (quantity 0) is in none of them. Option
# positions from position_greeks; stocks from position_values (delta 1 per share: position
# delta = quantity, delta-adjusted exposure = exposure, dollar delta = exposure / 100).
_SUMMED_GREEKS = (
    "delta", "gamma", "theta", "vega", "rho", "dollar_delta", "delta_adjusted_exposure",
)  # fmt: skip
_VIEWS = {"portfolio": "TRUE", "longs": "quantity > 0", "shorts": "quantity < 0"}


def _view_sums(view: str, where: str) -> str:
    """The view's sums and counts over one portfolio-day's rows, as `<view>_<column>`."""
    sums = [f"sum({c}) FILTER (WHERE {where}) AS {view}_{c}" for c in _SUMMED_GREEKS]
    return ", ".join(
        [
            *sums,
            f"count(*) FILTER (WHERE {where} AND source = 'fallback') AS {view}_fallback",
            f"count(*) FILTER (WHERE {where}) AS {view}_positions",
        ]
    )


def _view_row(view: str) -> str:
    greeks = ", ".join(f"s.{view}_{c}" for c in _SUMMED_GREEKS[:5])
    return (
        f"('{view}', {greeks}, coalesce(s.{view}_dollar_delta, 0), "
        f"coalesce(s.{view}_delta_adjusted_exposure, 0), s.{view}_fallback, s.{view}_positions)"
    )


# Summed per portfolio-day with a FILTER per view, then one row per view that has positions:
# twice as fast as grouping by view. Both tables of the join carry the date range: the planner
# does not carry it across the join, and a daily run hashed all of position_values (1.8 s at
# 1,000 portfolios, 0.3 s with the range on both). Both are views unnesting their blocks
# (sql/0024): each is unnested once (MATERIALIZED), then hashed. Joined as views, the planner
# unnested the options' block again for every position of the portfolio-day (23 s instead of
# 3 s at 100 portfolios).
# The positions held, read from their view with OFFSET 0, which keeps the planner from pulling the
# positions' join into the view's unnest: on a session the statistics do not know yet (a daily
# run) it expects one block and, for each of the 1,000 blocks, hashed all 50,000 positions
# again (this SELECT: 13.5 s of a daily run's 21.6 s at 1,000 portfolios, 0.27 s fenced).
_HELD = """
    SELECT trade_date, portfolio_id, position_id, quantity, exposure
    FROM sigmasight.position_values v
    WHERE v.trade_date BETWEEN {first} AND {last} AND {scope_v} AND v.quantity <> 0
    OFFSET 0"""
PORTFOLIO_GREEKS_SELECT = (
    """
WITH greeks AS MATERIALIZED (
    SELECT trade_date, portfolio_id, position_id, position_delta, position_gamma,
           position_theta, position_vega, position_rho, dollar_delta, delta_adjusted_exposure,
           source
    FROM sigmasight.position_greeks g
    WHERE g.trade_date BETWEEN {first} AND {last} AND {scope_g}
), held_options AS MATERIALIZED (
    SELECT v.trade_date, v.portfolio_id, v.position_id, v.quantity
    FROM ("""
    + _HELD
    + """) v JOIN sigmasight.positions p ON p.id = v.position_id
    WHERE p.position_type NOT IN ('LONG', 'SHORT')
), rows AS (
    SELECT g.trade_date, g.portfolio_id, v.quantity, g.position_delta AS delta,
           g.position_gamma AS gamma, g.position_theta AS theta, g.position_vega AS vega,
           g.position_rho AS rho, g.dollar_delta, g.delta_adjusted_exposure, g.source
    FROM greeks g JOIN held_options v USING (portfolio_id, trade_date, position_id)
    UNION ALL
    SELECT v.trade_date, v.portfolio_id, v.quantity, v.quantity * p.multiplier, 0, 0, 0, 0,
           v.exposure / 100, v.exposure, 'stock'
    FROM ("""
    + _HELD
    + """) v JOIN sigmasight.positions p ON p.id = v.position_id
    WHERE p.position_type IN ('LONG', 'SHORT')
), sums AS (
    SELECT trade_date, portfolio_id, """
    + ", ".join(_view_sums(view, where) for view, where in _VIEWS.items())
    + """
    FROM rows
    GROUP BY trade_date, portfolio_id
)
SELECT s.trade_date, s.portfolio_id, w.*
FROM sums s
CROSS JOIN LATERAL (VALUES """
    + ", ".join(_view_row(view) for view in _VIEWS)
    + """) AS w (view, delta, gamma, theta, vega, rho, dollar_delta, delta_adjusted_exposure,
             fallback_count, position_count)
WHERE w.position_count > 0
"""
)


def portfolio_greeks_select(days: pd.DatetimeIndex, scope: Scope) -> sql.Composed:
    """PORTFOLIO_GREEKS_SELECT over the sessions `days` and the portfolios of `scope`."""
    return sql.SQL(PORTFOLIO_GREEKS_SELECT).format(
        first=sql.Literal(days[0].date()),
        last=sql.Literal(days[-1].date()),
        scope_g=scope.portfolio_filter("g.portfolio_id"),
        scope_v=scope.portfolio_filter("v.portfolio_id"),
    )


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=RISK_GROUP,
    kinds={"postgres", "sql"},
    retry_policy=TRANSIENT_RETRY,
    check_specs=[PORTFOLIO_GREEKS_RULES.spec()],
)
def portfolio_greeks(
    context: AssetExecutionContext,
    position_greeks: TableReader,
    position_values: TableReader,
    database: PostgresResource,
):
    """Portfolio delta, gamma, theta, vega, rho, dollar delta and delta-adjusted exposure for
    the views `portfolio`, `longs` and `shorts`: one INSERT ... SELECT ... GROUP BY."""
    days = partition_days(context)
    scope = run_scope(context)
    select = portfolio_greeks_select(days, scope)
    replace = scope.portfolio_filter()
    yield Output(
        TableWrite(replace=replace, insert_select=select, columns=PORTFOLIO_GREEKS_COLUMNS)
    )
    yield PORTFOLIO_GREEKS_RULES.run(database.url(), days, replace)
