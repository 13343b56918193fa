"""A chunked write (`write_table_slice`): chunks are written on a background thread while the
next is computed, and the write is still all or nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest
from dagster._core.storage.db_io_manager import TableSlice

from sigmasight_pipeline.resources import io_manager
from sigmasight_pipeline.resources.database import connect
from sigmasight_pipeline.resources.io_manager import TableWrite, write_table_slice
from sigmasight_pipeline.resources.tables import arrow_connection, query_frame
from sigmasight_pipeline_tests.conftest import database_before

TABLE = "write_behind_probe"
ROWS = 20_000


@pytest.fixture
def probe_table(db_url: str) -> Iterator[str]:
    """A table holding the previous write's one row."""
    name = f"sigmasight.{TABLE}"
    with connect(db_url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} (chunk integer NOT NULL, n integer NOT NULL)")
        conn.execute(f"INSERT INTO {name} VALUES (0, 0)")
        conn.commit()
    yield name
    with connect(db_url) as conn:
        conn.execute(f"DROP TABLE {name}")
        conn.commit()


def _chunk(k: int) -> pd.DataFrame:
    return pd.DataFrame({"chunk": k, "n": range(ROWS)})


def _write(db_url: str, frames) -> None:
    with arrow_connection(db_url) as writer:
        write_table_slice(writer, db_url, TableSlice(TABLE, "sigmasight"), TableWrite(frames))


def _stored(db_url: str, name: str) -> list[tuple[int, int]]:
    counts = query_frame(db_url, f"SELECT chunk, count(*) AS n FROM {name} GROUP BY 1 ORDER BY 1")
    return list(zip(counts["chunk"], counts["n"], strict=True))


def test_the_next_chunk_is_computed_while_the_last_one_is_written(db_url, probe_table, monkeypatch):
    """Every chunk is written, in order, on another thread; the generator is resumed for chunk
    k + 1 before chunk k's write has returned."""
    writes: list[tuple[int, str, float, float]] = []
    real_ingest = io_manager.ingest

    def slow_ingest(conn, url, schema, table, frame):
        began = time.perf_counter()
        rows = real_ingest(conn, url, schema, table, frame)
        time.sleep(0.3)  # a write slower than computing the next chunk
        writes.append((int(frame["chunk"].iloc[0]), threading.current_thread().name, began,
                       time.perf_counter()))  # fmt: skip
        return rows

    monkeypatch.setattr(io_manager, "ingest", slow_ingest)
    resumed: dict[int, float] = {}

    def chunks() -> Iterator[pd.DataFrame]:
        for k in (1, 2, 3):
            resumed[k] = time.perf_counter()
            yield _chunk(k)

    _write(db_url, chunks())
    assert _stored(db_url, probe_table) == [(1, ROWS), (2, ROWS), (3, ROWS)]  # row 0 replaced
    assert [w[0] for w in writes] == [1, 2, 3]
    assert all(name.startswith("sigmasight-ingest") for _, name, _, _ in writes)
    ended = {k: end for k, _, _, end in writes}
    assert resumed[2] < ended[1] and resumed[3] < ended[2]
    began = {k: start for k, _, start, _ in writes}
    assert began[2] >= ended[1] and began[3] >= ended[2]  # one chunk written at a time


def test_a_chunk_failing_to_compute_leaves_the_previous_rows(db_url, probe_table):
    """Chunks already handed to the writer are rolled back with the rest: the error raised is
    the computation's, and the table keeps what it had."""

    def chunks() -> Iterator[pd.DataFrame]:
        yield _chunk(1)
        yield _chunk(2)
        raise RuntimeError("chunk 3 could not be computed")

    with pytest.raises(RuntimeError, match="chunk 3 could not be computed"):
        _write(db_url, chunks())
    assert _stored(db_url, probe_table) == [(0, 1)]


def test_a_chunk_failing_to_write_stops_the_write_and_leaves_the_previous_rows(db_url, probe_table):
    """A write that fails on the background thread raises in the caller (at the next chunk or
    at the end), no later chunk is computed past it, and nothing of the write is kept."""
    computed = []

    def chunks() -> Iterator[pd.DataFrame]:
        for k in (1, 2, 3, 4):
            computed.append(k)
            frame = _chunk(k)
            if k == 2:
                frame["n"] = None  # NOT NULL violated in the database
            yield frame

    with pytest.raises(Exception, match="null value"):
        _write(db_url, chunks())
    assert _stored(db_url, probe_table) == [(0, 1)]
    assert computed in ([1, 2, 3], [1, 2, 3, 4])  # raised when chunk 3 or 4 was handed over


