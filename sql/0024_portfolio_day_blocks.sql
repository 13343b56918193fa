-- depends: 0023_position_betas_from_factor_betas
-- Issue 10 (compact): eight tables written in blocks of rows per portfolio-day (a row per
-- position or scenario) are stored as one row per portfolio-day, each other column an array in
-- the block's order. A row per position-day paid about 28 B of tuple header and line pointer,
-- 7 B of index entry and 8 B of keys: position_exposures stored 16 B of values in 60 B a row.
-- Each table's name is now a view that unnests its blocks, with the same columns as before;
-- the IO manager packs the rows written to it (io_manager.BLOCKS). A portfolio-day is one row:
-- the primary key keeps it unique again, and a write replaces whole blocks as before.
--
-- A view computes what is an exact float8 product of stored values: a position's component
-- volatility is exposure x marginal, a position's market value is |exposure| (|q| x p x m
-- = |q x p x m| for a price p > 0 and a multiplier m > 0) and its unrealized P&L exposure -
-- cost basis, its price source 'market' when its price is the session's close (price_date =
-- trade_date), 'carried_forward' when it is an earlier one, 'missing' without a price, an option's delta-adjusted exposure its position delta x the underlying's price
-- and its dollar delta that / 100, a scenario's P&L as a fraction of gross is pnl / gross,
-- a sector's gross and net exposures are long - short and long + short, its active weight
-- net - benchmark weight (the same operations in the same order as analytics.decomposition,
-- analytics.stress, analytics.sectors, analytics.valuation and analytics.greeks).
--
-- The float arrays are not compressible (STORAGE EXTERNAL: no pglz attempt when a block goes
-- past 2 kB and moves to TOAST, as sql/0018); no statistics on the arrays (as sql/0021).

CREATE TABLE sigmasight.position_value_blocks (
    portfolio_id         integer NOT NULL,
    trade_date           date NOT NULL,
    position_id          integer[] NOT NULL,
    quantity             double precision[] NOT NULL,
    price                double precision[],
    exposure             double precision[],
    cost_basis           double precision[] NOT NULL,
    daily_pnl            double precision[],
    realized_pnl_usd     double precision[],
    realized_pnl_cum_usd double precision[],
    price_date           date[],
    pnl_reason           text[],
    PRIMARY KEY (portfolio_id, trade_date)
);
INSERT INTO sigmasight.position_value_blocks
SELECT portfolio_id, trade_date, array_agg(position_id ORDER BY position_id),
       array_agg(quantity ORDER BY position_id), array_agg(price ORDER BY position_id),
       array_agg(exposure ORDER BY position_id), array_agg(cost_basis ORDER BY position_id),
       array_agg(daily_pnl ORDER BY position_id),
       array_agg(realized_pnl_usd ORDER BY position_id),
       array_agg(realized_pnl_cum_usd ORDER BY position_id),
       array_agg(price_date ORDER BY position_id),
       CASE WHEN count(pnl_reason) > 0 THEN array_agg(pnl_reason ORDER BY position_id) END
FROM sigmasight.position_values
GROUP BY portfolio_id, trade_date;

