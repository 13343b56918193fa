"""Portfolio CSV intake through the real inbox sensor and through `sigmasight ingest`.

Every test runs twice (`mode`): the sensor evaluated by `build_sensor_context` on the real
Dagster instance (dagster-postgres on the test database), and `sigmasight ingest` through
`cli.main`. Each one reads the database and the folders back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context

from sigmasight_pipeline import calendar, cli, intake, sensors
from sigmasight_pipeline.benchmarks.intake import big_portfolio
from sigmasight_pipeline.portfolio_csv import MAX_FILE_BYTES
from sigmasight_pipeline.portfolios import create_user
from sigmasight_pipeline.resources import instance as instance_module
from sigmasight_pipeline.resources.database import PostgresResource, connect, transaction

HEADER = "ticker,quantity,entry_price,entry_date,tags"
V1 = f"""{HEADER}
AAPL,100,150.00,2026-01-05,"tech,core"
MSFT,-50,300.00,2026-02-02,hedge
AAPL281215C00200000,2,5.50,2026-06-01,"options,tech"
"""
V2 = f"""{HEADER}
AAPL,120,151.00,2026-01-05,"tech,growth"
NVDA,10,90.00,2026-03-02,
"""
BIG_ROWS = 100_000


@dataclass
class Tick:
    """One intake pass: the sensor's result, or the CLI's exit code and output lines."""

    result: SensorResult | None = None
    code: int | None = None
    lines: list[str] = field(default_factory=list)
    new: list = field(default_factory=list)  # requests with a run key not requested before

    @property
    def requests(self) -> list:
        return list(self.result.run_requests or []) if self.result else []


@pytest.fixture
def db_url(isolated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This module's own database (runs it starts read DATABASE_URL), not the demo's."""
    monkeypatch.setenv("DATABASE_URL", isolated_db_url)
    return isolated_db_url


@dataclass
class Env:
    """A user, an inbox under tmp_path and the intake driven as `mode` (sensor or cli)."""

    mode: str
    url: str
    instance: DagsterInstance
    folders: intake.Folders
    user: str
    capsys: pytest.CaptureFixture
    cursor: str | None = None
    run_keys: set[str] = field(default_factory=set)

    def drop(self, name: str, content: str | bytes, age: float = 10.0) -> Path:
        """Write a file in the inbox, modified `age` seconds ago (settled)."""
        path = self.folders.inbox / name
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        if age:
            when = time.time() - age
            os.utime(path, (when, when))
        return path

    def tick(self, *paths: Path, options: tuple[str, ...] = ()) -> Tick:
        """The sensor (cursor carried over) or `sigmasight ingest [OPTION...] [PATH...]`."""
        if self.mode == "sensor":
            assert not paths, "the sensor only reads the inbox"
            context = build_sensor_context(
                instance=self.instance,
                resources={"database": PostgresResource(database_url=self.url)},
                cursor=self.cursor,
            )
            result = sensors.portfolio_inbox_sensor(context)
            assert isinstance(result, SensorResult)
            self.cursor = result.cursor
            new = [r for r in result.run_requests or [] if r.run_key not in self.run_keys]
            self.run_keys.update(r.run_key for r in new)
            return Tick(result=result, new=new)
        self.capsys.readouterr()
        code = cli.main(["ingest", *options, *(str(p) for p in paths)])
        lines = self.capsys.readouterr().out.splitlines()
        return Tick(code=code, lines=lines)

    def files(self, folder: str) -> list[str]:
        return sorted(p.name for p in getattr(self.folders, folder).iterdir())


@pytest.fixture(params=["sensor", "cli"])
def env(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    dagster_instance: DagsterInstance,
    capsys: pytest.CaptureFixture,
) -> Iterator[Env]:
    folders = intake.Folders.around(tmp_path / "data" / "inbox")
    folders.inbox.mkdir(parents=True)
    monkeypatch.setenv("SIGMASIGHT_INBOX", str(folders.inbox))
    monkeypatch.setenv("DATABASE_URL", db_url)
    # `sigmasight` commands write .env in the checkout for the dagster CLI: not from tests.
    monkeypatch.setattr(instance_module, "_write_dotenv", lambda: None)
    user = f"intake_{uuid.uuid4().hex[:10]}"
    with transaction(db_url) as conn:
        create_user(conn, user, "secret")
    cursor = sensors.make_cursor(intake.latest_load_id(db_url))
    yield Env(request.param, db_url, dagster_instance, folders, user, capsys, cursor)
    with transaction(db_url) as conn:  # cascades to portfolios, positions, tags, loads
        conn.execute("DELETE FROM sigmasight.users WHERE username = %s", (user,))


