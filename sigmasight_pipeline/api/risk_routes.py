"""Routes under /risk: Greeks, factors, metrics, volatility, correlations, concentration,
sectors, risk decomposition and stress tests (one trading day each, `as_of`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sigmasight_pipeline.api.common import (
    API_PREFIX,
    ERRORS,
    AsOfParam,
    PortfolioDep,
    ReaderDep,
    TopParam,
)
from sigmasight_pipeline.resources.read_api import (
    Concentration,
    CorrelationFormat,
    Correlations,
    FactorExposures,
    Greeks,
    GreeksView,
    RiskDecomposition,
    RiskMetrics,
    SectorExposures,
    StressResults,
    Volatility,
)

router = APIRouter(prefix=API_PREFIX, tags=["risk"], responses=ERRORS)


@router.get("/risk/greeks", response_model=Greeks)
def get_greeks(
    reader: ReaderDep, p: PortfolioDep, view: GreeksView = "portfolio", as_of: AsOfParam = None
) -> Greeks:
    """Greeks of the whole portfolio, its longs or its shorts, with the positions'."""
    return reader.greeks(p.id, view, as_of)


@router.get("/risk/factors", response_model=FactorExposures)
def get_factors(reader: ReaderDep, p: PortfolioDep, as_of: AsOfParam = None) -> FactorExposures:
    """Beta (holdings-based; each factor says its method) and dollar exposure to the eight
    factors and Rates, and the linear P&L per +100 bp of long Treasury yields."""
    return reader.factor_exposures(p.id, as_of)


@router.get("/risk/metrics", response_model=RiskMetrics)
def get_metrics(reader: ReaderDep, p: PortfolioDep, as_of: AsOfParam = None) -> RiskMetrics:
    """Realized beta, volatility, Sharpe, Sortino, max drawdown, VaR and CVaR (parametric in
    USD; historical as a fraction and in USD)."""
    return reader.risk_metrics(p.id, as_of)


@router.get("/risk/volatility", response_model=Volatility)
def get_volatility(reader: ReaderDep, p: PortfolioDep, as_of: AsOfParam = None) -> Volatility:
    """Realized (21/63/252 sessions), EWMA, HAR-forecast and ex-ante volatility of the
    portfolio; every name held with its exposure and its own volatility measures."""
    return reader.volatility(p.id, as_of)


@router.get("/risk/correlations", response_model=Correlations)
def get_correlations(
    reader: ReaderDep,
    p: PortfolioDep,
    form: Annotated[
        CorrelationFormat,
        Query(
            alias="format",
            description="matrix: symbols x symbols (heatmap); pairs: one row per pair",
        ),
    ] = "matrix",
    as_of: AsOfParam = None,
) -> Correlations:
    """90-session correlations of the underlyings (matrix or pairs; null where undefined,
    with the reason), clusters at |rho| >= 0.7, average and P&L-weighted correlation and
    the effective number of bets."""
    return reader.correlations(p.id, as_of, form)


@router.get("/risk/concentration", response_model=Concentration)
def get_concentration(
    reader: ReaderDep, p: PortfolioDep, top: TopParam = 10, as_of: AsOfParam = None
) -> Concentration:
    """HHI, effective N, top-5/top-10 weights and the largest name, with the `top` names."""
    return reader.concentration(p.id, as_of, top)


@router.get("/risk/sectors", response_model=SectorExposures)
def get_sectors(reader: ReaderDep, p: PortfolioDep, as_of: AsOfParam = None) -> SectorExposures:
    """Long, short, gross and net exposure per GICS sector, weights, the S&P 500 weight
    and the active weight."""
    return reader.sector_exposures(p.id, as_of)


@router.get("/risk/decomposition", response_model=RiskDecomposition)
def get_decomposition(
    reader: ReaderDep, p: PortfolioDep, top: TopParam = 10, as_of: AsOfParam = None
) -> RiskDecomposition:
    """Model variance split into factors and specific risk, and the `top` positions by
    Euler contribution to the model volatility."""
    return reader.risk_decomposition(p.id, as_of, top)


@router.get("/risk/stress", response_model=StressResults)
def get_stress(
    reader: ReaderDep,
    p: PortfolioDep,
    worst: Annotated[
        int, Query(ge=1, le=100, description="worst positions listed per scenario")
    ] = 3,
    as_of: AsOfParam = None,
) -> StressResults:
    """Every stress scenario's P&L (options fully revalued; delta-gamma beside it) with its
    worst positions, and the rate beta and P&L per +100 bp."""
    return reader.stress_results(p.id, as_of, worst)
