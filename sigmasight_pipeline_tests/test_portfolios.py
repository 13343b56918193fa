"""Users, password hashing and portfolio loading, against a throwaway PostgreSQL database."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from sigmasight_pipeline.portfolio_csv import (
    ParsedPortfolio,
    read_portfolio_csv,
    validate_portfolio_text,
)
from sigmasight_pipeline.portfolios import (
    DEMO_PORTFOLIO_DIR,
    DEMO_USERS,
    TAG_PALETTE,
    LoadResult,
    UnknownUserError,
    UserExistsError,
    create_user,
    get_user_id,
    hash_password,
    load_demo_portfolios,
    load_portfolio,
    portfolio_file_owner,
    seed_demo_users,
    tag_color,
    verify_password,
)
from sigmasight_pipeline.resources.database import connect
from sigmasight_pipeline_tests.test_portfolio_csv import write_big_portfolio

TODAY = date(2026, 11, 21)
HEADER = "ticker,quantity,entry_price,entry_date,tags"
BOOK_A = f"""{HEADER}
AAPL,100,190.00,2026-05-01,"momentum,tech"
MSFT,-50,400.00,2026-05-02,"hedge,tech"
AAPL270115C00200000,10,5.50,2026-05-03,"hedge,options"
SPY270115P00450000,-2,3.00,2026-05-04,
"""
BOOK_B = f"""{HEADER}
NVDA,300,120.00,2026-06-01,"momentum,ai"
AAPL,50,195.00,2026-06-02,tech
"""


@pytest.fixture
def db_url(isolated_db_url: str) -> str:
    """This module's own database: it loads and replaces the demo portfolios, which would
    give the demo backfill's positions new ids under the other tests' feet."""
    return isolated_db_url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection: each loader call is its own committed transaction."""
    with connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def user(conn: psycopg.Connection) -> str:
    """A fresh user per test, so tests sharing the session database never collide."""
    name = f"user_{uuid.uuid4().hex[:10]}"
    create_user(conn, name, "secret")
    return name


def book(text: str, name: str = "book.csv") -> ParsedPortfolio:
    return validate_portfolio_text(text, path=name, today=TODAY)


def positions_in_db(db_url: str, portfolio_id: int) -> pd.DataFrame:
    """Read back through a separate connection: only committed data is visible."""
    with connect(db_url) as other:
        rows = other.execute(
            "SELECT p.id, p.symbol, p.quantity, p.entry_price, p.entry_date, p.position_type, "
            "p.underlying, p.option_right, p.strike, p.expiry, p.multiplier, "
            "coalesce(array_agg(t.name ORDER BY t.name) FILTER (WHERE t.id IS NOT NULL), '{}') "
            "FROM sigmasight.positions p "
            "LEFT JOIN sigmasight.position_tags pt ON pt.position_id = p.id "
            "LEFT JOIN sigmasight.tags t ON t.id = pt.tag_id "
            "WHERE p.portfolio_id = %s GROUP BY p.id ORDER BY p.symbol",
            (portfolio_id,),
        ).fetchall()
    columns = [
        "id",
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
        "tags",
    ]
    return pd.DataFrame(rows, columns=columns).set_index("symbol")


def user_tags(conn: psycopg.Connection, username: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT t.name, t.color FROM sigmasight.tags t JOIN sigmasight.users u ON u.id = t.user_id "
        "WHERE u.username = %s",
        (username,),
    ).fetchall()
    return dict(rows)


# --- users -----------------------------------------------------------------------------------


def test_password_hashing() -> None:
    hashed = hash_password("demo123")
    assert hashed.startswith("$argon2id$") and "demo123" not in hashed
    assert hash_password("demo123") != hashed  # salted
    assert verify_password(hashed, "demo123")
    assert not verify_password(hashed, "demo124")
    assert not verify_password("not-a-hash", "demo123")
    with pytest.raises(ValueError):
        hash_password("")


