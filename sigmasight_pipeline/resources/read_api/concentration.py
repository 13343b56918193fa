"""Concentration (HHI, effective N, top names) and sector exposures on a day."""

from __future__ import annotations

from datetime import date

import psycopg

from sigmasight_pipeline.resources.read_api.common import (
    NAMES_SQL,
    SCHEMA,
    fetch,
    no_rows,
    trading_day,
)
from sigmasight_pipeline.resources.read_api.depth_models import (
    Concentration,
    ConcentrationName,
    SectorExposure,
    SectorExposures,
)

_S = SCHEMA

CONCENTRATION_SQL = f"""
SELECT gross_exposure_usd, n_names, hhi, effective_n, top5_weight AS top5_weight_fraction,
       top10_weight AS top10_weight_fraction, largest_symbol,
       largest_weight AS largest_weight_fraction, largest_exposure_usd, n_missing_exposure,
       reason
FROM {_S}.portfolio_concentration
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
"""

SECTORS_SQL = f"""
SELECT sector, long_exposure_usd, short_exposure_usd, gross_exposure_usd, net_exposure_usd,
       gross_weight AS gross_weight_fraction, net_weight AS net_weight_fraction,
       benchmark_weight AS benchmark_weight_fraction, active_weight AS active_weight_fraction,
       n_names, benchmark_as_of, reason
FROM {_S}.portfolio_sector_exposures
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
ORDER BY gross_exposure_usd DESC NULLS LAST, sector
"""


def concentration(
    conn: psycopg.Connection, portfolio_id: int, as_of: date | None = None, top: int = 10
) -> Concentration:
    """HHI, effective N, top-5/top-10 and largest name of the day, with the `top` largest
    names (their net exposures counted as the concentration asset counts them)."""
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    day = trading_day(conn, portfolio_id, as_of)
    params = {"pid": portfolio_id, "day": day}
    rows = fetch(conn, CONCENTRATION_SQL, params)
    if not rows:
        raise no_rows("concentration", "portfolio_concentration", portfolio_id, day)
    names = [n for n in fetch(conn, NAMES_SQL, params) if n["exposure_usd"] is not None]
    return Concentration(
        portfolio_id=portfolio_id,
        as_of=day,
        top_names=[ConcentrationName.model_validate(n) for n in names[:top]],
        **rows[0],
    )


def sector_exposures(
    conn: psycopg.Connection, portfolio_id: int, as_of: date | None = None
) -> SectorExposures:
    """Every sector's long, short, gross and net exposure, weights and benchmark weight."""
    day = trading_day(conn, portfolio_id, as_of)
    rows = fetch(conn, SECTORS_SQL, {"pid": portfolio_id, "day": day})
    if not rows:
        raise no_rows("sector exposures", "portfolio_sector_exposures", portfolio_id, day)
    sectors = [SectorExposure.model_validate(r) for r in rows]
    dates = [s.benchmark_as_of for s in sectors if s.benchmark_as_of is not None]
    return SectorExposures(
        portfolio_id=portfolio_id,
        as_of=day,
        benchmark_as_of=max(dates, default=None),
        sectors=sectors,
    )
