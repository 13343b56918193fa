-- depends: 0002_market_data
-- Position values and daily portfolio snapshots.
CREATE TABLE sigmasight.position_values (
    trade_date     date NOT NULL,
    position_id    integer NOT NULL,
    portfolio_id   integer NOT NULL,
    symbol         text NOT NULL,
    position_type  text NOT NULL,
    quantity       double precision NOT NULL,
    multiplier     integer NOT NULL,
    entry_date     date NOT NULL,
    entry_price    double precision NOT NULL,
    -- price_source: 'market' (close of the day), 'carried_forward' (last close within 5
    -- sessions) or 'missing' (no price: value columns are NULL, never a silent zero).
    price          double precision,
    price_date     date,
    prev_price     double precision,
    price_source   text NOT NULL CHECK (price_source IN ('market', 'carried_forward', 'missing')),
    market_value   double precision,
    exposure       double precision,
    cost_basis     double precision NOT NULL,
    unrealized_pnl double precision,
    daily_pnl      double precision,
    PRIMARY KEY (trade_date, position_id)
);
CREATE INDEX position_values_portfolio_idx ON sigmasight.position_values (portfolio_id, trade_date);

CREATE TABLE sigmasight.portfolio_snapshots (
    trade_date     date NOT NULL,
    portfolio_id   integer NOT NULL,
    total_value    double precision NOT NULL,
    long_exposure  double precision NOT NULL,
    short_exposure double precision NOT NULL,
    gross_exposure double precision NOT NULL,
    net_exposure   double precision NOT NULL,
    daily_pnl      double precision NOT NULL,
    window_pnl     double precision NOT NULL,
    window_start   date NOT NULL,
    unrealized_pnl double precision NOT NULL,
    position_count integer NOT NULL,
    long_count     integer NOT NULL,
    short_count    integer NOT NULL,
    lc_count       integer NOT NULL,
    lp_count       integer NOT NULL,
    sc_count       integer NOT NULL,
    sp_count       integer NOT NULL,
    unpriced_count integer NOT NULL,
    PRIMARY KEY (trade_date, portfolio_id)
);
CREATE INDEX portfolio_snapshots_portfolio_idx ON sigmasight.portfolio_snapshots (portfolio_id, trade_date);
