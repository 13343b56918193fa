"""Users and portfolio access: login lookups, who may read which portfolio."""

from __future__ import annotations

from typing import Any

import psycopg

from sigmasight_pipeline.resources.read_api.common import SCHEMA, fetch
from sigmasight_pipeline.resources.read_api.models import PortfolioAccess, PortfolioRef

_S = SCHEMA

USER_SQL = f"SELECT id, username, role, password_hash FROM {_S}.users WHERE username = %(username)s"

# The portfolio asked for (if the user may read it), else the user's first, else (admin) the
# first of all; each branch an index lookup, the first non-empty one wins.
RESOLVE_PORTFOLIO_SQL = f"""
WITH u AS (SELECT id, role FROM {_S}.users WHERE id = %(uid)s),
candidates AS (
    SELECT 1 AS rank, p.id, p.name, p.owner_id
    FROM u JOIN {_S}.portfolios p ON p.id = %(pid)s::integer
    WHERE p.owner_id = u.id OR u.role = 'admin'
    UNION ALL
    (SELECT 2, p.id, p.name, p.owner_id
     FROM u JOIN {_S}.portfolios p ON p.owner_id = u.id
     WHERE %(pid)s::integer IS NULL
     ORDER BY p.id LIMIT 1)
    UNION ALL
    (SELECT 3, p.id, p.name, p.owner_id
     FROM u CROSS JOIN {_S}.portfolios p
     WHERE %(pid)s::integer IS NULL AND u.role = 'admin'
     ORDER BY p.id LIMIT 1)
)
SELECT u.role, c.id, c.name, c.owner_id, o.username AS owner_username
FROM u
LEFT JOIN LATERAL (SELECT * FROM candidates ORDER BY rank LIMIT 1) c ON true
LEFT JOIN {_S}.users o ON o.id = c.owner_id
"""

PORTFOLIOS_OWNED_SQL = f"""
SELECT p.id, p.name, p.owner_id, o.username AS owner_username
FROM {_S}.portfolios p JOIN {_S}.users o ON o.id = p.owner_id
WHERE p.owner_id = %(uid)s
ORDER BY p.id
"""

PORTFOLIOS_ALL_SQL = f"""
SELECT p.id, p.name, p.owner_id, o.username AS owner_username
FROM {_S}.portfolios p JOIN {_S}.users o ON o.id = p.owner_id
ORDER BY (p.owner_id = %(uid)s) DESC, p.id
"""


def user_row(conn: psycopg.Connection, username: str) -> dict[str, Any] | None:
    """id, username, role and password_hash of the user, or None."""
    rows = fetch(conn, USER_SQL, {"username": username})
    return rows[0] if rows else None


def portfolios_for(conn: psycopg.Connection, user_id: int, role: str) -> list[PortfolioRef]:
    """The portfolios a user may read: their own (first), or all of them for an admin."""
    query = PORTFOLIOS_ALL_SQL if role == "admin" else PORTFOLIOS_OWNED_SQL
    return [PortfolioRef(**r) for r in fetch(conn, query, {"uid": user_id})]


def resolve_portfolio(
    conn: psycopg.Connection, user_id: int, portfolio_id: int | None
) -> PortfolioAccess:
    """Whether the user exists, their role, and the portfolio they may read (see the resource)."""
    rows = fetch(conn, RESOLVE_PORTFOLIO_SQL, {"uid": user_id, "pid": portfolio_id})
    if not rows:
        return PortfolioAccess(user_exists=False)
    row = rows[0]
    portfolio = None
    if row["id"] is not None:
        portfolio = PortfolioRef(
            id=row["id"],
            name=row["name"],
            owner_id=row["owner_id"],
            owner_username=row["owner_username"],
        )
    return PortfolioAccess(user_exists=True, role=row["role"], portfolio=portfolio)