# ---------------------------------------------------------------------------------------------
# Reading back


def positions(url: str, username: str, portfolio: str) -> dict[str, tuple] | None:
    """Open positions: symbol -> (quantity, entry_price, entry_date, tags); None if no such
    portfolio."""
    with connect(url) as conn:
        found = conn.execute(
            "SELECT p.id FROM sigmasight.portfolios p JOIN sigmasight.users u ON u.id = p.owner_id "
            "WHERE u.username = %s AND p.name = %s",
            (username, portfolio),
        ).fetchone()
        if found is None:
            return None
        rows = conn.execute(
            """
            SELECT s.symbol, s.quantity, s.entry_price, s.entry_date::text,
                   coalesce(array_agg(t.name ORDER BY t.name) FILTER (WHERE t.name IS NOT NULL),
                            '{}')
            FROM sigmasight.positions s
            LEFT JOIN sigmasight.position_tags pt ON pt.position_id = s.id
            LEFT JOIN sigmasight.tags t ON t.id = pt.tag_id
            WHERE s.portfolio_id = %s AND s.closed_on IS NULL GROUP BY s.id
            """,
            (found[0],),
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3], tuple(r[4])) for r in rows}


def portfolio_count(url: str, username: str) -> int:
    with connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM sigmasight.portfolios p JOIN sigmasight.users u "
            "ON u.id = p.owner_id WHERE u.username = %s",
            (username,),
        ).fetchone()[0]


def user_loads(url: str, username: str) -> list[intake.LoadRecord]:
    return [load for load in intake.loads_after(url) if load.username == username]


def tag_names(url: str, username: str) -> list[str]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT t.name FROM sigmasight.tags t JOIN sigmasight.users u ON u.id = t.user_id "
            "WHERE u.username = %s ORDER BY t.name",
            (username,),
        ).fetchall()
    return [r[0] for r in rows]


V1_POSITIONS = {
    "AAPL": (100.0, 150.0, "2026-01-05", ("core", "tech")),
    "MSFT": (-50.0, 300.0, "2026-02-02", ("hedge",)),
    "AAPL281215C00200000": (2.0, 5.5, "2026-06-01", ("options", "tech")),
}
V2_POSITIONS = {
    "AAPL": (120.0, 151.0, "2026-01-05", ("growth", "tech")),
    "NVDA": (10.0, 90.0, "2026-03-02", ()),
}


def assert_loaded_line(env: Env, tick: Tick, name: str, status: str = "loaded") -> None:
    if env.mode == "cli":
        assert tick.code == 0, tick.lines
        assert any(line.startswith(f"{status:<9} {name}:") for line in tick.lines), tick.lines


# ---------------------------------------------------------------------------------------------
# A valid file


def test_valid_file_is_loaded_moved_and_backfilled(env: Env) -> None:
    name = f"{env.user}__Growth.csv"
    env.drop(name, V1)
    tick = env.tick()

    assert positions(env.url, env.user, "Growth") == V1_POSITIONS
    (load,) = user_loads(env.url, env.user)
    assert (load.positions, load.replaced, load.file_name) == (3, False, name)
    assert load.loaded_by == env.mode
    assert load.sha256 == intake.fingerprint(V1.encode())
    assert env.files("inbox") == [] and env.files("rejected") == []
    assert env.files("processed") == [load.stored_as]
    assert load.stored_as.endswith(f"Z__{name}")
    assert (env.folders.processed / load.stored_as).read_text() == V1
    assert_loaded_line(env, tick, name)
    if env.mode == "sensor":
        (request,) = tick.requests
        assert request.run_key.startswith("portfolio-")
        assert request.tags[sensors.LOADS_TAG] == str(load.id)
        assert len(tick.result.asset_events) == 1
        event = tick.result.asset_events[0]
        assert event.asset_key.to_user_string() == "positions"
        assert event.metadata["sha256"].value == load.sha256


