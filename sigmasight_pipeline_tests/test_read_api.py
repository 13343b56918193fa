"""SigmaSightReader against a throwaway database holding a small, hand-computed dataset.

The dataset (`seeded_database`, shared with test_api_http.py): users alice and bob and an admin;
portfolios 1 and 2 (alice) and 3 (bob); alice's portfolio 1 holds one position of each type.
Sessions used: 2024-01-29 .. 2024-02-02 (Mon-Fri, all NYSE sessions). Every number below was
computed by hand from the rows inserted; the comments show the arithmetic.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import psycopg
import pytest

from sigmasight_pipeline.resources.database import (
    create_database,
    database_url,
    drop_database,
    migrate,
)
from sigmasight_pipeline.resources.read_api import FACTORS, NoDataError, SigmaSightReader
from sigmasight_pipeline_tests.conftest import store_rows

D = date(2024, 2, 2)  # the latest day: Friday
D1 = date(2024, 2, 1)
DAYS = [date(2024, 1, 29), date(2024, 1, 30), date(2024, 1, 31), D1, D]

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "root": "root-pw"}
USERS = [(1, "alice", "user"), (2, "bob", "user"), (3, "root", "admin")]
PORTFOLIOS = [(1, "Alice Main", 1), (2, "Alice Second", 1), (3, "Bob Main", 2)]

E1 = date(2024, 1, 29)
EXP = date(2024, 6, 21)
# id, portfolio, symbol, quantity, entry price, entry date, type, underlying, right, strike,
# expiry, multiplier
POSITIONS = [
    (1, 1, "AAPL", 100.0, 150.0, E1, "LONG", "AAPL", None, None, None, 1),
    (2, 1, "MSFT", -50.0, 400.0, E1, "SHORT", "MSFT", None, None, None, 1),
    (3, 1, "AAPL240621C00180000", 2.0, 5.0, E1, "LC", "AAPL", "C", 180.0, EXP, 100),
    (4, 1, "SPY240621P00450000", 3.0, 4.0, E1, "LP", "SPY", "P", 450.0, EXP, 100),
    (5, 1, "NVDA240621C00900000", -1.0, 20.0, E1, "SC", "NVDA", "C", 900.0, EXP, 100),
    (6, 1, "TSLA240621P00150000", -2.0, 6.0, E1, "SP", "TSLA", "P", 150.0, EXP, 100),
    (7, 2, "GOOG", 10.0, 140.0, date(2024, 1, 2), "LONG", "GOOG", None, None, None, 1),
    (8, 3, "AMZN", 20.0, 170.0, date(2023, 12, 1), "LONG", "AMZN", None, None, None, 1),
    (9, 3, "META", -5.0, 480.0, date(2023, 12, 1), "SHORT", "META", None, None, None, 1),
]
# id, user, name, color ("Unused" has no position; bob has his own "momentum")
TAGS = [
    (1, 1, "momentum", "#FF5733"),
    (2, 1, "tech", "#00AA00"),
    (3, 1, "hedge", "#0000FF"),
    (4, 1, "options", "#123456"),
    (5, 2, "momentum", "#AAAAAA"),
    (6, 1, "Unused", "#999999"),
]
POSITION_TAGS = [
    (1, 1), (1, 2), (2, 3), (2, 2), (3, 4), (3, 1), (4, 4), (4, 3), (5, 4), (8, 5), (7, 2),
]  # fmt: skip

# position_values: position -> (price, prev price, market value, exposure, cost basis,
# unrealized P&L, daily P&L). D: AAPL 100 x 160 = 16000, cost 100 x 150 = 15000, daily
# 100 x (160 - 158) = 200; MSFT -50 x 410 = -20500, daily -50 x 5 = -250; LC 2 x 100 x 6 = 1200,
# daily 200 x 0.5 = 100; LP 300 x 3 = 900, daily 300 x -0.5 = -150; SC -100 x 22 = -2200,
# daily -100 x 1 = -100; SP -200 x 5 = -1000, daily -200 x -0.5 = 100.
VALUES_D = {
    1: (160.0, 158.0, 16000.0, 16000.0, 15000.0, 1000.0, 200.0),
    2: (410.0, 405.0, 20500.0, -20500.0, -20000.0, -500.0, -250.0),
    3: (6.0, 5.5, 1200.0, 1200.0, 1000.0, 200.0, 100.0),
    4: (3.0, 3.5, 900.0, 900.0, 1200.0, -300.0, -150.0),
    5: (22.0, 21.0, 2200.0, -2200.0, -2000.0, -200.0, -100.0),
    6: (5.0, 5.5, 1000.0, -1000.0, -1200.0, 200.0, 100.0),
    7: (145.0, 143.0, 1450.0, 1450.0, 1400.0, 50.0, 20.0),
    8: (175.0, 174.0, 3500.0, 3500.0, 3400.0, 100.0, 20.0),
    9: (470.0, 471.0, 2350.0, -2350.0, -2400.0, 50.0, 5.0),
}
# D1: position 6 has no price (value columns NULL, 'missing').
VALUES_D1 = {
    1: (158.0, 155.0, 15800.0, 15800.0, 15000.0, 800.0, 300.0),
    2: (405.0, 402.0, 20250.0, -20250.0, -20000.0, -250.0, -150.0),
    3: (5.5, 5.2, 1100.0, 1100.0, 1000.0, 100.0, 60.0),
    4: (3.5, 3.6, 1050.0, 1050.0, 1200.0, -150.0, -30.0),
    5: (21.0, 20.5, 2100.0, -2100.0, -2000.0, -100.0, -50.0),
    6: (None, None, None, None, -1200.0, None, None),
}

# portfolio_snapshots: (day, portfolio) -> total, long, short, gross, net, daily P&L,
# unrealized, counts (LONG, SHORT, LC, LP, SC, SP, unpriced).
# P1 on D = the sums of VALUES_D: total 16000+20500+1200+900+2200+1000 = 41800, long
# 16000+1200+900 = 18100, short -20500-2200-1000 = -23700, net -5600, daily -100, unrealized 400.
# P1 on D1 (position 6 unpriced): total 40300, long 17950, short -22350, net -4400, daily 130.
ONE_EACH = (1, 1, 1, 1, 1, 1)
SNAPSHOTS = {
    (DAYS[0], 1): (40000.0, 17000.0, -23000.0, 40000.0, -6000.0, 50.0, 50.0, ONE_EACH, 0),
    (DAYS[1], 1): (40100.0, 17050.0, -23050.0, 40100.0, -6000.0, -20.0, 30.0, ONE_EACH, 0),
    (DAYS[2], 1): (40200.0, 17100.0, -23100.0, 40200.0, -6000.0, 30.0, 60.0, ONE_EACH, 0),
    (D1, 1): (40300.0, 17950.0, -22350.0, 40300.0, -4400.0, 130.0, 400.0, ONE_EACH, 1),
    (D, 1): (41800.0, 18100.0, -23700.0, 41800.0, -5600.0, -100.0, 400.0, ONE_EACH, 0),
    # P2: no snapshot on D1, so February is not covered.
    (DAYS[2], 2): (1430.0, 1430.0, 0.0, 1430.0, 1430.0, 10.0, 30.0, (1, 0, 0, 0, 0, 0), 0),
    (D, 2): (1450.0, 1450.0, 0.0, 1450.0, 1450.0, 20.0, 50.0, (1, 0, 0, 0, 0, 0), 0),
    # P3: February covered, the year not (positions from December, snapshots from Jan 31).
    (DAYS[2], 3): (5800.0, 3460.0, -2340.0, 5800.0, 1120.0, 40.0, 110.0, (1, 1, 0, 0, 0, 0), 0),
    (D1, 3): (5810.0, 3480.0, -2330.0, 5810.0, 1150.0, -10.0, 125.0, (1, 1, 0, 0, 0, 0), 0),
    (D, 3): (5850.0, 3500.0, -2350.0, 5850.0, 1150.0, 25.0, 150.0, (1, 1, 0, 0, 0, 0), 0),
}

# position_greeks on D: per contract (delta, gamma, theta, vega, rho), underlying price, source;
# position Greeks = per contract x quantity x multiplier; dollar delta = position delta x
# underlying price (= delta-adjusted exposure here).
GREEKS_D = {
    1: ((1.0, 0.0, 0.0, 0.0, 0.0), 160.0, "stock"),
    2: ((1.0, 0.0, 0.0, 0.0, 0.0), 410.0, "stock"),
    3: ((0.5, 0.02, -0.1, 0.2, 0.05), 160.0, "model"),  # x 200: 100, 4, -20, 40, 10
    4: ((-0.4, 0.03, -0.05, 0.15, -0.04), 480.0, "model"),  # x 300: -120, 9, -15, 45, -12
    5: ((0.6, 0.02, -0.5, 0.3, 0.1), 700.0, "fallback"),  # x -100: -60, -2, 50, -30, -10
    6: ((-0.3, 0.01, -0.04, 0.1, -0.02), 190.0, "model"),  # x -200: 60, -2, 8, -20, 4
    8: ((1.0, 0.0, 0.0, 0.0, 0.0), 175.0, "stock"),
    9: ((1.0, 0.0, 0.0, 0.0, 0.0), 470.0, "stock"),
}
POSITION_GREEKS_D = {  # position delta, gamma, theta, vega, rho, dollar delta
    1: (100.0, 0.0, 0.0, 0.0, 0.0, 16000.0),
    2: (-50.0, 0.0, 0.0, 0.0, 0.0, -20500.0),
    3: (100.0, 4.0, -20.0, 40.0, 10.0, 16000.0),
    4: (-120.0, 9.0, -15.0, 45.0, -12.0, -57600.0),
    5: (-60.0, -2.0, 50.0, -30.0, -10.0, -42000.0),
    6: (60.0, -2.0, 8.0, -20.0, 4.0, 11400.0),
    8: (20.0, 0.0, 0.0, 0.0, 0.0, 3500.0),
    9: (-5.0, 0.0, 0.0, 0.0, 0.0, -2350.0),
}
# portfolio_greeks for P1 on D (P3 has none: the reader sums its positions).
# portfolio: delta 100-50+100-120-60+60 = 30, gamma 4+9-2-2 = 9, theta -20-15+50+8 = 23,
# vega 40+45-30-20 = 35, rho 10-12-10+4 = -8, dollar delta -76700.
# longs (1, 3, 4): 80, 13, -35, 85, -2, -25600; shorts (2, 5, 6): -50, -4, 58, -50, -6, -51100.
PORTFOLIO_GREEKS_D = {
    "portfolio": (30.0, 9.0, 23.0, 35.0, -8.0, -76700.0, 1, 6),
    "longs": (80.0, 13.0, -35.0, 85.0, -2.0, -25600.0, 0, 3),
    "shorts": (-50.0, -4.0, 58.0, -50.0, -6.0, -51100.0, 1, 3),
}
# portfolio_factor_exposures for P1 on D (stored out of order; Short Interest not computable).
FACTORS_D = {
    "Size": (-0.1, 560.0, 1.0),
    "Market": (1.1, -6160.0, 1.0),
    "Short Interest": (None, None, 0.0),
    "Momentum": (0.2, -1120.0, 1.0),
    "Value": (-0.3, 1680.0, 1.0),
    "Growth": (0.4, -2240.0, 1.0),
    "Quality": (0.05, -280.0, 1.0),
    "Low Volatility": (0.15, -840.0, 1.0),
}
RISK_COLUMNS = (
    "beta", "volatility_ann", "sharpe", "sortino", "max_drawdown", "var_95_1d", "cvar_95_1d",
    "var_95_1d_hist", "cvar_95_1d_hist", "var_95_1d_hist_usd", "cvar_95_1d_hist_usd", "n_obs",
    "reason",
)  # fmt: skip
# The reader's names for those columns (units in the names), in the same order.
RISK_FIELDS = (
    "beta_realized_60d", "volatility_ann_fraction", "sharpe", "sortino", "max_drawdown_fraction",
    "var_95_1d_parametric_usd", "cvar_95_1d_parametric_usd", "var_95_1d_hist_fraction",
    "cvar_95_1d_hist_fraction", "var_95_1d_hist_usd", "cvar_95_1d_hist_usd", "n_obs", "reason",
)  # fmt: skip
RISK = {
    (D, 1): (1.05, 0.22, 1.3, 1.8, -0.08, 0.021, 0.03, 0.02, 0.028, 836.0, 1170.4, 5, None),
    (D1, 1): (None,) * 11 + (4, "too few observations"),
    (D, 3): (0.9, 0.18, 0.7, 0.9, -0.05, 0.015, 0.02, 0.014, 0.019, 81.9, 111.15, 3, None),
    # Non-finite values PostgreSQL can hold (a zero-volatility Sharpe): JSON gets null.
    (D1, 3): (0.9, 0.0, float("inf"), float("nan"), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2, None),
}


def _insert_dataset(conn: psycopg.Connection, url: str) -> None:
    from sigmasight_pipeline.portfolios import hash_password

    s = "sigmasight"
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {s}.users (id, username, password_hash, role) VALUES (%s, %s, %s, %s)",
            [(i, name, hash_password(PASSWORDS[name]), role) for i, name, role in USERS],
        )
        cur.executemany(
            f"INSERT INTO {s}.portfolios (id, name, owner_id) VALUES (%s, %s, %s)", PORTFOLIOS
        )
        cur.executemany(
            f"INSERT INTO {s}.positions (id, portfolio_id, symbol, quantity, entry_price, "
            "entry_date, position_type, underlying, option_right, strike, expiry, multiplier) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            POSITIONS,
        )
        cur.executemany(
            f"INSERT INTO {s}.tags (id, user_id, name, color) VALUES (%s, %s, %s, %s)", TAGS
        )
        cur.executemany(f"INSERT INTO {s}.position_tags VALUES (%s, %s)", POSITION_TAGS)
        for table in ("users", "portfolios", "positions", "tags"):
            cur.execute(f"SELECT setval('{s}.{table}_id_seq', (SELECT max(id) FROM {s}.{table}))")

        by_id = {p[0]: p for p in POSITIONS}
        value_rows = []
        for day, values in ((D, VALUES_D), (D1, VALUES_D1)):
            for pid, (price, _prev, mv, exp, cost, upnl, dpnl) in values.items():
                p = by_id[pid]
                source = "missing" if price is None else "market"
                value_rows.append(
                    (day, pid, p[1], p[3], price, None if price is None else day, source, mv,
                     exp, cost, upnl, dpnl)
                )  # fmt: skip
        value_columns = (
            "trade_date", "position_id", "portfolio_id", "quantity", "price", "price_date",
            "price_source", "market_value", "exposure", "cost_basis", "unrealized_pnl",
            "daily_pnl",
        )  # fmt: skip
        rows = [dict(zip(value_columns, r, strict=True)) for r in value_rows]
        store_rows(url, "position_values", rows)

        snapshot_rows = []
        running: dict[int, float] = {}
        for (day, pf), (tv, lo, sh, gr, net, dp, up, counts, unpriced) in sorted(SNAPSHOTS.items()):
            running[pf] = running.get(pf, 0.0) + dp
            extra = (None,) * 7
            if (day, pf) == (D, 1):
                extra = (30.0, -76700.0, 1.1, 0.22, 1.3, -0.08, 0.021)
            snapshot_rows.append(
                (day, pf, tv, lo, sh, gr, net, dp, running[pf], DAYS[0], up, sum(counts), *counts,
                 unpriced, *extra)
            )  # fmt: skip
        cur.executemany(
            f"INSERT INTO {s}.portfolio_snapshots (trade_date, portfolio_id, total_value, "
            "long_exposure, short_exposure, gross_exposure, net_exposure, daily_pnl, window_pnl, "
            "window_start, unrealized_pnl, position_count, long_count, short_count, lc_count, "
            "lp_count, sc_count, sp_count, unpriced_count, delta, dollar_delta, beta_market, "
            "volatility_ann, sharpe, max_drawdown, var_95_1d) VALUES (%s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            snapshot_rows,
        )

        greek_rows = []  # options only: stocks' Greeks come from their position values
        for pid, (per, underlying_price, source) in GREEKS_D.items():
            p = by_id[pid]
            if source == "stock":
                continue
            pos = POSITION_GREEKS_D[pid]
            greek_rows.append(
                (D, pid, p[1], underlying_price, p[9], 0.38, 0.04,
                 0.3 if source == "model" else None, "implied" if source == "model" else None,
                 *per, *pos[:5], pos[5] / 100, pos[5], source,
                 "no option price" if source == "fallback" else None)
            )  # fmt: skip
        greek_columns = (
            "trade_date", "position_id", "portfolio_id", "underlying_price", "strike", "t_years",
            "rate", "volatility", "volatility_source", "delta", "gamma", "theta", "vega", "rho",
            "position_delta", "position_gamma", "position_theta", "position_vega", "position_rho",
            "dollar_delta", "delta_adjusted_exposure", "source", "reason",
        )  # fmt: skip
        rows = [dict(zip(greek_columns, r, strict=True)) for r in greek_rows]
        store_rows(url, "position_greeks", rows)
        cur.executemany(
            f"INSERT INTO {s}.portfolio_greeks VALUES (%s, 1, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s)",
            [
                (D, view, *g[:5], g[5] / 100, g[5], g[6], g[7])
                for view, g in PORTFOLIO_GREEKS_D.items()
            ],
        )
        factor_rows = [(D, 1, f, *v) for f, v in FACTORS_D.items()]
        factor_rows.append((D1, 1, "Market", 1.0, -4400.0, 1.0))
        cur.executemany(
            f"INSERT INTO {s}.portfolio_factor_exposures VALUES (%s, %s, %s, %s, %s, %s)",
            factor_rows,
        )
        cur.executemany(
            f"INSERT INTO {s}.portfolio_risk_metrics (trade_date, portfolio_id, "
            f"{', '.join(RISK_COLUMNS)}) VALUES ({', '.join(['%s'] * (2 + len(RISK_COLUMNS)))})",
            [(day, pf, *v) for (day, pf), v in RISK.items()],
        )


@contextmanager
def seeded_database(tag: str) -> Iterator[str]:
    """A throwaway database (migrated, the dataset above inserted); dropped afterwards."""
    server = database_url()
    name = f"sigmasight_api_test_{tag}_{os.getpid()}"
    drop_database(server, name)
    url = create_database(server, name)
    try:
        migrate(url)
        with psycopg.connect(url) as conn, conn.transaction():
            _insert_dataset(conn, url)
        yield url
    finally:
        drop_database(server, name)


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with seeded_database("reader") as url:
        yield url


@pytest.fixture(scope="module")
def reader(db_url: str) -> Iterator[SigmaSightReader]:
    r = SigmaSightReader(database_url=db_url, pool_size=4)
    yield r
    r.close()


# ---------------------------------------------------------------------------------------------
# Overview


def test_overview_latest_day(reader: SigmaSightReader, db_url: str) -> None:
    o = reader.overview(1)
    assert o.as_of == D and o.name == "Alice Main"
    assert (o.total_value_usd, o.long_exposure_usd, o.short_exposure_usd) == (
        41800.0, 18100.0, -23700.0,
    )  # fmt: skip
    assert (o.gross_exposure_usd, o.net_exposure_usd) == (41800.0, -5600.0)
    assert o.pnl.daily_usd == -100.0 and o.pnl.unrealized_usd == 400.0
    assert o.pnl.mtd_usd == 30.0  # Feb 1 + Feb 2 = 130 - 100
    assert o.pnl.ytd_usd == 90.0  # 50 - 20 + 30 + 130 - 100, from the first entry (Jan 29)
    assert o.pnl.trailing_usd == 90.0 and o.pnl.trailing_start == DAYS[0]
    assert o.pnl.mtd_coverage.complete and o.pnl.mtd_coverage.sessions_expected == 2
    ytd = o.pnl.ytd_coverage
    assert ytd.complete and ytd.counted_from == E1 and ytd.sessions_expected == 5
    assert ytd.note is None
    counts = o.position_counts
    assert (counts.LONG, counts.SHORT, counts.LC, counts.LP, counts.SC, counts.SP) == ONE_EACH
    assert (counts.total, counts.unpriced) == (6, 0)
    # ... and exactly what the table holds.
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT total_value, net_exposure, daily_pnl, window_pnl FROM "
            "sigmasight.portfolio_snapshots WHERE portfolio_id = 1 ORDER BY trade_date DESC LIMIT 1"
        ).fetchone()
    assert row == (o.total_value_usd, o.net_exposure_usd, o.pnl.daily_usd, o.pnl.trailing_usd)


def test_overview_reports_both_betas(reader: SigmaSightReader) -> None:
    # Holdings-based: the snapshot's beta_market (= the Market factor); realized: the day's
    # risk metrics row. Each is null where its table has nothing for the day.
    o = reader.overview(1)
    assert (o.beta_holdings_60d, o.beta_realized_60d) == (1.1, RISK[(D, 1)][0])
    assert o.beta_holdings_60d == FACTORS_D["Market"][0]
    older = reader.overview(1, as_of=D1)
    assert (older.beta_holdings_60d, older.beta_realized_60d) == (None, None)
    assert reader.overview(3).beta_realized_60d == RISK[(D, 3)][0]
    assert reader.overview(2).beta_realized_60d is None  # no risk metrics for portfolio 2


def test_overview_as_of(reader: SigmaSightReader) -> None:
    o = reader.overview(1, as_of=D1)
    assert o.as_of == D1 and o.total_value_usd == 40300.0 and o.net_exposure_usd == -4400.0
    assert o.pnl.mtd_usd == 130.0 and o.pnl.ytd_usd == 190.0  # 50 - 20 + 30 + 130
    assert o.position_counts.unpriced == 1


def test_overview_partial_coverage(reader: SigmaSightReader) -> None:
    p2 = reader.overview(2)
    assert p2.pnl.daily_usd == 20.0 and p2.total_value_usd == 1450.0
    assert p2.pnl.mtd_usd is None and p2.pnl.ytd_usd is None
    mtd = p2.pnl.mtd_coverage
    assert (mtd.sessions_present, mtd.sessions_expected, mtd.complete) == (1, 2, False)
    assert mtd.note and "1 of 2 sessions" in mtd.note
    # From Jan 2 (entry) to Feb 2: 21 January sessions (MLK day closed) + 2 = 23.
    assert p2.pnl.ytd_coverage.sessions_expected == 23
    assert p2.pnl.ytd_coverage.counted_from == date(2024, 1, 2)

    p3 = reader.overview(3)
    assert p3.pnl.mtd_usd == 15.0  # -10 + 25
    assert p3.pnl.ytd_usd is None  # positions since December, snapshots from Jan 31 only
    assert p3.pnl.ytd_coverage.counted_from == date(2024, 1, 1)
    assert p3.pnl.ytd_coverage.sessions_present == 3


def test_overview_no_data(reader: SigmaSightReader) -> None:
    with pytest.raises(NoDataError, match="no snapshots for portfolio 99"):
        reader.overview(99)
    with pytest.raises(NoDataError, match="no snapshot for portfolio 1 on 2024-02-03"):
        reader.overview(1, as_of=date(2024, 2, 3))


# ---------------------------------------------------------------------------------------------
# Positions


def test_positions_values_and_tags(reader: SigmaSightReader) -> None:
    result = reader.positions(1)
    assert result.as_of == D and result.groups is None
    assert [p.position_id for p in result.positions] == [1, 2, 3, 4, 5, 6]  # type order
    for p in result.positions:
        price, _prev, mv, exp, cost, upnl, dpnl = VALUES_D[p.position_id]
        assert (p.price_usd, p.market_value_usd, p.exposure_usd, p.cost_basis_usd) == (
            price, mv, exp, cost,
        )  # fmt: skip
        assert (p.unrealized_pnl_usd, p.daily_pnl_usd, p.price_source) == (upnl, dpnl, "market")
    by_id = {p.position_id: p for p in result.positions}
    assert [t.name for t in by_id[1].tags] == ["momentum", "tech"]
    assert [t.name for t in by_id[4].tags] == ["hedge", "options"]
    assert by_id[6].tags == []
    assert by_id[3].strike_usd == 180.0 and by_id[3].expiry == EXP
    assert by_id[3].option_right == "C" and by_id[3].entry_price_usd == 5.0
    # The positions add up to the snapshot of the day.
    t = result.totals
    assert (t.count, t.market_value_usd, t.exposure_usd) == (6, 41800.0, -5600.0)
    assert (t.long_exposure_usd, t.short_exposure_usd) == (18100.0, -23700.0)
    assert (t.unrealized_pnl_usd, t.daily_pnl_usd) == (400.0, -100.0)


def test_positions_filter_by_type(reader: SigmaSightReader) -> None:
    result = reader.positions(1, types=["lc", "SC"])
    assert result.types == ["LC", "SC"]
    assert sorted(p.position_id for p in result.positions) == [3, 5]
    assert result.totals.exposure_usd == 1200.0 - 2200.0
    with pytest.raises(ValueError, match="unknown position type"):
        reader.positions(1, types=["STOCK"])


@pytest.mark.parametrize(
    ("tags", "mode", "expected"),
    [
        (["momentum", "hedge"], "any", [1, 2, 3, 4]),
        (["options", "hedge"], "all", [4]),
        (["Options", "MOMENTUM"], "all", [3]),  # names match case-insensitively
        (["tech"], "all", [1, 2]),
        (["nope"], "any", []),
        (["tech", "nope"], "all", []),
        (["tech", "nope"], "any", [1, 2]),
        ([" tech ", "tech", ""], "all", [1, 2]),  # blanks and repeats ignored
    ],
)
def test_positions_filter_by_tags(
    reader: SigmaSightReader, tags: list[str], mode: str, expected: list[int]
) -> None:
    result = reader.positions(1, tags=tags, tag_mode=mode)  # type: ignore[arg-type]
    assert sorted(p.position_id for p in result.positions) == expected


def test_positions_tags_are_the_owners(reader: SigmaSightReader) -> None:
    # bob's "momentum" tag is on his AMZN; alice's portfolio only matches her own tags.
    assert [p.position_id for p in reader.positions(3, tags=["momentum"]).positions] == [8]
    assert {p.position_id for p in reader.positions(1, tags=["momentum"]).positions} == {1, 3}


def test_positions_group_by_type(reader: SigmaSightReader) -> None:
    groups = reader.positions(1, group_by="type").groups
    assert groups is not None
    assert [g.key for g in groups] == ["LONG", "SHORT", "LC", "LP", "SC", "SP"]
    assert [g.position_ids for g in groups] == [[1], [2], [3], [4], [5], [6]]
    assert groups[1].totals.exposure_usd == -20500.0 and groups[1].totals.daily_pnl_usd == -250.0


def test_positions_group_by_tag(reader: SigmaSightReader) -> None:
    result = reader.positions(1, group_by="tag")
    groups = result.groups
    assert groups is not None
    assert [g.key for g in groups] == ["hedge", "momentum", "options", "tech", None]
    ids = {g.key: sorted(g.position_ids) for g in groups}
    assert ids == {"hedge": [2, 4], "momentum": [1, 3], "options": [3, 4, 5], "tech": [1, 2],
                   None: [6]}  # fmt: skip
    options = next(g for g in groups if g.key == "options")
    assert options.tag is not None and options.tag.color == "#123456"
    assert options.totals.market_value_usd == 1200.0 + 900.0 + 2200.0
    assert options.totals.daily_pnl_usd == 100.0 - 150.0 - 100.0
    # Filter, then group: only matching positions are grouped.
    hedged = reader.positions(1, tags=["hedge"], group_by="type").groups
    assert hedged is not None and [g.key for g in hedged] == ["SHORT", "LP"]


def test_positions_as_of_with_unpriced(reader: SigmaSightReader) -> None:
    result = reader.positions(1, as_of=D1)
    missing = next(p for p in result.positions if p.position_id == 6)
    assert missing.price_source == "missing" and missing.market_value_usd is None
    assert missing.exposure_usd is None and missing.daily_pnl_usd is None
    t = result.totals
    assert (t.count, t.unpriced, t.market_value_usd, t.exposure_usd) == (6, 1, 40300.0, -4400.0)
    assert t.daily_pnl_usd == 130.0


# ---------------------------------------------------------------------------------------------
# Greeks, factors, risk metrics


@pytest.mark.parametrize("view", ["portfolio", "longs", "shorts"])
def test_greeks_views(reader: SigmaSightReader, view: str) -> None:
    g = reader.greeks(1, view)  # type: ignore[arg-type]
    delta, gamma, theta, vega, rho, dollar, fallbacks, count = PORTFOLIO_GREEKS_D[view]
    t = g.totals
    assert g.totals_source == "stored" and g.as_of == D
    assert (t.delta, t.gamma, t.theta, t.vega, t.rho) == (delta, gamma, theta, vega, rho)
    assert (t.delta_1pct_usd, t.fallback_count, t.position_count) == (
        pytest.approx(dollar / 100),
        fallbacks,
        count,
    )
    expected_ids = {"portfolio": [1, 2, 3, 4, 5, 6], "longs": [1, 3, 4], "shorts": [2, 5, 6]}
    assert sorted(p.position_id for p in g.positions) == expected_ids[view]
    # The stored aggregate equals the sum of the positions shown.
    assert sum(p.position_delta for p in g.positions) == pytest.approx(delta)
    assert sum(p.position_theta for p in g.positions) == pytest.approx(theta)
    for p in g.positions:
        per, underlying_price, source = GREEKS_D[p.position_id]
        assert (p.delta, p.gamma, p.theta, p.vega, p.rho) == per
        assert p.source == source and p.underlying_price_usd == underlying_price
        assert p.delta_adjusted_exposure_usd == POSITION_GREEKS_D[p.position_id][5]
        assert p.delta_1pct_usd == pytest.approx(POSITION_GREEKS_D[p.position_id][5] / 100)


def test_greeks_summed_when_no_aggregate_row(reader: SigmaSightReader) -> None:
    g = reader.greeks(3)
    assert g.totals_source == "summed"
    assert (g.totals.delta, g.totals.delta_1pct_usd, g.totals.position_count) == (15.0, 11.5, 2)
    shorts = reader.greeks(3, "shorts")
    assert [p.symbol for p in shorts.positions] == ["META"] and shorts.totals.delta == -5.0


def test_greeks_missing(reader: SigmaSightReader) -> None:
    # A stock-only portfolio's Greeks are its stocks' deltas (1 per share), from their values.
    stocks = reader.greeks(2)
    assert stocks.totals_source == "summed" and stocks.positions
    assert all(p.source == "stock" and p.delta == 1.0 for p in stocks.positions)
    assert stocks.totals.delta == sum(p.quantity for p in stocks.positions)
    day = DAYS[0].isoformat()
    with pytest.raises(NoDataError, match=f"no Greeks for portfolio 1 on {day}"):
        reader.greeks(1, "portfolio", as_of=DAYS[0])
    with pytest.raises(ValueError, match="view"):
        reader.greeks(1, "everything")  # type: ignore[arg-type]


def test_factor_exposures(reader: SigmaSightReader) -> None:
    f = reader.factor_exposures(1)
    assert f.as_of == D
    assert [x.factor for x in f.factors] == [name for name, _ in FACTORS]
    assert len(f.factors) == 8
    for x in f.factors:
        assert (x.beta, x.exposure_usd, x.coverage_fraction) == FACTORS_D[x.factor]
    assert f.factors[0].etf == "SPY" and f.factors[-1].etf is None
    market = f.factors[0]
    assert market.method.startswith("holdings-based market beta") and "60-session" in market.method
    assert "MTUM-minus-SPY" in f.factors[1].method
    assert "short interest" in f.factors[-1].method
    # On D1 only Market was stored: the other seven are reported as null.
    older = reader.factor_exposures(1, as_of=D1)
    assert older.factors[0].beta == 1.0
    assert all(x.beta is None for x in older.factors[1:])
    with pytest.raises(NoDataError, match="no factor exposures for portfolio 3"):
        reader.factor_exposures(3)


def test_risk_metrics(reader: SigmaSightReader) -> None:
    m = reader.risk_metrics(1)
    assert m.as_of == D
    assert tuple(getattr(m, c) for c in RISK_FIELDS) == RISK[(D, 1)]
    older = reader.risk_metrics(1, as_of=D1)
    assert older.beta_realized_60d is None and older.n_obs == 4
    assert older.reason == "too few observations"
    assert reader.risk_metrics(3).var_95_1d_hist_usd == 81.9
    with pytest.raises(NoDataError, match="no risk metrics for portfolio 2"):
        reader.risk_metrics(2)


def test_risk_depth_needs_its_tables_rows(reader: SigmaSightReader) -> None:
    """A day with a snapshot but no rows in a risk-depth table: NoDataError naming the day and
    the table (the numbers themselves: test_read_api_risk, on the demo backfill)."""
    cases = [
        (reader.volatility, "volatility", "portfolio_volatility"),
        (reader.correlations, "correlations", "portfolio_correlation_matrices"),
        (reader.concentration, "concentration", "portfolio_concentration"),
        (reader.sector_exposures, "sector exposures", "portfolio_sector_exposures"),
        (reader.risk_decomposition, "risk decomposition", "portfolio_risk_decomposition"),
        (reader.stress_results, "stress results", "portfolio_stress_results"),
    ]
    for read, what, table in cases:
        with pytest.raises(NoDataError) as caught:
            read(1, D1)
        assert str(caught.value) == f"no {what} for portfolio 1 on {D1} (no rows in {table})"
        with pytest.raises(NoDataError, match="no snapshot for portfolio 1 on 2024-02-03"):
            read(1, date(2024, 2, 3))
    with pytest.raises(ValueError, match="format"):
        reader.correlations(1, form="heatmap")  # type: ignore[arg-type]
    for read, argument in ((reader.concentration, "top"), (reader.risk_decomposition, "top"),
                           (reader.stress_results, "worst")):  # fmt: skip
        with pytest.raises(ValueError, match=argument):
            read(1, None, 0)


def test_factor_exposures_rate_sensitivity(reader: SigmaSightReader, db_url: str) -> None:
    """Rates (stored beyond the eight) gets its ETF and method; $ per +100 bp comes from the
    day's snapshot (null here: not computed)."""
    with psycopg.connect(db_url) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO sigmasight.portfolio_factor_exposures VALUES (%s, 3, 'Rates', 0.2, "
            "1170.0, 1.0)",
            (D,),
        )
        conn.execute(
            "UPDATE sigmasight.portfolio_snapshots SET beta_rates = 0.2, "
            "pnl_usd_per_100bp = -193.05 WHERE portfolio_id = 3 AND trade_date = %s",
            (D,),
        )
        conn.execute(
            "INSERT INTO sigmasight.portfolio_factor_exposures VALUES (%s, 3, 'Market', 1.0, "
            "5850.0, 1.0)",
            (D,),
        )
    try:
        f = reader.factor_exposures(3)
        rates = f.factors[-1]
        assert (rates.factor, rates.etf, rates.beta, rates.exposure_usd) == (
            "Rates", "TLT", 0.2, 1170.0,
        )  # fmt: skip
        assert "beta on TLT" in rates.method and f.pnl_usd_per_100bp == -193.05
        assert reader.factor_exposures(1).pnl_usd_per_100bp is None
    finally:
        with psycopg.connect(db_url) as conn, conn.transaction():
            conn.execute("DELETE FROM sigmasight.portfolio_factor_exposures WHERE portfolio_id = 3")
            conn.execute(
                "UPDATE sigmasight.portfolio_snapshots SET beta_rates = NULL, "
                "pnl_usd_per_100bp = NULL WHERE portfolio_id = 3"
            )