def test_every_table_written_by_session_has_an_index_that_finds_a_session(db_url):
    """A write replaces its sessions' rows with `DELETE ... WHERE trade_date ...` over every
    portfolio: each table with a trade_date column has an index whose first column is
    trade_date (a btree, or a BRIN where the key leads with portfolio_id), so that delete
    never reads the whole table (sql/0010, 0011, 0017, 0019)."""
    with connect(db_url) as conn:
        tables = conn.execute(
            """
            SELECT c.oid::regclass::text,
                   EXISTS (SELECT 1 FROM pg_index i
                           WHERE i.indrelid = c.oid
                             AND i.indkey[0] = (SELECT attnum FROM pg_attribute
                                                WHERE attrelid = c.oid AND attname = 'trade_date'))
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'sigmasight' AND c.relkind IN ('r', 'p')
              AND EXISTS (SELECT 1 FROM pg_attribute
                          WHERE attrelid = c.oid AND attname = 'trade_date' AND NOT attisdropped)
            ORDER BY 1
            """
        ).fetchall()
    assert len(tables) >= 20, tables
    assert [name for name, indexed in tables if not indexed] == []


PORTFOLIO_DAY_TABLES = (
    "position_values", "position_greeks", "position_exposures",
    "position_risk_contributions", "position_stress_pnl", "portfolio_stress_results",
    "portfolio_sector_exposures", "portfolio_risk_decomposition", "portfolio_factor_exposures",
    "portfolio_greeks",
)  # fmt: skip


def test_the_compact_tables_migration_keeps_every_row() -> None:
    """0019 rebuilds position_values and position_factor_exposures with their 8-byte columns
    first and replaces the unique keys of the portfolio-day tables by a (portfolio_id,
    trade_date) index: a database with rows keeps every value, NULLs included."""
    from sigmasight_pipeline.resources.database import migrate

    tables = ("position_values", "position_factor_exposures")
    with database_before("0019") as url:
        with connect(url, autocommit=True) as old:
            old.execute(
                "INSERT INTO sigmasight.position_values (trade_date, position_id, portfolio_id, "
                "quantity, price, price_date, price_source, market_value, exposure, cost_basis, "
                "unrealized_pnl, daily_pnl, pnl_reason, realized_pnl_usd, realized_pnl_cum_usd) "
                "VALUES ('2026-11-19', 1, 7, 10, 101.5, '2026-11-19', 'market', 1015, 1015, "
                "1000, 15, 2.5, NULL, 0, 0), ('2026-11-20', 1, 7, 10, NULL, NULL, 'missing', "
                "NULL, NULL, 1000, NULL, NULL, 'no price', NULL, 0)"
            )
            old.execute(
                "INSERT INTO sigmasight.position_factor_exposures (trade_date, position_id, "
                "portfolio_id, exposure, beta_market, beta_rates, short_interest, n_obs, reason, "
                "pnl_usd_per_100bp) VALUES ('2026-11-19', 1, 7, 1015, 1.2, -0.1, 0.03, 90, NULL, "
                "-12.5), ('2026-11-20', 1, 7, NULL, NULL, NULL, NULL, 0, 'no returns', NULL)"
            )
            before = {t: _rows_by_column(old, t) for t in tables}
        assert "0019_compact_portfolio_day_tables" in migrate(url)
        with connect(url) as new:
            assert _rows_by_column(new, "position_values") == before["position_values"]
            # 0023 keeps the position's own columns; the betas are read from factor_betas.
            own = ["trade_date", "position_id", "portfolio_id", "exposure", "pnl_usd_per_100bp"]
            assert _rows_by_column(new, "position_exposures") == [
                {k: row[k] for k in own} for row in before["position_factor_exposures"]
            ]
            keys = new.execute(
                "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid = ANY "
                "(%s::regclass[])",
                ([f"sigmasight.{t}" for t in PORTFOLIO_DAY_TABLES],),
            ).fetchone()
            first = new.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = "
                "'sigmasight.position_values'::regclass AND attnum = 1"
            ).fetchone()
        assert keys == (0,) and first == ("quantity",)


