"""Users, password hashing and portfolio loading, against a throwaway PostgreSQL database."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from sigmasight_pipeline.analytics.holdings import daily_holdings, event_states
from sigmasight_pipeline.holdings import (
    HoldingsChanges,
    HoldingsError,
    SessionError,
    portfolio_history,
)
from sigmasight_pipeline.portfolio_csv import (
    ParsedPortfolio,
    read_portfolio_csv,
    validate_portfolio_text,
)
from sigmasight_pipeline.portfolios import (
    DEMO_PORTFOLIO_DIR,
    DEMO_USERS,
    TAG_PALETTE,
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
from sigmasight_pipeline_tests.conftest import database_before
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
AAPL,50,195.00,2026-05-01,tech
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


def positions_in_db(db_url: str, portfolio_id: int, open_only: bool = True) -> pd.DataFrame:
    """Read back through a separate connection: only committed data is visible. Open positions
    by symbol, or (open_only=False) every position, closed ones too, by symbol and id."""
    with connect(db_url) as other:
        rows = other.execute(
            "SELECT p.id, p.symbol, p.quantity, p.entry_price, p.entry_date, p.position_type, "
            "p.underlying, p.option_right, p.strike, p.expiry, p.multiplier, "
            "coalesce(array_agg(t.name ORDER BY t.name) FILTER (WHERE t.id IS NOT NULL), '{}'), "
            "p.closed_on FROM sigmasight.positions p "
            "LEFT JOIN sigmasight.position_tags pt ON pt.position_id = p.id "
            "LEFT JOIN sigmasight.tags t ON t.id = pt.tag_id "
            "WHERE p.portfolio_id = %s AND (NOT %s OR p.closed_on IS NULL) "
            "GROUP BY p.id ORDER BY p.symbol, p.id",
            (portfolio_id, open_only),
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
        "closed_on",
    ]
    frame = pd.DataFrame(rows, columns=columns).set_index("symbol")
    return frame.drop(columns="closed_on") if open_only else frame


def events_in_db(db_url: str, portfolio_id: int) -> pd.DataFrame:
    """The portfolio's events with their position's symbol, in id order."""
    with connect(db_url) as other:
        rows = other.execute(
            "SELECT e.id, e.position_id, p.symbol, e.event_date, e.kind, e.quantity_change, "
            "e.price, e.price_source, e.realized_pnl_usd, e.load_id "
            "FROM sigmasight.position_events e JOIN sigmasight.positions p "
            "ON p.id = e.position_id WHERE e.portfolio_id = %s ORDER BY e.id",
            (portfolio_id,),
        ).fetchall()
    columns = [
        "id", "position_id", "symbol", "event_date", "kind", "quantity_change", "price",
        "price_source", "realized_pnl_usd", "load_id",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def assert_consistent(db_url: str, portfolio_id: int) -> None:
    """The current state (positions.quantity, closed_on) and the stored realized P&L are what
    the events say (`analytics.holdings.event_states`)."""
    with connect(db_url) as other:
        positions, events = portfolio_history(other, portfolio_id)
    states = event_states(events, positions.set_index("id")["multiplier"])
    last = states.groupby("position_id").tail(1).set_index("position_id")
    current = positions.set_index("id")
    is_open = current["closed_on"].isna()
    assert np.allclose(
        last.loc[is_open[is_open].index, "quantity"], current.loc[is_open, "quantity"]
    )
    closes = states[states["kind"] == "close"].set_index("position_id")["event_date"]
    assert sorted(closes.index) == sorted(is_open[~is_open].index)
    assert (pd.to_datetime(current.loc[closes.index, "closed_on"]) == closes).all()
    stored = events.set_index("id")["realized_pnl_usd"].astype(float)
    computed = states.set_index("id")["realized_pnl_usd"]
    pd.testing.assert_series_equal(stored.sort_index(), computed.sort_index(), check_names=False)


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
    assert (result.positions, result.tags_created, result.replaced) == (4, 4, False)
    assert result.load_id is None  # no portfolio_loads record without a source file record
    assert result.changes.first_load and result.changes.opened == 4
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


def test_reload_is_a_new_version_of_the_holdings(
    conn: psycopg.Connection, db_url: str, user: str
) -> None:
    first = load_portfolio(conn, user, "Main", book(BOOK_A), source_file="a.csv")
    old_ids = positions_in_db(db_url, first.portfolio_id)["id"].to_dict()
    second = load_portfolio(conn, user, "Main", book(BOOK_B), source_file="b.csv")
    assert second.portfolio_id == first.portfolio_id and second.replaced
    assert (second.positions, second.tags_created) == (2, 1)  # only "ai" is new
    stored = positions_in_db(db_url, first.portfolio_id)
    assert sorted(stored.index) == ["AAPL", "NVDA"]
    assert stored.loc["AAPL", "quantity"] == 50 and stored.loc["AAPL", "entry_price"] == 195
    assert stored["tags"].to_dict() == {"AAPL": ["tech"], "NVDA": ["ai", "momentum"]}
    # AAPL (same entry date) keeps its id; the other three closed, kept with closed_on set.
    assert stored.loc["AAPL", "id"] == old_ids["AAPL"]
    everything = positions_in_db(db_url, first.portfolio_id, open_only=False)
    gone = everything[everything["closed_on"].notna()]
    assert sorted(gone["id"]) == sorted(v for k, v in old_ids.items() if k != "AAPL")
    session = second.changes.effective_session
    assert (gone["closed_on"] == session).all()
    assert (second.changes.closed, second.changes.decreased, second.changes.opened) == (3, 1, 1)
    assert conn.execute(
        "SELECT count(*), max(source_file) FROM sigmasight.portfolios WHERE owner_id = %s",
        (get_user_id(conn, user),),
    ).fetchone() == (1, "b.csv")
    # The same file again: nothing changes, no event, no new tags.
    events = len(events_in_db(db_url, first.portfolio_id))
    third = load_portfolio(conn, user, "Main", book(BOOK_B), source_file="b.csv")
    assert (third.positions, third.tags_created, third.replaced) == (2, 0, True)
    assert third.changes.unchanged == 2 and third.changes.opened == third.changes.closed == 0
    assert positions_in_db(db_url, first.portfolio_id)["id"].equals(stored["id"])
    assert len(events_in_db(db_url, first.portfolio_id)) == events
    assert_consistent(db_url, first.portfolio_id)


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
        load_portfolio(
            conn, user, "Main", _broken(book(BOOK_B), **changes), source_file="b.csv",
            allow_close_all=True,  # (AAPL, the row broken, closes: every position would)
        )  # fmt: skip
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


def test_100k_positions_load_and_reload(
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
    # The reload changed nothing: no event beyond the 100,000 opens.
    events = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE kind = 'open') FROM sigmasight.position_events "
        "WHERE portfolio_id = %s",
        (first.portfolio_id,),
    ).fetchone()
    assert events == (100_000, 100_000) and again.changes.unchanged == 100_000


# --- history: re-uploads as new versions of the holdings -------------------------------------

S1 = date(2026, 11, 20)  # a Friday session
S2 = date(2026, 11, 24)  # the Tuesday after
THANKSGIVING = date(2026, 11, 26)  # NYSE holiday: 2026-11-25 before it, 2026-11-27 after
KEPT = "KO,10,40,2026-05-01,"  # a row that stays, so a file does not close everything


@pytest.fixture
def set_closes(db_url: str):
    """`set_closes(day, {symbol: close})`: stored closes (source 'files') the loader reads."""

    def write(day: date, closes: dict[str, float]) -> None:
        with connect(db_url, autocommit=True) as other:
            for symbol, close in closes.items():
                other.execute(
                    "INSERT INTO sigmasight.prices (symbol, trade_date, close, source) "
                    "VALUES (%s, %s, %s, 'files') ON CONFLICT (symbol, trade_date) "
                    "DO UPDATE SET close = EXCLUDED.close, source = EXCLUDED.source",
                    (symbol, day, close),
                )

    return write


def csv_of(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def test_reupload_of_a_demo_portfolio(
    conn: psycopg.Connection, db_url: str, user: str, set_closes
) -> None:
    """Core Long with JNJ removed, PG halved and XOM new, effective S1."""
    text = (DEMO_PORTFOLIO_DIR / "demo_user_2__Core Long.csv").read_text()
    first = load_portfolio(conn, user, "Core", book(text))
    before = positions_in_db(db_url, first.portfolio_id)
    edited = text.replace('JNJ,100,428.95,2026-05-14,"core,dividend,healthcare"\n', "")
    edited = edited.replace("PG,2200,20.26,", "PG,1100,20.26,") + "XOM,300,110.00,2026-11-02,\n"
    set_closes(S1, {"JNJ": 440.0, "PG": 25.0})
    second = load_portfolio(conn, user, "Core", book(edited), as_of=S1)

    after = positions_in_db(db_url, first.portfolio_id)
    unchanged = ["AAPL", "COST", "JPM", "KO", "MSFT", "NEE", "PEP", "V"]
    assert after.loc[unchanged, "id"].equals(before.loc[unchanged, "id"])
    assert after.loc["PG", "id"] == before.loc["PG", "id"] and after.loc["PG", "quantity"] == 1100
    assert "JNJ" not in after.index and after.loc["XOM", "id"] not in set(before["id"])
    jnj_realized = (440.0 - 428.95) * 100
    pg_realized = (25.0 - 20.26) * 1100
    assert second.changes == HoldingsChanges(
        S1, False, unchanged=8, opened=1, decreased=1, closed=1,
        realized_pnl_usd=pytest.approx(jnj_realized + pg_realized),
    )  # fmt: skip
    events = events_in_db(db_url, first.portfolio_id)
    new = events[events["event_date"] == S1].set_index("symbol")
    assert new.loc["JNJ", ["kind", "quantity_change", "price", "price_source"]].tolist() == [
        "close",
        -100.0,
        440.0,
        "close:files",
    ]
    assert new.loc["JNJ", "realized_pnl_usd"] == pytest.approx(jnj_realized)
    assert new.loc["PG", ["kind", "quantity_change", "price"]].tolist() == ["decrease", -1100, 25]
    assert new.loc["PG", "realized_pnl_usd"] == pytest.approx(pg_realized)
    assert new.loc["XOM", ["kind", "quantity_change", "price", "price_source"]].tolist() == [
        "open",
        300.0,
        110.0,
        "file",
    ]
    closed = positions_in_db(db_url, first.portfolio_id, open_only=False)
    assert (
        closed.loc["JNJ", "closed_on"] == S1 and closed.loc["JNJ", "id"] == before.loc["JNJ", "id"]
    )
    # The first load opened every position on its entry date.
    opens = events[events["kind"] == "open"].set_index("symbol")
    assert opens.loc["AAPL", "event_date"] == date(2026, 5, 6)
    assert_consistent(db_url, first.portfolio_id)


def test_a_close_not_stored_comes_from_the_provider(
    conn: psycopg.Connection, db_url: str, user: str
) -> None:
    from sigmasight_pipeline.resources.synthetic import SyntheticMarket

    day = date(2026, 11, 18)
    result = load_portfolio(conn, user, "Main", book(BOOK_A))
    load_portfolio(conn, user, "Main", book(csv_of("AAPL,100,190.00,2026-05-01,")), as_of=day)
    wanted = pd.DataFrame({"symbol": ["MSFT"], "trade_date": [day]})
    expected = SyntheticMarket().fetch_bars(wanted).bars["close"].iloc[0]
    events = events_in_db(db_url, result.portfolio_id).set_index("symbol")
    assert events.loc["MSFT", "kind"].tolist() == ["open", "close"]
    close = events.loc["MSFT"].iloc[-1]
    assert (close["price"], close["price_source"]) == (expected, "close:synthetic")
    assert close["realized_pnl_usd"] == pytest.approx((expected - 400.0) * -50)  # a short
    option = events.loc["AAPL270115C00200000"].iloc[-1]
    assert option["realized_pnl_usd"] == pytest.approx((option["price"] - 5.5) * 10 * 100)


def test_no_close_anywhere_refuses_the_load(
    conn: psycopg.Connection, db_url: str, user: str
) -> None:
    first = load_portfolio(
        conn, user, "Main", book(csv_of("AAPL,1,1,2026-05-01,", "NODATA,5,2,2026-05-01,"))
    )
    events = events_in_db(db_url, first.portfolio_id)
    with pytest.raises(HoldingsError) as caught:
        load_portfolio(conn, user, "Main", book(csv_of("AAPL,1,1,2026-05-01,")), as_of=S1)
    (error,) = caught.value.errors
    assert (error.row, error.field, error.value) == (None, "ticker", "NODATA")
    assert f"no close for NODATA on {S1}" in error.reason and "synthetic" in error.reason
    assert len(events_in_db(db_url, first.portfolio_id)) == len(events)
    assert "NODATA" in positions_in_db(db_url, first.portfolio_id).index


def test_increases_are_priced_at_the_close_unless_the_entry_price_changed(
    conn: psycopg.Connection, db_url: str, user: str, set_closes
) -> None:
    first = load_portfolio(conn, user, "Main", book(csv_of("AAPL,100,190.00,2026-05-01,")))
    set_closes(S1, {"AAPL": 200.0})
    load_portfolio(conn, user, "Main", book(csv_of("AAPL,150,190.00,2026-05-01,")), as_of=S1)
    load_portfolio(conn, user, "Main", book(csv_of("AAPL,200,195.00,2026-05-01,")), as_of=S2)
    events = events_in_db(db_url, first.portfolio_id)
    assert events[["kind", "quantity_change", "price", "price_source"]].values.tolist() == [
        ["open", 100.0, 190.0, "file"],
        ["increase", 50.0, 200.0, "close:files"],  # same entry price as before: S1's close
        ["increase", 50.0, 195.0, "file"],  # a new entry price: the added lot's price
    ]
    stored = positions_in_db(db_url, first.portfolio_id).loc["AAPL"]
    assert (stored["quantity"], stored["entry_price"]) == (200, 195)  # as the file says
    with connect(db_url) as other:
        positions, history = portfolio_history(other, first.portfolio_id)
    day = daily_holdings(positions, history, pd.DatetimeIndex([S2])).iloc[0]
    assert day["average_cost"] == pytest.approx((100 * 190 + 50 * 200 + 50 * 195) / 200)
    assert_consistent(db_url, first.portfolio_id)


def test_a_sign_change_or_another_entry_date_closes_and_reopens(
    conn: psycopg.Connection, db_url: str, user: str, set_closes
) -> None:
    first = load_portfolio(
        conn,
        user,
        "Main",
        book(csv_of("MSFT,-50,400,2026-05-02,", "AAPL,10,190,2026-05-01,", KEPT)),
    )
    old = positions_in_db(db_url, first.portfolio_id)["id"]
    set_closes(S1, {"MSFT": 410.0, "AAPL": 180.0})
    changed = csv_of("MSFT,30,400,2026-05-02,", "AAPL,10,190,2026-06-01,", KEPT)
    second = load_portfolio(conn, user, "Main", book(changed), as_of=S1)
    new = positions_in_db(db_url, first.portfolio_id)
    assert set(new["id"]) & set(old) == {old["KO"]}
    assert (new.loc["MSFT", "quantity"], new.loc["MSFT", "position_type"]) == (30, "LONG")
    events = events_in_db(db_url, first.portfolio_id)
    at_s1 = events[events["event_date"] == S1]
    assert at_s1[["symbol", "kind", "quantity_change", "price"]].values.tolist() == [
        ["AAPL", "close", -10.0, 180.0],
        ["MSFT", "close", 50.0, 410.0],
        ["AAPL", "open", 10.0, 180.0],  # same entry price as the closed one: at the close
        ["MSFT", "open", 30.0, 410.0],
    ]
    realized = at_s1.set_index(["symbol", "kind"])["realized_pnl_usd"]
    assert realized[("MSFT", "close")] == pytest.approx((410 - 400) * -50)  # the short lost
    assert realized[("AAPL", "close")] == pytest.approx((180 - 190) * 10)
    opens = at_s1[at_s1["kind"] == "open"].set_index("symbol")
    assert opens["price"].to_dict() == {"AAPL": 180.0, "MSFT": 410.0}
    assert (second.changes.closed, second.changes.opened) == (2, 2)
    both = positions_in_db(db_url, first.portfolio_id, open_only=False).loc["MSFT"]
    assert len(both) == 2 and both["closed_on"].isna().sum() == 1
    assert_consistent(db_url, first.portfolio_id)
    # Open positions are unique per symbol; closed ones are not.
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO sigmasight.positions (portfolio_id, symbol, quantity, entry_price, "
            "entry_date, position_type, underlying, multiplier) "
            "VALUES (%s, 'MSFT', 1, 1, '2026-05-01', 'LONG', 'MSFT', 1)",
            (first.portfolio_id,),
        )


def test_a_file_that_closes_everything_needs_allow_close_all(
    conn: psycopg.Connection, db_url: str, user: str, set_closes
) -> None:
    first = load_portfolio(conn, user, "Main", book(csv_of("AAPL,10,190,2026-05-01,")))
    set_closes(S1, {"AAPL": 180.0})
    other = book(csv_of("NVDA,5,100,2026-05-01,"))
    with pytest.raises(HoldingsError, match="--allow-close-all") as caught:
        load_portfolio(conn, user, "Main", other, as_of=S1)
    assert caught.value.errors[0].field == "file"
    assert list(positions_in_db(db_url, first.portfolio_id).index) == ["AAPL"]
    result = load_portfolio(conn, user, "Main", other, as_of=S1, allow_close_all=True)
    assert (result.changes.closed, result.changes.opened) == (1, 1)
    # A header alone (parsed with allow_empty) closes everything, with the flag only.
    empty = validate_portfolio_text(f"{HEADER}\n", today=TODAY, allow_empty=True)
    with pytest.raises(HoldingsError, match="--allow-close-all"):
        load_portfolio(conn, user, "Main", empty, as_of=S2)
    load_portfolio(conn, user, "Main", empty, as_of=S2, allow_close_all=True)
    assert positions_in_db(db_url, first.portfolio_id).empty
    assert_consistent(db_url, first.portfolio_id)
    with pytest.raises(HoldingsError, match="a new portfolio needs positions"):
        load_portfolio(conn, user, "Empty", empty, allow_close_all=True)


def test_effective_sessions_that_are_refused(
    conn: psycopg.Connection, db_url: str, user: str
) -> None:
    first = load_portfolio(conn, user, "Main", book(csv_of("AAPL,10,190,2026-05-01,")))
    other = book(csv_of("AAPL,20,190,2026-05-01,"))
    with pytest.raises(SessionError, match=r"2026-11-25 \(before\) and 2026-11-27 \(after\)"):
        load_portfolio(conn, user, "Main", other, as_of=THANKSGIVING)
    with pytest.raises(SessionError, match="has not closed yet"):
        load_portfolio(conn, user, "Main", other, as_of="2030-01-02")
    with pytest.raises(HoldingsError, match="before the portfolio's first session 2026-05-01"):
        load_portfolio(conn, user, "Main", other, as_of="2026-04-30")
    assert len(events_in_db(db_url, first.portfolio_id)) == 1


def test_back_dated_changes_append_and_never_rewrite(
    conn: psycopg.Connection, db_url: str, user: str, set_closes
) -> None:
    """A re-upload at S2 halves AAPL. A correction dated S1 (before S2) may close MSFT, which
    has no later change, but may not change AAPL again before its S2 change."""
    start = csv_of("AAPL,100,190,2026-05-01,", "MSFT,20,400,2026-05-02,")
    first = load_portfolio(conn, user, "Main", book(start))
    set_closes(S1, {"AAPL": 200.0, "MSFT": 420.0})
    set_closes(S2, {"AAPL": 210.0, "MSFT": 425.0})
    load_portfolio(
        conn,
        user,
        "Main",
        book(csv_of("AAPL,50,190,2026-05-01,", "MSFT,20,400,2026-05-02,")),
        as_of=S2,
    )
    with pytest.raises(HoldingsError) as caught:
        load_portfolio(conn, user, "Main", book(csv_of("AAPL,60,190,2026-05-01,")), as_of=S1)
    errors = {e.value: e for e in caught.value.errors}
    assert errors["AAPL"].row == 2 and f"recorded on {S2}" in errors["AAPL"].reason
    # The holdings on S1 were AAPL 100 and MSFT 20: this file states them without MSFT.
    load_portfolio(conn, user, "Main", book(csv_of("AAPL,100,190,2026-05-01,")), as_of=S1)
    events = events_in_db(db_url, first.portfolio_id)
    msft = events[events["symbol"] == "MSFT"].iloc[-1]
    assert (msft["kind"], msft["event_date"], msft["price"]) == ("close", S1, 420.0)
    now = positions_in_db(db_url, first.portfolio_id)
    assert list(now.index) == ["AAPL"] and now.loc["AAPL", "quantity"] == 50
    assert_consistent(db_url, first.portfolio_id)


def test_past_holdings_are_unchanged_by_a_later_reupload(
    conn: psycopg.Connection, db_url: str, user: str, set_closes
) -> None:
    from sigmasight_pipeline import calendar

    first = load_portfolio(conn, user, "Main", book(BOOK_A))
    set_closes(S1, {"MSFT": 390.0})
    load_portfolio(conn, user, "Main", book(BOOK_A.replace("MSFT,-50,", "MSFT,-20,")), as_of=S1)
    sessions = calendar.sessions("2026-04-01", S2)

    def holdings() -> pd.DataFrame:
        with connect(db_url) as other:
            positions, events = portfolio_history(other, first.portfolio_id)
        return daily_holdings(positions, events, sessions)

    before = holdings()
    set_closes(S2, {"AAPL": 150.0, "MSFT": 380.0})
    load_portfolio(conn, user, "Main", book(BOOK_B), as_of=S2)
    after = holdings()
    earlier = before["trade_date"] < pd.Timestamp(S2)
    pd.testing.assert_frame_equal(
        after[after["trade_date"] < pd.Timestamp(S2)].reset_index(drop=True),
        before[earlier].reset_index(drop=True),
    )
    assert not after.equals(before)  # S2 itself changed: AAPL halved, three positions closed
    assert_consistent(db_url, first.portfolio_id)


def test_target_prices_from_the_file(conn: psycopg.Connection, db_url: str, user: str) -> None:
    header = f"{HEADER},target_price,downside_price"
    text = csv_of(
        "AAPL,100,190,2026-05-01,,250,170", "MSFT,-50,400,2026-05-02,,350,", header=header
    )
    first = load_portfolio(conn, user, "Main", book(text), as_of=S1)

    def targets() -> list[tuple]:
        with connect(db_url) as other:
            return other.execute(
                "SELECT p.symbol, t.target_price, t.downside_price, t.set_on "
                "FROM sigmasight.target_prices t JOIN sigmasight.positions p "
                "ON p.id = t.position_id WHERE p.portfolio_id = %s ORDER BY 1, 4",
                (first.portfolio_id,),
            ).fetchall()

    assert targets() == [("AAPL", 250.0, 170.0, S1), ("MSFT", 350.0, None, S1)]
    load_portfolio(conn, user, "Main", book(text), as_of=S2)  # the same values: nothing new
    assert len(targets()) == 2
    load_portfolio(conn, user, "Main", book(text.replace(",250,170", ",260,")), as_of=S2)
    assert targets()[:2] == [("AAPL", 250.0, 170.0, S1), ("AAPL", 260.0, None, S2)]
    # A file without the columns leaves the targets as they are.
    load_portfolio(conn, user, "Main", book(BOOK_A), as_of=S2)
    assert len(targets()) == 3


def test_the_migration_gives_existing_positions_their_open_events() -> None:
    """Positions loaded before 0012 get one `open` event each (entry date, entry price), from the
    load that wrote them when it is recorded."""
    from sigmasight_pipeline.resources.database import migrate

    with database_before("0012") as url:
        with connect(url, autocommit=True) as old:
            old.execute("INSERT INTO sigmasight.users (username, password_hash) VALUES ('u', 'x')")
            old.execute(
                "INSERT INTO sigmasight.portfolios (name, owner_id) "
                "SELECT name, u.id FROM sigmasight.users u, (VALUES ('A'), ('B')) v(name)"
            )
            old.execute(
                "INSERT INTO sigmasight.portfolio_loads (portfolio_id, sha256, file_name, "
                "stored_as, positions, replaced, loaded_by, portfolio_updated_at) "
                "SELECT id, repeat('a', 64), 'a.csv', 'x__a.csv', 2, false, 'cli', updated_at "
                "FROM sigmasight.portfolios WHERE name = 'A'"
            )
            old.execute(
                "INSERT INTO sigmasight.positions (portfolio_id, symbol, quantity, entry_price, "
                "entry_date, position_type, underlying, multiplier) "
                "SELECT p.id, s, q, 10, '2026-05-01', t, s, 1 FROM sigmasight.portfolios p, "
                "(VALUES ('AAPL', 5, 'LONG'), ('MSFT', -3, 'SHORT')) v(s, q, t)"
            )
        assert "0012_portfolio_history" in migrate(url)
        with connect(url) as new:
            rows = new.execute(
                "SELECT f.name, p.symbol, e.event_date, e.kind, e.quantity_change, e.price, "
                "e.price_source, e.load_id IS NOT NULL, p.closed_on "
                "FROM sigmasight.position_events e JOIN sigmasight.positions p "
                "ON p.id = e.position_id JOIN sigmasight.portfolios f ON f.id = p.portfolio_id "
                "ORDER BY 1, 2"
            ).fetchall()
        may1 = date(2026, 5, 1)
        assert rows == [
            ("A", "AAPL", may1, "open", 5.0, 10.0, "file", True, None),
            ("A", "MSFT", may1, "open", -3.0, 10.0, "file", True, None),
            ("B", "AAPL", may1, "open", 5.0, 10.0, "file", False, None),
            ("B", "MSFT", may1, "open", -3.0, 10.0, "file", False, None),
        ]


# --- equity changes and target prices --------------------------------------------------------


def test_contributions_and_withdrawals(conn: psycopg.Connection, db_url: str, user: str) -> None:
    """No snapshot: equity = gross value at cost of the holdings + net flows to the date."""
    from sigmasight_pipeline.portfolio_inputs import InputError, add_equity_change

    first = load_portfolio(
        conn, user, "Main", book(csv_of("AAPL,100,190,2026-05-01,", "MSFT,-50,400,2026-05-02,"))
    )
    at_cost = 100 * 190 + 50 * 400  # 39,000
    added = add_equity_change(conn, user, "Main", 10_000, S1, note="top-up")
    assert (added.kind, added.amount_usd, added.change_date) == ("contribution", 10_000, S1)
    assert added.equity_before.amount_usd == pytest.approx(at_cost)
    taken = add_equity_change(conn, user, "Main", -49_000, S2)
    assert taken.kind == "withdrawal" and taken.equity_before.amount_usd == pytest.approx(49_000)
    with pytest.raises(InputError, match=r"larger than the portfolio's equity of \$0.00") as caught:
        add_equity_change(conn, user, "Main", -0.01, S2)
    assert "gross value at cost $39,000.00 of the holdings" in str(caught.value)
    assert "net flows -$39,000.00 to 2026-11-24" in str(caught.value)
    with pytest.raises(InputError, match=r"2026-11-25 \(before\) and 2026-11-27 \(after\)"):
        add_equity_change(conn, user, "Main", 5, THANKSGIVING)
    with pytest.raises(InputError, match="before the portfolio's first position"):
        add_equity_change(conn, user, "Main", 5, "2026-04-30")
    with pytest.raises(InputError, match="in the future"):
        add_equity_change(conn, user, "Main", 5, S2, today=date(2026, 11, 23))
    with pytest.raises(InputError, match="non-zero"):
        add_equity_change(conn, user, "Main", 0, S2)
    with pytest.raises(InputError, match="no portfolio named 'Nope'"):
        add_equity_change(conn, user, "Nope", 5, S2)
    stored = conn.execute(
        "SELECT change_date, amount_usd, kind, note FROM sigmasight.equity_changes "
        "WHERE portfolio_id = %s ORDER BY id",
        (first.portfolio_id,),
    ).fetchall()
    assert stored == [(S1, 10_000.0, "contribution", "top-up"), (S2, -49_000.0, "withdrawal", None)]


def test_withdrawals_are_checked_against_the_latest_snapshot(
    conn: psycopg.Connection, user: str
) -> None:
    """A snapshot's total_value + all net flows to the date; once the snapshot carries
    equity_usd (the assets write it), that + the flows after the snapshot."""
    from sigmasight_pipeline.portfolio_inputs import InputError, add_equity_change

    first = load_portfolio(conn, user, "Main", book(csv_of("AAPL,100,190,2026-05-01,")))
    conn.execute(
        "INSERT INTO sigmasight.portfolio_snapshots (trade_date, portfolio_id, total_value, "
        "long_exposure, short_exposure, gross_exposure, net_exposure, daily_pnl, window_pnl, "
        "window_start, unrealized_pnl, position_count, long_count, short_count, lc_count, "
        "lp_count, sc_count, sp_count, unpriced_count) "
        "VALUES (%s, %s, 25000, 25000, 0, 25000, 25000, 0, 0, %s, 6000, 1, 1, 0, 0, 0, 0, 0, 0)",
        (S1, first.portfolio_id, S1),
    )
    add_equity_change(conn, user, "Main", 1_000, date(2026, 11, 19))  # before the snapshot
    with pytest.raises(InputError, match=r"equity of \$26,000.00") as caught:
        add_equity_change(conn, user, "Main", -26_000.01, S2)
    assert "total_value (gross market value) $25,000.00 of the 2026-11-20 snapshot" in str(
        caught.value
    )
    conn.execute(
        "UPDATE sigmasight.portfolio_snapshots SET equity_usd = 30000 WHERE portfolio_id = %s",
        (first.portfolio_id,),
    )
    with pytest.raises(InputError, match=r"equity of \$30,000.00") as caught:
        add_equity_change(conn, user, "Main", -30_000.01, S2)
    assert "equity_usd $30,000.00 of the 2026-11-20 snapshot" in str(caught.value)
    assert add_equity_change(conn, user, "Main", -30_000, S2).kind == "withdrawal"


def test_set_target(conn: psycopg.Connection, user: str) -> None:
    from sigmasight_pipeline.portfolio_inputs import InputError, set_target

    first = load_portfolio(conn, user, "Main", book(BOOK_A))
    target = set_target(conn, user, "Main", "aapl", 250.0, 170.0, set_on=S1)
    assert (target.symbol, target.target_price, target.downside_price, target.set_on) == (
        "AAPL", 250.0, 170.0, S1
    )  # fmt: skip
    set_target(conn, user, "Main", "O:AAPL270115C00200000", 9.5)  # latest closed session
    rows = conn.execute(
        "SELECT p.symbol, t.target_price, t.downside_price FROM sigmasight.target_prices t "
        "JOIN sigmasight.positions p ON p.id = t.position_id WHERE p.portfolio_id = %s "
        "ORDER BY 1",
        (first.portfolio_id,),
    ).fetchall()
    assert rows == [("AAPL", 250.0, 170.0), ("AAPL270115C00200000", 9.5, None)]
    with pytest.raises(InputError, match="holds no open NVDA"):
        set_target(conn, user, "Main", "NVDA", 1.0)
    with pytest.raises(InputError, match=r"--target -1\.0 must be a positive price"):
        set_target(conn, user, "Main", "AAPL", -1.0)
    with pytest.raises(InputError, match="not an NYSE session"):
        set_target(conn, user, "Main", "AAPL", 1.0, set_on=THANKSGIVING)


def test_equity_and_targets_commands(
    conn: psycopg.Connection,
    db_url: str,
    user: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    from sigmasight_pipeline import cli

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    first = load_portfolio(conn, user, "Main", book(BOOK_A))

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = cli.main(list(args))
        return code, capsys.readouterr().out

    code, out = run("equity", "add", user, "Main", "5000", "--date", str(S1), "--note", "seed")
    assert code == 0 and out.startswith("recorded contribution #") and "$5,000.00" in out
    code, out = run("equity", "add", user, "Main", "-1000000000", "--date", str(S2))
    assert code == 1 and out.startswith("refused: a withdrawal of $1,000,000,000.00")
    code, out = run("equity", "add", user, "Main", "-100", "--date", str(THANKSGIVING))
    assert code == 1 and "nearest sessions are 2026-11-25 (before) and 2026-11-27" in out
    code, out = run("targets", "set", user, "Main", "AAPL", "--target", "250", "--as-of", str(S1))
    assert code == 0 and "AAPL" in out and f"target 250 from {S1}" in out
    code, out = run("targets", "set", user, "Main", "NVDA", "--target", "1")
    assert code == 1 and "holds no open NVDA" in out
    assert conn.execute(
        "SELECT count(*) FROM sigmasight.equity_changes WHERE portfolio_id = %s",
        (first.portfolio_id,),
    ).fetchone() == (1,)


def test_options_expired_before_the_session_are_settled_at_intrinsic_value(
    conn: psycopg.Connection, db_url: str, user: str, set_closes
) -> None:
    """Calls and puts expiring on S1 (a Friday), removed by a file effective S2: settled from
    AAPL's close on S1 (160), not from a close of theirs on S2 (there is none)."""
    call, put = "AAPL261120C00150000", "AAPL261120P00150000"
    first = load_portfolio(
        conn,
        user,
        "Main",
        book(csv_of(f"{call},2,5.00,2026-06-01,", f"{put},-1,3.00,2026-06-01,", KEPT)),
    )
    set_closes(S1, {"AAPL": 160.0})
    expired = book(csv_of(f"{call},3,5.00,2026-06-01,", KEPT))
    with pytest.raises(HoldingsError, match=f"{call} expired on 2026-11-20") as caught:
        load_portfolio(conn, user, "Main", expired, as_of=S2)  # increased: refused
    assert caught.value.errors[0].row == 2
    result = load_portfolio(conn, user, "Main", book(csv_of(KEPT)), as_of=S2)
    events = events_in_db(db_url, first.portfolio_id)
    settled = events[events["kind"] == "close"].set_index("symbol")
    assert settled.loc[call, ["price", "price_source", "event_date"]].tolist() == [
        10.0, "expiry:AAPL close:files", S2
    ]  # fmt: skip
    assert settled.loc[call, "realized_pnl_usd"] == pytest.approx((10 - 5) * 2 * 100)
    assert settled.loc[put, "price"] == 0.0  # expired worthless: the seller keeps the premium
    assert settled.loc[put, "realized_pnl_usd"] == pytest.approx(3 * 100)
    assert result.changes.realized_pnl_usd == pytest.approx(1300)
    assert_consistent(db_url, first.portfolio_id)
    with pytest.raises(HoldingsError, match="not opened or increased"):
        load_portfolio(
            conn, user, "Main", book(csv_of(KEPT, f"{call},1,5.00,2026-06-01,")), as_of=S2
        )
