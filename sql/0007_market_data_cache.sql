-- depends: 0006_intake
-- Market data providers' own state (sigmasight_pipeline/resources/rate_limit.py and
-- provider_cache.py): the shared rate limiter's request log and the caches that make a re-run
-- ask a provider nothing it already answered. Keyed by provider name; no asset writes here.

-- Sliding-window log of granted requests per limiter (e.g. 'polygon:<key hash>'); rows older
-- than the window are deleted as new requests are granted. Times are the server's
-- clock_timestamp(), so every process is ordered by one clock.
CREATE TABLE sigmasight.rate_limit_log (
    limiter text NOT NULL,
    sent_at timestamptz NOT NULL
);
CREATE INDEX rate_limit_log_idx ON sigmasight.rate_limit_log (limiter, sent_at);

-- Short interest as published per settlement date (FINRA: mid-month and month end).
CREATE TABLE sigmasight.provider_short_interest (
    provider        text NOT NULL,
    symbol          text NOT NULL,
    settlement_date date NOT NULL,
    short_interest  double precision,
    days_to_cover   double precision,
    PRIMARY KEY (provider, symbol, settlement_date)
);

-- Which settlement dates were asked for, per symbol, and when: a settlement asked for after
-- it was surely published is final (present or not), so it is never asked again.
CREATE TABLE sigmasight.provider_short_interest_checks (
    provider     text NOT NULL,
    symbol       text NOT NULL,
    checked_from date NOT NULL,
    checked_to   date NOT NULL CHECK (checked_to >= checked_from),
    checked_at   timestamptz NOT NULL,
    PRIMARY KEY (provider, symbol)
);

-- Free float (shares), the provider's current figure; NULL when the provider has none.
CREATE TABLE sigmasight.provider_free_float (
    provider       text NOT NULL,
    symbol         text NOT NULL,
    free_float     double precision CHECK (free_float > 0),
    effective_date date,
    checked_at     timestamptz NOT NULL,
    PRIMARY KEY (provider, symbol)
);

-- Sector and industry (NULLs when the provider does not know the symbol).
CREATE TABLE sigmasight.provider_security_info (
    provider   text NOT NULL,
    symbol     text NOT NULL,
    sector     text,
    industry   text,
    checked_at timestamptz NOT NULL,
    PRIMARY KEY (provider, symbol)
);

-- Split events and the execution-date ranges already asked for (all symbols at once).
CREATE TABLE sigmasight.provider_splits (
    provider       text NOT NULL,
    symbol         text NOT NULL,
    execution_date date NOT NULL,
    split_from     double precision NOT NULL CHECK (split_from > 0),
    split_to       double precision NOT NULL CHECK (split_to > 0),
    PRIMARY KEY (provider, symbol, execution_date)
);
CREATE TABLE sigmasight.provider_splits_checks (
    provider     text NOT NULL,
    checked_from date NOT NULL,
    checked_to   date NOT NULL CHECK (checked_to >= checked_from),
    checked_at   timestamptz NOT NULL
);
CREATE INDEX provider_splits_checks_idx
    ON sigmasight.provider_splits_checks (provider, checked_from, checked_to);
