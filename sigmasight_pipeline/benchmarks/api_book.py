"""The read API benchmark's book: 50 users x 2 portfolios of 50 positions (20 long, 15 short,
15 options) over 90 NYSE sessions, with every table the routes read, loaded by set-based SQL
(`load_book`)."""

from __future__ import annotations

import psycopg

from sigmasight_pipeline import calendar

USERS = 50
PORTFOLIOS_PER_USER = 2
POSITIONS = 50  # per portfolio: 20 LONG, 15 SHORT, 15 options
SESSIONS = 90
LAST_DAY = "2024-06-28"
PASSWORD = "bench-password"

TAG_NAMES = ["momentum", "tech", "hedge", "options", "value", "core"]
FACTORS = ["Market", "Momentum", "Value", "Growth", "Quality", "Size", "Low Volatility",
           "Short Interest", "Rates"]  # fmt: skip

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
           array_agg('implied'::text ORDER BY v.position_id),
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
           array_agg('model'::text ORDER BY v.position_id)
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
           array_agg('full_revaluation'::text ORDER BY x.ordinal),
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


def load_book(url: str) -> dict[str, int]:
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
