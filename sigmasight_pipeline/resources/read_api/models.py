"""The read layer's response models (pydantic), shared by the resource and the HTTP API.

Units, one convention for every field:

* Money is in US dollars and the name ends in `_usd` (prices, values, exposures, P&L, VaR).
  Exposures are signed (short < 0); P&L < 0 is a loss; VaR/CVaR > 0 is a loss.
* A fraction is a decimal (0.05 = 5 %) and the name ends in `_fraction`.
* Betas, Sharpe and Sortino ratios and per-contract Greeks are unitless; position Greeks say
  their units in their descriptions (DESIGN: theta per calendar day, vega per volatility point,
  rho per rate point).
* Every window counts NYSE sessions; `_60d` in a name means the last 60 sessions.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from sigmasight_pipeline.analytics.factors import RATES_FACTOR
from sigmasight_pipeline.resources.market_data import (
    FACTOR_ETFS,
    RATES_ETF,
    SHORT_INTEREST_FACTOR,
)

__all__ = [
    "BETA_HOLDINGS_DEFINITION",
    "BETA_REALIZED_DEFINITION",
    "EXPECTED_RETURN_TO_DOWNSIDE",
    "EXPECTED_RETURN_TO_TARGET",
    "EXTRA_FACTOR_ETFS",
    "FACTORS",
    "FACTOR_METHODS",
    "GREEKS_VIEWS",
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
    "SnapshotHistory",
    "SnapshotPoint",
    "Tag",
    "TagMode",
    "TagRef",
    "User",
    "factor_method",
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

BETA_HOLDINGS_DEFINITION = (
    "holdings-based market beta: the sum over positions of exposure (delta-adjusted for "
    "options) x the underlying's 60-session beta on SPY (Cov/Var of daily returns), divided by "
    "the portfolio's gross value (total_value_usd)"
)
BETA_REALIZED_DEFINITION = (
    "realized market beta: the slope of the portfolio's time-weighted daily returns (the day's "
    "P&L over the previous session's equity plus the day's flows; portfolio_returns.twr_daily) "
    "regressed on SPY's daily returns over the last 60 sessions "
    "(Cov/Var; null with fewer than 20 paired observations)"
)
_STYLE_METHOD = (
    "holdings-based: the sum over positions of exposure (delta-adjusted for options) x the "
    "underlying's 60-session style beta, divided by the gross value; style betas come from one "
    "OLS of the underlying's daily returns on SPY and the {etf}-minus-SPY return spreads"
)
# How each factor's beta is computed (the `method` of a FactorExposure).
FACTOR_METHODS: dict[str, str] = {
    **{name: _STYLE_METHOD.format(etf=etf) for name, etf in FACTOR_ETFS.items()},
    "Market": BETA_HOLDINGS_DEFINITION,
    SHORT_INTEREST_FACTOR: (
        "holdings-based characteristic: the sum over positions of exposure (delta-adjusted for "
        "options) x the underlying's short interest as a fraction of float, divided by the "
        "gross value"
    ),
    RATES_FACTOR: (
        "holdings-based rate beta: the sum over positions of exposure (delta-adjusted for "
        f"options) x the underlying's 60-session beta on {RATES_ETF} (Cov/Var of daily "
        "returns), divided by the gross value; TLT falls when long yields rise, so a positive "
        "beta loses when rates rise (see pnl_usd_per_100bp)"
    ),
}
# Factors stored beyond the eight of the PRD, with their ETF proxies.
EXTRA_FACTOR_ETFS: dict[str, str] = {RATES_FACTOR: RATES_ETF}
_OTHER_FACTOR_METHOD = "holdings-based: exposure-weighted sum of the positions' betas / gross value"
# Sign-aware expected returns to a position's target / downside price (see history_models).
EXPECTED_RETURN_TO_TARGET = (
    "(target_price_usd / price_usd - 1) x sign(quantity): the return if the price goes to the "
    "target, a gain > 0 for a long whose target is above the price and for a short whose "
    "target is below it; null when the position is unpriced, closed or has no target"
)
EXPECTED_RETURN_TO_DOWNSIDE = (
    "(downside_price_usd / price_usd - 1) x sign(quantity): the return if the price goes to "
    "the downside price (< 0: a loss); null when unpriced, closed or without a downside price"
)
_TWR_DAILY = (
    "time-weighted return of the day: P&L / (the previous day's equity + the day's flows), "
    "a fraction; null when not computable"
)
_TWR_CUMULATIVE = (
    "time-weighted return since the first day, chained: prod(1 + daily) - 1, a fraction (a "
    "contribution is not a gain)"
)
_EQUITY = "equity at the day's close: the starting equity plus the P&L and flows to date"
_FLOWS = "external cash flows of the day (contributions > 0, withdrawals < 0), at its start"


def factor_method(factor: str) -> str:
    """How the beta of `factor` is computed (a stored factor outside the eight: generic text)."""
    return FACTOR_METHODS.get(factor, _OTHER_FACTOR_METHOD)


class NoDataError(LookupError):
    """The portfolio has no computed data for the day asked (or none at all yet)."""


# ---------------------------------------------------------------------------------------------
# Users and portfolios


class User(BaseModel):
    """An authenticated user."""

    id: int = Field(description="user id")
    username: str = Field(description="login name")
    role: Literal["user", "admin"] = Field(description="`admin` reads every portfolio")


class PortfolioRef(BaseModel):
    """A portfolio and its owner."""

    id: int = Field(description="portfolio id")
    name: str = Field(description="portfolio name")
    owner_id: int = Field(description="id of the owning user")
    owner_username: str = Field(description="username of the owning user")


class PortfolioAccess(BaseModel):
    """What `resolve_portfolio` found: whether the user exists, their role, the portfolio."""

    user_exists: bool = Field(description="false when the user id is unknown")
    role: str | None = Field(default=None, description="the user's role, read from the database")
    portfolio: PortfolioRef | None = Field(
        default=None, description="the portfolio the user may read, or null"
    )


# ---------------------------------------------------------------------------------------------
# Overview


class PositionCounts(BaseModel):
    """Positions held on the day, by type; `unpriced` have no price and add nothing to sums."""

    LONG: int = Field(description="long stocks")
    SHORT: int = Field(description="short stocks")
    LC: int = Field(description="long calls")
    LP: int = Field(description="long puts")
    SC: int = Field(description="short calls")
    SP: int = Field(description="short puts")
    total: int = Field(description="all positions held on the day")
    unpriced: int = Field(description="positions without a price on the day (not in the sums)")


class Coverage(BaseModel):
    """How much of a period (month or year to date) the snapshots cover."""

    period_start: date = Field(description="first calendar day of the month / year")
    counted_from: date = Field(description="later of the period start and the first entry date")
    sessions_expected: int | None = Field(
        description="NYSE sessions from counted_from to as_of (null: outside the calendar)"
    )
    sessions_present: int = Field(description="snapshots found in the period")
    complete: bool = Field(description="every expected session has a snapshot")
    note: str | None = Field(default=None, description="why the period P&L is not reported")


class PnL(BaseModel):
    """P&L on the day, USD; MTD / YTD only when the snapshots cover the period (else null)."""

    daily_usd: float = Field(description="P&L of the day (price change since the previous session)")
    mtd_usd: float | None = Field(
        description="sum of daily P&L from the first of the month; null unless complete"
    )
    ytd_usd: float | None = Field(
        description="sum of daily P&L from January 1st; null unless complete"
    )
    unrealized_usd: float = Field(description="unrealized P&L against the entry prices")
    realized_usd: float | None = Field(
        description="P&L realized on the day by decreases and closes (null: not computed)"
    )
    realized_cumulative_usd: float | None = Field(
        description="P&L realized to date (null: not computed)"
    )
    trailing_usd: float = Field(
        description="P&L over the trailing 90 sessions, from trailing_start"
    )
    trailing_start: date = Field(description="first session of the trailing window")
    mtd_coverage: Coverage = Field(description="sessions behind mtd_usd")
    ytd_coverage: Coverage = Field(description="sessions behind ytd_usd")


class Overview(BaseModel):
    """Portfolio overview on one trading day (both market betas, each named by its method)."""

    portfolio_id: int = Field(description="portfolio id")
    name: str = Field(description="portfolio name")
    as_of: date = Field(description="the trading day reported (latest snapshot by default)")
    total_value_usd: float = Field(
        description="gross market value: sum of |quantity| x price x multiplier of priced positions"
    )
    long_exposure_usd: float = Field(description="sum of the positive exposures")
    short_exposure_usd: float = Field(description="sum of the negative exposures (<= 0)")
    gross_exposure_usd: float = Field(description="long minus short exposure (sum of |exposure|)")
    net_exposure_usd: float = Field(description="long plus short exposure")
    beta_holdings_60d: float | None = Field(
        description=f"{BETA_HOLDINGS_DEFINITION}; the Market factor of /risk/factors; null when "
        "no position has a beta"
    )
    beta_realized_60d: float | None = Field(
        description=f"{BETA_REALIZED_DEFINITION}; the beta of /risk/metrics; null when the day "
        "has no risk metrics"
    )
    pnl: PnL = Field(description="daily, month-, year-to-date, unrealized and trailing P&L")
    equity_usd: float | None = Field(description=f"{_EQUITY}; null: not computed")
    flows_usd: float | None = Field(description=f"{_FLOWS}; null: not computed")
    twr_daily_fraction: float | None = Field(description=_TWR_DAILY)
    twr_cumulative_fraction: float | None = Field(description=_TWR_CUMULATIVE)
    position_counts: PositionCounts = Field(description="positions held, by type")


# ---------------------------------------------------------------------------------------------
# Positions


class TagRef(BaseModel):
    """A tag as attached to a position."""

    id: int = Field(description="tag id")
    name: str = Field(description="tag name")
    color: str = Field(description="display color, e.g. #FF5733")


class Position(BaseModel):
    """A position's value on the day (value fields null when it has no price).

    A position closed on the day is listed that day (not after) with quantity 0, no market
    value or exposure, its realized P&L and `closed_on` set; it is counted in the totals'
    `closed`, not in `count`."""

    position_id: int = Field(description="position id")
    symbol: str = Field(description="ticker, or OCC symbol for an option")
    position_type: PositionType = Field(description="LONG, SHORT, LC, LP, SC or SP")
    underlying: str = Field(description="underlying ticker (the symbol itself for a stock)")
    option_right: str | None = Field(description="C or P; null for a stock")
    strike_usd: float | None = Field(description="option strike; null for a stock")
    expiry: date | None = Field(description="option expiry; null for a stock")
    quantity: float = Field(description="signed shares or contracts (short < 0)")
    multiplier: int = Field(description="shares per unit: 1 for stocks, 100 for options")
    entry_date: date = Field(description="day the position was entered")
    entry_price_usd: float = Field(description="entry price per share / per option share")
    price_usd: float | None = Field(description="price used on the day; null when unpriced")
    price_date: date | None = Field(description="day of that price (older if carried forward)")
    price_source: str = Field(description="market, carried_forward or missing")
    market_value_usd: float | None = Field(description="|quantity| x price x multiplier")
    exposure_usd: float | None = Field(description="quantity x price x multiplier (signed)")
    cost_basis_usd: float = Field(description="quantity x entry price x multiplier (signed)")
    unrealized_pnl_usd: float | None = Field(description="exposure minus cost basis")
    daily_pnl_usd: float | None = Field(
        description="mark-to-market P&L of the day: quantity x close - quantity at the open x "
        "previous close - the day's trades, x multiplier (realized P&L included)"
    )
    realized_pnl_usd: float | None = Field(
        description="P&L realized on the day by a decrease or close (0 if none; null: not computed)"
    )
    realized_pnl_cum_usd: float | None = Field(
        description="P&L realized since the position opened, through the day (null: not computed)"
    )
    closed_on: date | None = Field(
        description="the day, when the position closed at its close (quantity 0); else null"
    )
    target_price_usd: float | None = Field(
        description="target price per unit (the unit of price_usd): the latest set on or before "
        "the day; null: none"
    )
    downside_price_usd: float | None = Field(description="downside price per unit, if set")
    target_set_on: date | None = Field(description="the session the target applies from")
    expected_return_to_target_fraction: float | None = Field(description=EXPECTED_RETURN_TO_TARGET)
    expected_return_to_downside_fraction: float | None = Field(
        description=EXPECTED_RETURN_TO_DOWNSIDE
    )
    tags: list[TagRef] = Field(description="the position's tags, by name")


class PositionTotals(BaseModel):
    """Sums over a set of positions (unpriced ones add nothing and are counted apart)."""

    count: int = Field(description="positions in the set held at the day's close (quantity != 0)")
    closed: int = Field(description="positions in the set closed on the day (quantity 0)")
    unpriced: int = Field(description="positions without a price (not in the sums)")
    market_value_usd: float = Field(description="sum of market values")
    exposure_usd: float = Field(description="sum of signed exposures (net)")
    long_exposure_usd: float = Field(description="sum of the positive exposures")
    short_exposure_usd: float = Field(description="sum of the negative exposures (<= 0)")
    unrealized_pnl_usd: float = Field(description="sum of unrealized P&L")
    daily_pnl_usd: float = Field(description="sum of daily P&L")
    realized_pnl_usd: float = Field(description="sum of the P&L realized on the day")
    realized_pnl_cum_usd: float = Field(
        description="sum of the positions' P&L realized since they opened"
    )


class PositionGroup(BaseModel):
    """One group of positions: a type, a tag, or (tag grouping) the untagged ones (key null)."""

    key: str | None = Field(description="position type or tag name; null: untagged positions")
    tag: TagRef | None = Field(default=None, description="the tag, when grouped by tag")
    totals: PositionTotals = Field(description="sums over the group")
    position_ids: list[int] = Field(description="the group's positions")


class Positions(BaseModel):
    """Filtered positions on the day, their totals, and the groups when grouped."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    types: list[PositionType] | None = Field(description="type filter applied, if any")
    tags: list[str] | None = Field(description="tag filter applied, if any")
    tag_mode: TagMode = Field(description="any: a position has one of the tags; all: every tag")
    group_by: GroupBy | None = Field(description="grouping applied, if any")
    totals: PositionTotals = Field(description="sums over the filtered positions")
    positions: list[Position] = Field(description="positions by type, then symbol")
    groups: list[PositionGroup] | None = Field(default=None, description="groups, when grouped")


