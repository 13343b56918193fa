-- depends: 0017_portfolio_day_brin
-- A portfolio-day's correlations (real[], about 4.7 kB for 48 underlyings) go to TOAST, and
-- PostgreSQL first tries to compress them with pglz. Correlations are not repetitive: the
-- attempt fails and the value is stored as it was (4,751 B on average for 1,183 pairs at
-- 1,000 portfolios, the uncompressed size). STORAGE EXTERNAL stores them out of line without
-- the attempt: the same bytes, written in half the time (27,000 rows: 2.0 s -> 0.9 s). The
-- pair counts (smallint[], mostly equal) keep their compression (53 B on average).
ALTER TABLE sigmasight.portfolio_correlation_matrices ALTER COLUMN correlations SET STORAGE EXTERNAL;