CREATE TABLE sigmasight.position_greek_blocks (
    portfolio_id      integer NOT NULL,
    trade_date        date NOT NULL,
    position_id       integer[] NOT NULL,
    underlying_price  double precision[],
    strike            double precision[],
    t_years           double precision[],
    rate              double precision[],
    volatility        double precision[],
    option_price      double precision[],
    delta             double precision[] NOT NULL,
    gamma             double precision[] NOT NULL,
    theta             double precision[] NOT NULL,
    vega              double precision[] NOT NULL,
    rho               double precision[] NOT NULL,
    position_delta    double precision[] NOT NULL,
    position_gamma    double precision[] NOT NULL,
    position_theta    double precision[] NOT NULL,
    position_vega     double precision[] NOT NULL,
    position_rho      double precision[] NOT NULL,
    volatility_source text[],
    iv_converged      boolean[],
    source            text[] NOT NULL,
    reason            text[],
    PRIMARY KEY (portfolio_id, trade_date)
);
INSERT INTO sigmasight.position_greek_blocks
SELECT portfolio_id, trade_date, array_agg(position_id ORDER BY position_id),
       array_agg(underlying_price ORDER BY position_id),
       array_agg(strike ORDER BY position_id),
       array_agg(t_years ORDER BY position_id),
       array_agg(rate ORDER BY position_id),
       array_agg(volatility ORDER BY position_id),
       array_agg(option_price ORDER BY position_id),
       array_agg(delta ORDER BY position_id),
       array_agg(gamma ORDER BY position_id),
       array_agg(theta ORDER BY position_id),
       array_agg(vega ORDER BY position_id),
       array_agg(rho ORDER BY position_id),
       array_agg(position_delta ORDER BY position_id),
       array_agg(position_gamma ORDER BY position_id),
       array_agg(position_theta ORDER BY position_id),
       array_agg(position_vega ORDER BY position_id),
       array_agg(position_rho ORDER BY position_id),
       array_agg(volatility_source ORDER BY position_id),
       array_agg(iv_converged ORDER BY position_id),
       array_agg(source ORDER BY position_id),
       CASE WHEN count(reason) > 0 THEN array_agg(reason ORDER BY position_id) END
FROM sigmasight.position_greeks
GROUP BY portfolio_id, trade_date;

CREATE TABLE sigmasight.position_exposure_blocks (
    portfolio_id      integer NOT NULL,
    trade_date        date NOT NULL,
    position_id       integer[] NOT NULL,
    exposure          double precision[],
    pnl_usd_per_100bp double precision[],
    PRIMARY KEY (portfolio_id, trade_date)
);
INSERT INTO sigmasight.position_exposure_blocks
SELECT portfolio_id, trade_date, array_agg(position_id ORDER BY position_id),
       array_agg(exposure ORDER BY position_id),
       array_agg(pnl_usd_per_100bp ORDER BY position_id)
FROM sigmasight.position_exposures
GROUP BY portfolio_id, trade_date;

CREATE TABLE sigmasight.position_risk_contribution_blocks (
    portfolio_id     integer NOT NULL,
    trade_date       date NOT NULL,
    position_id      integer[] NOT NULL,
    exposure_usd     double precision[],
    marginal_vol_usd double precision[],
    factor_vol_usd   double precision[],
    specific_vol_usd double precision[],
    share_of_risk    double precision[],
    reason           text[],
    PRIMARY KEY (portfolio_id, trade_date)
);
INSERT INTO sigmasight.position_risk_contribution_blocks
SELECT portfolio_id, trade_date, array_agg(position_id ORDER BY position_id),
       array_agg(exposure_usd ORDER BY position_id),
       array_agg(marginal_vol_usd ORDER BY position_id),
       array_agg(factor_vol_usd ORDER BY position_id),
       array_agg(specific_vol_usd ORDER BY position_id),
       array_agg(share_of_risk ORDER BY position_id),
       CASE WHEN count(reason) > 0 THEN array_agg(reason ORDER BY position_id) END
FROM sigmasight.position_risk_contributions
GROUP BY portfolio_id, trade_date;

CREATE TABLE sigmasight.portfolio_stress_result_blocks (
    portfolio_id           integer NOT NULL,
    trade_date             date NOT NULL,
    scenario_id            text[] NOT NULL,
    pnl_usd                double precision[],
    pnl_usd_delta_gamma    double precision[],
    gross_exposure_usd     double precision[],
    worst_position_id      integer[],
    worst_position_pnl_usd double precision[],
    method                 text[],
    n_positions            integer[] NOT NULL,
    n_missing              integer[] NOT NULL,
    reason                 text[],
    PRIMARY KEY (portfolio_id, trade_date)
);
INSERT INTO sigmasight.portfolio_stress_result_blocks
SELECT portfolio_id, trade_date, array_agg(scenario_id ORDER BY scenario_id),
       array_agg(pnl_usd ORDER BY scenario_id),
       array_agg(pnl_usd_delta_gamma ORDER BY scenario_id),
       array_agg(gross_exposure_usd ORDER BY scenario_id),
       array_agg(worst_position_id ORDER BY scenario_id),
       array_agg(worst_position_pnl_usd ORDER BY scenario_id),
       array_agg(method ORDER BY scenario_id),
       array_agg(n_positions ORDER BY scenario_id),
       array_agg(n_missing ORDER BY scenario_id),
       CASE WHEN count(reason) > 0 THEN array_agg(reason ORDER BY scenario_id) END