# ---------------------------------------------------------------------------------------------
# History, tags, users


def test_snapshots(reader: SigmaSightReader) -> None:
    h = reader.snapshots(1)
    assert [p.trade_date for p in h.points] == DAYS
    assert [p.daily_pnl_usd for p in h.points] == [50.0, -20.0, 30.0, 130.0, -100.0]
    assert [p.cumulative_pnl_usd for p in h.points] == [50.0, 30.0, 60.0, 190.0, 90.0]
    last = h.points[-1]
    assert (last.delta, last.delta_1pct_usd, last.beta_holdings_60d) == (30.0, -76700.0, 1.1)
    assert (last.volatility_ann_fraction, last.sharpe, last.max_drawdown_fraction) == (
        0.22, 1.3, -0.08,
    )  # fmt: skip
    assert last.var_95_1d_parametric_usd == 0.021
    assert h.points[0].delta is None
    window = reader.snapshots(1, start=DAYS[1], end=D1)
    assert [p.trade_date for p in window.points] == DAYS[1:4]
    assert [p.cumulative_pnl_usd for p in window.points] == [-20.0, 10.0, 140.0]
    assert reader.snapshots(1, start=date(2030, 1, 1)).points == []
    assert [p.total_value_usd for p in reader.snapshots(2).points] == [1430.0, 1450.0]
    with pytest.raises(ValueError, match="after end"):
        reader.snapshots(1, start=D, end=D1)


