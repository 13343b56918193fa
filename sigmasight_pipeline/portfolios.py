"""Users and portfolios in the database: password hashing and the one portfolio loader.

`load_portfolio` is the only code that writes positions and their events: CSV intake (sensor,
CLI) and the demo all go through it. A re-upload is a new version of the holdings, diffed
against the holdings open on its effective session (`holdings`): unchanged positions keep
their ids, changes append `position_events`, nothing is deleted. It runs in one transaction
and uses COPY, so a 100,000-position file loads in seconds and a failure anywhere leaves the
previous portfolio untouched.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from psycopg import sql

from sigmasight_pipeline import holdings
from sigmasight_pipeline.csv_table import NO_ROWS, RowError
from sigmasight_pipeline.portfolio_csv import ParsedPortfolio, read_portfolio_csv
from sigmasight_pipeline.portfolio_inputs import set_target_prices
from sigmasight_pipeline.resources.database import PROJECT_ROOT
from sigmasight_pipeline.resources.market_data import MarketDataProvider

__all__ = [
    "DEMO_PORTFOLIO_DIR",
    "DEMO_USERS",
    "TAG_PALETTE",
    "LoadResult",
    "LoadSource",
    "UnknownUserError",
    "UserExistsError",
    "create_user",
    "get_user_id",
    "hash_password",
    "load_demo_portfolios",
    "load_portfolio",
    "portfolio_file_owner",
    "seed_demo_users",
    "tag_color",
    "verify_password",
]

ROLES = ("user", "admin")
# PRD 3.5: the pre-seeded demo accounts (username, password, role).
DEMO_USERS = (
    ("demo_user_1", "demo123", "user"),
    ("demo_user_2", "demo123", "user"),
    ("demo_admin", "admin123", "admin"),
)
DEMO_PORTFOLIO_DIR = PROJECT_ROOT / "data" / "portfolios"
FILE_NAME_SEPARATOR = "__"  # "<username>__<portfolio name>.csv"
TAG_SEPARATOR = "\x1f"  # joins a position's tag names when they are read back
# Tag colors: a tag gets palette[sha256(name) % len(palette)], the same on every machine.
TAG_PALETTE = (
    "#E6194B",
    "#3CB44B",
    "#FFB000",
    "#4363D8",
    "#F58231",
    "#911EB4",
    "#42D4F4",
    "#F032E6",
    "#9A6324",
    "#469990",
    "#808000",
    "#000075",
)
_hasher = PasswordHasher()


class UnknownUserError(LookupError):
    """The portfolio's owner does not exist."""


class UserExistsError(ValueError):
    """A user with that name already exists."""


@dataclass(frozen=True)
class LoadResult:
    """What `load_portfolio` did: the portfolio, the file's positions, new tags, replaced or
    new, the `portfolio_loads` id (None without a source record) and the holdings changes."""

    portfolio_id: int
    positions: int
    tags_created: int
    replaced: bool
    load_id: int | None
    changes: holdings.HoldingsChanges


# ---------------------------------------------------------------------------------------------
# Users


def hash_password(password: str) -> str:
    """An argon2id hash (salted, encoded with its parameters)."""
    if not password:
        raise ValueError("password must not be empty")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches `password_hash`; False for a mismatch or a malformed hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def get_user_id(conn: psycopg.Connection, username: str) -> int | None:
    """The user's id, or None."""
    query = "SELECT id FROM sigmasight.users WHERE username = %s"
    row = conn.execute(query, (username,)).fetchone()
    return None if row is None else int(row[0])


def create_user(conn: psycopg.Connection, username: str, password: str, role: str = "user") -> int:
    """Insert a user with a hashed password; UserExistsError if the name is taken."""
    username = username.strip()
    if not username:
        raise ValueError("username must not be empty")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    password_hash = hash_password(password)
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO sigmasight.users (username, password_hash, role) "
                "VALUES (%s, %s, %s) RETURNING id",
                (username, password_hash, role),
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise UserExistsError(f"user {username!r} already exists") from exc
    assert row is not None
    return int(row[0])


def seed_demo_users(conn: psycopg.Connection) -> dict[str, int]:
    """The PRD's demo users (idempotent: existing ones are left as they are); name -> id."""
    ids: dict[str, int] = {}
    with conn.transaction():
        for username, password, role in DEMO_USERS:
            user_id = get_user_id(conn, username)
            if user_id is None:
                row = conn.execute(
                    "INSERT INTO sigmasight.users (username, password_hash, role) "
                    "VALUES (%s, %s, %s) ON CONFLICT (username) DO NOTHING RETURNING id",
                    (username, hash_password(password), role),
                ).fetchone()
                user_id = int(row[0]) if row else get_user_id(conn, username)
            assert user_id is not None
            ids[username] = user_id
    return ids


