"""Users and portfolios in the database: password hashing and the one portfolio loader.

`load_portfolio` is the only code that writes positions: CSV intake (sensor, CLI) and the demo
all go through it. It runs in one transaction and uses COPY, so a 100,000-position file loads
in seconds and a failure anywhere leaves the previous portfolio untouched.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from sigmasight_pipeline.portfolio_csv import ParsedPortfolio, read_portfolio_csv
from sigmasight_pipeline.resources.database import PROJECT_ROOT

__all__ = [
    "DEMO_PORTFOLIO_DIR",
    "DEMO_USERS",
    "TAG_PALETTE",
    "LoadResult",
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
POSITION_DB_COLUMNS = (
    "portfolio_id",
    "symbol",
    "quantity",
    "entry_price",
    "entry_date",
    "position_type",
    "underlying",
    "option_right",
    "strike",
    "expiry",
    "multiplier",
)

_hasher = PasswordHasher()


class UnknownUserError(LookupError):
    """The portfolio's owner does not exist."""


class UserExistsError(ValueError):
    """A user with that name already exists."""


@dataclass(frozen=True)
class LoadResult:
    """What `load_portfolio` did: the portfolio, how many positions, new tags, replaced or new."""

    portfolio_id: int
    positions: int
    tags_created: int
    replaced: bool


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


def load_portfolio(
    conn: psycopg.Connection,
    username: str,
    portfolio_name: str,
    parsed: ParsedPortfolio,
    source_file: str | None = None,
) -> LoadResult:
    """Create portfolio (username, portfolio_name), or replace all its positions, in ONE
    transaction: positions by COPY, tags created per user when first seen, then linked.

    UnknownUserError if the user does not exist (nothing is written). Any failure rolls the
    whole load back, so the previous positions stay as they were. On a connection already
    inside a transaction this is a savepoint, committed with the caller's transaction.
    """
    positions = parsed.positions
    portfolio_name = portfolio_name.strip()
    if not portfolio_name:
        raise ValueError("portfolio name must not be empty")
    with conn.transaction():
        user_id = get_user_id(conn, username)
        if user_id is None:
            raise UnknownUserError(f"unknown user {username!r}: create the user first")
        portfolio_id, replaced = _upsert_portfolio(conn, user_id, portfolio_name, source_file)
        if replaced:
            _delete_positions(conn, portfolio_id)
        position_ids = _copy_positions(conn, portfolio_id, positions)
        tags_created = _link_tags(conn, user_id, positions, position_ids)
    return LoadResult(portfolio_id, len(positions), tags_created, replaced)


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


def _delete_positions(conn: psycopg.Connection, portfolio_id: int) -> None:
    """Drop the old positions; their tag links go first in one statement (the FK would
    otherwise cascade row by row)."""
    conn.execute(
        "DELETE FROM sigmasight.position_tags pt USING sigmasight.positions p "
        "WHERE pt.position_id = p.id AND p.portfolio_id = %s",
        (portfolio_id,),
    )
    conn.execute("DELETE FROM sigmasight.positions WHERE portfolio_id = %s", (portfolio_id,))


def _copy_rows(conn: psycopg.Connection, statement: str, frame: pd.DataFrame) -> None:
    """COPY a DataFrame (columns in the statement's order) as CSV; NaN/None become NULL."""
    if frame.empty:
        return
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="")
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(buffer.getvalue())


def _copy_positions(
    conn: psycopg.Connection, portfolio_id: int, positions: pd.DataFrame
) -> pd.Series:
    """COPY the positions in; their new ids, aligned with `positions`."""
    frame = positions.assign(portfolio_id=portfolio_id)[list(POSITION_DB_COLUMNS)]
    frame = frame.astype({"multiplier": int})
    columns = ", ".join(POSITION_DB_COLUMNS)
    _copy_rows(conn, f"COPY sigmasight.positions ({columns}) FROM STDIN WITH (FORMAT csv)", frame)
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT symbol, id FROM sigmasight.positions WHERE portfolio_id = %s", (portfolio_id,)
        )
        ids = dict(cursor.fetchall())
    return positions["symbol"].map(ids)


def _link_tags(
    conn: psycopg.Connection, user_id: int, positions: pd.DataFrame, position_ids: pd.Series
) -> int:
    """Create the user's tags not seen before, link every position to its tags; new tag count."""
    if "tags" not in positions:
        return 0
    links = pd.DataFrame({"position_id": position_ids, "tag": positions["tags"]}).explode("tag")
    links = links.dropna(subset=["tag"])
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
    _copy_rows(
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
    """Seed the demo users, then load every `<username>__<name>.csv` in `directory` (each
    replacing its previous version, so running it again changes nothing)."""
    seed_demo_users(conn)
    results = []
    for path in sorted(directory.glob("*.csv")):
        username, name = portfolio_file_owner(path)
        parsed = read_portfolio_csv(path, today=today)
        results.append(load_portfolio(conn, username, name, parsed, source_file=path.name))
    return results