# ---------------------------------------------------------------------------------------------
# Risk: Greeks, factors, metrics

_DELTA_1PCT = "P&L of a 1 % rise of the underlying(s): delta_adjusted_exposure_usd / 100"
_DAE = "delta-adjusted exposure: position delta x underlying price"


class GreekTotals(BaseModel):
    """Position-level Greeks summed over a view."""

    delta: float = Field(description="sum of position deltas, in shares of the underlyings")
    gamma: float = Field(description="sum of position gammas, shares per 1 USD underlying move")
    theta: float = Field(description="sum of position thetas, USD per calendar day")
    vega: float = Field(description="sum of position vegas, USD per 1 volatility point")
    rho: float = Field(description="sum of position rhos, USD per 1 rate point")
    delta_1pct_usd: float = Field(description=f"sum of {_DELTA_1PCT}")
    delta_adjusted_exposure_usd: float = Field(description=f"sum of {_DAE}")
    fallback_count: int = Field(description="positions whose Greeks come from the fallback table")
    position_count: int = Field(description="positions in the view")


class PositionGreeks(BaseModel):
    """A position's Greeks: per contract (delta..rho) and for the position (position_*)."""

    position_id: int = Field(description="position id")
    symbol: str = Field(description="ticker or OCC symbol")
    position_type: PositionType = Field(description="LONG, SHORT, LC, LP, SC or SP")
    quantity: float = Field(description="signed shares or contracts")
    multiplier: int = Field(description="1 for stocks, 100 for options")
    underlying: str = Field(description="underlying ticker")
    underlying_price_usd: float | None = Field(description="underlying's price on the day")
    strike_usd: float | None = Field(description="option strike; null for a stock")
    t_years: float | None = Field(description="time to expiry, calendar days / 365")
    volatility_ann_fraction: float | None = Field(
        description="annualized volatility used in Black-Scholes, a fraction (0.3 = 30 %)"
    )
    volatility_source: str | None = Field(description="implied or realized (underlying's 30d)")
    option_price_usd: float | None = Field(description="option price per share on the day")
    delta: float = Field(description="dV/dS of one option share (1 for a stock)")
    gamma: float = Field(description="d2V/dS2 of one option share, per 1 USD move")
    theta: float = Field(description="one option share, USD per calendar day")
    vega: float = Field(description="one option share, USD per 1 volatility point")
    rho: float = Field(description="one option share, USD per 1 rate point")
    position_delta: float = Field(description="delta x quantity x multiplier, in shares")
    position_gamma: float = Field(description="gamma x quantity x multiplier, shares per USD")
    position_theta: float = Field(description="theta x quantity x multiplier, USD per day")
    position_vega: float = Field(description="vega x quantity x multiplier, USD per vol point")
    position_rho: float = Field(description="rho x quantity x multiplier, USD per rate point")
    delta_1pct_usd: float | None = Field(description=_DELTA_1PCT)
    delta_adjusted_exposure_usd: float | None = Field(description=_DAE)
    source: str = Field(description="model (Black-Scholes), fallback, expired or stock")
    reason: str | None = Field(description="why the fallback was used, if it was")


