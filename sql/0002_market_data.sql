-- depends: 0001_core
-- Market data assets: securities (unpartitioned), prices, returns and short interest by trading day.
CREATE TABLE sigmasight.securities (
    symbol        text PRIMARY KEY,
    security_type text NOT NULL CHECK (security_type IN ('STOCK', 'ETF', 'OPTION')),
    underlying    text NOT NULL,
    option_right  text,
    strike        double precision,
    expiry        date,
    sector        text,
    industry      text,
    is_factor_etf boolean NOT NULL DEFAULT false
);

CREATE TABLE sigmasight.prices (
    symbol     text NOT NULL,
    trade_date date NOT NULL,
    open       double precision,
    high       double precision,
    low        double precision,
    close      double precision NOT NULL,
    volume     double precision,
    source     text NOT NULL,
    PRIMARY KEY (symbol, trade_date)
);
CREATE INDEX prices_trade_date_idx ON sigmasight.prices (trade_date);

CREATE TABLE sigmasight.returns (
    symbol       text NOT NULL,
    trade_date   date NOT NULL,
    close        double precision NOT NULL,
    prev_close   double precision NOT NULL,
    daily_return double precision NOT NULL,
    PRIMARY KEY (symbol, trade_date)
);
CREATE INDEX returns_trade_date_idx ON sigmasight.returns (trade_date);
