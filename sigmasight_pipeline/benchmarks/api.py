"""Benchmark: latency and throughput of the read API over HTTP with 100 portfolios loaded.

Run with ``uv run python -m sigmasight_pipeline.benchmarks.api``. It creates a throwaway
database on the project's server (embedded or DATABASE_URL), loads 50 users x 2 portfolios of
50 positions each (20 long, 15 short, 15 options: the PRD's sample shape) over 90 NYSE sessions,
with every table the routes read (the risk-depth tables of issue 11 too: a 35 x 35 correlation
matrix, 20 stress scenarios with every position's P&L; issue 12's position events, equity
changes and target prices), all by set-based SQL, starts the real
server (`api.serve`, uvicorn in a subprocess on a free 127.0.0.1 port), logs every user in over
HTTP, then per route measures:

- p50 / p99 latency of sequential requests (one keep-alive client, rotating over the 100
  portfolios with their owners' tokens), after a short warm-up;
- requests per second with CONCURRENCY clients in threads.

Each phase is bounded in requests and seconds. The database is dropped at the end.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import psycopg

from sigmasight_pipeline import calendar
from sigmasight_pipeline.resources.database import (
    create_database,
    database_url,
    drop_database,
    migrate,
)
from sigmasight_pipeline.resources.read_api import SigmaSightReader

POOL_SIZE = SigmaSightReader.model_fields["pool_size"].default

USERS = 50
PORTFOLIOS_PER_USER = 2
POSITIONS = 50  # per portfolio: 20 LONG, 15 SHORT, 15 options
SESSIONS = 90
LAST_DAY = "2024-06-28"
PASSWORD = "bench-password"
WARMUP = 20
SEQUENTIAL = 300
CONCURRENT = 400
CONCURRENCY = 4
PHASE_SECONDS = 15.0
LOGINS = 50  # one per user (argon2 verification: the slow route by design)

TAG_NAMES = ["momentum", "tech", "hedge", "options", "value", "core"]
FACTORS = ["Market", "Momentum", "Value", "Growth", "Quality", "Size", "Low Volatility",
           "Short Interest", "Rates"]  # fmt: skip

ROUTES: list[tuple[str, str, dict[str, str]]] = [
    ("GET /portfolio (overview)", "/portfolio", {}),
    ("GET /positions", "/positions", {}),
    ("GET /positions?groupBy=tag&tags=momentum,hedge", "/positions",
     {"groupBy": "tag", "tags": "momentum,hedge", "tagMode": "any"}),
    ("GET /positions?types=LC,SC&groupBy=type", "/positions",
     {"types": "LC,SC", "groupBy": "type"}),
    ("GET /risk/greeks?view=longs", "/risk/greeks", {"view": "longs"}),
    ("GET /risk/factors", "/risk/factors", {}),
    ("GET /risk/metrics", "/risk/metrics", {}),
    ("GET /portfolio/snapshots (90 days)", "/portfolio/snapshots", {}),
    ("GET /tags?portfolio_id (that portfolio's tags)", "/tags", {}),
    ("GET /risk/volatility (35 names)", "/risk/volatility", {}),
    ("GET /risk/correlations (35 x 35 matrix)", "/risk/correlations", {}),
    ("GET /risk/correlations?format=pairs (595 pairs)", "/risk/correlations",
     {"format": "pairs"}),
    ("GET /risk/concentration (top 10)", "/risk/concentration", {}),
    ("GET /risk/sectors", "/risk/sectors", {}),
    ("GET /risk/decomposition (top 10 of 50)", "/risk/decomposition", {}),
    ("GET /risk/stress (20 scenarios, worst 3 each)", "/risk/stress", {}),
    ("GET /portfolio/history (60 events, 10 flows)", "/portfolio/history", {}),
    ("GET /portfolio/history?from (last 31 sessions)", "/portfolio/history",
     {"from": "2024-05-15"}),
    ("GET /portfolio/targets (34 of 50 with targets)", "/portfolio/targets", {}),
]  # fmt: skip

_S = "sigmasight"
_LOAD = [
    # Positions: i = 1..50 per portfolio; types by i, options on the stock underlyings.
    f"""
    INSERT INTO {_S}.positions (portfolio_id, symbol, quantity, entry_price, entry_date,
        position_type, underlying, option_right, strike, expiry, multiplier)
    SELECT pf.id, x.symbol, x.quantity, x.entry_price, %(first)s, x.ptype, x.underlying,
           CASE WHEN x.ptype IN ('LC', 'SC') THEN 'C' WHEN x.ptype IN ('LP', 'SP') THEN 'P' END,
           CASE WHEN x.ptype IN ('LONG', 'SHORT') THEN NULL ELSE 100.0 END,
           CASE WHEN x.ptype IN ('LONG', 'SHORT') THEN NULL ELSE DATE '2025-01-17' END,
           CASE WHEN x.ptype IN ('LONG', 'SHORT') THEN 1 ELSE 100 END
    FROM {_S}.portfolios pf
    CROSS JOIN LATERAL (
        SELECT CASE WHEN i <= 35 THEN 'STK' || i ELSE 'OPT' || i END AS symbol,
               t.ptype,
               CASE t.ptype WHEN 'LONG' THEN 100 + 10 * i WHEN 'SHORT' THEN -(50 + 5 * i)
                    WHEN 'LC' THEN 1 + i %% 5 WHEN 'LP' THEN 1 + i %% 5
                    ELSE -(1 + i %% 5) END::double precision AS quantity,
               CASE WHEN i <= 35 THEN 50 + (i * 7) %% 300 ELSE 2 + i %% 10 END::double precision
                   AS entry_price,
               'STK' || (1 + i %% 35) AS underlying
        FROM generate_series(1, {POSITIONS}) AS i
        CROSS JOIN LATERAL (SELECT CASE WHEN i <= 20 THEN 'LONG' WHEN i <= 35 THEN 'SHORT'
                                       ELSE (ARRAY['LC', 'LP', 'SC', 'SP'])[1 + i %% 4]
                                  END AS ptype) t
    ) x
    """,
    f"""
    INSERT INTO {_S}.tags (user_id, name, color)
    SELECT u.id, n.name, '#4363D8' FROM {_S}.users u CROSS JOIN unnest(%(tags)s::text[]) n(name)
    """,
    # Every position gets one tag, every third a second one.
    f"""
    INSERT INTO {_S}.position_tags (position_id, tag_id)
    SELECT DISTINCT p.id, t.id
    FROM {_S}.positions p
    JOIN {_S}.portfolios pf ON pf.id = p.portfolio_id
    CROSS JOIN LATERAL (VALUES (1 + p.id %% 6), (CASE WHEN p.id %% 3 = 0 THEN 1 + (p.id + 2) %% 6
                                                END)) k(n)
    JOIN {_S}.tags t ON t.user_id = pf.owner_id AND t.name = (%(tags)s::text[])[k.n]
    """,
    # Prices follow a deterministic wave around the entry price.
    f"""
    INSERT INTO {_S}.position_value_blocks (portfolio_id, trade_date, position_id, quantity,
        price, exposure, cost_basis, daily_pnl, price_date)
    SELECT p.portfolio_id, d.day, array_agg(p.id ORDER BY p.id),
           array_agg(p.quantity ORDER BY p.id), array_agg(x.price ORDER BY p.id),
           array_agg(p.quantity * x.price * p.multiplier ORDER BY p.id),
           array_agg(p.quantity * p.entry_price * p.multiplier ORDER BY p.id),
           array_agg(p.quantity * (x.price - x.prev) * p.multiplier ORDER BY p.id),
           array_agg(d.day ORDER BY p.id)
    FROM {_S}.positions p
    CROSS JOIN unnest(%(days)s::date[]) WITH ORDINALITY AS d(day, n)
    CROSS JOIN LATERAL (
        SELECT p.entry_price * (1 + 0.1 * sin(d.n / 7.0 + p.id)) AS price,
               p.entry_price * (1 + 0.1 * sin((d.n - 1) / 7.0 + p.id)) AS prev
    ) x
    GROUP BY p.portfolio_id, d.day
    """,
    # Greeks of the options (stocks have none stored: delta 1 per share).
    f"""
    INSERT INTO {_S}.position_greek_blocks (portfolio_id, trade_date, position_id,
        underlying_price, strike, t_years, rate, volatility, volatility_source,
        option_price, delta, gamma, theta, vega, rho, position_delta,
        position_gamma, position_theta, position_vega, position_rho, source)
    SELECT v.portfolio_id, v.trade_date, array_agg(v.position_id ORDER BY v.position_id),
           array_agg(100.0::float8 ORDER BY v.position_id),
           array_agg(p.strike ORDER BY v.position_id),
           array_agg(0.5::float8 ORDER BY v.position_id),
           array_agg(0.04::float8 ORDER BY v.position_id),
           array_agg(0.3::float8 ORDER BY v.position_id),
           array_agg('implied' ORDER BY v.position_id),
           array_agg(v.price ORDER BY v.position_id),
           array_agg(g.delta ORDER BY v.position_id),
           array_agg(g.gamma ORDER BY v.position_id),
           array_agg(g.theta ORDER BY v.position_id),
           array_agg(g.vega ORDER BY v.position_id),
           array_agg(g.rho ORDER BY v.position_id),
           array_agg(g.delta * v.quantity * p.multiplier ORDER BY v.position_id),
           array_agg(g.gamma * v.quantity * p.multiplier ORDER BY v.position_id),
           array_agg(g.theta * v.quantity * p.multiplier ORDER BY v.position_id),
           array_agg(g.vega * v.quantity * p.multiplier ORDER BY v.position_id),
           array_agg(g.rho * v.quantity * p.multiplier ORDER BY v.position_id),
           array_agg('model' ORDER BY v.position_id)
    FROM {_S}.position_values v
    JOIN {_S}.positions p ON p.id = v.position_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN p.option_right = 'C' THEN 0.55 ELSE -0.45 END::float8 AS delta,
               0.02::float8 AS gamma, -0.05::float8 AS theta, 0.2::float8 AS vega,
               0.05::float8 AS rho
    ) g
    WHERE p.position_type NOT IN ('LONG', 'SHORT')
    GROUP BY v.portfolio_id, v.trade_date
    """,
    f"""
    INSERT INTO {_S}.portfolio_greeks
    SELECT trade_date, portfolio_id, w.view, sum(delta), sum(gamma), sum(theta), sum(vega),
           sum(rho), sum(dae) / 100, sum(dae), 0, count(*)
    FROM (
        SELECT g.trade_date, g.portfolio_id, v.quantity, g.position_delta AS delta,
               g.position_gamma AS gamma, g.position_theta AS theta, g.position_vega AS vega,
               g.position_rho AS rho, g.delta_adjusted_exposure AS dae
        FROM {_S}.position_greeks g
        JOIN {_S}.position_values v USING (portfolio_id, trade_date, position_id)
        UNION ALL
        SELECT v.trade_date, v.portfolio_id, v.quantity, v.quantity, 0, 0, 0, 0, v.exposure
        FROM {_S}.position_values v JOIN {_S}.positions p ON p.id = v.position_id
        WHERE p.position_type IN ('LONG', 'SHORT')
    ) r
    CROSS JOIN (VALUES ('portfolio'), ('longs'), ('shorts')) w(view)
    WHERE w.view = 'portfolio' OR (w.view = 'longs') = (quantity > 0)
    GROUP BY trade_date, portfolio_id, w.view
    """,
    f"""
    INSERT INTO {_S}.portfolio_snapshots (trade_date, portfolio_id, total_value, long_exposure,
        short_exposure, gross_exposure, net_exposure, daily_pnl, window_pnl, window_start,
        unrealized_pnl, position_count, long_count, short_count, lc_count, lp_count, sc_count,
        sp_count, unpriced_count)
    SELECT v.trade_date, v.portfolio_id, sum(v.market_value), sum(greatest(v.exposure, 0)),
           sum(least(v.exposure, 0)), sum(abs(v.exposure)), sum(v.exposure), sum(v.daily_pnl),
           sum(sum(v.daily_pnl)) OVER (PARTITION BY v.portfolio_id ORDER BY v.trade_date),
           %(first)s, sum(v.unrealized_pnl), count(*),
           count(*) FILTER (WHERE p.position_type = 'LONG'),
           count(*) FILTER (WHERE p.position_type = 'SHORT'),
           count(*) FILTER (WHERE p.position_type = 'LC'),
           count(*) FILTER (WHERE p.position_type = 'LP'),
           count(*) FILTER (WHERE p.position_type = 'SC'),
           count(*) FILTER (WHERE p.position_type = 'SP'), 0
    FROM {_S}.position_values v JOIN {_S}.positions p ON p.id = v.position_id
    GROUP BY v.trade_date, v.portfolio_id
    """,
    f"""
    INSERT INTO {_S}.portfolio_factor_exposures
    SELECT s.trade_date, s.portfolio_id, f.name, 0.1 * f.k, 0.1 * f.k * s.net_exposure, 1.0
    FROM {_S}.portfolio_snapshots s
    CROSS JOIN unnest(%(factors)s::text[]) WITH ORDINALITY AS f(name, k)
    """,
    f"""
    INSERT INTO {_S}.portfolio_risk_metrics (trade_date, portfolio_id, beta, volatility_ann,
        sharpe, sortino, max_drawdown, var_95_1d, cvar_95_1d, n_obs)
    SELECT trade_date, portfolio_id, 1.0, 0.2, 1.1, 1.5, -0.1, 0.02, 0.03, 60
    FROM {_S}.portfolio_snapshots
    """,
]

# The risk-depth tables (issue 11) in the pipeline's shapes: per portfolio-day, one row of
# volatility, concentration, correlation matrix (35 underlyings), 11 sectors, 9 risk components
# and 20 stress results; per position-day, a risk contribution and 20 stress P&Ls.
_LOAD_RISK_DEPTH = [
    f"""
    UPDATE {_S}.portfolio_snapshots s
    SET beta_rates = f.beta, pnl_usd_per_100bp = -0.165 * f.dollar_exposure
    FROM {_S}.portfolio_factor_exposures f
    WHERE f.trade_date = s.trade_date AND f.portfolio_id = s.portfolio_id AND f.factor = 'Rates'
    """,
    f"""
    INSERT INTO {_S}.symbol_volatility (trade_date, symbol, vol_21d, vol_63d, vol_252d,
        vol_ewma, vol_har_21d, vol_percentile_252d, n_obs)
    SELECT d.day, 'STK' || k, 0.2 + 0.004 * k, 0.21 + 0.004 * k, 0.22 + 0.004 * k,
           0.2 + 0.005 * k, 0.21 + 0.003 * k, 2.5 * k, 252
    FROM unnest(%(days)s::date[]) d(day) CROSS JOIN generate_series(1, 35) k
    """,
    f"""
    INSERT INTO {_S}.portfolio_volatility
    SELECT trade_date, portfolio_id, 0.12, 0.13, NULL, 0.125, NULL, NULL, 0.11,
           0.11 * gross_exposure, 89, 'vol_252d: 89 obs < 168'
    FROM {_S}.portfolio_snapshots
    """,
    f"""
    INSERT INTO {_S}.portfolio_correlation_matrices (trade_date, portfolio_id, symbols,
        correlation_codes, pair_obs, cluster_ids, avg_pairwise_correlation, avg_pnl_correlation,
        effective_number_of_bets, n_clusters, reason)
    SELECT s.trade_date, s.portfolio_id, m.symbols, m.correlation_codes, m.pair_obs,
           m.cluster_ids, 0.25, 0.1, 8.0, 30, NULL
    FROM {_S}.portfolio_snapshots s
    CROSS JOIN (
        SELECT (SELECT array_agg('STK' || k ORDER BY 'STK' || k)
                FROM generate_series(1, 35) k) AS symbols,
               (SELECT array_agg(CASE WHEN n %% 97 = 0 THEN NULL
                                      ELSE round(32767 * (0.3 + 0.4 * sin(n)))::smallint END
                                 ORDER BY n)
                FROM generate_series(1, 595) n) AS correlation_codes,
               (SELECT array_agg(CASE WHEN n %% 97 = 0 THEN 15 ELSE 90 END::smallint ORDER BY n)
                FROM generate_series(1, 595) n) AS pair_obs,
               (SELECT array_agg((1 + k %% 30)::smallint ORDER BY k)
                FROM generate_series(1, 35) k) AS cluster_ids
    ) m
    """,
    f"""
    INSERT INTO {_S}.portfolio_concentration
    SELECT trade_date, portfolio_id, gross_exposure, 35, 0.06, 1 / 0.06, 0.35, 0.5, 'STK20',
           0.12, 0.12 * gross_exposure, 0, NULL
    FROM {_S}.portfolio_snapshots
    """,
    f"""
    INSERT INTO {_S}.portfolio_sector_exposure_blocks
    SELECT s.portfolio_id, s.trade_date, array_agg(x.sector ORDER BY x.sector),
           array_agg(0.06 * s.long_exposure ORDER BY x.sector),
           array_agg(0.06 * s.short_exposure ORDER BY x.sector),
           array_agg(0.06::float8 ORDER BY x.sector),
           array_agg(0.06 * s.net_exposure / nullif(s.gross_exposure, 0) ORDER BY x.sector),
           array_agg(0.09::float8 ORDER BY x.sector), array_agg(3 ORDER BY x.sector),
           array_agg(DATE '2024-03-31' ORDER BY x.sector), NULL
    FROM {_S}.portfolio_snapshots s
    CROSS JOIN unnest(%(sectors)s::text[]) x(sector)
    GROUP BY s.portfolio_id, s.trade_date
    """,
    f"""
    INSERT INTO {_S}.portfolio_risk_decomposition_blocks
    SELECT s.portfolio_id, s.trade_date, array_agg(c.component ORDER BY c.k),
           array_agg(CASE WHEN c.component = 'specific' THEN NULL ELSE 0.1 * s.net_exposure END
                     ORDER BY c.k),
           array_agg(c.share * (0.15 * s.gross_exposure) ^ 2 ORDER BY c.k),
           array_agg(c.share ORDER BY c.k),
           array_agg(c.share * 0.15 * s.gross_exposure ORDER BY c.k),
           array_agg(0.15 * s.gross_exposure ORDER BY c.k), array_agg(1.0::float8 ORDER BY c.k),
           NULL
    FROM {_S}.portfolio_snapshots s
    CROSS JOIN (VALUES (1, 'Market', 0.5), (2, 'Momentum', 0.02), (3, 'Value', 0.03),
                       (4, 'Growth', 0.01), (5, 'Quality', 0.02), (6, 'Size', 0.04),
                       (7, 'Low Volatility', 0.01), (8, 'Rates', 0.07), (9, 'specific', 0.3))
        c(k, component, share)
    GROUP BY s.portfolio_id, s.trade_date
    """,
    f"""
    INSERT INTO {_S}.position_risk_contribution_blocks
    SELECT v.portfolio_id, v.trade_date, array_agg(v.position_id), array_agg(v.exposure),
           array_agg(m.marginal), array_agg(0.7 * v.exposure * m.marginal),
           array_agg(0.3 * v.exposure * m.marginal), array_agg(0.02::float8), NULL
    FROM {_S}.position_values v
    CROSS JOIN LATERAL (SELECT 0.1 + 0.001 * (v.position_id %% 50) AS marginal) m
    GROUP BY v.portfolio_id, v.trade_date
    """,
    f"""
    INSERT INTO {_S}.stress_scenarios (scenario_id, ordinal, name, kind, description,
        vol_multiplier, shock_market)
    SELECT 'scenario_' || k, k, 'Scenario ' || k, 'factor', 'Market ' || (k - 10) || ' %%',
           1.0, (k - 10) / 100.0
    FROM generate_series(1, 20) k
    """,
    f"""
    INSERT INTO {_S}.stress_scenario_sets (scenario_ids)
    SELECT array_agg(scenario_id ORDER BY ordinal) FROM {_S}.stress_scenarios
    """,
    # The options' P&L per position (stored as the stress asset stores it); the stocks' is
    # exposure x their underlying's move, which the view computes (sql/0022).
    f"""
    INSERT INTO {_S}.position_stress_pnl_blocks (portfolio_id, trade_date, set_id, position_id,
        pnl_usd, pnl_usd_delta_gamma)
    SELECT v.portfolio_id, v.trade_date, z.set_id, array_agg(DISTINCT v.position_id),
           array_agg((v.exposure * (k - 10) / 100.0 * (1 + 0.01 * (v.position_id %% 7)))::real
                     ORDER BY v.position_id, k),
           array_agg((v.exposure * (k - 10) / 100.0)::real ORDER BY v.position_id, k)
    FROM {_S}.position_values v
    JOIN {_S}.positions p ON p.id = v.position_id AND p.position_type NOT IN ('LONG', 'SHORT')
    CROSS JOIN {_S}.stress_scenario_sets z
    CROSS JOIN generate_series(1, 20) k
    GROUP BY v.portfolio_id, v.trade_date, z.set_id
    """,
    f"""
    INSERT INTO {_S}.stress_moves (trade_date, symbol, set_id, moves)
    SELECT d.trade_date, u.underlying, z.set_id,
           array(SELECT (k - 10) / 100.0 * (1 + 0.01 * length(u.underlying))
                 FROM generate_series(1, 20) k ORDER BY k)
    FROM (SELECT DISTINCT trade_date FROM {_S}.position_values) d
    CROSS JOIN (SELECT DISTINCT underlying FROM {_S}.positions) u
    CROSS JOIN {_S}.stress_scenario_sets z
    """,
    f"""
    INSERT INTO {_S}.portfolio_stress_result_blocks
    SELECT s.portfolio_id, s.trade_date, array_agg(x.scenario_id ORDER BY x.ordinal),
           array_agg(s.net_exposure * x.shock_market ORDER BY x.ordinal),
           array_agg(s.net_exposure * x.shock_market ORDER BY x.ordinal),
           array_agg(s.gross_exposure ORDER BY x.ordinal), NULL, NULL,
           array_agg('full_revaluation' ORDER BY x.ordinal),
           array_agg(s.position_count ORDER BY x.ordinal), array_agg(0 ORDER BY x.ordinal), NULL
    FROM {_S}.portfolio_snapshots s CROSS JOIN {_S}.stress_scenarios x
    GROUP BY s.portfolio_id, s.trade_date
    """,
]
SECTORS = [
    "Communication Services", "Consumer Discretionary", "Consumer Staples", "Energy",
    "Financials", "Health Care", "Industrials", "Information Technology", "Materials",
    "Real Estate", "Utilities",
]  # fmt: skip


# Portfolio history (issue 12) in the loader's shapes (a position's number n in its portfolio
# is its symbol's, STK<n> / OPT<n>): per position an open event on the first session, every
# 5th one halved mid-window (a decrease with its realized P&L); per portfolio a contribution
# every 10 sessions and one withdrawal; targets on 2 positions of 3, every other one moved
# mid-window.
_LOAD_HISTORY = [
    f"""
    INSERT INTO {_S}.position_events (position_id, portfolio_id, event_date, kind,
        quantity_change, price, price_source, realized_pnl_usd)
    SELECT p.id, p.portfolio_id, %(first)s, 'open', p.quantity, p.entry_price, 'file', NULL
    FROM {_S}.positions p
    UNION ALL
    SELECT p.id, p.portfolio_id, (%(days)s::date[])[45], 'decrease', -p.quantity / 2,
           p.entry_price * 1.1, 'close:market', 0.1 * p.entry_price * p.quantity / 2 * p.multiplier
    FROM {_S}.positions p WHERE right(p.symbol, -3)::int %% 5 = 0
    ORDER BY 3, 1
    """,
    f"""
    INSERT INTO {_S}.equity_changes (portfolio_id, change_date, amount_usd, kind, note)
    SELECT pf.id, (%(days)s::date[])[k], 10000.0, 'contribution', 'monthly'
    FROM {_S}.portfolios pf CROSS JOIN generate_series(10, 90, 10) k
    UNION ALL
    SELECT pf.id, (%(days)s::date[])[55], -5000.0, 'withdrawal', NULL FROM {_S}.portfolios pf
    """,
    f"""
    INSERT INTO {_S}.target_prices (position_id, target_price, downside_price, set_on)
    SELECT p.id, p.entry_price * CASE WHEN p.quantity > 0 THEN 1.2 ELSE 0.8 END,
           p.entry_price * CASE WHEN p.quantity > 0 THEN 0.9 ELSE 1.1 END, %(first)s
    FROM {_S}.positions p WHERE right(p.symbol, -3)::int %% 3 <> 0
    UNION ALL
    SELECT p.id, p.entry_price * CASE WHEN p.quantity > 0 THEN 1.3 ELSE 0.7 END, NULL,
           (%(days)s::date[])[45]
    FROM {_S}.positions p
    WHERE right(p.symbol, -3)::int %% 3 <> 0 AND right(p.symbol, -3)::int %% 2 = 0
    """,
]


def _load(url: str) -> dict[str, int]:
    """Users, portfolios and 90 sessions of computed rows, by set-based SQL; row counts."""
    from sigmasight_pipeline.portfolios import hash_password

    days = [d.date() for d in calendar.last_sessions(LAST_DAY, SESSIONS)]
    params = {
        "days": days, "first": days[0], "tags": TAG_NAMES, "factors": FACTORS,
        "sectors": SECTORS,
    }  # fmt: skip
    password_hash = hash_password(PASSWORD)  # one hash shared by every bench user
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute(
            f"INSERT INTO {_S}.users (username, password_hash, role) "
            f"SELECT 'bench_user_' || g, %s, 'user' FROM generate_series(1, {USERS}) g",
            (password_hash,),
        )
        conn.execute(
            f"INSERT INTO {_S}.portfolios (name, owner_id) "
            f"SELECT 'Bench ' || k, u.id FROM {_S}.users u, "
            f"generate_series(1, {PORTFOLIOS_PER_USER}) k ORDER BY u.id, k"
        )
        for statement in _LOAD + _LOAD_RISK_DEPTH + _LOAD_HISTORY:
            conn.execute(statement, params)
    counts = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        for table in ("portfolios", "positions", "position_values", "position_greeks",
                      "portfolio_snapshots", "position_risk_contributions",
                      "position_stress_pnl", "stress_moves", "position_events",
                      "equity_changes",
                      "target_prices"):  # fmt: skip
            row = conn.execute(f"SELECT count(*) FROM {_S}.{table}").fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(url: str, port: int, log_file: Any) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SIGMASIGHT_JWT_SECRET": secrets.token_urlsafe(48),
    }
    code = (
        f"from sigmasight_pipeline.api import serve; serve('127.0.0.1', {port}, access_log=False)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=log_file, stderr=subprocess.STDOUT
    )


def _wait_ready(base: str, server: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API server exited with {server.returncode}")
        try:
            if httpx.get(base + "/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API server did not start in time")


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples_s) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _sequential(call: Callable[[httpx.Client, int], httpx.Response], client: httpx.Client,
                count: int) -> list[float]:  # fmt: skip
    for i in range(WARMUP):
        call(client, i)
    samples = []
    deadline = time.monotonic() + PHASE_SECONDS
    for i in range(count):
        start = time.perf_counter()
        response = call(client, i)
        samples.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        if time.monotonic() > deadline:
            break
    return samples


def _throughput(base: str, call: Callable[[httpx.Client, int], httpx.Response]) -> float:
    """Requests per second with CONCURRENCY clients sharing CONCURRENT requests."""
    done = [0] * CONCURRENCY
    errors: list[str] = []
    deadline = time.monotonic() + PHASE_SECONDS

    def worker(w: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(w, CONCURRENT, CONCURRENCY):
                response = call(client, i)
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}")
                    return
                done[w] += 1
                if time.monotonic() > deadline:
                    return

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(CONCURRENCY)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"throughput phase failed: {errors[0]}")
    return sum(done) / elapsed


def _login_all(
    client: httpx.Client, usernames: dict[int, str]
) -> tuple[dict[int, str], list[float]]:
    """Log every bench user in over HTTP: their tokens and the login latencies."""
    tokens: dict[int, str] = {}
    samples = []
    for user_id, username in sorted(usernames.items())[:LOGINS]:
        start = time.perf_counter()
        r = client.post("/auth/login", json={"username": username, "password": PASSWORD})
        samples.append(time.perf_counter() - start)
        r.raise_for_status()
        tokens[user_id] = r.json()["token"]
    return tokens, samples


def run() -> list[dict]:
    """Load 100 portfolios, start the API, measure every route; one row per route."""
    server_url = database_url()
    name = f"sigmasight_api_bench_{os.getpid()}"
    drop_database(server_url, name)
    url = create_database(server_url, name)
    rows: list[dict] = []
    server: subprocess.Popen | None = None
    try:
        migrate(url)
        load_start = time.perf_counter()
        counts = _load(url)
        load_s = time.perf_counter() - load_start
        with psycopg.connect(url) as conn:
            owners = dict(conn.execute(f"SELECT id, owner_id FROM {_S}.portfolios").fetchall())
            usernames = dict(conn.execute(f"SELECT id, username FROM {_S}.users").fetchall())
        portfolio_ids = sorted(owners)
        setup = (
            f"Setup: {', '.join(f'{v:,} {k}' for k, v in counts.items())} loaded by SQL in "
            f"{load_s:.1f} s; one uvicorn process (uvloop, httptools; access log off; "
            f"psycopg_pool of {POOL_SIZE} connections) in a "
            f"subprocess on 127.0.0.1; client, server and PostgreSQL share {os.cpu_count()} "
            "cores. "
        )

        port = _free_port()
        base = f"http://127.0.0.1:{port}/api/v1"
        with tempfile.TemporaryFile() as log_file:
            server = _start_server(url, port, log_file)
            _wait_ready(f"http://127.0.0.1:{port}", server)
            with httpx.Client(base_url=base, timeout=30) as client:
                tokens, login_samples = _login_all(client, usernames)
                for label, path, params in ROUTES:

                    def call(c: httpx.Client, i: int, path: str = path, params: dict = params):
                        pid = portfolio_ids[i % len(portfolio_ids)]
                        headers = {"Authorization": f"Bearer {tokens[owners[pid]]}"}
                        query = {**params, "portfolio_id": str(pid)}
                        return c.get(path, params=query, headers=headers)

                    samples = _sequential(call, client, SEQUENTIAL)
                    p50, p99 = _percentiles(samples)
                    rows.append(
                        {
                            "benchmark": f"API {label}",
                            "p50_ms": p50,
                            "p99_ms": p99,
                            "rps": _throughput(base, call),
                            "notes": ("" if rows else setup)
                            + f"{len(samples)} sequential requests (after {WARMUP} warm-up) "
                            f"over {len(portfolio_ids)} portfolios, each with its owner's token; "
                            f"rps with {CONCURRENCY} concurrent clients",
                        }
                    )
            p50, p99 = _percentiles(login_samples)
            rows.append(
                {
                    "benchmark": "API POST /auth/login",
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "rps": len(login_samples) / sum(login_samples),
                    "notes": f"{len(login_samples)} sequential logins; argon2id verification "
                    "(m=64 MiB, t=3) dominates by design; rps sequential",
                }
            )
            server.terminate()
            server.wait(timeout=20)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait(timeout=20)
        drop_database(server_url, name)
    return rows


def main() -> None:
    for row in run():
        print(
            f"{row['benchmark']}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
            f"{row['rps']:,.0f} req/s"
        )
        print(f"    {row['notes']}")


if __name__ == "__main__":
    main()