class Greeks(BaseModel):
    """Greeks of a view: `portfolio` (all), `longs` (quantity > 0) or `shorts` (quantity < 0)."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    view: GreeksView = Field(description="portfolio, longs or shorts")
    totals: GreekTotals = Field(description="Greeks summed over the view")
    totals_source: Literal["stored", "summed"] = Field(
        description="stored (portfolio_greeks) or summed from the positions (no stored row)"
    )
    positions: list[PositionGreeks] = Field(description="the view's positions")


class FactorExposure(BaseModel):
    """A factor's portfolio beta and dollar exposure (null when not computable)."""

    factor: str = Field(description="factor name")
    etf: str | None = Field(description="ETF proxy (null: custom calculation)")
    method: str = Field(description="how `beta` is computed")
    beta: float | None = Field(description="portfolio beta to the factor (see method)")
    exposure_usd: float | None = Field(
        description="factor dollar exposure: sum of position exposure x beta (= beta x gross value)"
    )
    coverage_fraction: float | None = Field(
        description="share of the gross exposure whose underlying has a beta (1 = all)"
    )


class FactorExposures(BaseModel):
    """The eight factors, in the PRD's order (then any other factor stored, e.g. Rates)."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    factors: list[FactorExposure] = Field(description="one entry per factor")
    pnl_usd_per_100bp: float | None = Field(
        description="linear P&L of a +100 bp parallel move of long Treasury yields: the Rates "
        "factor's exposure_usd x TLT's return for +100 bp (-duration x 1 %, duration 16.5 by "
        "default, SIGMASIGHT_TLT_DURATION); null when no position has a rate beta"
    )


class RiskMetrics(BaseModel):
    """Risk metrics on the day (null where there were too few observations; see reason)."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    beta_realized_60d: float | None = Field(
        description=f"{BETA_REALIZED_DEFINITION}; for the holdings-based beta see "
        "/risk/factors (Market)"
    )
    volatility_ann_fraction: float | None = Field(
        description="annualized volatility of daily returns over 60 sessions (std x sqrt(252)), "
        "a fraction (0.2 = 20 %)"
    )
    sharpe: float | None = Field(
        description="annualized Sharpe ratio of daily returns over 60 sessions, unitless"
    )
    sortino: float | None = Field(
        description="annualized Sortino ratio of daily returns over 60 sessions, unitless"
    )
    max_drawdown_fraction: float | None = Field(
        description="maximum drawdown over 90 sessions, a fraction <= 0 (-0.2 = 20 % below peak)"
    )
    var_95_1d_parametric_usd: float | None = Field(
        description="parametric 1-day 95 % VaR, USD (loss > 0): 1.645 x the P&L standard "
        "deviation from the day's exposures and the underlyings' 60-session return covariance"
    )
    cvar_95_1d_parametric_usd: float | None = Field(
        description="parametric 1-day 95 % CVaR (expected shortfall), USD, same inputs"
    )
    var_95_1d_hist_fraction: float | None = Field(
        description="historical 1-day 95 % VaR: minus the 5th percentile of the 60-session "
        "daily returns, a fraction of the total value (loss > 0)"
    )
    cvar_95_1d_hist_fraction: float | None = Field(
        description="historical 1-day 95 % CVaR: minus the mean return at or below that "
        "percentile, a fraction of the total value"
    )
    var_95_1d_hist_usd: float | None = Field(
        description="var_95_1d_hist_fraction x the day's total value, USD"
    )
    cvar_95_1d_hist_usd: float | None = Field(
        description="cvar_95_1d_hist_fraction x the day's total value, USD"
    )
    n_obs: int = Field(description="daily returns observed in the 60-session window")
    reason: str | None = Field(description="why a metric is null, if one is")