def test_tags(reader: SigmaSightReader) -> None:
    # alice's tags over both her portfolios: tech is on positions 1 and 2 (P1) and 7 (P2).
    tags = reader.tags(1)
    assert [(t.name, t.position_count) for t in tags] == [
        ("hedge", 2), ("momentum", 2), ("options", 3), ("tech", 3), ("Unused", 0),
    ]  # fmt: skip
    assert [(t.name, t.color, t.position_count) for t in reader.tags(2)] == [
        ("momentum", "#AAAAAA", 1)
    ]
    assert reader.tags(3) == []


def test_portfolio_tags_count_that_portfolios_positions(reader: SigmaSightReader) -> None:
    # Only the tags used in the portfolio, counted over its positions: tech is on 1 and 2 in
    # P1, on 7 in P2; "Unused" and the tags of other portfolios do not appear.
    assert [(t.name, t.position_count) for t in reader.portfolio_tags(1)] == [
        ("hedge", 2), ("momentum", 2), ("options", 3), ("tech", 2),
    ]  # fmt: skip
    assert [(t.id, t.name, t.position_count) for t in reader.portfolio_tags(2)] == [(2, "tech", 1)]
    assert [(t.name, t.color, t.position_count) for t in reader.portfolio_tags(3)] == [
        ("momentum", "#AAAAAA", 1)
    ]
    assert reader.portfolio_tags(99) == []


