"""Tags: a user's tags, or the tags used in one portfolio, with position counts."""

from __future__ import annotations

import psycopg

from sigmasight_pipeline.resources.read_api.common import SCHEMA, fetch
from sigmasight_pipeline.resources.read_api.models import Tag

_S = SCHEMA

# Every tag of the user (unused ones too, count 0); counts over the open positions of all the
# portfolios they own (a closed position's tags no longer count).
USER_TAGS_SQL = f"""
SELECT t.id, t.name, t.color,
       (SELECT count(*)
        FROM {_S}.position_tags pt
        JOIN {_S}.positions p ON p.id = pt.position_id
        JOIN {_S}.portfolios pf ON pf.id = p.portfolio_id
        WHERE pt.tag_id = t.id AND pf.owner_id = %(uid)s AND p.closed_on IS NULL
       ) AS position_count
FROM {_S}.tags t
WHERE t.user_id = %(uid)s
ORDER BY lower(t.name), t.id
"""

# The tags carried by at least one of the portfolio's open positions; counts over them.
PORTFOLIO_TAGS_SQL = f"""
SELECT t.id, t.name, t.color, count(*) AS position_count
FROM {_S}.positions p
JOIN {_S}.position_tags pt ON pt.position_id = p.id
JOIN {_S}.tags t ON t.id = pt.tag_id
WHERE p.portfolio_id = %(pid)s AND p.closed_on IS NULL
GROUP BY t.id, t.name, t.color
ORDER BY lower(t.name), t.id
"""


def user_tags(conn: psycopg.Connection, user_id: int) -> list[Tag]:
    """The user's tags, each with the number of their open positions (all portfolios) carrying
    it."""
    return [Tag.model_validate(r) for r in fetch(conn, USER_TAGS_SQL, {"uid": user_id})]


def portfolio_tags(conn: psycopg.Connection, portfolio_id: int) -> list[Tag]:
    """The tags used by the portfolio's open positions, each with how many of them carry it."""
    rows = fetch(conn, PORTFOLIO_TAGS_SQL, {"pid": portfolio_id})
    return [Tag.model_validate(r) for r in rows]