# ---------------------------------------------------------------------------------------------
# Portfolios


def tag_color(name: str) -> str:
    """The tag's color from TAG_PALETTE, by a stable hash of its name."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return TAG_PALETTE[int.from_bytes(digest[:8], "big") % len(TAG_PALETTE)]


@dataclass(frozen=True)
class LoadSource:
    """The file a load comes from, recorded in `sigmasight.portfolio_loads` by the load."""

    sha256: str
    file_name: str
    stored_as: str
    loaded_by: str


def load_portfolio(
    conn: psycopg.Connection,
    username: str,
    portfolio_name: str,
    parsed: ParsedPortfolio,
    source_file: str | None = None,
    *,
    as_of: date | str | None = None,
    allow_close_all: bool = False,
    source: LoadSource | None = None,
    provider: MarketDataProvider | None = None,
) -> LoadResult:
    """Create portfolio (username, portfolio_name) or load a new version of its holdings, in ONE
    transaction (see `holdings` for the diff): positions and events by COPY, tags created per
    user when first seen and linked (a kept position's links are the file's), target prices,
    and, when `source` is given, the `portfolio_loads` row the events point to.

    The changes are dated on `as_of` (a closed session) or the latest closed session.
    UnknownUserError if the user does not exist, SessionError for a bad `as_of`, HoldingsError
    for a refused diff (nothing is written). Any failure rolls the whole load back. On a
    connection already inside a transaction this is a savepoint, committed with the caller's.
    """
    rows = parsed.positions.reset_index(drop=True)
    portfolio_name = portfolio_name.strip()
    if not portfolio_name:
        raise ValueError("portfolio name must not be empty")
    session = holdings.effective_session(as_of)
    with conn.transaction():
        user_id = get_user_id(conn, username)
        if user_id is None:
            raise UnknownUserError(f"unknown user {username!r}: create the user first")
        portfolio_id, replaced = _upsert_portfolio(conn, user_id, portfolio_name, source_file)
        if not replaced and rows.empty:
            raise holdings.HoldingsError(
                [RowError(None, "file", None, f"{NO_ROWS}; a new portfolio needs positions")]
            )
        positions, events = holdings.portfolio_history(conn, portfolio_id)
        plan = holdings.plan_load(positions, events, rows, session, allow_close_all=allow_close_all)
        closes = holdings.session_closes(conn, plan.wanted_closes, provider)
        if closes.missing:
            raise holdings.HoldingsError(holdings.missing_prices(plan, closes))
        load_id = _record_load(conn, portfolio_id, len(rows), replaced, session, source)
        row_ids, changes = holdings.apply_plan(conn, portfolio_id, plan, closes, load_id)
        tags_created = _link_tags(conn, user_id, portfolio_id, rows, row_ids, plan.kept)
        _store_targets(conn, rows, row_ids, session)
    return LoadResult(portfolio_id, len(rows), tags_created, replaced, load_id, changes)


def _record_load(
    conn: psycopg.Connection,
    portfolio_id: int,
    positions: int,
    replaced: bool,
    session: date,
    source: LoadSource | None,
) -> int | None:
    """The load's `portfolio_loads` row (None without a source file record)."""
    if source is None:
        return None
    row = conn.execute(
        "INSERT INTO sigmasight.portfolio_loads (portfolio_id, sha256, file_name, stored_as, "
        "positions, replaced, loaded_by, portfolio_updated_at, effective_session) "
        "SELECT id, %s, %s, %s, %s, %s, %s, updated_at, %s FROM sigmasight.portfolios "
        "WHERE id = %s RETURNING id",
        (
            source.sha256,
            source.file_name,
            source.stored_as,
            positions,
            replaced,
            source.loaded_by,
            session,
            portfolio_id,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _upsert_portfolio(
    conn: psycopg.Connection, user_id: int, name: str, source_file: str | None
) -> tuple[int, bool]:
    """The portfolio's id (created if new, row-locked if not) and whether it existed."""
    row = conn.execute(
        "INSERT INTO sigmasight.portfolios (name, owner_id, source_file) VALUES (%s, %s, %s) "
        "ON CONFLICT (owner_id, name) DO NOTHING RETURNING id",
        (name, user_id, source_file),
    ).fetchone()
    if row is not None:
        return int(row[0]), False
    row = conn.execute(
        "UPDATE sigmasight.portfolios SET source_file = %s, updated_at = now() "
        "WHERE owner_id = %s AND name = %s RETURNING id",
        (source_file, user_id, name),
    ).fetchone()
    assert row is not None
    return int(row[0]), True


def _store_targets(
    conn: psycopg.Connection, rows: pd.DataFrame, row_ids: pd.Series, session: date
) -> None:
    """The file's target prices, set on the load's session (unless the same values apply)."""
    given = rows["target_price"].notna()
    if not given.any():
        return
    targets = rows[given]
    set_target_prices(
        conn,
        row_ids.loc[targets.index].astype(int).tolist(),
        targets["target_price"].astype(float).tolist(),
        targets["downside_price"].astype(float).tolist(),
        session,
    )


def _link_tags(
    conn: psycopg.Connection,
    user_id: int,
    portfolio_id: int,
    positions: pd.DataFrame,
    position_ids: pd.Series,
    kept: pd.Series,
) -> int:
    """Create the user's tags not seen before and link positions to their tags: new positions,
    and kept ones (`kept`: position id by file row) whose tags the file changes, which lose
    their old links first. Returns the number of new tags."""
    if "tags" not in positions:
        return 0
    tags = positions["tags"].map(lambda names: tuple(sorted(set(names))))
    linked = pd.Series(True, index=positions.index)
    if not kept.empty:
        current = holdings.read_frame(
            conn,
            sql.SQL(
                "SELECT pt.position_id, string_agg(t.name, {} ORDER BY t.name) AS names "
                "FROM sigmasight.position_tags pt JOIN sigmasight.tags t ON t.id = pt.tag_id "
                "JOIN sigmasight.positions p ON p.id = pt.position_id "
                "WHERE p.portfolio_id = {} AND p.closed_on IS NULL GROUP BY pt.position_id"
            ).format(sql.Literal(TAG_SEPARATOR), sql.Literal(portfolio_id)),
            {"position_id": "int64", "names": "object"},
        )
        had = pd.Series(
            [tuple(names.split(TAG_SEPARATOR)) for names in current["names"]],
            index=current["position_id"].to_numpy(),
            dtype=object,
        )
        before = kept.map(had).map(lambda names: names if isinstance(names, tuple) else ())
        changed = before.ne(tags.loc[kept.index])
        linked.loc[kept.index] = changed
        relink = kept[changed].astype(int).tolist()
        if relink:
            conn.execute(
                "DELETE FROM sigmasight.position_tags WHERE position_id = ANY(%s)", (relink,)
            )
    links = pd.DataFrame({"position_id": position_ids, "tag": positions["tags"]})[linked]
    links = links.explode("tag").dropna(subset=["tag"])
    if links.empty:
        return 0
    names = list(dict.fromkeys(links["tag"]))
    created = conn.execute(
        "INSERT INTO sigmasight.tags (user_id, name, color) "
        "SELECT %s, name, color FROM unnest(%s::text[], %s::text[]) AS t(name, color) "
        "ON CONFLICT (user_id, name) DO NOTHING RETURNING id",
        (user_id, names, [tag_color(name) for name in names]),
    ).fetchall()
    tag_ids = dict(
        conn.execute(
            "SELECT name, id FROM sigmasight.tags WHERE user_id = %s AND name = ANY(%s)",
            (user_id, names),
        ).fetchall()
    )
    links = links.assign(tag_id=links["tag"].map(tag_ids))[["position_id", "tag_id"]]
    links = links.drop_duplicates()
    holdings.copy_rows(
        conn,
        "COPY sigmasight.position_tags (position_id, tag_id) FROM STDIN WITH (FORMAT csv)",
        links.astype(int),
    )
    return len(created)


# ---------------------------------------------------------------------------------------------
# Files and the demo


def portfolio_file_owner(path: Path | str) -> tuple[str, str]:
    """(username, portfolio name) from a file named `<username>__<portfolio name>.csv`."""
    stem = Path(path).name
    stem = re.sub(r"\.csv$", "", stem, flags=re.IGNORECASE)
    username, sep, name = stem.partition(FILE_NAME_SEPARATOR)
    if not sep or not username.strip() or not name.strip():
        raise ValueError(
            f"{Path(path).name!r}: expected a file named '<username>__<portfolio name>.csv'"
        )
    return username.strip(), name.strip()


def load_demo_portfolios(
    conn: psycopg.Connection, today: date | None = None, directory: Path = DEMO_PORTFOLIO_DIR
) -> list[LoadResult]:
    """Seed the demo users, then load every `<username>__<name>.csv` in `directory` (each a
    new version of its holdings, so running it again changes nothing)."""
    seed_demo_users(conn)
    results = []
    for path in sorted(directory.glob("*.csv")):
        username, name = portfolio_file_owner(path)
        parsed = read_portfolio_csv(path, today=today)
        results.append(load_portfolio(conn, username, name, parsed, source_file=path.name))
    return results
