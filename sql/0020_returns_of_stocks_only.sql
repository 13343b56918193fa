-- depends: 0019_compact_portfolio_day_tables
-- returns holds the daily returns of stocks and ETFs only. Every reader takes the returns of
-- underlyings and factor ETFs (betas, volatility, correlations, risk metrics, the complete-
-- history test of a backfill), and an option's value and P&L come from its prices; the price-
-- jump flags skipped options too. The options' returns were 9 rows in 10 of the table at 1,000
-- portfolios (about 60 bytes per position-day). The `returns` asset no longer writes them, and
-- its next write over a range removes those of the range; this removes the rest. An option
-- symbol is an OCC symbol (analytics/instruments.py: OCC_REGEX).
DELETE FROM sigmasight.returns
WHERE symbol ~ '^[A-Z][A-Z0-9.]{0,5}[0-9]{6}[CP][0-9]{8}$';
