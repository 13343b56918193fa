-- depends: 0016_stress_sets_kept
-- A run replaces its sessions' rows with `DELETE ... WHERE trade_date` over every portfolio
-- (`TRUE` for an unscoped run). The portfolio-day tables' primary keys lead with portfolio_id,
-- so that delete read the whole table: 0.3-0.45 s each for portfolio_stress_results,
-- portfolio_sector_exposures and portfolio_risk_decomposition in a daily run at 1,000
-- portfolios (1.8 M, 0.9 M and 0.9 M rows after a 90-session backfill), and growing with the
-- history and the book. A BRIN index on trade_date (24 kB at that size) excludes every block
-- range of older sessions, as the position-day tables' do (0010, 0011): 344 ms -> 31 ms for
-- the stress results' day. The tables with one row per portfolio-day get one too, for the
-- same deletes on a larger book.
CREATE INDEX portfolio_stress_results_trade_date_brin
    ON sigmasight.portfolio_stress_results USING brin (trade_date);
CREATE INDEX portfolio_sector_exposures_trade_date_brin
    ON sigmasight.portfolio_sector_exposures USING brin (trade_date);
CREATE INDEX portfolio_risk_decomposition_trade_date_brin
    ON sigmasight.portfolio_risk_decomposition USING brin (trade_date);
CREATE INDEX portfolio_concentration_trade_date_brin
    ON sigmasight.portfolio_concentration USING brin (trade_date);
CREATE INDEX portfolio_correlation_matrices_trade_date_brin
    ON sigmasight.portfolio_correlation_matrices USING brin (trade_date);
CREATE INDEX portfolio_volatility_trade_date_brin
    ON sigmasight.portfolio_volatility USING brin (trade_date);
CREATE INDEX portfolio_returns_trade_date_brin
    ON sigmasight.portfolio_returns USING brin (trade_date);
