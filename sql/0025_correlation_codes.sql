-- depends: 0024_portfolio_day_blocks
-- Issue 10 (compact): a portfolio-day's correlations are stored as codes, round(rho x 32767) in
-- a smallint (2 bytes instead of a real's 4): rho to within 1.5e-5. A correlation over 90
-- sessions has a standard error of about (1 - rho^2) / sqrt(90), 0.1 at rho = 0 and 0.05 at
-- 0.7: its fifth decimal says nothing. The clusters, the average correlations and the
-- effective number of bets are computed from the unrounded matrix before it is stored. At
-- 1,000 portfolios the correlations took about 90 of the 127 bytes per position-day of
-- portfolio_correlation_matrices.
ALTER TABLE sigmasight.portfolio_correlation_matrices ADD COLUMN correlation_codes smallint[];
UPDATE sigmasight.portfolio_correlation_matrices
SET correlation_codes = ARRAY(
    SELECT CASE WHEN c IS NULL OR c = 'NaN' THEN NULL ELSE round(c * 32767)::smallint END
    FROM unnest(correlations) WITH ORDINALITY AS u (c, k) ORDER BY k);
ALTER TABLE sigmasight.portfolio_correlation_matrices
    ALTER COLUMN correlation_codes SET NOT NULL,
    ALTER COLUMN correlation_codes SET STORAGE EXTERNAL,
    ALTER COLUMN correlation_codes SET STATISTICS 0;
DROP VIEW sigmasight.portfolio_correlations;
ALTER TABLE sigmasight.portfolio_correlation_matrices DROP COLUMN correlations;

-- As sql/0011 made it, the correlation decoded: code / 32767.
CREATE VIEW sigmasight.portfolio_correlations AS
SELECT m.trade_date, m.portfolio_id, m.symbols[i] AS symbol_a, m.symbols[j] AS symbol_b,
       m.correlation_codes[(i - 1) * n - (i - 1) * i / 2 + (j - i)] / 32767.0::double precision
           AS correlation,
       m.pair_obs[(i - 1) * n - (i - 1) * i / 2 + (j - i)] AS n_obs,
       CASE WHEN m.correlation_codes[(i - 1) * n - (i - 1) * i / 2 + (j - i)] IS NULL THEN
           CASE WHEN m.pair_obs[(i - 1) * n - (i - 1) * i / 2 + (j - i)] < 20
                THEN m.pair_obs[(i - 1) * n - (i - 1) * i / 2 + (j - i)]
                     || ' common sessions < 20'
                ELSE 'a series is constant on the common sessions' END
       END AS reason
FROM sigmasight.portfolio_correlation_matrices m
CROSS JOIN LATERAL (SELECT cardinality(m.symbols) AS n) size
CROSS JOIN LATERAL generate_series(1, size.n) AS i
CROSS JOIN LATERAL generate_series(i + 1, size.n) AS j;