def test_create_user_stores_only_a_hash(conn: psycopg.Connection) -> None:
    name = f"alice_{uuid.uuid4().hex[:8]}"
    user_id = create_user(conn, name, "s3cret!", role="admin")
    assert get_user_id(conn, name) == user_id
    stored, role = conn.execute(
        "SELECT password_hash, role FROM sigmasight.users WHERE id = %s", (user_id,)
    ).fetchone()
    assert role == "admin" and stored != "s3cret!" and verify_password(stored, "s3cret!")
    with pytest.raises(UserExistsError, match="already exists"):
        create_user(conn, name, "other")
    assert conn.execute(
        "SELECT count(*) FROM sigmasight.users WHERE username = %s", (name,)
    ).fetchone() == (1,)
    with pytest.raises(ValueError, match="role"):
        create_user(conn, f"x_{name}", "pw", role="root")
    assert get_user_id(conn, f"nobody_{name}") is None


def test_seed_demo_users_is_idempotent(conn: psycopg.Connection) -> None:
    first = seed_demo_users(conn)
    second = seed_demo_users(conn)
    assert first == second and set(first) == {"demo_user_1", "demo_user_2", "demo_admin"}
    for username, password, role in DEMO_USERS:
        stored, stored_role = conn.execute(
            "SELECT password_hash, role FROM sigmasight.users WHERE username = %s", (username,)
        ).fetchone()
        assert stored_role == role and verify_password(stored, password)


# --- loading ---------------------------------------------------------------------------------


def test_load_new_portfolio(conn: psycopg.Connection, db_url: str, user: str) -> None:
    result = load_portfolio(conn, user, "Main", book(BOOK_A), source_file="a.csv")
    assert result == LoadResult(result.portfolio_id, 4, 4, False)  # momentum tech hedge options
    stored = positions_in_db(db_url, result.portfolio_id)
    assert stored.loc["AAPL", "quantity"] == 100 and stored.loc["MSFT", "quantity"] == -50
    assert stored["position_type"].to_dict() == {
        "AAPL": "LONG",
        "AAPL270115C00200000": "LC",
        "MSFT": "SHORT",
        "SPY270115P00450000": "SP",
    }
    option = stored.loc["AAPL270115C00200000"]
    assert (option["underlying"], option["option_right"], option["strike"]) == ("AAPL", "C", 200.0)
    assert option["expiry"] == date(2027, 1, 15) and option["multiplier"] == 100
    assert option["entry_price"] == 5.5 and option["entry_date"] == date(2026, 5, 3)
    aapl = stored.loc["AAPL"]
    assert aapl["option_right"] is None and pd.isna(aapl["strike"]) and aapl["expiry"] is None
    assert aapl["multiplier"] == 1
    assert stored["tags"].to_dict() == {
        "AAPL": ["momentum", "tech"],
        "AAPL270115C00200000": ["hedge", "options"],
        "MSFT": ["hedge", "tech"],
        "SPY270115P00450000": [],
    }
    tags = user_tags(conn, user)
    assert set(tags) == {"momentum", "tech", "hedge", "options"}
    assert all(color == tag_color(name) and color in TAG_PALETTE for name, color in tags.items())
    owner, name, source = conn.execute(
        "SELECT u.username, p.name, p.source_file FROM sigmasight.portfolios p "
        "JOIN sigmasight.users u ON u.id = p.owner_id WHERE p.id = %s",
        (result.portfolio_id,),
    ).fetchone()
    assert (owner, name, source) == (user, "Main", "a.csv")


def test_reload_replaces_positions(conn: psycopg.Connection, db_url: str, user: str) -> None:
    first = load_portfolio(conn, user, "Main", book(BOOK_A), source_file="a.csv")
    old_ids = set(positions_in_db(db_url, first.portfolio_id)["id"])
    second = load_portfolio(conn, user, "Main", book(BOOK_B), source_file="b.csv")
    assert second.portfolio_id == first.portfolio_id and second.replaced
    assert (second.positions, second.tags_created) == (2, 1)  # only "ai" is new
    stored = positions_in_db(db_url, first.portfolio_id)
    assert sorted(stored.index) == ["AAPL", "NVDA"]
    assert stored.loc["AAPL", "quantity"] == 50 and stored.loc["AAPL", "entry_price"] == 195
    assert stored["tags"].to_dict() == {"AAPL": ["tech"], "NVDA": ["ai", "momentum"]}
    assert not old_ids & set(stored["id"])
    orphans = conn.execute(
        "SELECT count(*) FROM sigmasight.position_tags pt WHERE pt.position_id = ANY(%s)",
        (list(old_ids),),
    ).fetchone()
    assert orphans == (0,)
    assert conn.execute(
        "SELECT count(*), max(source_file) FROM sigmasight.portfolios WHERE owner_id = %s",
        (get_user_id(conn, user),),
    ).fetchone() == (1, "b.csv")
    # The same file again: same content, no new tags.
    third = load_portfolio(conn, user, "Main", book(BOOK_B), source_file="b.csv")
    assert third == LoadResult(first.portfolio_id, 2, 0, True)
    assert sorted(positions_in_db(db_url, first.portfolio_id).index) == ["AAPL", "NVDA"]