def test_portfolios_and_access(reader: SigmaSightReader) -> None:
    assert [p.id for p in reader.portfolios_for(1, "user")] == [1, 2]
    assert [p.id for p in reader.portfolios_for(2, "user")] == [3]
    assert [p.id for p in reader.portfolios_for(3, "admin")] == [1, 2, 3]
    assert reader.portfolios_for(1, "user")[0].owner_username == "alice"

    def resolved(user: int, pid: int | None = None) -> int | None:
        access = reader.resolve_portfolio(user, pid)
        assert access.user_exists
        return access.portfolio.id if access.portfolio else None

    assert resolved(1) == 1 and resolved(2) == 3 and resolved(1, 2) == 2
    assert resolved(1, 3) is None and resolved(2, 1) is None and resolved(1, 99) is None
    assert resolved(3) == 1 and resolved(3, 3) == 3  # admin: all, first by default
    assert reader.resolve_portfolio(99).user_exists is False
    assert reader.latest_day(1) == D and reader.latest_day(99) is None


def test_authenticate(reader: SigmaSightReader) -> None:
    user = reader.authenticate("alice", "alice-pw")
    assert user is not None and (user.id, user.role) == (1, "user")
    root = reader.authenticate("root", "root-pw")
    assert root is not None and root.role == "admin"
    assert reader.authenticate("alice", "bob-pw") is None
    assert reader.authenticate("nobody", "alice-pw") is None