# ---------------------------------------------------------------------------------------------
# Invalid files


def _bad_rows() -> str:
    return (
        f"{HEADER}\nAAPL,abc,150,2026-01-05,\nMSFT,0,300,2026-02-02,\n"
        "NOT A TICKER!,5,10,2026-01-05,\nNVDA,5,10,2099-01-05,\nAAPL,1,1,2026-01-05,\n"
    )


INVALID = {
    # kind: (file name, content, expected (row, field) pairs)
    "bad rows": (
        "{user}__Bad.csv",
        _bad_rows(),
        [(2, "quantity"), (3, "quantity"), (4, "ticker"), (5, "entry_date"), (2, "ticker")],
    ),
    "missing column": (
        "{user}__Bad.csv",
        "ticker,quantity,entry_price\nAAPL,1,2\n",
        [(1, "entry_date")],
    ),
    "header only": ("{user}__Bad.csv", f"{HEADER}\n", [(1, "file")]),
    "empty": ("{user}__Bad.csv", "", [(None, "file")]),
    "binary": ("{user}__Bad.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", [(None, "file")]),
    "not utf-8": (
        "{user}__Bad.csv",
        f"{HEADER}\nAAPL,1,2,2026-01-05,caf\xe9\n".encode("latin-1"),
        [(None, "file")],
    ),
    "file name": ("{user}-Bad.csv", V1, [(None, "file_name")]),
    "unknown user": ("nobody_{user}__Bad.csv", V1, [(None, "username")]),
    "too large": ("{user}__Bad.csv", None, [(None, "file")]),
}


@pytest.mark.parametrize("kind", list(INVALID))
def test_invalid_file_is_rejected_with_a_report(env: Env, kind: str) -> None:
    template, content, expected = INVALID[kind]
    name = template.format(user=env.user)
    if content is None:  # a sparse file one byte over the limit: rejected before reading
        path = env.drop(name, b"")
        with path.open("r+b") as handle:
            handle.truncate(MAX_FILE_BYTES + 1)
        old = time.time() - 10
        os.utime(path, (old, old))
    else:
        path = env.drop(name, content)
    tick = env.tick()

    assert portfolio_count(env.url, env.user) == 0 and user_loads(env.url, env.user) == []
    assert env.files("inbox") == [] and env.files("processed") == []
    moved, report = env.files("rejected")
    assert moved.endswith(f"Z__{name}") and report == f"{moved}.errors.json"
    if content is not None:
        original = content.encode() if isinstance(content, str) else content
        assert (env.folders.rejected / moved).read_bytes() == original
    else:
        assert (env.folders.rejected / moved).stat().st_size == MAX_FILE_BYTES + 1
    data = json.loads((env.folders.rejected / report).read_text())
    found = [(e["row"], e["field"]) for e in data["errors"]]
    assert set(expected) <= set(found), found
    assert data["error_count"] == len(data["errors"]) and all(e["reason"] for e in data["errors"])
    assert data["file"] == str(path) and data["moved_to"] == str(env.folders.rejected / moved)
    if env.mode == "sensor":
        assert tick.requests == [] and not tick.result.asset_events
        assert f"rejected  {name}" in tick.result.skip_reason.skip_message
        assert report in tick.result.skip_reason.skip_message
    else:
        assert tick.code == 1
        (line,) = tick.lines
        assert line.startswith(f"rejected  {name}: ") and report in line


def test_rejected_replacement_keeps_the_previous_positions(env: Env) -> None:
    name = f"{env.user}__Growth.csv"
    env.drop(name, V1)
    env.tick()
    env.drop(name, f"{HEADER}\nAAPL,0,150,2026-01-05,\n")
    tick = env.tick()
    assert positions(env.url, env.user, "Growth") == V1_POSITIONS
    assert len(user_loads(env.url, env.user)) == 1
    assert len(env.files("processed")) == 1 and len(env.files("rejected")) == 2
    if env.mode == "sensor":
        assert tick.new == []
    else:
        assert tick.code == 1


# ---------------------------------------------------------------------------------------------
# Idempotency


