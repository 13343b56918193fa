-- depends: 0012_portfolio_history
-- Issue 12 (portfolio history), the pipeline half: every day valued with that day's holdings
-- (from position_events), realized P&L per position-day, and each portfolio's equity and
-- time-weighted return, which the risk metrics and volatilities use.

-- What the position realized on the day (decrease / close events) and since it opened.
ALTER TABLE sigmasight.position_values
    ADD COLUMN realized_pnl_usd double precision,
    ADD COLUMN realized_pnl_cum_usd double precision;

-- The equity a portfolio starts from (the end of the day before its first return); NULL: the
-- gross value of its first day (`sigmasight equity start` sets it).
ALTER TABLE sigmasight.portfolios ADD COLUMN starting_equity_usd double precision
    CHECK (starting_equity_usd > 0);

-- Per portfolio and day: the P&L (mark to market, realized included), external flows (at the
-- start of the day), equity E_d = E_{d-1} + flows + P&L and the time-weighted return
-- twr_daily = P&L / (E_{d-1} + flows), chained into twr_cumulative since the first row. A run
-- over a window chains onto the row of the session before it, so re-running a past window
-- gives it the same rows.
CREATE TABLE sigmasight.portfolio_returns (
    trade_date           date NOT NULL,
    portfolio_id         integer NOT NULL,
    pnl_usd              double precision,
    realized_pnl_usd     double precision NOT NULL,
    realized_pnl_cum_usd double precision NOT NULL,
    flows_usd            double precision NOT NULL,
    gross_value_usd      double precision NOT NULL,  -- sum of |market value|
    equity_start_usd     double precision,  -- E_{d-1} + flows: the capital at work that day
    equity_usd           double precision,
    twr_daily            double precision,
    twr_cumulative       double precision,
    reason               text,
    PRIMARY KEY (portfolio_id, trade_date)
);

ALTER TABLE sigmasight.portfolio_snapshots
    ADD COLUMN realized_pnl_usd double precision,
    ADD COLUMN realized_pnl_cum_usd double precision,
    ADD COLUMN flows_usd double precision,
    ADD COLUMN equity_usd double precision,
    ADD COLUMN twr_daily double precision,
    ADD COLUMN twr_cumulative double precision;
