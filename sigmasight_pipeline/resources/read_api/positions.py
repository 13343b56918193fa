"""Positions on a day: values, realized P&L, targets and tags, filtered by type and tag,
totals, groups.

The positions of a day are its `position_values` rows: those held on it, each with that day's
quantity. A position closed on the day is held that session (its closing trade and realized
P&L count on it) and is listed with quantity 0 and `closed_on`; it is not listed after. The
totals count it apart (`closed`), so `count` is the positions held at the close, as in the
snapshot's position counts, while the P&L sums include it and match the snapshot's."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import psycopg

from sigmasight_pipeline.resources.read_api.common import SCHEMA, TYPE_ORDER, fetch, trading_day
from sigmasight_pipeline.resources.read_api.models import (
    POSITION_TYPES,
    GroupBy,
    Position,
    PositionGroup,
    Positions,
    PositionTotals,
    TagMode,
    TagRef,
)
from sigmasight_pipeline.resources.read_api.targets import LATEST_TARGET_JOIN, TARGET_COLUMNS

_S = SCHEMA

# tag_mode "any": need = 1; "all": need = the number of distinct names asked.
POSITIONS_SQL = f"""
WITH wanted AS (
    SELECT t.id, lower(t.name) AS lname
    FROM {_S}.tags t JOIN {_S}.portfolios pf ON pf.owner_id = t.user_id
    WHERE pf.id = %(pid)s AND lower(t.name) = ANY(%(tags)s::text[])
)
SELECT v.position_id, p.symbol, p.position_type, p.underlying, p.option_right,
       p.strike AS strike_usd, p.expiry, v.quantity, p.multiplier, p.entry_date,
       p.entry_price AS entry_price_usd, v.price AS price_usd, v.price_date, v.price_source,
       v.market_value AS market_value_usd, v.exposure AS exposure_usd,
       v.cost_basis AS cost_basis_usd, v.unrealized_pnl AS unrealized_pnl_usd,
       v.daily_pnl AS daily_pnl_usd, v.realized_pnl_usd, v.realized_pnl_cum_usd,
       CASE WHEN p.closed_on <= v.trade_date THEN p.closed_on END AS closed_on,
       {TARGET_COLUMNS},
       COALESCE((
           SELECT json_agg(json_build_object('id', t.id, 'name', t.name, 'color', t.color)
                           ORDER BY lower(t.name), t.id)
           FROM {_S}.position_tags pt JOIN {_S}.tags t ON t.id = pt.tag_id
           WHERE pt.position_id = v.position_id
       ), '[]'::json) AS tags
FROM {_S}.position_values v
JOIN {_S}.positions p ON p.id = v.position_id
{LATEST_TARGET_JOIN}
WHERE v.portfolio_id = %(pid)s AND v.trade_date = %(day)s
  AND (%(types)s::text[] IS NULL OR p.position_type = ANY(%(types)s::text[]))
  AND (%(tags)s::text[] IS NULL OR (
      SELECT count(DISTINCT w.lname)
      FROM {_S}.position_tags pt JOIN wanted w ON w.id = pt.tag_id
      WHERE pt.position_id = v.position_id
  ) >= %(need)s)
ORDER BY {TYPE_ORDER.format(col="p.position_type")}, p.symbol, v.position_id
"""


def clean_names(values: Sequence[str] | None) -> list[str] | None:
    """Stripped, de-duplicated, non-blank names in order; None when there are none."""
    if values is None:
        return None
    names = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    return names or None


def totals(rows: Sequence[Position]) -> PositionTotals:
    """Sums over `rows`; unpriced positions add nothing and are counted apart."""

    def total(values: Iterable[float | None]) -> float:
        return float(sum(v for v in values if v is not None))

    exposures = [p.exposure_usd for p in rows if p.exposure_usd is not None]
    closed = sum(1 for p in rows if p.quantity == 0)
    return PositionTotals(
        count=len(rows) - closed,
        closed=closed,
        unpriced=sum(1 for p in rows if p.price_source == "missing"),
        market_value_usd=total(p.market_value_usd for p in rows),
        exposure_usd=float(sum(exposures)),
        long_exposure_usd=float(sum(e for e in exposures if e > 0)),
        short_exposure_usd=float(sum(e for e in exposures if e < 0)),
        unrealized_pnl_usd=total(p.unrealized_pnl_usd for p in rows),
        daily_pnl_usd=total(p.daily_pnl_usd for p in rows),
        realized_pnl_usd=total(p.realized_pnl_usd for p in rows),
        realized_pnl_cum_usd=total(p.realized_pnl_cum_usd for p in rows),
    )


def _group(key: str | None, rows: list[Position], tag: TagRef | None = None) -> PositionGroup:
    return PositionGroup(
        key=key, tag=tag, totals=totals(rows), position_ids=[p.position_id for p in rows]
    )


def groups(rows: list[Position], group_by: GroupBy) -> list[PositionGroup]:
    """Groups by type (in the PRD's order) or by tag (by name, then the untagged, key None)."""
    if group_by == "type":
        by_type: dict[str, list[Position]] = {}
        for p in rows:
            by_type.setdefault(p.position_type, []).append(p)
        return [_group(t, by_type[t]) for t in POSITION_TYPES if t in by_type]
    tags: dict[int, TagRef] = {}
    by_tag: dict[int | None, list[Position]] = {}
    for p in rows:
        for tag in p.tags:
            tags[tag.id] = tag
            by_tag.setdefault(tag.id, []).append(p)
        if not p.tags:
            by_tag.setdefault(None, []).append(p)
    order = sorted(tags, key=lambda i: (tags[i].name.lower(), i))
    result = [_group(tags[i].name, by_tag[i], tags[i]) for i in order]
    if None in by_tag:
        result.append(_group(None, by_tag[None]))
    return result


def positions(
    conn: psycopg.Connection,
    portfolio_id: int,
    as_of: date | None = None,
    types: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    tag_mode: TagMode = "any",
    group_by: GroupBy | None = None,
) -> Positions:
    """Positions held on the day; filtered by type and by tag names (case-insensitive; `any` or
    `all` of them), grouped by type or tag if asked. ValueError names a bad filter."""
    type_list = clean_names([t.upper() for t in types] if types is not None else None)
    bad = [t for t in type_list or [] if t not in POSITION_TYPES]
    if bad:
        raise ValueError(f"unknown position type(s) {bad}; expected any of {POSITION_TYPES}")
    if tag_mode not in ("any", "all"):
        raise ValueError(f"tag_mode must be 'any' or 'all', not {tag_mode!r}")
    if group_by not in (None, "type", "tag"):
        raise ValueError(f"group_by must be 'type' or 'tag', not {group_by!r}")
    tag_list = clean_names(tags)
    lowered = list(dict.fromkeys(t.lower() for t in tag_list)) if tag_list else None
    need = 1 if tag_mode == "any" or not lowered else len(lowered)

    day = trading_day(conn, portfolio_id, as_of)
    params = {"pid": portfolio_id, "day": day, "types": type_list, "tags": lowered, "need": need}
    items = [Position.model_validate(r) for r in fetch(conn, POSITIONS_SQL, params)]
    return Positions(
        portfolio_id=portfolio_id,
        as_of=day,
        types=type_list,  # type: ignore[arg-type]
        tags=tag_list,
        tag_mode=tag_mode,
        group_by=group_by,
        totals=totals(items),
        positions=items,
        groups=groups(items, group_by) if group_by else None,
    )