def test_same_file_twice_loads_and_runs_once(env: Env) -> None:
    name = f"{env.user}__Growth.csv"
    env.drop(name, V1)
    first = env.tick()
    env.drop(name, V1)
    second = env.tick()

    assert positions(env.url, env.user, "Growth") == V1_POSITIONS
    (load,) = user_loads(env.url, env.user)
    processed = env.files("processed")
    assert len(processed) == 2 and load.stored_as in processed  # nothing deleted
    assert env.files("inbox") == [] and env.files("rejected") == []
    assert_loaded_line(env, second, name, status="unchanged")
    if env.mode == "sensor":
        assert len(first.new) == 1
        assert second.new == [] and not second.result.asset_events


def test_changed_file_loads_again(env: Env) -> None:
    name = f"{env.user}__Growth.csv"
    env.drop(name, V1)
    first = env.tick()
    env.drop(name, V2)
    second = env.tick()

    assert positions(env.url, env.user, "Growth") == V2_POSITIONS
    one, two = user_loads(env.url, env.user)
    assert (two.replaced, two.current, one.current) == (True, True, False)
    assert two.sha256 == intake.fingerprint(V2.encode())
    assert sorted(env.files("processed")) == sorted([one.stored_as, two.stored_as])
    assert "core" in tag_names(env.url, env.user)  # tags are the user's, kept
    assert_loaded_line(env, second, name)
    if env.mode == "sensor":
        (request,) = second.new
        assert request.tags[sensors.LOADS_TAG] == str(two.id)

    # Back to the first version: a change again, so loaded again (and backfilled again).
    env.drop(name, V1)
    third = env.tick()
    assert positions(env.url, env.user, "Growth") == V1_POSITIONS
    assert len(user_loads(env.url, env.user)) == 3
    if env.mode == "sensor":
        assert len(first.new) == len(third.new) == 1
    else:
        assert third.code == 0


def load_events(url: str, load_id: int) -> list[tuple]:
    """(symbol, kind, event_date) of a load's events."""
    with connect(url) as conn:
        return conn.execute(
            "SELECT p.symbol, e.kind, e.event_date FROM sigmasight.position_events e "
            "JOIN sigmasight.positions p ON p.id = e.position_id WHERE e.load_id = %s "
            "ORDER BY 1, 2",
            (load_id,),
        ).fetchall()


def test_a_reupload_is_dated_on_the_latest_closed_session(env: Env) -> None:
    name = f"{env.user}__Growth.csv"
    env.drop(name, V1)
    env.tick()
    env.drop(name, V2)
    tick = env.tick()
    one, two = user_loads(env.url, env.user)
    session = calendar.latest_closed_session().date()
    assert two.effective_session == one.effective_session == session
    # AAPL grew (another entry price: the file's), NVDA opened, MSFT and the call closed.
    assert load_events(env.url, two.id) == [
        ("AAPL", "increase", session),
        ("AAPL281215C00200000", "close", session),
        ("MSFT", "close", session),
        ("NVDA", "open", session),
    ]
    assert [kind for _, kind, _ in load_events(env.url, one.id)] == ["open"] * 3
    if env.mode == "cli":
        (line,) = [line for line in tick.lines if line.startswith("loaded")]
        assert f"1 opened, 1 increased, 2 closed on {session}, realized" in line


def test_a_file_closing_every_position_is_rejected(env: Env) -> None:
    name = f"{env.user}__Growth.csv"
    env.drop(name, V1)
    env.tick()
    for content in (f"{HEADER}\n", f"{HEADER}\nNVDA,10,90.00,2026-03-02,\n"):
        env.drop(name, content)
        tick = env.tick()
        assert positions(env.url, env.user, "Growth") == V1_POSITIONS
        report = sorted(env.files("rejected"))[-1]
        (error,) = json.loads((env.folders.rejected / report).read_text())["errors"]
        assert "--allow-close-all" in error["reason"], error
        assert env.files("inbox") == [] and len(user_loads(env.url, env.user)) == 1
        if env.mode == "cli":
            assert tick.code == 1
    if env.mode == "cli":  # a liquidation, said so
        env.drop(name, f"{HEADER}\n")
        tick = env.tick(options=("--allow-close-all",))
        assert tick.code == 0, tick.lines
        assert positions(env.url, env.user, "Growth") == {}
        assert "3 closed on" in tick.lines[0]


