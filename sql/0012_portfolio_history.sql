-- depends: 0011_risk_depth
-- Issue 12 (portfolio history): holdings that change over time, realized P&L, cash flows and
-- target prices. Loader: sigmasight_pipeline/portfolios.py (`load_portfolio`) with the diff in
-- sigmasight_pipeline/holdings/; the math in sigmasight_pipeline/analytics/holdings.py.
--
-- A re-upload no longer deletes positions: it is diffed against the holdings open on its
-- effective session and appends `position_events` dated on that session. Events are never
-- updated or deleted, so the holdings of any past day (quantity, average cost, realized P&L)
-- are derived from the events alone (`analytics.holdings.daily_holdings`); a position's
-- `quantity` and `entry_price` (the file's, as last loaded) and `closed_on` are only its
-- current state.

-- A position closes at the close of `closed_on` (NULL while open). It is held on that session
-- (valued, its realized P&L counted) and not after. Symbols are unique among OPEN positions
-- only: a closed position and a reopened one of the same symbol live side by side.
ALTER TABLE sigmasight.positions ADD COLUMN closed_on date;
ALTER TABLE sigmasight.positions ADD CONSTRAINT positions_closed_after_entry
    CHECK (closed_on IS NULL OR closed_on >= entry_date);
ALTER TABLE sigmasight.positions DROP CONSTRAINT positions_portfolio_id_symbol_key;
CREATE UNIQUE INDEX positions_open_symbol_idx
    ON sigmasight.positions (portfolio_id, symbol) WHERE closed_on IS NULL;

-- The session a load's changes are dated (the latest closed session when loaded, or
-- `sigmasight ingest --as-of`); NULL for loads made before this migration.
ALTER TABLE sigmasight.portfolio_loads ADD COLUMN effective_session date;

-- Every change of a position's quantity. quantity_change is signed (a sale of a long and a
-- cover of a short have opposite signs): the position's quantity on a day is the sum of its
-- changes dated on or before it. price: per unit (per share, per option contract before the
-- multiplier); price_source: 'file' (the file's entry price), 'close:<source>' (that session's
-- close, from sigmasight.prices or the market data provider) or 'expiry:<underlying>
-- close:<source>' (an option that expired before the session, settled at its intrinsic value
-- from the underlying's close on its expiry session). realized_pnl_usd
-- (decrease and close only) = (price - average cost before) x (-quantity_change) x multiplier.
CREATE TABLE sigmasight.position_events (
    id               bigserial PRIMARY KEY,
    position_id      integer NOT NULL REFERENCES sigmasight.positions (id) ON DELETE CASCADE,
    portfolio_id     integer NOT NULL,  -- the position's (no foreign key: the position's cascades)
    event_date       date NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('open', 'increase', 'decrease', 'close')),
    quantity_change  double precision NOT NULL CHECK (quantity_change <> 0),
    price            double precision NOT NULL CHECK (price >= 0),
    price_source     text NOT NULL,
    realized_pnl_usd double precision,
    load_id          bigint REFERENCES sigmasight.portfolio_loads (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind IN ('decrease', 'close')) = (realized_pnl_usd IS NOT NULL)),
    -- 0 only when an expired option is settled worthless
    CHECK (price > 0 OR kind IN ('decrease', 'close'))
);
CREATE INDEX position_events_portfolio_idx
    ON sigmasight.position_events (portfolio_id, event_date);
CREATE INDEX position_events_position_idx ON sigmasight.position_events (position_id, id);

-- Positions that predate history: one `open` event each, on the entry date at the entry price,
-- from the load that wrote them when it is known.
INSERT INTO sigmasight.position_events
    (position_id, portfolio_id, event_date, kind, quantity_change, price, price_source, load_id)
SELECT p.id, p.portfolio_id, p.entry_date, 'open', p.quantity, p.entry_price, 'file',
       (SELECT max(l.id) FROM sigmasight.portfolio_loads l
        WHERE l.portfolio_id = f.id AND l.portfolio_updated_at = f.updated_at)
FROM sigmasight.positions p
JOIN sigmasight.portfolios f ON f.id = p.portfolio_id
ORDER BY p.id;

-- Contributions (amount_usd > 0) and withdrawals (< 0): external cash flows, counted at the
-- start of the session change_date (always a session). Buying or selling positions with the
-- portfolio's own cash is not a flow.
CREATE TABLE sigmasight.equity_changes (
    id           bigserial PRIMARY KEY,
    portfolio_id integer NOT NULL REFERENCES sigmasight.portfolios (id) ON DELETE CASCADE,
    change_date  date NOT NULL,
    amount_usd   double precision NOT NULL CHECK (amount_usd <> 0),
    kind         text NOT NULL CHECK (kind IN ('contribution', 'withdrawal')),
    note         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'contribution') = (amount_usd > 0))
);
CREATE INDEX equity_changes_portfolio_idx
    ON sigmasight.equity_changes (portfolio_id, change_date);

-- A position's target (and optional downside) price per unit, applying from session set_on
-- until a later row; set again on the same session, it is replaced.
CREATE TABLE sigmasight.target_prices (
    position_id    integer NOT NULL REFERENCES sigmasight.positions (id) ON DELETE CASCADE,
    target_price   double precision NOT NULL CHECK (target_price > 0),
    downside_price double precision CHECK (downside_price > 0),
    set_on         date NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (position_id, set_on)
);
