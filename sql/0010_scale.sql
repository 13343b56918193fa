-- depends: 0009_data_quality
-- Issue 10 (scale): compact per-position-day tables, keyed for reads by portfolio.
--
-- Every position-day table is read by portfolio and day (the read API, each chunk of an asset)
-- and replaced by day range and portfolio (a run's partitions and scope): its primary key leads
-- with portfolio_id, and a BRIN index on trade_date (a few pages for millions of rows) serves
-- range deletes over every portfolio. Attributes of the position itself (symbol, type,
-- multiplier, entry, underlying) live in `positions` only.

-- position_values: the day's numbers only.
ALTER TABLE sigmasight.position_values
    DROP COLUMN symbol, DROP COLUMN position_type, DROP COLUMN multiplier,
    DROP COLUMN entry_date, DROP COLUMN entry_price, DROP COLUMN prev_price;
ALTER TABLE sigmasight.position_values DROP CONSTRAINT position_values_pkey;
DROP INDEX sigmasight.position_values_portfolio_idx;
ALTER TABLE sigmasight.position_values ADD PRIMARY KEY (portfolio_id, trade_date, position_id);
CREATE INDEX position_values_trade_date_brin ON sigmasight.position_values
    USING brin (trade_date);

-- position_greeks: option positions only (a stock's Greeks are by definition delta 1 per share
-- and zero otherwise: portfolio_greeks and the read API add them from position_values).
DELETE FROM sigmasight.position_greeks WHERE source = 'stock';
ALTER TABLE sigmasight.position_greeks
    DROP COLUMN symbol, DROP COLUMN position_type, DROP COLUMN quantity,
    DROP COLUMN multiplier, DROP COLUMN underlying;
ALTER TABLE sigmasight.position_greeks DROP CONSTRAINT position_greeks_pkey;
DROP INDEX sigmasight.position_greeks_portfolio_idx;
ALTER TABLE sigmasight.position_greeks ADD PRIMARY KEY (portfolio_id, trade_date, position_id);
ALTER TABLE sigmasight.position_greeks DROP CONSTRAINT position_greeks_source_check;
ALTER TABLE sigmasight.position_greeks
    ADD CONSTRAINT position_greeks_source_check CHECK (source IN ('model', 'fallback', 'expired'));
CREATE INDEX position_greeks_trade_date_brin ON sigmasight.position_greeks
    USING brin (trade_date);

-- position_factor_exposures: wide, one row per position-day with a beta per factor (the long
-- table stored every text column on every (position, day, factor) row). Its rows are derived:
-- they are recomputed by the next backfill.
DROP TABLE sigmasight.position_factor_exposures;
CREATE TABLE sigmasight.position_factor_exposures (
    trade_date          date NOT NULL,
    position_id         integer NOT NULL,
    portfolio_id        integer NOT NULL,
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
    n_obs               smallint NOT NULL,
    -- why a beta is NULL (NULL when every beta is there)
    reason              text,
    PRIMARY KEY (portfolio_id, trade_date, position_id)
);
CREATE INDEX position_factor_exposures_trade_date_brin ON sigmasight.position_factor_exposures
    USING brin (trade_date);