@pytest.mark.parametrize("env", ["cli"], indirect=True)
def test_ingest_as_of(env: Env) -> None:
    name = f"{env.user}__Growth.csv"
    env.drop(name, V1)
    env.tick()
    env.drop(name, V2)
    tick = env.tick(options=("--as-of", "2026-11-26"))  # Thanksgiving
    assert tick.code == 2 and env.files("inbox") == [name]
    assert tick.lines == [
        "--as-of 2026-11-26 is not an NYSE session; the nearest sessions are 2026-11-25 "
        "(before) and 2026-11-27 (after); no file was touched"
    ]
    tick = env.tick(options=("--as-of", "2025-12-31"))  # before AAPL's first entry
    assert tick.code == 1 and tick.lines[0].startswith(f"rejected  {name}")
    assert "before the portfolio's first session 2026-01-05" in tick.lines[0]
    env.drop(name, V2)
    tick = env.tick(options=("--as-of", "2026-11-20"))
    assert tick.code == 0, tick.lines
    _, two = user_loads(env.url, env.user)
    assert two.effective_session == date(2026, 11, 20)
    assert {day for *_, day in load_events(env.url, two.id)} == {date(2026, 11, 20)}


def test_two_files_at_once(env: Env) -> None:
    env.drop(f"{env.user}__One.csv", V1)
    env.drop(f"{env.user}__Two.csv", V2)
    tick = env.tick()

    assert positions(env.url, env.user, "One") == V1_POSITIONS
    assert positions(env.url, env.user, "Two") == V2_POSITIONS
    loads = user_loads(env.url, env.user)
    assert len(loads) == 2 and len(env.files("processed")) == 2 and env.files("inbox") == []
    if env.mode == "sensor":  # one run covers both portfolios
        (request,) = tick.requests
        assert request.tags[sensors.LOADS_TAG] == ",".join(str(load.id) for load in loads)
        assert len(tick.result.asset_events) == 2
    else:
        assert tick.code == 0 and sum(line.startswith("loaded") for line in tick.lines) == 2


def test_the_benchmark_book_can_be_loaded_again_with_every_quantity_changed() -> None:
    """The intake benchmark's re-upload is a file intake loads: no zero quantity, every
    quantity changed, and a close in the synthetic market for every option it holds (a put
    struck near zero has none, and a load that must price it is refused)."""
    import io

    import pandas as pd

    from sigmasight_pipeline.analytics.instruments import is_option_symbol
    from sigmasight_pipeline.resources.synthetic import SyntheticMarket

    first, second = (pd.read_csv(io.StringIO(big_portfolio(10_000, v))) for v in (0, 1))
    assert (first["ticker"] == second["ticker"]).all()
    assert (second["quantity"] != 0).all() and (second["quantity"] != first["quantity"]).all()
    options = second.loc[second["ticker"].map(is_option_symbol), "ticker"]
    assert len(options) == 1_000
    day = calendar.latest_closed_session().date()
    result = SyntheticMarket().fetch_bars(pd.DataFrame({"symbol": options, "trade_date": day}))
    assert result.issues.empty and len(result.bars) == len(options)
    assert (result.bars["close"] > 0).all()


