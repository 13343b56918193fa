"""Response models of the risk-depth routes (issue 11): volatility, correlations, concentration,
sectors, the factor-vs-specific risk decomposition and stress tests.

Units as in `models`: money ends in `_usd` (`_usd2`: squared dollars), fractions in `_fraction`
(0.05 = 5 %); volatilities are annualized (x sqrt(252)); every window counts NYSE sessions.
A value that could not be computed is null and the row's `reason` says why.

A *name* is an underlying: a position's dollar exposure counts on its underlying, stocks at
signed exposure (quantity x price), options at delta-adjusted exposure (position delta x
underlying price), netted per underlying. Weights are of gross: |net exposure of the name| /
the sum of those over the portfolio's names.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from sigmasight_pipeline.analytics.correlation import (
    CLUSTER_THRESHOLD,
    CORRELATION_WINDOW,
    MIN_OVERLAP,
)

__all__ = [
    "CORRELATION_FORMATS",
    "Concentration",
    "ConcentrationName",
    "CorrelationCluster",
    "CorrelationFormat",
    "CorrelationPair",
    "Correlations",
    "PortfolioVolatility",
    "PositionRiskContribution",
    "RateSensitivity",
    "RiskComponent",
    "RiskDecomposition",
    "SectorExposure",
    "SectorExposures",
    "StressPosition",
    "StressResults",
    "StressScenarioResult",
    "UnderlyingVolatility",
    "Volatility",
]

CorrelationFormat = Literal["matrix", "pairs"]
CORRELATION_FORMATS: tuple[str, ...] = ("matrix", "pairs")
_NAME_EXPOSURE = (
    "net dollar exposure on the name, signed: stocks at quantity x price, options at "
    "delta-adjusted exposure, summed over the portfolio's positions on it"
)
_NAME_WEIGHT = "|exposure_usd| / the sum of |net exposure| over the portfolio's names"

# ---------------------------------------------------------------------------------------------
# Volatility


class _VolatilityMeasures(BaseModel):
    """Realized and forecast volatility of one daily return series, annualized fractions."""

    vol_21d_fraction: float | None = Field(
        description="realized volatility over the last 21 sessions (std x sqrt(252))"
    )
    vol_63d_fraction: float | None = Field(description="realized volatility over 63 sessions")
    vol_252d_fraction: float | None = Field(description="realized volatility over 252 sessions")
    vol_ewma_fraction: float | None = Field(
        description="exponentially weighted volatility (RiskMetrics, lambda 0.94)"
    )
    vol_har_21d_fraction: float | None = Field(
        description="HAR-RV forecast (Corsi 2009) of the next 21 sessions' volatility, fitted "
        "on daily, weekly and monthly realized variance over the last 252 sessions"
    )
    vol_percentile_252d: float | None = Field(
        description="percentile (0-100) of today's 21-session volatility among those of the "
        "last 252 sessions"
    )


class PortfolioVolatility(_VolatilityMeasures):
    """The portfolio's own time-weighted return series (the day's P&L / the previous
    session's equity plus the day's flows; portfolio_returns.twr_daily) and
    its ex-ante volatility from today's exposures."""

    vol_ex_ante_usd: float | None = Field(
        description="ex-ante volatility, USD per year: sqrt(252 e'Se) on today's exposures per "
        "underlying e (options delta-adjusted) and the 60-session covariance S of their returns"
    )
    vol_ex_ante_fraction: float | None = Field(
        description="vol_ex_ante_usd / the portfolio's gross value"
    )
    n_obs: int = Field(description="daily returns of the portfolio in the 252-session window")
    reason: str | None = Field(description="why a measure is null, if one is")


class UnderlyingVolatility(_VolatilityMeasures):
    """A name held on the day, its exposure and its own volatility measures."""

    symbol: str = Field(description="underlying ticker")
    exposure_usd: float | None = Field(description=f"{_NAME_EXPOSURE}; null if none is priced")
    weight_fraction: float | None = Field(description=_NAME_WEIGHT)
    position_ids: list[int] = Field(description="the portfolio's positions on this name")
    n_obs: int | None = Field(
        description="daily returns of the symbol in the 252-session window (null: no row)"
    )
    reason: str | None = Field(description="why a measure is null, if one is")