# ---------------------------------------------------------------------------------------------
# Connections, indexes, Dagster


def test_concurrent_reads_share_the_pool(reader: SigmaSightReader) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(15):
                assert reader.overview(1).total_value_usd == 41800.0
                assert len(reader.positions(1, tags=["tech"]).positions) == 2
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = reader.pool().get_stats()
    assert 1 <= stats["pool_size"] <= reader.pool_size


def test_reconnects_after_the_server_drops_connections(db_url: str) -> None:
    """Every idle pooled connection killed server-side (as by a restart): the next read fails
    on a dead one, the pool discards all of them and the read succeeds on a new one."""
    r = SigmaSightReader(database_url=db_url, pool_size=2)
    try:
        with r.pool().connection() as first, r.pool().connection() as second:
            pids = [first.info.backend_pid, second.info.backend_pid]
        assert r.pool().get_stats()["pool_available"] == 2
        with psycopg.connect(db_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
                "pg_stat_activity WHERE pid = ANY(%s)",
                (pids,),
            ).fetchone()
        assert killed == (2,)
        assert r.overview(1).as_of == D
        assert r.overview(1).as_of == D
        with r.pool().connection() as conn:
            assert conn.info.backend_pid not in pids
    finally:
        r.close()


def test_a_full_pool_times_out_as_an_operational_error(db_url: str) -> None:
    # The API maps psycopg.OperationalError to 503: a reader waiting longer than
    # pool_timeout_s for a connection gets one (psycopg_pool.PoolTimeout is a subclass).
    r = SigmaSightReader(database_url=db_url, pool_size=1, pool_timeout_s=0.3)
    try:
        with (
            r.pool().connection(),
            pytest.raises(psycopg.OperationalError, match="couldn't get a connection"),
        ):
            r.overview(1)
        assert r.overview(1).as_of == D  # the connection is back in the pool
    finally:
        r.close()