FROM sigmasight.portfolio_stress_results
GROUP BY portfolio_id, trade_date;

-- The options' stress P&L: a row per option-day held the P&L of every scenario of its set;
-- a block holds the P&L of its options one after another (option k's scenarios at
-- (k - 1) x n + 1 .. k x n, n the set's size).
CREATE TABLE sigmasight.position_stress_pnl_blocks (
    portfolio_id        integer NOT NULL,
    trade_date          date NOT NULL,
    set_id              integer NOT NULL,
    position_id         integer[] NOT NULL,
    pnl_usd             real[] NOT NULL,
    pnl_usd_delta_gamma real[] NOT NULL,
    reasons             text[],
    PRIMARY KEY (portfolio_id, trade_date)
);
INSERT INTO sigmasight.position_stress_pnl_blocks
SELECT portfolio_id, trade_date, min(set_id), array_agg(position_id ORDER BY position_id),
       ARRAY(SELECT unnest(array_agg(pnl_usd ORDER BY position_id))),
       ARRAY(SELECT unnest(array_agg(pnl_usd_delta_gamma ORDER BY position_id))),
       CASE WHEN count(reasons) > 0 THEN ARRAY(SELECT unnest(array_agg(
           coalesce(reasons, array_fill(NULL::text, ARRAY[cardinality(pnl_usd)]))
           ORDER BY position_id))) END
FROM sigmasight.position_stress_pnl
GROUP BY portfolio_id, trade_date;

CREATE TABLE sigmasight.portfolio_sector_exposure_blocks (
    portfolio_id       integer NOT NULL,
    trade_date         date NOT NULL,
    sector             text[] NOT NULL,
    long_exposure_usd  double precision[],
    short_exposure_usd double precision[],
    gross_weight       double precision[],
    net_weight         double precision[],
    benchmark_weight   double precision[],
    n_names            integer[] NOT NULL,
    benchmark_as_of    date[],
    reason             text[],
    PRIMARY KEY (portfolio_id, trade_date)
);
INSERT INTO sigmasight.portfolio_sector_exposure_blocks
SELECT portfolio_id, trade_date, array_agg(sector ORDER BY sector),
       array_agg(long_exposure_usd ORDER BY sector),
       array_agg(short_exposure_usd ORDER BY sector),
       array_agg(gross_weight ORDER BY sector),
       array_agg(net_weight ORDER BY sector),
       array_agg(benchmark_weight ORDER BY sector),
       array_agg(n_names ORDER BY sector),
       array_agg(benchmark_as_of ORDER BY sector),
       CASE WHEN count(reason) > 0 THEN array_agg(reason ORDER BY sector) END
FROM sigmasight.portfolio_sector_exposures
GROUP BY portfolio_id, trade_date;

CREATE TABLE sigmasight.portfolio_risk_decomposition_blocks (
    portfolio_id         integer NOT NULL,
    trade_date           date NOT NULL,
    component            text[] NOT NULL,
    exposure_usd         double precision[],
    variance_usd2        double precision[],
    share_of_variance    double precision[],
    vol_contribution_usd double precision[],
    total_vol_usd        double precision[],
    coverage             double precision[],
    reason               text[],
    PRIMARY KEY (portfolio_id, trade_date)
);
INSERT INTO sigmasight.portfolio_risk_decomposition_blocks
SELECT portfolio_id, trade_date, array_agg(component ORDER BY component),
       array_agg(exposure_usd ORDER BY component),
       array_agg(variance_usd2 ORDER BY component),
       array_agg(share_of_variance ORDER BY component),
       array_agg(vol_contribution_usd ORDER BY component),
       array_agg(total_vol_usd ORDER BY component),
       array_agg(coverage ORDER BY component),
       CASE WHEN count(reason) > 0 THEN array_agg(reason ORDER BY component) END
FROM sigmasight.portfolio_risk_decomposition
GROUP BY portfolio_id, trade_date;

DROP TABLE sigmasight.portfolio_sector_exposures;
DROP TABLE sigmasight.portfolio_risk_decomposition;
DROP VIEW sigmasight.position_factor_exposures;
DROP TABLE sigmasight.position_exposures;
DROP VIEW sigmasight.position_stress_results;
DROP TABLE sigmasight.portfolio_stress_results;
DROP TABLE sigmasight.position_values;
DROP TABLE sigmasight.position_greeks;
DROP TABLE sigmasight.position_risk_contributions;
DROP TABLE sigmasight.position_stress_pnl;

CREATE INDEX position_value_blocks_trade_date_brin
    ON sigmasight.position_value_blocks USING brin (trade_date);
CREATE INDEX position_greek_blocks_trade_date_brin
    ON sigmasight.position_greek_blocks USING brin (trade_date);
CREATE INDEX position_stress_pnl_blocks_trade_date_brin
    ON sigmasight.position_stress_pnl_blocks USING brin (trade_date);
CREATE INDEX position_exposure_blocks_trade_date_brin
    ON sigmasight.position_exposure_blocks USING brin (trade_date);
CREATE INDEX position_risk_contribution_blocks_trade_date_brin
    ON sigmasight.position_risk_contribution_blocks USING brin (trade_date);
CREATE INDEX portfolio_stress_result_blocks_trade_date_brin
    ON sigmasight.portfolio_stress_result_blocks USING brin (trade_date);
CREATE INDEX portfolio_sector_exposure_blocks_trade_date_brin
    ON sigmasight.portfolio_sector_exposure_blocks USING brin (trade_date);
CREATE INDEX portfolio_risk_decomposition_blocks_trade_date_brin
    ON sigmasight.portfolio_risk_decomposition_blocks USING brin (trade_date);

ALTER TABLE sigmasight.position_value_blocks
    ALTER COLUMN position_id SET STORAGE EXTERNAL, ALTER COLUMN position_id SET STATISTICS 0,
    ALTER COLUMN quantity SET STORAGE EXTERNAL, ALTER COLUMN quantity SET STATISTICS 0,
    ALTER COLUMN price SET STORAGE EXTERNAL, ALTER COLUMN price SET STATISTICS 0,
    ALTER COLUMN exposure SET STORAGE EXTERNAL, ALTER COLUMN exposure SET STATISTICS 0,
    ALTER COLUMN cost_basis SET STORAGE EXTERNAL, ALTER COLUMN cost_basis SET STATISTICS 0,
    ALTER COLUMN daily_pnl SET STORAGE EXTERNAL, ALTER COLUMN daily_pnl SET STATISTICS 0,
    ALTER COLUMN realized_pnl_usd SET STORAGE EXTERNAL,
    ALTER COLUMN realized_pnl_usd SET STATISTICS 0,
    ALTER COLUMN realized_pnl_cum_usd SET STORAGE EXTERNAL,
    ALTER COLUMN realized_pnl_cum_usd SET STATISTICS 0,
    ALTER COLUMN price_date SET STORAGE EXTERNAL, ALTER COLUMN price_date SET STATISTICS 0,
    ALTER COLUMN pnl_reason SET STATISTICS 0;
ALTER TABLE sigmasight.position_greek_blocks
    ALTER COLUMN position_id SET STORAGE EXTERNAL, ALTER COLUMN position_id SET STATISTICS 0,
    ALTER COLUMN underlying_price SET STORAGE EXTERNAL,
    ALTER COLUMN underlying_price SET STATISTICS 0,
    ALTER COLUMN strike SET STORAGE EXTERNAL, ALTER COLUMN strike SET STATISTICS 0,
    ALTER COLUMN t_years SET STORAGE EXTERNAL, ALTER COLUMN t_years SET STATISTICS 0,
    ALTER COLUMN rate SET STORAGE EXTERNAL, ALTER COLUMN rate SET STATISTICS 0,
    ALTER COLUMN volatility SET STORAGE EXTERNAL, ALTER COLUMN volatility SET STATISTICS 0,
    ALTER COLUMN option_price SET STORAGE EXTERNAL, ALTER COLUMN option_price SET STATISTICS 0,
    ALTER COLUMN delta SET STORAGE EXTERNAL, ALTER COLUMN delta SET STATISTICS 0,
    ALTER COLUMN gamma SET STORAGE EXTERNAL, ALTER COLUMN gamma SET STATISTICS 0,
    ALTER COLUMN theta SET STORAGE EXTERNAL, ALTER COLUMN theta SET STATISTICS 0,
    ALTER COLUMN vega SET STORAGE EXTERNAL, ALTER COLUMN vega SET STATISTICS 0,
    ALTER COLUMN rho SET STORAGE EXTERNAL, ALTER COLUMN rho SET STATISTICS 0,
    ALTER COLUMN position_delta SET STORAGE EXTERNAL, ALTER COLUMN position_delta SET STATISTICS 0,
    ALTER COLUMN position_gamma SET STORAGE EXTERNAL, ALTER COLUMN position_gamma SET STATISTICS 0,
    ALTER COLUMN position_theta SET STORAGE EXTERNAL, ALTER COLUMN position_theta SET STATISTICS 0,
    ALTER COLUMN position_vega SET STORAGE EXTERNAL, ALTER COLUMN position_vega SET STATISTICS 0,
    ALTER COLUMN position_rho SET STORAGE EXTERNAL, ALTER COLUMN position_rho SET STATISTICS 0,
    ALTER COLUMN volatility_source SET STATISTICS 0,
    ALTER COLUMN iv_converged SET STATISTICS 0,
    ALTER COLUMN source SET STATISTICS 0,
    ALTER COLUMN reason SET STATISTICS 0;
ALTER TABLE sigmasight.position_stress_pnl_blocks
    ALTER COLUMN position_id SET STORAGE EXTERNAL, ALTER COLUMN position_id SET STATISTICS 0,
    ALTER COLUMN pnl_usd SET STORAGE EXTERNAL, ALTER COLUMN pnl_usd SET STATISTICS 0,
    ALTER COLUMN pnl_usd_delta_gamma SET STORAGE EXTERNAL,
    ALTER COLUMN pnl_usd_delta_gamma SET STATISTICS 0,
    ALTER COLUMN reasons SET STATISTICS 0;
ALTER TABLE sigmasight.position_exposure_blocks
    ALTER COLUMN position_id SET STORAGE EXTERNAL, ALTER COLUMN position_id SET STATISTICS 0,
    ALTER COLUMN exposure SET STORAGE EXTERNAL, ALTER COLUMN exposure SET STATISTICS 0,
    ALTER COLUMN pnl_usd_per_100bp SET STORAGE EXTERNAL,
    ALTER COLUMN pnl_usd_per_100bp SET STATISTICS 0;
ALTER TABLE sigmasight.position_risk_contribution_blocks
    ALTER COLUMN position_id SET STORAGE EXTERNAL, ALTER COLUMN position_id SET STATISTICS 0,
    ALTER COLUMN exposure_usd SET STORAGE EXTERNAL, ALTER COLUMN exposure_usd SET STATISTICS 0,
    ALTER COLUMN marginal_vol_usd SET STORAGE EXTERNAL,
    ALTER COLUMN marginal_vol_usd SET STATISTICS 0,
    ALTER COLUMN factor_vol_usd SET STORAGE EXTERNAL,
    ALTER COLUMN factor_vol_usd SET STATISTICS 0,
    ALTER COLUMN specific_vol_usd SET STORAGE EXTERNAL,
    ALTER COLUMN specific_vol_usd SET STATISTICS 0,
    ALTER COLUMN share_of_risk SET STORAGE EXTERNAL, ALTER COLUMN share_of_risk SET STATISTICS 0,
    ALTER COLUMN reason SET STATISTICS 0;
ALTER TABLE sigmasight.portfolio_stress_result_blocks
    ALTER COLUMN scenario_id SET STATISTICS 0,
    ALTER COLUMN pnl_usd SET STATISTICS 0,
    ALTER COLUMN pnl_usd_delta_gamma SET STATISTICS 0,
    ALTER COLUMN gross_exposure_usd SET STATISTICS 0,
    ALTER COLUMN worst_position_id SET STATISTICS 0,
    ALTER COLUMN worst_position_pnl_usd SET STATISTICS 0,
    ALTER COLUMN method SET STATISTICS 0,
    ALTER COLUMN n_positions SET STATISTICS 0,
    ALTER COLUMN n_missing SET STATISTICS 0,
    ALTER COLUMN reason SET STATISTICS 0;

ALTER TABLE sigmasight.portfolio_sector_exposure_blocks
    ALTER COLUMN sector SET STATISTICS 0,
    ALTER COLUMN long_exposure_usd SET STATISTICS 0,
    ALTER COLUMN short_exposure_usd SET STATISTICS 0,
    ALTER COLUMN gross_weight SET STATISTICS 0,
    ALTER COLUMN net_weight SET STATISTICS 0,
    ALTER COLUMN benchmark_weight SET STATISTICS 0,
    ALTER COLUMN n_names SET STATISTICS 0,
    ALTER COLUMN benchmark_as_of SET STATISTICS 0,
    ALTER COLUMN reason SET STATISTICS 0;
ALTER TABLE sigmasight.portfolio_risk_decomposition_blocks
    ALTER COLUMN component SET STATISTICS 0,
    ALTER COLUMN exposure_usd SET STATISTICS 0,
    ALTER COLUMN variance_usd2 SET STATISTICS 0,
    ALTER COLUMN share_of_variance SET STATISTICS 0,
    ALTER COLUMN vol_contribution_usd SET STATISTICS 0,
    ALTER COLUMN total_vol_usd SET STATISTICS 0,
    ALTER COLUMN coverage SET STATISTICS 0,
    ALTER COLUMN reason SET STATISTICS 0;

CREATE VIEW sigmasight.portfolio_sector_exposures AS
SELECT b.trade_date, b.portfolio_id, u.sector, u.long_exposure_usd, u.short_exposure_usd,
       u.long_exposure_usd - u.short_exposure_usd AS gross_exposure_usd,
       u.long_exposure_usd + u.short_exposure_usd AS net_exposure_usd,
       u.gross_weight, u.net_weight, u.benchmark_weight,
       u.net_weight - u.benchmark_weight AS active_weight,
       u.n_names, u.benchmark_as_of, u.reason
FROM sigmasight.portfolio_sector_exposure_blocks b
CROSS JOIN LATERAL unnest(b.sector, b.long_exposure_usd, b.short_exposure_usd, b.gross_weight,
                          b.net_weight, b.benchmark_weight, b.n_names, b.benchmark_as_of,
                          b.reason)
    AS u (sector, long_exposure_usd, short_exposure_usd, gross_weight, net_weight,
          benchmark_weight, n_names, benchmark_as_of, reason);

CREATE VIEW sigmasight.portfolio_risk_decomposition AS
SELECT b.trade_date, b.portfolio_id, u.component, u.exposure_usd, u.variance_usd2,
       u.share_of_variance, u.vol_contribution_usd, u.total_vol_usd, u.coverage, u.reason
FROM sigmasight.portfolio_risk_decomposition_blocks b
CROSS JOIN LATERAL unnest(b.component, b.exposure_usd, b.variance_usd2, b.share_of_variance,
                          b.vol_contribution_usd, b.total_vol_usd, b.coverage, b.reason)
    AS u (component, exposure_usd, variance_usd2, share_of_variance, vol_contribution_usd,
          total_vol_usd, coverage, reason);

CREATE VIEW sigmasight.position_values AS
SELECT u.quantity, u.price, abs(u.exposure) AS market_value, u.exposure, u.cost_basis,
       u.exposure - u.cost_basis AS unrealized_pnl, u.daily_pnl, u.realized_pnl_usd,
       u.realized_pnl_cum_usd, b.trade_date, u.position_id, b.portfolio_id, u.price_date,
       CASE WHEN u.price IS NULL THEN 'missing'
            WHEN u.price_date = b.trade_date THEN 'market'
            ELSE 'carried_forward' END AS price_source,
       u.pnl_reason
FROM sigmasight.position_value_blocks b
CROSS JOIN LATERAL unnest(b.position_id, b.quantity, b.price, b.exposure, b.cost_basis,
                          b.daily_pnl, b.realized_pnl_usd, b.realized_pnl_cum_usd,
                          b.price_date, b.pnl_reason)
    AS u (position_id, quantity, price, exposure, cost_basis, daily_pnl, realized_pnl_usd,
          realized_pnl_cum_usd, price_date, pnl_reason);

CREATE VIEW sigmasight.position_greeks AS
SELECT b.trade_date, u.position_id, b.portfolio_id, u.underlying_price, u.strike, u.t_years,
       u.rate, u.volatility, u.volatility_source, u.iv_converged, u.option_price, u.delta,
       u.gamma, u.theta, u.vega, u.rho, u.position_delta, u.position_gamma, u.position_theta,
       u.position_vega, u.position_rho,
       u.position_delta * u.underlying_price / 100.0 AS dollar_delta,
       u.position_delta * u.underlying_price AS delta_adjusted_exposure, u.source, u.reason
FROM sigmasight.position_greek_blocks b
CROSS JOIN LATERAL unnest(b.position_id, b.underlying_price, b.strike, b.t_years, b.rate,
                          b.volatility, b.option_price, b.delta, b.gamma, b.theta, b.vega,
                          b.rho, b.position_delta, b.position_gamma, b.position_theta,
                          b.position_vega, b.position_rho, b.volatility_source, b.iv_converged,
                          b.source, b.reason)
    AS u (position_id, underlying_price, strike, t_years, rate, volatility, option_price, delta,
          gamma, theta, vega, rho, position_delta, position_gamma, position_theta,
          position_vega, position_rho, volatility_source, iv_converged, source, reason);

CREATE VIEW sigmasight.position_exposures AS
SELECT b.trade_date, u.position_id, b.portfolio_id, u.exposure, u.pnl_usd_per_100bp
FROM sigmasight.position_exposure_blocks b
CROSS JOIN LATERAL unnest(b.position_id, b.exposure, b.pnl_usd_per_100bp)
    AS u (position_id, exposure, pnl_usd_per_100bp);

CREATE VIEW sigmasight.position_risk_contributions AS
SELECT b.trade_date, u.position_id, b.portfolio_id, u.exposure_usd, u.marginal_vol_usd,
       u.exposure_usd * u.marginal_vol_usd AS component_vol_usd, u.factor_vol_usd,
       u.specific_vol_usd, u.share_of_risk, u.reason
FROM sigmasight.position_risk_contribution_blocks b
CROSS JOIN LATERAL unnest(b.position_id, b.exposure_usd, b.marginal_vol_usd, b.factor_vol_usd,
                          b.specific_vol_usd, b.share_of_risk, b.reason)
    AS u (position_id, exposure_usd, marginal_vol_usd, factor_vol_usd, specific_vol_usd,
          share_of_risk, reason);

CREATE VIEW sigmasight.portfolio_stress_results AS
SELECT b.trade_date, b.portfolio_id, u.scenario_id, u.pnl_usd, u.pnl_usd_delta_gamma,
       CASE WHEN u.gross_exposure_usd > 0 THEN u.pnl_usd / u.gross_exposure_usd END
           AS pnl_pct_of_gross,
       u.gross_exposure_usd, u.worst_position_id, u.worst_position_pnl_usd, u.method,
       u.n_positions, u.n_missing, u.reason
FROM sigmasight.portfolio_stress_result_blocks b
CROSS JOIN LATERAL unnest(b.scenario_id, b.pnl_usd, b.pnl_usd_delta_gamma, b.gross_exposure_usd,
                          b.worst_position_id, b.worst_position_pnl_usd, b.method,
                          b.n_positions, b.n_missing, b.reason)
    AS u (scenario_id, pnl_usd, pnl_usd_delta_gamma, gross_exposure_usd, worst_position_id,
          worst_position_pnl_usd, method, n_positions, n_missing, reason);

-- The two views over these tables, as sql/0022 and sql/0023 made them (a view that
-- depended on a table is dropped with it).
CREATE VIEW sigmasight.position_stress_pnl AS
SELECT b.trade_date, u.position_id, b.portfolio_id, b.set_id,
       b.pnl_usd[(u.k - 1) * w.n + 1:u.k * w.n] AS pnl_usd,
       b.pnl_usd_delta_gamma[(u.k - 1) * w.n + 1:u.k * w.n] AS pnl_usd_delta_gamma,
       nullif(b.reasons[(u.k - 1) * w.n + 1:u.k * w.n], array_fill(NULL::text, ARRAY[w.n]))
           AS reasons
FROM sigmasight.position_stress_pnl_blocks b
CROSS JOIN LATERAL (SELECT cardinality(b.pnl_usd) / cardinality(b.position_id) AS n) w
CROSS JOIN LATERAL unnest(b.position_id) WITH ORDINALITY AS u (position_id, k);

CREATE VIEW sigmasight.position_stress_results AS
SELECT p.trade_date, p.position_id, p.portfolio_id, s.scenario_id,
       s.pnl_usd::double precision AS pnl_usd,
       coalesce(s.pnl_usd_delta_gamma, s.pnl_usd)::double precision AS pnl_usd_delta_gamma,
       s.reason
FROM sigmasight.position_stress_pnl p
JOIN sigmasight.stress_scenario_sets z USING (set_id)
CROSS JOIN LATERAL unnest(z.scenario_ids, p.pnl_usd, p.pnl_usd_delta_gamma, p.reasons)
    AS s (scenario_id, pnl_usd, pnl_usd_delta_gamma, reason)
UNION ALL
SELECT v.trade_date, v.position_id, v.portfolio_id, r.scenario_id,
       v.exposure * m.move AS pnl_usd,
       v.exposure * m.move AS pnl_usd_delta_gamma,
       CASE WHEN m.symbol IS NULL THEN 'no move for the underlying'
            WHEN m.at IS NULL THEN 'no move for the scenario (stress_moves holds another set)'
            WHEN m.move IS NULL OR m.move = 'NaN' THEN coalesce(m.reason, 'missing beta')
            WHEN v.exposure IS NULL OR v.exposure = 'NaN'
                THEN 'no exposure for the position (unpriced)'
       END AS reason
FROM sigmasight.portfolio_stress_results r
JOIN sigmasight.position_values v
    ON v.portfolio_id = r.portfolio_id AND v.trade_date = r.trade_date AND v.quantity <> 0
JOIN sigmasight.positions p ON p.id = v.position_id AND p.position_type IN ('LONG', 'SHORT')
LEFT JOIN LATERAL (
    SELECT s.symbol, k.at, s.moves[k.at] AS move, s.reasons[k.at] AS reason
    FROM sigmasight.stress_moves s
    JOIN sigmasight.stress_scenario_sets z USING (set_id)
    CROSS JOIN LATERAL (SELECT array_position(z.scenario_ids, r.scenario_id) AS at) k
    WHERE s.trade_date = v.trade_date AND s.symbol = p.underlying
) m ON true
WHERE NOT EXISTS (
    SELECT 1 FROM sigmasight.position_stress_pnl q
    WHERE q.portfolio_id = v.portfolio_id AND q.trade_date = v.trade_date
      AND q.position_id = v.position_id
);

-- A position without its underlying's market beta that day has n_obs 0 and the reason 'no
-- betas for the underlying on this day' (as analytics.exposures gives it).
CREATE VIEW sigmasight.position_factor_exposures AS
SELECT e.trade_date, e.position_id, e.portfolio_id, e.exposure,
       u.beta_market, u.beta_momentum, u.beta_value, u.beta_growth, u.beta_quality, u.beta_size,
       u.beta_low_volatility, u.beta_rates,
       s.short_interest_pct_float / 100.0 AS short_interest,
       coalesce(u.n_obs, 0)::smallint AS n_obs,
       CASE WHEN u.n_obs IS NULL THEN 'no betas for the underlying on this day'
            ELSE u.reason END AS reason,
       e.pnl_usd_per_100bp
FROM sigmasight.position_exposures e
JOIN sigmasight.positions p ON p.id = e.position_id
LEFT JOIN sigmasight.underlying_factor_betas u
    ON u.trade_date = e.trade_date AND u.symbol = p.underlying
LEFT JOIN sigmasight.short_interest s
    ON s.trade_date = e.trade_date AND s.symbol = p.underlying;