class Volatility(BaseModel):
    """The portfolio's volatility measures and those of every name it holds (largest first)."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    portfolio: PortfolioVolatility = Field(description="the portfolio's measures")
    underlyings: list[UnderlyingVolatility] = Field(
        description="every underlying held, by |exposure_usd| descending (then symbol)"
    )


# ---------------------------------------------------------------------------------------------
# Correlations


class CorrelationPair(BaseModel):
    """The correlation of two underlyings (symbol_a < symbol_b)."""

    symbol_a: str = Field(description="first underlying (alphabetical order)")
    symbol_b: str = Field(description="second underlying")
    correlation: float | None = Field(
        description=f"Pearson correlation of daily returns over {CORRELATION_WINDOW} sessions "
        "on the sessions both have (pairwise-complete); null when undefined (see reason)"
    )
    n_obs: int = Field(description="sessions with a return of both")
    reason: str | None = Field(description="why the correlation is null, if it is")


class CorrelationCluster(BaseModel):
    """Underlyings whose returns are correlated pairwise at |rho| >= the threshold."""

    cluster_id: int = Field(description="1..n_clusters, largest cluster first")
    symbols: list[str] = Field(description="members, in the order of `symbols`")


class Correlations(BaseModel):
    """The correlation matrix of the portfolio's underlyings, its clusters and summary.

    `format=matrix` (default): `matrix` is the full symmetric matrix in the order of
    `symbols` (row i, column j: the correlation of symbols[i] and symbols[j]; 1 on the
    diagonal; null where undefined) and `pairs` lists only the undefined pairs with their
    reason. `format=pairs`: `matrix` is null and `pairs` lists every pair a < b."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    format: CorrelationFormat = Field(description="matrix or pairs (see the schema)")
    window_sessions: int = Field(
        default=CORRELATION_WINDOW, description="sessions of daily returns used"
    )
    min_overlap_sessions: int = Field(
        default=MIN_OVERLAP, description="fewest common sessions for a defined correlation"
    )
    cluster_threshold: float = Field(
        default=CLUSTER_THRESHOLD,
        description="members of a cluster have |rho| >= this, pairwise (complete linkage)",
    )
    symbols: list[str] = Field(description="the portfolio's underlyings, alphabetical")
    matrix: list[list[float | None]] | None = Field(
        description="format=matrix: correlations, rows and columns in the order of symbols "
        "(diagonal 1; null where undefined, and on the diagonal of a symbol without data)"
    )
    pairs: list[CorrelationPair] = Field(
        description="format=pairs: every pair; format=matrix: the pairs whose correlation is "
        "null, with the reason"
    )
    clusters: list[CorrelationCluster] = Field(description="clusters, by cluster_id")
    unclustered: list[str] = Field(
        description="symbols in no cluster (too little data for any correlation)"
    )
    avg_pairwise_correlation: float | None = Field(
        description="plain mean of the defined correlations over pairs a < b"
    )
    avg_pnl_correlation: float | None = Field(
        description="exposure-weighted mean correlation of the names' dollar P&L: "
        "sum e_a e_b rho_ab / sum |e_a e_b| over pairs a < b (a long/short pair counts negative)"
    )
    effective_number_of_bets: float | None = Field(
        description="effective rank (entropy of the eigenvalues) of the exposure-weighted "
        "correlation matrix: N equal uncorrelated names give N, perfectly correlated ones 1"
    )
    n_clusters: int | None = Field(description="number of clusters")
    reason: str | None = Field(description="why a summary measure is null or approximate")


# ---------------------------------------------------------------------------------------------
# Concentration and sectors


class ConcentrationName(BaseModel):
    """One of the largest names by weight."""

    symbol: str = Field(description="underlying ticker")
    exposure_usd: float = Field(description=_NAME_EXPOSURE)
    weight_fraction: float | None = Field(description=_NAME_WEIGHT)
    position_count: int = Field(description="positions on the name")