def test_database_down_is_an_operational_error(db_url: str) -> None:
    dead = db_url.replace("/sigmasight_api_test_", "/no_such_database_")
    r = SigmaSightReader(database_url=dead, pool_timeout_s=0.5)
    try:
        with pytest.raises(psycopg.OperationalError):
            r.overview(1)
        with pytest.raises(psycopg.OperationalError, match="does not exist"):
            r.check()  # the startup check names the cause
    finally:
        r.close()


def test_queries_can_use_indexes(db_url: str) -> None:
    """With sequential scans disabled, no hot query falls back to one: an index serves each."""
    from sigmasight_pipeline.analytics.decomposition import MODEL_FACTORS
    from sigmasight_pipeline.resources.read_api import (
        common,
        concentration,
        correlation,
        decomposition,
        portfolio,
        positions,
        risk,
        snapshots,
        stress,
        tags,
        users,
        volatility,
    )

    cases = [
        (portfolio.OVERVIEW_SQL, {"pid": 1, "as_of": None}),
        (positions.POSITIONS_SQL, {"pid": 1, "day": D, "types": ["LC"], "tags": ["x"], "need": 1}),
        (risk.POSITION_GREEKS_SQL, {"pid": 1, "day": D, "view": "longs"}),
        (risk.PORTFOLIO_GREEKS_SQL, {"pid": 1, "day": D, "view": "longs"}),
        (risk.FACTORS_SQL, {"pid": 1, "day": D}),
        (risk.RISK_SQL, {"pid": 1, "day": D}),
        (snapshots.SNAPSHOTS_SQL, {"pid": 1, "start": DAYS[1], "end": D}),
        (tags.USER_TAGS_SQL, {"uid": 1}),
        (tags.PORTFOLIO_TAGS_SQL, {"pid": 1}),
        (users.RESOLVE_PORTFOLIO_SQL, {"uid": 1, "pid": None}),
        (users.RESOLVE_PORTFOLIO_SQL, {"uid": 3, "pid": 2}),
        (users.PORTFOLIOS_OWNED_SQL, {"uid": 1}),
        (common.RATES_SQL, {"pid": 1, "day": D}),
        (volatility.PORTFOLIO_VOLATILITY_SQL, {"pid": 1, "day": D}),
        (volatility.UNDERLYING_VOLATILITY_SQL, {"pid": 1, "day": D}),
        (correlation.CORRELATION_SUMMARY_SQL, {"pid": 1, "day": D}),
        (correlation.CORRELATION_PAIRS_SQL, {"pid": 1, "day": D}),
        (concentration.CONCENTRATION_SQL, {"pid": 1, "day": D}),
        (concentration.SECTORS_SQL, {"pid": 1, "day": D}),
        (decomposition.COMPONENTS_SQL, {"pid": 1, "day": D, "factors": list(MODEL_FACTORS)}),
        (decomposition.CONTRIBUTIONS_SQL, {"pid": 1, "day": D, "top": 10}),
        (stress.STRESS_SQL, {"pid": 1, "day": D}),
        (stress.WORST_POSITIONS_SQL, {"pid": 1, "day": D, "worst": 3}),
    ]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        for query, params in cases:
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, params).fetchall())
            assert "Seq Scan" not in plan, plan


def test_usable_as_a_dagster_resource(db_url: str) -> None:
    from dagster import asset, materialize

    @asset
    def latest_overview(reader: SigmaSightReader) -> float:
        return reader.overview(1).total_value_usd

    result = materialize(
        [latest_overview], resources={"reader": SigmaSightReader(database_url=db_url)}
    )
    assert result.success
    assert result.output_for_node("latest_overview") == 41800.0