def test_tags_are_per_user_and_created_once(conn: psycopg.Connection, db_url: str) -> None:
    users = [f"tagger_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in users:
        create_user(conn, name, "pw")
    a1 = load_portfolio(conn, users[0], "One", book(BOOK_A))
    a2 = load_portfolio(conn, users[0], "Two", book(BOOK_A))
    b1 = load_portfolio(conn, users[1], "One", book(BOOK_A))
    assert (a1.tags_created, a2.tags_created, b1.tags_created) == (4, 0, 4)
    assert user_tags(conn, users[0]) == user_tags(conn, users[1])  # same names, same colors
    ids = conn.execute(
        "SELECT t.user_id, count(*) FROM sigmasight.tags t JOIN sigmasight.users u "
        "ON u.id = t.user_id WHERE u.username = ANY(%s) GROUP BY t.user_id",
        (users,),
    ).fetchall()
    assert sorted(count for _, count in ids) == [4, 4]
    # Both portfolios of the first user link to the very same tag rows.
    linked = conn.execute(
        "SELECT count(DISTINCT pt.tag_id) FROM sigmasight.position_tags pt "
        "JOIN sigmasight.positions p ON p.id = pt.position_id WHERE p.portfolio_id = ANY(%s)",
        ([a1.portfolio_id, a2.portfolio_id],),
    ).fetchone()
    assert linked == (4,)
    tags_two = positions_in_db(db_url, a2.portfolio_id)["tags"].to_dict()
    assert tags_two == positions_in_db(db_url, a1.portfolio_id)["tags"].to_dict()


def test_tag_colors_are_deterministic() -> None:
    assert tag_color("momentum") == tag_color("momentum")
    assert {tag_color(f"tag{i}") for i in range(200)} == set(TAG_PALETTE)


def test_unknown_user_writes_nothing(conn: psycopg.Connection) -> None:
    before = conn.execute("SELECT count(*) FROM sigmasight.portfolios").fetchone()
    with pytest.raises(UnknownUserError, match="nobody"):
        load_portfolio(conn, "nobody", "Main", book(BOOK_A))
    assert conn.execute("SELECT count(*) FROM sigmasight.portfolios").fetchone() == before


def _broken(parsed: ParsedPortfolio, **changes: object) -> ParsedPortfolio:
    """A parsed book edited past validation, so the database itself rejects it mid-load."""
    positions = parsed.positions.copy()
    for column, value in changes.items():
        values = positions[column].tolist()
        values[-1] = value
        positions[column] = values
    return ParsedPortfolio(parsed.path, positions)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"quantity": 0.0}, psycopg.errors.CheckViolation),  # fails during the positions COPY
        ({"symbol": "NVDA"}, psycopg.errors.UniqueViolation),  # duplicate (portfolio, symbol)
        ({"tags": ["new-tag", "bad\x00tag"]}, psycopg.errors.DataError),  # fails at the tags step
    ],
)
def test_failure_midway_keeps_previous_portfolio(
    conn: psycopg.Connection, db_url: str, user: str, changes: dict, error: type[Exception]
) -> None:
    first = load_portfolio(conn, user, "Main", book(BOOK_A), source_file="a.csv")
    before = positions_in_db(db_url, first.portfolio_id)
    tags_before = user_tags(conn, user)
    with pytest.raises(error):
        load_portfolio(conn, user, "Main", _broken(book(BOOK_B), **changes), source_file="b.csv")
    after = positions_in_db(db_url, first.portfolio_id)
    pd.testing.assert_frame_equal(after, before)  # same rows, same ids, same tag links
    assert user_tags(conn, user) == tags_before  # "ai"/"new-tag" were rolled back
    assert conn.execute(
        "SELECT source_file FROM sigmasight.portfolios WHERE id = %s", (first.portfolio_id,)
    ).fetchone() == ("a.csv",)
    # A failed first load leaves no portfolio behind either.
    with pytest.raises(error):
        load_portfolio(conn, user, "Other", _broken(book(BOOK_B), **changes))
    assert conn.execute(
        "SELECT count(*) FROM sigmasight.portfolios WHERE name = 'Other' AND owner_id = %s",
        (get_user_id(conn, user),),
    ).fetchone() == (0,)