class Concentration(BaseModel):
    """Concentration of gross exposure by name (null with a reason when there is none)."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    gross_exposure_usd: float | None = Field(description="sum of |net exposure| over names")
    n_names: int = Field(description="names with a non-zero net exposure")
    hhi: float | None = Field(
        description="Herfindahl-Hirschman index of the names' weights: sum of weight^2, in "
        "(0, 1] (not the 10,000 scale)"
    )
    effective_n: float | None = Field(description="1 / hhi: N equal names give N")
    top5_weight_fraction: float | None = Field(description="sum of the 5 largest weights")
    top10_weight_fraction: float | None = Field(description="sum of the 10 largest weights")
    largest_symbol: str | None = Field(description="the largest name (ties: alphabetical)")
    largest_weight_fraction: float | None = Field(description="its weight")
    largest_exposure_usd: float | None = Field(description="its signed net exposure")
    n_missing_exposure: int = Field(description="positions without an exposure, left out")
    reason: str | None = Field(description="why a measure is null or positions are left out")
    top_names: list[ConcentrationName] = Field(
        description="the `top` largest names by weight (ties: alphabetical)"
    )


class SectorExposure(BaseModel):
    """A GICS sector's exposure (names netted first, then long or short) and benchmark."""

    sector: str = Field(description="GICS sector, or Unclassified (ETFs, unknown)")
    long_exposure_usd: float | None = Field(description="sum of the long names' net exposure")
    short_exposure_usd: float | None = Field(
        description="sum of the short names' net exposure (<= 0)"
    )
    gross_exposure_usd: float | None = Field(description="long minus short exposure")
    net_exposure_usd: float | None = Field(description="long plus short exposure")
    gross_weight_fraction: float | None = Field(
        description="sector gross / the portfolio's gross exposure"
    )
    net_weight_fraction: float | None = Field(
        description="sector net / the portfolio's gross exposure"
    )
    benchmark_weight_fraction: float | None = Field(
        description="the sector's S&P 500 weight (0 for Unclassified)"
    )
    active_weight_fraction: float | None = Field(
        description="net_weight_fraction - benchmark_weight_fraction"
    )
    n_names: int = Field(description="names held in the sector")
    benchmark_as_of: date | None = Field(description="date of the benchmark weights used")
    reason: str | None = Field(description="why a value is null, if one is")


class SectorExposures(BaseModel):
    """Every GICS sector (held or not) plus Unclassified when held, by gross exposure."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    benchmark_as_of: date | None = Field(
        description="date of the S&P 500 sector weights (data/benchmark_sector_weights.csv)"
    )
    sectors: list[SectorExposure] = Field(
        description="by gross_exposure_usd descending, then sector"
    )


# ---------------------------------------------------------------------------------------------
# Risk decomposition

_ANNUAL = "annualized (daily x 252)"


class RiskComponent(BaseModel):
    """One factor's share of the model variance, or the specific (idiosyncratic) part."""

    component: str = Field(description="a factor (Market, ..., Rates) or `specific`")
    kind: Literal["factor", "specific"] = Field(description="factor or specific")
    exposure_usd: float | None = Field(
        description="factor dollar exposure: sum over names of exposure x beta (null: specific)"
    )
    variance_usd2: float | None = Field(
        description=f"contribution to the model variance, USD squared, {_ANNUAL}: "
        "x_k (Sigma_f x)_k for a factor (x = B'e), sum e_i^2 s_i for specific"
    )
    share_of_variance_fraction: float | None = Field(
        description="variance_usd2 / the model variance (may be < 0 for a hedging factor)"
    )
    vol_contribution_usd: float | None = Field(
        description="variance_usd2 / total_vol_usd: the contributions sum to total_vol_usd"
    )
    reason: str | None = Field(description="why a value is null, if one is")


class PositionRiskContribution(BaseModel):
    """A position's Euler contribution to the model volatility."""

    position_id: int = Field(description="position id")
    symbol: str = Field(description="ticker or OCC symbol")
    position_type: str = Field(description="LONG, SHORT, LC, LP, SC or SP")
    underlying: str = Field(description="underlying ticker")
    exposure_usd: float | None = Field(
        description="dollar exposure on the underlying (options delta-adjusted)"
    )
    marginal_vol_per_usd: float | None = Field(
        description="d(model volatility) / d(exposure): USD of volatility per USD of exposure"
    )
    component_vol_usd: float | None = Field(
        description="exposure x marginal: the positions' components sum to total_vol_usd"
    )
    factor_vol_usd: float | None = Field(description="the factor part of component_vol_usd")
    specific_vol_usd: float | None = Field(description="the specific part of component_vol_usd")
    share_of_risk_fraction: float | None = Field(
        description="component_vol_usd / total_vol_usd (< 0: the position hedges)"
    )
    reason: str | None = Field(description="why a value is null, if one is")