def test_the_position_betas_migration_reads_the_same_rows_through_the_view() -> None:
    """0023: position_factor_exposures becomes a view over position_exposures, factor_betas
    and short_interest; a database with rows reads the same values through it, a missing beta
    named in the reason as before and a position without betas as 'no betas ...'."""
    from sigmasight_pipeline.resources.database import migrate

    factors = ["Market", "Momentum", "Value", "Growth", "Quality", "Size", "Low Volatility",
               "Rates"]  # fmt: skip
    with database_before("0023") as url:
        with connect(url, autocommit=True) as old:
            old.execute(
                "INSERT INTO sigmasight.users (username, password_hash, role) "
                "VALUES ('u', 'x', 'user')"
            )
            old.execute(
                "INSERT INTO sigmasight.portfolios (name, owner_id) "
                "SELECT 'p', id FROM sigmasight.users"
            )
            for symbol in ("AAA", "BBB"):
                old.execute(
                    "INSERT INTO sigmasight.positions (portfolio_id, symbol, quantity, "
                    "entry_price, entry_date, position_type, underlying, multiplier) "
                    "SELECT id, %s, 10, 100, '2026-11-02', 'LONG', %s, 1 "
                    "FROM sigmasight.portfolios",
                    (symbol, symbol),
                )
            betas = [0.1, None, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
            for factor, beta in zip(factors, betas, strict=True):
                old.execute(
                    "INSERT INTO sigmasight.factor_betas (trade_date, symbol, factor, beta, "
                    "n_obs, reason) VALUES ('2026-11-20', 'AAA', %s, %s, 60, %s)",
                    (factor, beta, None if beta is not None else "only 12 observations (< 20)"),
                )
            old.execute(
                "INSERT INTO sigmasight.short_interest (symbol, trade_date, "
                "short_interest_pct_float, source) VALUES ('AAA', '2026-11-20', 4.5, 'test')"
            )
            insert = (
                "INSERT INTO sigmasight.position_factor_exposures (trade_date, position_id, "
                "portfolio_id, exposure, beta_market, beta_momentum, beta_value, beta_growth, "
                "beta_quality, beta_size, beta_low_volatility, beta_rates, short_interest, n_obs, "
                "reason, pnl_usd_per_100bp) SELECT '2026-11-20', p.id, p.portfolio_id, %s, %s, "
                "NULL, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM sigmasight.positions p "
                "WHERE p.symbol = %s"
            )
            old.execute(
                insert,
                (1000, 0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.045, 60,
                 "Momentum: only 12 observations (< 20)", -132, "AAA"),
            )  # fmt: skip
            old.execute(
                insert,
                (500, None, None, None, None, None, None, None, None, 0,
                 "no betas for the underlying on this day", None, "BBB"),
            )  # fmt: skip
            before = _rows_by_column(old, "position_factor_exposures")
        assert "0023_position_betas_from_factor_betas" in migrate(url)
        with connect(url) as new:
            after = _rows_by_column(new, "position_factor_exposures")
            stored = new.execute("SELECT count(*) FROM sigmasight.position_exposures").fetchone()
    order = lambda rows: sorted(rows, key=lambda r: r["position_id"])  # noqa: E731
    assert len(before) == 2 and stored == (2,) and order(after) == order(before)


def test_the_stock_returns_migration_removes_only_the_options_returns() -> None:
    """0020: returns keeps the rows of stocks and ETFs, and loses those of options (OCC symbols,
    as `instruments.is_option_symbol` reads them)."""
    from sigmasight_pipeline.analytics.instruments import is_option_symbol
    from sigmasight_pipeline.resources.database import migrate

    symbols = ["AAPL", "BRK.B", "SPY", "A", "AAPL261218C00200000", "BRK.B261218P00400000"]
    with database_before("0020") as url:
        with connect(url, autocommit=True) as old:
            for symbol in symbols:
                old.execute(
                    "INSERT INTO sigmasight.returns (symbol, trade_date, close, prev_close, "
                    "daily_return) VALUES (%s, '2026-11-20', 101, 100, 0.01)",
                    (symbol,),
                )
        assert "0020_returns_of_stocks_only" in migrate(url)
        with connect(url) as new:
            kept = [r[0] for r in new.execute("SELECT symbol FROM sigmasight.returns")]
    assert sorted(kept) == sorted(s for s in symbols if not is_option_symbol(s))
    assert sorted(kept) == ["A", "AAPL", "BRK.B", "SPY"]


def test_array_columns_have_no_statistics_but_where_a_query_looks_them_up(isolated_db_url):
    """0021, 0022: ANALYZE skips every array column of our tables (element statistics of a
    correlation matrix took 16 s of CPU per ANALYZE at 1,000 portfolios), except
    stress_scenario_sets.scenario_ids, which a set is looked up by. A new array column fails
    here until it says which it is."""
    with connect(isolated_db_url, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT c.relname, a.attname, a.attstattarget FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE n.nspname = 'sigmasight' AND c.relkind = 'r' AND a.attnum > 0 "
            "AND NOT a.attisdropped AND t.typcategory = 'A'"
        ).fetchall()
        for day in ("2026-11-19", "2026-11-20"):
            conn.execute(
                "INSERT INTO sigmasight.portfolio_correlation_matrices (trade_date, "
                "portfolio_id, symbols, correlation_codes, pair_obs, cluster_ids) VALUES "
                "(%s, 7, '{AAPL,MSFT}', '{16384}', '{60}', '{1,1}')",
                (day,),
            )
        conn.execute("ANALYZE sigmasight.portfolio_correlation_matrices")
        analyzed = {
            name
            for (name,) in conn.execute(
                "SELECT attname FROM pg_stats WHERE schemaname = 'sigmasight' "
                "AND tablename = 'portfolio_correlation_matrices'"
            )
        }
        conn.execute("DELETE FROM sigmasight.portfolio_correlation_matrices WHERE portfolio_id = 7")
    targets = {(table, column): target for table, column, target in columns}
    assert len(targets) == 79
    assert targets[("portfolio_correlation_matrices", "correlation_codes")] == 0
    assert {k for k, target in targets.items() if target != 0} == {
        ("stress_scenario_sets", "scenario_ids")
    }
    assert {"trade_date", "portfolio_id"} <= analyzed
    assert not {"symbols", "correlation_codes", "pair_obs", "cluster_ids"} & analyzed


def _rows_by_column(conn, table: str) -> list[dict]:
    cursor = conn.execute(f"SELECT * FROM sigmasight.{table} ORDER BY trade_date")
    names = [d.name for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_a_set_based_table_check_counts_rows_sharing_a_key(isolated_db_url):
    """portfolio_greeks has no unique index (sql/0019): its blocking SQL check fails when two
    rows the run wrote share (trade_date, portfolio_id, view), and names the key."""
    from psycopg import sql

    from sigmasight_pipeline.sql_checks import PORTFOLIO_GREEKS_RULES

    days = pd.DatetimeIndex(["2026-11-19", "2026-11-20"])
    insert = (
        "INSERT INTO sigmasight.portfolio_greeks (trade_date, portfolio_id, view, delta, gamma, "
        "theta, vega, rho, dollar_delta, delta_adjusted_exposure, fallback_count, "
        "position_count) VALUES (%s, 7, %s, 1, 0, 0, 0, 0, 1, 100, 0, 1)"
    )
    with connect(isolated_db_url, autocommit=True) as conn:
        for day, view in [("2026-11-19", "portfolio"), ("2026-11-20", "portfolio")]:
            conn.execute(insert, (day, view))
        good = PORTFOLIO_GREEKS_RULES.run(isolated_db_url, days, sql.SQL("TRUE"))
        conn.execute(insert, ("2026-11-20", "portfolio"))
        bad = PORTFOLIO_GREEKS_RULES.run(isolated_db_url, days, sql.SQL("TRUE"))
        conn.execute("DELETE FROM sigmasight.portfolio_greeks WHERE portfolio_id = 7")
    assert good.passed and good.metadata["rows_failing"].value == 0
    assert not bad.passed and bad.metadata["rows_checked"].value == 3
    assert bad.metadata["rows_failing"].value == 2
    assert "portfolio_id=7" in bad.metadata["failing_keys"].value
    assert "one row per" in bad.metadata["by_check"].value
