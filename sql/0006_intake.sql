-- depends: 0005_read_api
-- Portfolio CSV intake (sigmasight_pipeline/intake.py): one row per file loaded by the inbox
-- sensor or `sigmasight ingest`, written in the same transaction as the positions.
--
-- It makes intake crash-consistent and idempotent: a file whose sha256 equals the portfolio's
-- current load (portfolio_updated_at = portfolios.updated_at, i.e. nothing replaced the
-- positions since) is "already loaded": it is only moved to processed/<stored_as>, never
-- loaded twice. The sensor requests the backfill run of every load whose id is above its
-- cursor; loads take an advisory lock, so ids commit in order and none is skipped.
CREATE TABLE sigmasight.portfolio_loads (
    id                   bigserial PRIMARY KEY,
    portfolio_id         integer NOT NULL REFERENCES sigmasight.portfolios (id) ON DELETE CASCADE,
    sha256               text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    file_name            text NOT NULL,
    stored_as            text NOT NULL,
    positions            integer NOT NULL,
    replaced             boolean NOT NULL,
    loaded_by            text NOT NULL,
    portfolio_updated_at timestamptz NOT NULL,
    loaded_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX portfolio_loads_portfolio_idx ON sigmasight.portfolio_loads (portfolio_id, id);
