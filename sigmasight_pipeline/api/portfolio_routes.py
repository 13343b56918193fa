"""Routes about the portfolio and its positions: the overview, positions, daily snapshots,
the history of position events and equity changes, target prices, and tags."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from sigmasight_pipeline.api.common import (
    API_PREFIX,
    ERRORS,
    MAX_PG_INT,
    AsOfParam,
    CallerDep,
    PortfolioDep,
    ReaderDep,
    TagsParam,
    TypesParam,
    check_range,
    split,
    unauthorized,
)
from sigmasight_pipeline.resources.read_api import (
    GroupBy,
    Overview,
    PortfolioHistory,
    PortfolioTargets,
    Positions,
    SnapshotHistory,
    Tag,
    TagMode,
)

router = APIRouter(prefix=API_PREFIX, responses=ERRORS)


@router.get("/portfolio", response_model=Overview, tags=["portfolio"])
def get_overview(reader: ReaderDep, p: PortfolioDep, as_of: AsOfParam = None) -> Overview:
    """Total value, long/short/gross/net exposure, both market betas (holdings-based and
    realized), daily/MTD/YTD and realized P&L, equity, flows and time-weighted return, counts
    by type."""
    return reader.overview(p.id, as_of)


@router.get("/positions", response_model=Positions, tags=["positions"])
def get_positions(
    reader: ReaderDep,
    p: PortfolioDep,
    types: TypesParam = None,
    tags: TagsParam = None,
    tag_mode: Annotated[
        TagMode, Query(alias="tagMode", description="match any or all of the tags")
    ] = "any",
    group_by: Annotated[GroupBy | None, Query(alias="groupBy")] = None,
    as_of: AsOfParam = None,
) -> Positions:
    """Positions held on the day with market value, exposure, daily and realized P&L and their
    target price with the sign-aware expected return to it; filter by type and tags, group. A
    position closed on the day is listed with quantity 0 (counted in totals.closed)."""
    return reader.positions(p.id, as_of, split(types), split(tags), tag_mode, group_by)


@router.get("/portfolio/snapshots", response_model=SnapshotHistory, tags=["portfolio"])
def get_snapshots(
    reader: ReaderDep,
    p: PortfolioDep,
    start: Annotated[date | None, Query(description="first day (default: the first)")] = None,
    end: Annotated[date | None, Query(description="last day (default: the latest)")] = None,
) -> SnapshotHistory:
    """Daily snapshots over a date range, for charts (with realized P&L, flows, equity and the
    time-weighted return)."""
    check_range(start, end, "start", "end")
    return reader.snapshots(p.id, start, end)


@router.get("/portfolio/history", response_model=PortfolioHistory, tags=["portfolio"])
def get_history(
    reader: ReaderDep,
    p: PortfolioDep,
    start: Annotated[
        date | None, Query(alias="from", description="first day (default: the first)")
    ] = None,
    end: Annotated[
        date | None, Query(alias="to", description="last day (default: the last)")
    ] = None,
) -> PortfolioHistory:
    """Position events (open, increase, decrease, close, with realized P&L) and equity changes
    (contributions, withdrawals) dated in [from, to], oldest first, with the realized P&L and
    flow totals of the range. A range without any gives empty lists (200)."""
    check_range(start, end, "from", "to")
    return reader.history(p.id, start, end)


@router.get("/portfolio/targets", response_model=PortfolioTargets, tags=["portfolio"])
def get_targets(reader: ReaderDep, p: PortfolioDep, as_of: AsOfParam = None) -> PortfolioTargets:
    """Positions held on the day with a target price (the latest set on or before it): expected
    return and P&L to the target and downside, sign-aware for shorts, and the portfolio's
    exposure-weighted expected return; how many held positions have no target. No targets:
    an empty list with the counts (200)."""
    return reader.targets(p.id, as_of)


@router.get("/tags", response_model=list[Tag], tags=["tags"])
def get_tags(
    reader: ReaderDep,
    who: CallerDep,
    portfolio_id: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_PG_INT,
            description="only the tags used in this portfolio, counting its open positions "
            "(default: all the caller's tags, counting their open positions in all portfolios)",
        ),
    ] = None,
) -> list[Tag]:
    """With `portfolio_id`: the tags used by that portfolio's open positions, with how many of
    them carry each. Without: the caller's tags (unused ones too), with how many of their open
    positions, over all their portfolios, carry each. Closed positions do not count."""
    access = reader.resolve_portfolio(who.id, portfolio_id)
    if not access.user_exists:
        raise unauthorized("user no longer exists")
    if portfolio_id is None:
        return reader.tags(who.id)
    if access.portfolio is None:
        raise HTTPException(404, "portfolio not found")
    return reader.portfolio_tags(access.portfolio.id)
