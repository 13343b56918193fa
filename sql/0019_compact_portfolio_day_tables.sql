-- depends: 0018_correlations_uncompressed
-- Issue 10 (compact): the tables written in blocks of rows per portfolio-day (a row per
-- position, scenario, sector, component, factor or view) are indexed by (portfolio_id,
-- trade_date), not by a unique key per row.
--
-- A unique index stores every row's whole key: 34 B per position-day for each position table
-- at 100 portfolios, a fifth of position_values' storage. A non-unique index on the block's key
-- is deduplicated by PostgreSQL (one key, then a list of row pointers): 7 B a row. It serves
-- the same reads (a portfolio's days, the chunks of an asset) and the scoped deletes, and the
-- BRIN indexes on trade_date still serve the deletes over every portfolio.
--
-- A row stays unique per key without the index:
-- - every write replaces whole blocks: one transaction deletes the sessions and portfolios it
--   writes, and the IO manager refuses a row outside those sessions;
-- - the blocking schema check fails a chunk with two rows for one key (checks.KEYS), so no
--   asset downstream runs on them, and the chunks of a write hold disjoint portfolios
--   (test_pipeline.py: a duplicated row fails every table's schema check);
-- - the companion tables (position_risk_contributions, position_stress_pnl) get one row per
--   row of position_values, and the set-based tables one per GROUP BY group.
--
-- position_values and position_factor_exposures are rebuilt with their 8-byte columns first:
-- PostgreSQL aligns a double precision to 8 bytes, and after three 4-byte keys each row lost
-- 4 bytes, then more after the text and smallint columns (136 -> 128 B and 144 -> 136 B a row).
ALTER TABLE sigmasight.position_values RENAME TO position_values_unaligned;
CREATE TABLE sigmasight.position_values (
    quantity             double precision NOT NULL,
    price                double precision,
    market_value         double precision,
    exposure             double precision,
    cost_basis           double precision NOT NULL,
    unrealized_pnl       double precision,
    daily_pnl            double precision,
    realized_pnl_usd     double precision,
    realized_pnl_cum_usd double precision,
    trade_date           date NOT NULL,
    position_id          integer NOT NULL,
    portfolio_id         integer NOT NULL,
    price_date           date,
    price_source         text NOT NULL
        CHECK (price_source IN ('market', 'carried_forward', 'missing')),
    pnl_reason           text
);
INSERT INTO sigmasight.position_values (
    quantity, price, market_value, exposure, cost_basis, unrealized_pnl, daily_pnl,
    realized_pnl_usd, realized_pnl_cum_usd, trade_date, position_id, portfolio_id, price_date,
    price_source, pnl_reason)
SELECT quantity, price, market_value, exposure, cost_basis, unrealized_pnl, daily_pnl,
       realized_pnl_usd, realized_pnl_cum_usd, trade_date, position_id, portfolio_id,
       price_date, price_source, pnl_reason
FROM sigmasight.position_values_unaligned
ORDER BY portfolio_id, trade_date, position_id;
DROP TABLE sigmasight.position_values_unaligned;
CREATE INDEX position_values_portfolio_day_idx
    ON sigmasight.position_values (portfolio_id, trade_date);
CREATE INDEX position_values_trade_date_brin ON sigmasight.position_values
    USING brin (trade_date);

ALTER TABLE sigmasight.position_greeks DROP CONSTRAINT position_greeks_pkey;
CREATE INDEX position_greeks_portfolio_day_idx
    ON sigmasight.position_greeks (portfolio_id, trade_date);

ALTER TABLE sigmasight.position_factor_exposures RENAME TO position_factor_exposures_unaligned;
CREATE TABLE sigmasight.position_factor_exposures (
    -- dollars on the underlying: signed exposure for stocks, delta-adjusted for options; a
    -- factor's dollar exposure is exposure x its beta
    exposure            double precision,
    beta_market         double precision,
    beta_momentum       double precision,
    beta_value          double precision,
    beta_growth         double precision,
    beta_quality        double precision,
    beta_size           double precision,
    beta_low_volatility double precision,
    beta_rates          double precision,
    -- the underlying's short interest as a fraction of float (the Short Interest "beta")
    short_interest      double precision,
    -- dollars lost or made per +100 bp of long Treasury yields (0011)
    pnl_usd_per_100bp   double precision,
    trade_date          date NOT NULL,
    position_id         integer NOT NULL,
    portfolio_id        integer NOT NULL,
    n_obs               smallint NOT NULL,
    -- why a beta is NULL (NULL when every beta is there)
    reason              text
);
INSERT INTO sigmasight.position_factor_exposures (
    exposure, beta_market, beta_momentum, beta_value, beta_growth, beta_quality, beta_size,
    beta_low_volatility, beta_rates, short_interest, pnl_usd_per_100bp, trade_date,
    position_id, portfolio_id, n_obs, reason)
SELECT exposure, beta_market, beta_momentum, beta_value, beta_growth, beta_quality, beta_size,
       beta_low_volatility, beta_rates, short_interest, pnl_usd_per_100bp, trade_date,
       position_id, portfolio_id, n_obs, reason
FROM sigmasight.position_factor_exposures_unaligned
ORDER BY portfolio_id, trade_date, position_id;
DROP TABLE sigmasight.position_factor_exposures_unaligned;
CREATE INDEX position_factor_exposures_portfolio_day_idx
    ON sigmasight.position_factor_exposures (portfolio_id, trade_date);
CREATE INDEX position_factor_exposures_trade_date_brin ON sigmasight.position_factor_exposures
    USING brin (trade_date);

ALTER TABLE sigmasight.position_risk_contributions
    DROP CONSTRAINT position_risk_contributions_pkey;
CREATE INDEX position_risk_contributions_portfolio_day_idx
    ON sigmasight.position_risk_contributions (portfolio_id, trade_date);

ALTER TABLE sigmasight.position_stress_pnl DROP CONSTRAINT position_stress_pnl_pkey;
CREATE INDEX position_stress_pnl_portfolio_day_idx
    ON sigmasight.position_stress_pnl (portfolio_id, trade_date);

ALTER TABLE sigmasight.portfolio_stress_results DROP CONSTRAINT portfolio_stress_results_pkey;
CREATE INDEX portfolio_stress_results_portfolio_day_idx
    ON sigmasight.portfolio_stress_results (portfolio_id, trade_date);

ALTER TABLE sigmasight.portfolio_sector_exposures DROP CONSTRAINT portfolio_sector_exposures_pkey;
CREATE INDEX portfolio_sector_exposures_portfolio_day_idx
    ON sigmasight.portfolio_sector_exposures (portfolio_id, trade_date);

ALTER TABLE sigmasight.portfolio_risk_decomposition
    DROP CONSTRAINT portfolio_risk_decomposition_pkey;
CREATE INDEX portfolio_risk_decomposition_portfolio_day_idx
    ON sigmasight.portfolio_risk_decomposition (portfolio_id, trade_date);

-- These two have had a (portfolio_id, trade_date) index beside their unique key since 0004. The
-- unique key led with trade_date, and served the deletes over every portfolio: a BRIN index
-- does now.
ALTER TABLE sigmasight.portfolio_factor_exposures DROP CONSTRAINT portfolio_factor_exposures_pkey;
CREATE INDEX portfolio_factor_exposures_trade_date_brin
    ON sigmasight.portfolio_factor_exposures USING brin (trade_date);
ALTER TABLE sigmasight.portfolio_greeks DROP CONSTRAINT portfolio_greeks_pkey;
CREATE INDEX portfolio_greeks_trade_date_brin
    ON sigmasight.portfolio_greeks USING brin (trade_date);
