-- depends: 0020_returns_of_stocks_only
-- ANALYZE gathers no statistics for the array columns written per portfolio-day: no query
-- filters or joins on them (the views unnest them; reads find rows by portfolio and day).
-- Element statistics of the correlation arrays (up to about 1,200 values a row, TOASTed) cost
-- autovacuum 16 s of CPU on each ANALYZE of portfolio_correlation_matrices at 1,000 portfolios,
-- in the middle of the backfill that had just written it (0.2 s without them).
-- stress_scenario_sets.scenario_ids keeps its statistics: a set is looked up by it.
ALTER TABLE sigmasight.portfolio_correlation_matrices
    ALTER COLUMN symbols SET STATISTICS 0,
    ALTER COLUMN correlations SET STATISTICS 0,
    ALTER COLUMN pair_obs SET STATISTICS 0,
    ALTER COLUMN cluster_ids SET STATISTICS 0;
ALTER TABLE sigmasight.position_stress_pnl
    ALTER COLUMN pnl_usd SET STATISTICS 0,
    ALTER COLUMN pnl_usd_delta_gamma SET STATISTICS 0,
    ALTER COLUMN reasons SET STATISTICS 0;
