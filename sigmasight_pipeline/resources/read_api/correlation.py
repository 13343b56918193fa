"""Correlations on a day: the matrix of the portfolio's underlyings, clusters and summary.

Read from `portfolio_correlation_matrices` (one row per portfolio-day: symbols, clusters and
the summary) and its view `portfolio_correlations` (one row per pair, with the reason where
the correlation is undefined), both by primary key.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

from sigmasight_pipeline.resources.read_api.common import SCHEMA, fetch, no_rows, trading_day
from sigmasight_pipeline.resources.read_api.depth_models import (
    CORRELATION_FORMATS,
    CorrelationCluster,
    CorrelationFormat,
    CorrelationPair,
    Correlations,
)

_S = SCHEMA

CORRELATION_SUMMARY_SQL = f"""
SELECT symbols, cluster_ids, avg_pairwise_correlation, avg_pnl_correlation,
       effective_number_of_bets, n_clusters, reason
FROM {_S}.portfolio_correlation_matrices
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
"""

CORRELATION_PAIRS_SQL = f"""
SELECT symbol_a, symbol_b, correlation, n_obs, reason
FROM {_S}.portfolio_correlations
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
"""


def correlation_matrix(
    symbols: list[str], pairs: list[dict[str, Any]], defined: list[bool]
) -> list[list[float | None]]:
    """The symmetric matrix in the order of `symbols` from the pairs; the diagonal is 1 where
    `defined` (the symbol has data), else null."""
    index = {s: i for i, s in enumerate(symbols)}
    matrix: list[list[float | None]] = [[None] * len(symbols) for _ in symbols]
    for i, ok in enumerate(defined):
        matrix[i][i] = 1.0 if ok else None
    for pair in pairs:
        a, b = index[pair["symbol_a"]], index[pair["symbol_b"]]
        matrix[a][b] = matrix[b][a] = pair["correlation"]
    return matrix


def correlations(
    conn: psycopg.Connection,
    portfolio_id: int,
    as_of: date | None = None,
    form: CorrelationFormat = "matrix",
) -> Correlations:
    """The correlations of the portfolio's underlyings as a matrix (with the undefined pairs
    and their reasons) or as pairs, the clusters and the summary measures."""
    if form not in CORRELATION_FORMATS:
        raise ValueError(f"format must be one of {CORRELATION_FORMATS}, not {form!r}")
    day = trading_day(conn, portfolio_id, as_of)
    params = {"pid": portfolio_id, "day": day}
    rows = fetch(conn, CORRELATION_SUMMARY_SQL, params)
    if not rows:
        raise no_rows("correlations", "portfolio_correlation_matrices", portfolio_id, day)
    summary = rows[0]
    symbols: list[str] = summary.pop("symbols")
    # A symbol without data has no cluster (NULL, or 0 as `cluster_labels` marks it).
    cluster_ids = [c if c else None for c in summary.pop("cluster_ids")]
    members: dict[int, list[str]] = {}
    for symbol, cluster_id in zip(symbols, cluster_ids, strict=True):
        if cluster_id is not None:
            members.setdefault(cluster_id, []).append(symbol)
    pairs = fetch(conn, CORRELATION_PAIRS_SQL, params)
    matrix = None
    if form == "matrix":
        matrix = correlation_matrix(symbols, pairs, [c is not None for c in cluster_ids])
        pairs = [p for p in pairs if p["correlation"] is None]
    return Correlations(
        portfolio_id=portfolio_id,
        as_of=day,
        format=form,
        symbols=symbols,
        matrix=matrix,
        pairs=[CorrelationPair.model_validate(p) for p in pairs],
        clusters=[CorrelationCluster(cluster_id=k, symbols=members[k]) for k in sorted(members)],
        unclustered=[s for s, c in zip(symbols, cluster_ids, strict=True) if c is None],
        **summary,
    )