class RiskDecomposition(BaseModel):
    """Model variance = e'B Sigma_f B'e + sum e_i^2 s_i on the dollar exposures per
    underlying e (options delta-adjusted), betas B, the 60-session covariance Sigma_f of the
    factor returns (the betas' regressors) and each name's specific (residual) variance s_i."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    total_vol_usd: float | None = Field(
        description="model volatility sqrt(variance), USD, annualized (x sqrt(252))"
    )
    coverage_fraction: float | None = Field(
        description="share of the gross exposure whose name has betas and a specific variance"
    )
    components: list[RiskComponent] = Field(
        description="the factors in the model's order, then specific"
    )
    position_count: int = Field(description="positions with a contribution on the day")
    top: int = Field(description="how many positions were asked for")
    positions: list[PositionRiskContribution] = Field(
        description="the `top` positions by component_vol_usd descending (the largest "
        "contributors to risk; hedges, < 0, come last)"
    )


# ---------------------------------------------------------------------------------------------
# Stress tests


class RateSensitivity(BaseModel):
    """The portfolio's sensitivity to long Treasury yields."""

    beta_rates_60d: float | None = Field(
        description="holdings-based rate beta: sum of exposure x the names' 60-session beta "
        "on TLT, divided by the gross value (the Rates factor of /risk/factors)"
    )
    pnl_usd_per_100bp: float | None = Field(
        description="linear P&L of a +100 bp parallel yield move: Rates dollar exposure x "
        "TLT's return for +100 bp (-duration x 1 %, duration 16.5 by default)"
    )


class StressPosition(BaseModel):
    """A position's P&L under a scenario."""

    position_id: int = Field(description="position id")
    symbol: str = Field(description="ticker or OCC symbol")
    position_type: str = Field(description="LONG, SHORT, LC, LP, SC or SP")
    underlying: str = Field(description="underlying ticker")
    pnl_usd: float | None = Field(
        description="P&L under the scenario (options fully revalued), USD; < 0 is a loss"
    )
    pnl_usd_delta_gamma: float | None = Field(
        description="the delta-gamma(-vega) approximation of the same P&L, USD"
    )


class StressScenarioResult(BaseModel):
    """One scenario's P&L for the portfolio and its worst positions."""

    scenario_id: str = Field(description="scenario id (data/stress_scenarios.yaml)")
    name: str | None = Field(description="short label (null: no longer in the library)")
    kind: str | None = Field(description="factor (an instantaneous shock) or replay (history)")
    description: str | None = Field(description="what the scenario is")
    start_date: date | None = Field(description="replay: first day of the episode")
    end_date: date | None = Field(description="replay: last day of the episode")
    pnl_usd: float | None = Field(
        description="P&L, USD (< 0 a loss): sum of the positions', options fully revalued "
        "with Black-Scholes at the shocked spot and implied vol; nothing clipped"
    )
    pnl_usd_delta_gamma: float | None = Field(
        description="the same from the positions' delta-gamma approximations, USD"
    )
    pnl_fraction_of_gross: float | None = Field(
        description="pnl_usd / gross_exposure_usd (-0.05 = a loss of 5 % of gross)"
    )
    gross_exposure_usd: float | None = Field(description="the portfolio's gross market value")
    method: str | None = Field(
        description="full_revaluation (an option was revalued) or linear (stocks only)"
    )
    n_positions: int = Field(description="positions stressed")
    n_missing: int = Field(description="positions without a P&L, left out of the sum")
    reason: str | None = Field(description="why positions are missing or a value is null")
    worst_positions: list[StressPosition] = Field(
        description="the `worst` positions (3 by default) with the lowest pnl_usd, lowest first"
    )


class StressResults(RateSensitivity):
    """Every scenario in the library's order, with the portfolio's rate sensitivity."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    scenarios: list[StressScenarioResult] = Field(description="in the library's order")