def test_100k_row_file(env: Env) -> None:
    name = f"{env.user}__Big.csv"
    content = big_portfolio(BIG_ROWS)
    env.drop(name, content)
    began = time.perf_counter()
    tick = env.tick()
    seconds = time.perf_counter() - began

    with connect(env.url) as conn:
        # The load refreshed the planner's statistics itself (ANALYZE, not autovacuum's): the
        # join below, planned on the empty book's, ran for over 18 minutes in a CI run.
        (analyzed,) = conn.execute(
            "SELECT last_analyze > now() - make_interval(secs => %s) FROM pg_stat_user_tables "
            "WHERE schemaname = 'sigmasight' AND relname = 'positions'",
            (seconds + 5,),
        ).fetchone()
        assert analyzed
        count, options, links = conn.execute(
            "SELECT count(DISTINCT s.id), count(DISTINCT s.id) FILTER (WHERE s.multiplier = 100), "
            "count(pt.tag_id) FROM sigmasight.positions s JOIN sigmasight.portfolios p "
            "ON p.id = s.portfolio_id JOIN sigmasight.users u ON u.id = p.owner_id "
            "LEFT JOIN sigmasight.position_tags pt ON pt.position_id = s.id "
            "WHERE u.username = %s",
            (env.user,),
        ).fetchone()
    assert (count, options, links) == (BIG_ROWS, BIG_ROWS // 10, BIG_ROWS // 5 * 7)
    (load,) = user_loads(env.url, env.user)
    assert load.positions == BIG_ROWS and env.files("processed") == [load.stored_as]
    print(f"\n100,000-row file through the {env.mode}: drop -> loaded in {seconds:.1f} s")
    assert_loaded_line(env, tick, name)


# ---------------------------------------------------------------------------------------------
# Failures


@pytest.fixture
def failing_tag_links(db_url: str) -> Iterator[Any]:
    """`arm(username, errcode)`: a trigger that raises `errcode` at the 3rd tag link of that
    user's positions (after the old positions are deleted and the new ones copied)."""
    armed: list[bool] = []

    def arm(username: str, errcode: str = "P0001") -> None:
        with transaction(db_url) as conn:
            conn.execute("CREATE SEQUENCE test_intake_fail_seq")
            conn.execute(
                f"""
                CREATE FUNCTION test_intake_fail() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF EXISTS (SELECT 1 FROM sigmasight.tags t JOIN sigmasight.users u
                               ON u.id = t.user_id WHERE t.id = NEW.tag_id
                               AND u.username = '{username}')
                       AND nextval('test_intake_fail_seq') >= 3 THEN
                        RAISE EXCEPTION 'test trigger: failing the 3rd tag link on purpose'
                            USING ERRCODE = '{errcode}';
                    END IF;
                    RETURN NEW;
                END $$
                """
            )
            conn.execute(
                "CREATE TRIGGER test_intake_fail BEFORE INSERT ON sigmasight.position_tags "
                "FOR EACH ROW EXECUTE FUNCTION test_intake_fail()"
            )
        armed.append(True)

    def disarm() -> None:
        if armed:
            with transaction(db_url) as conn:
                conn.execute("DROP TRIGGER test_intake_fail ON sigmasight.position_tags")
                conn.execute("DROP FUNCTION test_intake_fail()")
                conn.execute("DROP SEQUENCE test_intake_fail_seq")
            armed.clear()

    arm.disarm = disarm  # type: ignore[attr-defined]
    yield arm
    disarm()


def test_load_failing_midway_rolls_back_and_rejects(env: Env, failing_tag_links) -> None:
    name = f"{env.user}__Growth.csv"
    env.drop(name, V1)
    env.tick()
    failing_tag_links(env.user)
    env.drop(name, V2.replace("tech,growth", "tech,growth,brand-new"))
    tick = env.tick()

    assert positions(env.url, env.user, "Growth") == V1_POSITIONS  # old positions and links
    assert "brand-new" not in tag_names(env.url, env.user)  # the new tag rolled back too
    assert len(user_loads(env.url, env.user)) == 1
    assert len(env.files("processed")) == 1 and env.files("inbox") == []
    _, report = env.files("rejected")
    (error,) = json.loads((env.folders.rejected / report).read_text())["errors"]
    assert error["field"] == "database" and "failing the 3rd tag link" in error["reason"]
    if env.mode == "sensor":
        assert tick.new == []
    else:
        assert tick.code == 1 and tick.lines[0].startswith(f"rejected  {name}")


def test_transient_database_failure_leaves_the_file_for_the_next_tick(
    env: Env, failing_tag_links
) -> None:
    name = f"{env.user}__Growth.csv"
    failing_tag_links(env.user, errcode="40001")  # serialization_failure: retry later
    env.drop(name, V1)
    tick = env.tick()
    assert portfolio_count(env.url, env.user) == 0
    assert env.files("inbox") == [name] and env.files("rejected") == []
    if env.mode == "sensor":
        assert tick.requests == [] and "left in the inbox" in tick.result.skip_reason.skip_message
    else:
        assert tick.code == 1 and tick.lines[0].startswith(f"skipped   {name}")

    failing_tag_links.disarm()
    tick = env.tick()
    assert positions(env.url, env.user, "Growth") == V1_POSITIONS
    assert env.files("inbox") == [] and len(env.files("processed")) == 1
    assert_loaded_line(env, tick, name)


CRASH_AFTER_LOAD = """
import os, sys
from sigmasight_pipeline import intake

def crash(source, destination):  # the process dies after the commit, before the move
    os._exit(137)

intake.move = crash
intake.process_inbox(sys.argv[1], intake.Folders.around(sys.argv[2]), loaded_by="sensor")
"""


def test_crash_between_load_and_move(env: Env) -> None:
    name = f"{env.user}__Growth.csv"
    env.drop(name, V1)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_LOAD, env.url, str(env.folders.inbox)],
        capture_output=True,
        timeout=300,
    )
    assert crashed.returncode == 137, crashed.stderr.decode()[-2000:]
    assert positions(env.url, env.user, "Growth") == V1_POSITIONS
    (load,) = user_loads(env.url, env.user)
    assert env.files("inbox") == [name] and env.files("processed") == []

    tick = env.tick()  # the next tick: already loaded with this sha256, so only moved
    assert user_loads(env.url, env.user) == [load]
    assert env.files("inbox") == [] and env.files("processed") == [load.stored_as]
    assert positions(env.url, env.user, "Growth") == V1_POSITIONS
    assert_loaded_line(env, tick, name, status="unchanged")
    if env.mode == "sensor":  # the load's backfill was never requested: it is now
        (request,) = tick.new
        assert request.tags[sensors.LOADS_TAG] == str(load.id)