# ---------------------------------------------------------------------------------------------
# History and tags


class SnapshotPoint(BaseModel):
    """One day of portfolio history (see Overview and RiskMetrics for the definitions)."""

    trade_date: date = Field(description="trading day")
    total_value_usd: float = Field(description="gross market value")
    long_exposure_usd: float = Field(description="sum of the positive exposures")
    short_exposure_usd: float = Field(description="sum of the negative exposures (<= 0)")
    gross_exposure_usd: float = Field(description="sum of |exposure|")
    net_exposure_usd: float = Field(description="sum of exposures")
    daily_pnl_usd: float = Field(description="P&L of the day")
    cumulative_pnl_usd: float = Field(description="sum of daily P&L from the range's first day")
    unrealized_pnl_usd: float = Field(description="unrealized P&L against the entry prices")
    position_count: int = Field(description="positions held")
    delta: float | None = Field(description="sum of position deltas, shares of the underlyings")
    delta_1pct_usd: float | None = Field(description=f"sum of {_DELTA_1PCT}")
    beta_holdings_60d: float | None = Field(description=BETA_HOLDINGS_DEFINITION)
    volatility_ann_fraction: float | None = Field(
        description="annualized 60-session volatility, a fraction"
    )
    sharpe: float | None = Field(description="annualized 60-session Sharpe ratio")
    max_drawdown_fraction: float | None = Field(
        description="90-session maximum drawdown, a fraction <= 0"
    )
    var_95_1d_parametric_usd: float | None = Field(
        description="parametric 1-day 95 % VaR, USD (loss > 0)"
    )
    realized_pnl_usd: float | None = Field(
        description="P&L realized on the day by decreases and closes"
    )
    realized_pnl_cum_usd: float | None = Field(description="P&L realized to date")
    flows_usd: float | None = Field(description=_FLOWS)
    equity_usd: float | None = Field(description=_EQUITY)
    twr_daily_fraction: float | None = Field(description=_TWR_DAILY)
    twr_cumulative_fraction: float | None = Field(description=_TWR_CUMULATIVE)


class SnapshotHistory(BaseModel):
    """Snapshots in [start, end] (null bounds: from the first / to the latest day)."""

    portfolio_id: int = Field(description="portfolio id")
    start: date | None = Field(description="first day asked (null: from the first)")
    end: date | None = Field(description="last day asked (null: to the latest)")
    points: list[SnapshotPoint] = Field(description="one point per day with a snapshot")


class Tag(BaseModel):
    """A tag and how many open positions carry it (in one portfolio, or in all the user's)."""

    id: int = Field(description="tag id")
    name: str = Field(description="tag name")
    color: str = Field(description="display color")
    position_count: int = Field(
        description="open positions carrying the tag (closed ones do not count): in the "
        "portfolio asked, else in all the owner's portfolios"
    )
