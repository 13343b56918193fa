-- depends: 0022_stock_stress_from_moves
-- Issue 10 (compact): a position's factor betas are its underlying's, so they are no longer
-- copied onto every position-day. position_exposures stores what is the position's own (its
-- exposure on the underlying and its P&L per +100 bp of yields); the view
-- position_factor_exposures gives the same wide rows as before, the betas, their n_obs and
-- the reason a beta is missing read from factor_betas (the view underlying_factor_betas,
-- one wide row per day and underlying) and the short interest from short_interest. At 1,000
-- portfolios the copied columns took about 81 B of the 153 B per position-day.
--
-- The rows already written keep their exposure and P&L per 100 bp; their betas are
-- factor_betas' of the same day and underlying, which the asset copied them from.
CREATE TABLE sigmasight.position_exposures (
    -- dollars on the underlying: signed exposure for stocks, delta-adjusted for options; a
    -- factor's dollar exposure is exposure x its beta
    exposure          double precision,
    -- dollars lost or made per +100 bp of long Treasury yields (0011)
    pnl_usd_per_100bp double precision,
    trade_date        date NOT NULL,
    position_id       integer NOT NULL,
    portfolio_id      integer NOT NULL
);
INSERT INTO sigmasight.position_exposures (
    exposure, pnl_usd_per_100bp, trade_date, position_id, portfolio_id)
SELECT exposure, pnl_usd_per_100bp, trade_date, position_id, portfolio_id
FROM sigmasight.position_factor_exposures
ORDER BY portfolio_id, trade_date, position_id;
DROP TABLE sigmasight.position_factor_exposures;
CREATE INDEX position_exposures_portfolio_day_idx
    ON sigmasight.position_exposures (portfolio_id, trade_date);
CREATE INDEX position_exposures_trade_date_brin ON sigmasight.position_exposures
    USING brin (trade_date);

-- Per day and symbol: its beta to each factor (NULL where factor_betas has none), the market
-- beta's n_obs, and which betas are missing and why ('Momentum: only 12 observations (< 20);
-- Rates: no beta for the underlying on this day'), NULL when every beta is there.
CREATE VIEW sigmasight.underlying_factor_betas AS
SELECT b.trade_date, b.symbol,
       max(b.beta) FILTER (WHERE b.factor = 'Market') AS beta_market,
       max(b.beta) FILTER (WHERE b.factor = 'Momentum') AS beta_momentum,
       max(b.beta) FILTER (WHERE b.factor = 'Value') AS beta_value,
       max(b.beta) FILTER (WHERE b.factor = 'Growth') AS beta_growth,
       max(b.beta) FILTER (WHERE b.factor = 'Quality') AS beta_quality,
       max(b.beta) FILTER (WHERE b.factor = 'Size') AS beta_size,
       max(b.beta) FILTER (WHERE b.factor = 'Low Volatility') AS beta_low_volatility,
       max(b.beta) FILTER (WHERE b.factor = 'Rates') AS beta_rates,
       max(b.n_obs) FILTER (WHERE b.factor = 'Market') AS n_obs,
       (SELECT string_agg(f.factor || ': '
                          || coalesce(r.reason, 'no beta for the underlying on this day'),
                          '; ' ORDER BY f.k)
        FROM unnest(ARRAY['Market', 'Momentum', 'Value', 'Growth', 'Quality', 'Size',
                          'Low Volatility', 'Rates']) WITH ORDINALITY AS f (factor, k)
        LEFT JOIN unnest(array_agg(b.factor), array_agg(b.beta), array_agg(b.reason))
            AS r (factor, beta, reason) ON r.factor = f.factor
        WHERE r.beta IS NULL) AS reason
FROM sigmasight.factor_betas b
WHERE b.factor IN ('Market', 'Momentum', 'Value', 'Growth', 'Quality', 'Size', 'Low Volatility',
                   'Rates')
GROUP BY b.trade_date, b.symbol;

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