@pytest.mark.parametrize("env", ["sensor"], indirect=True)  # the CLI requests no runs
def test_tick_repeated_after_a_crash_requests_the_same_runs(env: Env) -> None:
    before = env.cursor
    env.drop(f"{env.user}__Growth.csv", V1)
    first = env.tick()
    env.cursor = before  # the daemon died before storing the tick: same cursor again
    again = env.tick()
    assert [r.run_key for r in again.requests] == [r.run_key for r in first.requests]
    assert len(user_loads(env.url, env.user)) == 1


# ---------------------------------------------------------------------------------------------
# What is picked up


def test_partial_hidden_and_other_files_are_left_alone(env: Env) -> None:
    ignored = [f".{env.user}__P.csv", f"~{env.user}__P.csv", f"{env.user}__P.csv.part", "a.txt"]
    for name in ignored:
        env.drop(name, V1)
    fresh = f"{env.user}__Fresh.csv"
    env.drop(fresh, V1, age=0)  # just written: may still be being written
    tick = env.tick()
    if env.mode == "sensor":  # waits for the next tick
        assert portfolio_count(env.url, env.user) == 0
        assert fresh in env.files("inbox")
        os.utime(env.folders.inbox / fresh, (time.time() - 10, time.time() - 10))
        tick = env.tick()
    assert positions(env.url, env.user, "Fresh") == V1_POSITIONS  # the CLI waited ~1 s
    assert env.files("inbox") == sorted(ignored)
    assert_loaded_line(env, tick, fresh)


@pytest.mark.parametrize("env", ["cli"], indirect=True)
def test_paths_given_to_the_cli(env: Env, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    one = elsewhere / f"{env.user}__One.csv"
    one.write_text(V1)
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / f"{env.user}__Two.csv").write_text(V2)
    tick = env.tick(one, folder)
    assert tick.code == 0, tick.lines
    assert positions(env.url, env.user, "One") == V1_POSITIONS
    assert positions(env.url, env.user, "Two") == V2_POSITIONS
    assert list(elsewhere.iterdir()) == [] and list(folder.iterdir()) == []
    assert len(env.files("processed")) == 2  # the inbox's sibling, as for the inbox

    tick = env.tick(tmp_path / "missing__X.csv")
    assert tick.code == 1 and tick.lines[0].startswith("skipped   missing__X.csv")


def test_a_fixed_rejected_file_moved_back_is_loaded(env: Env) -> None:
    name = f"{env.user}__Growth.csv"
    env.drop(name, f"{HEADER}\nAAPL,abc,150,2026-01-05,\n")
    env.tick()
    stamped = next(n for n in env.files("rejected") if n.endswith(".csv"))
    env.drop(stamped, V1)  # fixed, back in the inbox under its stamped name
    tick = env.tick()
    assert positions(env.url, env.user, "Growth") == V1_POSITIONS
    (load,) = user_loads(env.url, env.user)
    assert load.file_name == name and load.stored_as.count("Z__") == 1
    assert_loaded_line(env, tick, stamped)
