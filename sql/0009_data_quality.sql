-- depends: 0008_operations
-- Issue 9 (data quality): nothing wrong passes silently.
-- A close <= 0 is never a price (checked on every new row; rows stored before are left alone).
ALTER TABLE sigmasight.prices
    ADD CONSTRAINT prices_close_positive CHECK (close > 0) NOT VALID;

-- Every wanted (symbol, session) that has no price, and why (see analytics/quality.py):
-- failed (the provider's message; fetched again next run), rejected (a bad bar), no_data,
-- not_published (no bar for any stock that session; fetched again next run).
CREATE TABLE sigmasight.price_issues (
    trade_date date NOT NULL,
    symbol     text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('failed', 'rejected', 'no_data', 'not_published')),
    detail     text NOT NULL,
    PRIMARY KEY (trade_date, symbol)
);
CREATE INDEX price_issues_symbol_idx ON sigmasight.price_issues (symbol, trade_date);

-- A daily move beyond the jump threshold: 'split' when a split on record explains it (the
-- closes are not split-adjusted), else why it is suspicious. NULL for an ordinary day.
ALTER TABLE sigmasight.returns ADD COLUMN flag text;
