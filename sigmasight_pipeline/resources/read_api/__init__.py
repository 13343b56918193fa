"""The read layer: typed queries over what the pipeline computed, for the frontend and scripts.

`SigmaSightReader` is a Dagster resource (usable from assets, sensors and scripts, and the one
thing the HTTP API in `sigmasight_pipeline.api` calls). Each query is plain parameterized SQL on
indexed columns (`sql/0005_read_api.sql`), one or two statements per call, never one per row,
and returns pydantic models.

Layout: `models` (response models and their units: money `_usd`, fractions `_fraction`),
`depth_models` (those of the risk-depth routes), `history_models` (events, flows and targets),
one query module per domain (`portfolio`: overview; `positions`; `risk`: Greeks, factors,
metrics; `volatility`; `correlation`; `concentration`: concentration and sectors;
`decomposition`; `stress`; `snapshots`; `history`: position events and equity changes;
`targets`; `tags`; `users`: login and access), each a set of SQL statements and functions of a
connection, and `resource` (the pooled `SigmaSightReader`).

Positions over time (issue 12)
    A portfolio's holdings change with each load: the positions of a day are the
    `position_values` rows of that day, each with that day's quantity. A position closed on a
    day is listed that day with quantity 0 and its realized P&L, and not after; tag counts
    count only open positions.

The trading day ("as of")
    Every per-day query takes `as_of`. By default it is the portfolio's latest day in
    `portfolio_snapshots`: the snapshot is the last step of a day's materialization, so its
    presence marks the day as done. An explicit `as_of` must be a day with a snapshot too, and
    every per-day table (Greeks, factor exposures, risk metrics, volatility, correlations, ...)
    is read for exactly that day (never a silently older one): when a table has no rows for
    it, the query raises `NoDataError` naming the day (and, for the risk-depth tables, the
    table).

Two market betas
    `beta_holdings_60d` (overview, snapshots; the Market factor of the factor exposures) is
    holdings-based: the exposure-weighted sum of the positions' 60-session betas on SPY over
    the gross value. `beta_realized_60d` (overview, risk metrics) is the 60-session regression
    of the portfolio's own daily returns on SPY's. They agree for a book whose weights stay
    constant; they differ when it changed over the window (new positions, drifting weights,
    options' moving deltas).
"""

from sigmasight_pipeline.resources.read_api.depth_models import (
    CORRELATION_FORMATS,
    Concentration,
    ConcentrationName,
    CorrelationCluster,
    CorrelationFormat,
    CorrelationPair,
    Correlations,
    PortfolioVolatility,
    PositionRiskContribution,
    RateSensitivity,
    RiskComponent,
    RiskDecomposition,
    SectorExposure,
    SectorExposures,
    StressPosition,
    StressResults,
    StressScenarioResult,
    UnderlyingVolatility,
    Volatility,
)
from sigmasight_pipeline.resources.read_api.history_models import (
    EVENT_KINDS,
    EquityChange,
    EventKind,
    HistoryTotals,
    PortfolioHistory,
    PortfolioTargets,
    PositionEvent,
    PositionTarget,
    TargetSummary,
)
from sigmasight_pipeline.resources.read_api.models import (
    FACTORS,
    POSITION_TYPES,
    Coverage,
    FactorExposure,
    FactorExposures,
    Greeks,
    GreeksView,
    GreekTotals,
    GroupBy,
    NoDataError,
    Overview,
    PnL,
    PortfolioAccess,
    PortfolioRef,
    Position,
    PositionCounts,
    PositionGreeks,
    PositionGroup,
    Positions,
    PositionTotals,
    PositionType,
    RiskMetrics,
    SnapshotHistory,
    SnapshotPoint,
    Tag,
    TagMode,
    TagRef,
    User,
)
from sigmasight_pipeline.resources.read_api.resource import SigmaSightReader

__all__ = [
    "CORRELATION_FORMATS",
    "EVENT_KINDS",
    "FACTORS",
    "POSITION_TYPES",
    "Concentration",
    "ConcentrationName",
    "CorrelationCluster",
    "CorrelationFormat",
    "CorrelationPair",
    "Correlations",
    "Coverage",
    "EquityChange",
    "EventKind",
    "FactorExposure",
    "FactorExposures",
    "GreekTotals",
    "Greeks",
    "GreeksView",
    "GroupBy",
    "HistoryTotals",
    "NoDataError",
    "Overview",
    "PnL",
    "PortfolioAccess",
    "PortfolioHistory",
    "PortfolioRef",
    "PortfolioTargets",
    "PortfolioVolatility",
    "Position",
    "PositionCounts",
    "PositionEvent",
    "PositionGreeks",
    "PositionGroup",
    "PositionRiskContribution",
    "PositionTarget",
    "PositionTotals",
    "PositionType",
    "Positions",
    "RateSensitivity",
    "RiskComponent",
    "RiskDecomposition",
    "RiskMetrics",
    "SectorExposure",
    "SectorExposures",
    "SigmaSightReader",
    "SnapshotHistory",
    "SnapshotPoint",
    "StressPosition",
    "StressResults",
    "StressScenarioResult",
    "Tag",
    "TagMode",
    "TagRef",
    "TargetSummary",
    "UnderlyingVolatility",
    "User",
    "Volatility",
]