def test_load_inside_callers_transaction_rolls_back_with_it(db_url: str, user: str) -> None:
    with connect(db_url) as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            result = load_portfolio(conn, user, "Nested", book(BOOK_A))
            assert len(positions_in_db(db_url, result.portfolio_id)) == 0  # not committed yet
            raise RuntimeError("caller fails after the load")
        assert conn.execute(
            "SELECT count(*) FROM sigmasight.portfolios WHERE name = 'Nested'"
        ).fetchone() == (0,)


# --- files and the demo ----------------------------------------------------------------------


def test_portfolio_file_owner() -> None:
    assert portfolio_file_owner("x/demo_user_1__Long-Short Equity.csv") == (
        "demo_user_1",
        "Long-Short Equity",
    )
    assert portfolio_file_owner(Path("bob__a__b.CSV")) == ("bob", "a__b")
    with pytest.raises(ValueError, match="<username>__<portfolio name>"):
        portfolio_file_owner("no-owner.csv")


def test_load_demo_portfolios_is_idempotent(conn: psycopg.Connection, db_url: str) -> None:
    first = load_demo_portfolios(conn, today=TODAY)
    second = load_demo_portfolios(conn, today=TODAY)
    files = sorted(DEMO_PORTFOLIO_DIR.glob("*.csv"))
    assert len(first) == len(files) >= 3
    assert [r.portfolio_id for r in first] == [r.portfolio_id for r in second]
    assert all(r.replaced and r.tags_created == 0 for r in second)
    for result, path in zip(second, files, strict=True):
        stored = positions_in_db(db_url, result.portfolio_id)
        expected = read_portfolio_csv(path, today=TODAY).positions.set_index("symbol")
        assert len(stored) == result.positions == len(expected)
        assert stored["quantity"].sort_index().equals(expected["quantity"].sort_index())
    rows = conn.execute(
        "SELECT u.username, p.name, count(x.id) FROM sigmasight.portfolios p "
        "JOIN sigmasight.users u ON u.id = p.owner_id "
        "JOIN sigmasight.positions x ON x.portfolio_id = p.id "
        "WHERE u.username IN ('demo_user_1', 'demo_user_2') GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    assert ("demo_user_1", "Long-Short Equity", 50) in rows
    assert ("demo_user_2", "Core Long", 10) in rows


def test_100k_positions_load_in_seconds(
    conn: psycopg.Connection, db_url: str, user: str, tmp_path: Path
) -> None:
    path = write_big_portfolio(tmp_path / "big.csv", 100_000)
    start = time.perf_counter()
    parsed = read_portfolio_csv(path, today=TODAY)
    parse_s = time.perf_counter() - start
    start = time.perf_counter()
    first = load_portfolio(conn, user, "Big", parsed)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    again = load_portfolio(conn, user, "Big", parsed)
    reload_s = time.perf_counter() - start
    print(f"100k: parse {parse_s:.2f} s, load {load_s:.2f} s, replace {reload_s:.2f} s")
    assert first.positions == again.positions == 100_000 and again.replaced
    counts = conn.execute(
        "SELECT count(*), count(DISTINCT symbol) FROM sigmasight.positions WHERE portfolio_id = %s",
        (first.portfolio_id,),
    ).fetchone()
    assert counts == (100_000, 100_000)
    links = conn.execute(
        "SELECT count(*) FROM sigmasight.position_tags pt JOIN sigmasight.positions p "
        "ON p.id = pt.position_id WHERE p.portfolio_id = %s",
        (first.portfolio_id,),
    ).fetchone()[0]
    assert links == sum(len(t) for t in parsed.positions["tags"])
    assert load_s < 15 and reload_s < 15
