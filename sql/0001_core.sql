-- Users, portfolios, positions and tags: the tables people write (CSV intake, CLI).
CREATE SCHEMA IF NOT EXISTS sigmasight;

CREATE TABLE sigmasight.users (
    id            serial PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sigmasight.portfolios (
    id         serial PRIMARY KEY,
    name       text NOT NULL,
    owner_id   integer NOT NULL REFERENCES sigmasight.users (id) ON DELETE CASCADE,
    source_file text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);

CREATE TABLE sigmasight.positions (
    id            serial PRIMARY KEY,
    portfolio_id  integer NOT NULL REFERENCES sigmasight.portfolios (id) ON DELETE CASCADE,
    symbol        text NOT NULL,
    quantity      double precision NOT NULL CHECK (quantity <> 0),
    entry_price   double precision NOT NULL CHECK (entry_price > 0),
    entry_date    date NOT NULL,
    position_type text NOT NULL CHECK (position_type IN ('LONG', 'SHORT', 'LC', 'LP', 'SC', 'SP')),
    underlying    text NOT NULL,
    option_right  text CHECK (option_right IN ('C', 'P')),
    strike        double precision,
    expiry        date,
    multiplier    integer NOT NULL CHECK (multiplier IN (1, 100)),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (portfolio_id, symbol),
    CHECK ((position_type IN ('LONG', 'SHORT')) = (option_right IS NULL))
);
CREATE INDEX positions_portfolio_idx ON sigmasight.positions (portfolio_id);

CREATE TABLE sigmasight.tags (
    id         serial PRIMARY KEY,
    user_id    integer NOT NULL REFERENCES sigmasight.users (id) ON DELETE CASCADE,
    name       text NOT NULL,
    color      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

CREATE TABLE sigmasight.position_tags (
    position_id integer NOT NULL REFERENCES sigmasight.positions (id) ON DELETE CASCADE,
    tag_id      integer NOT NULL REFERENCES sigmasight.tags (id) ON DELETE CASCADE,
    PRIMARY KEY (position_id, tag_id)
);
CREATE INDEX position_tags_tag_idx ON sigmasight.position_tags (tag_id);
