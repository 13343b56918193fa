-- depends: 0021_no_statistics_on_array_columns
-- Issue 10 (compact): a stock's stress P&L is its exposure x its underlying's move, so it is
-- no longer stored per position-day. stress_moves keeps each underlying's move under every
-- scenario once per day (a symbol-level asset), position_stress_pnl keeps the options' rows
-- (fully revalued), and the view position_stress_results computes the stocks' rows on read:
-- the same float8 product the stress asset sums, so the portfolio's P&L is still its
-- positions'. At 1,000 portfolios the stocks' rows were about 110 B of the 193 B per
-- position-day of position_stress_pnl.
CREATE TABLE sigmasight.stress_moves (
    trade_date date NOT NULL,
    symbol     text NOT NULL,
    -- the scenario set (stress_scenario_sets) whose order the arrays follow
    set_id     integer NOT NULL,
    -- the underlying's move (a fraction) per scenario, NULL where there is none
    moves      double precision[] NOT NULL,
    -- why a move is NULL, per scenario (NULL when every move is there)
    reasons    text[],
    PRIMARY KEY (trade_date, symbol)
);
ALTER TABLE sigmasight.stress_moves
    ALTER COLUMN moves SET STATISTICS 0,
    ALTER COLUMN reasons SET STATISTICS 0;

CREATE VIEW sigmasight.stress_underlying_moves AS
SELECT m.trade_date, m.symbol, s.scenario_id, s.move, s.reason
FROM sigmasight.stress_moves m
JOIN sigmasight.stress_scenario_sets z USING (set_id)
CROSS JOIN LATERAL unnest(z.scenario_ids, m.moves, m.reasons) AS s (scenario_id, move, reason);

-- The options' rows as stored; then every stock held at the close of a portfolio-day with
-- stress results, per scenario of those results: exposure x move. Rows stored for a stock
-- (written before this migration, until the next backfill replaces them) are shown as stored,
-- not computed again.
CREATE OR REPLACE VIEW sigmasight.position_stress_results AS
SELECT p.trade_date, p.position_id, p.portfolio_id, s.scenario_id,
       s.pnl_usd::double precision AS pnl_usd,
       coalesce(s.pnl_usd_delta_gamma, s.pnl_usd)::double precision AS pnl_usd_delta_gamma,
       s.reason
FROM sigmasight.position_stress_pnl p
JOIN sigmasight.stress_scenario_sets z USING (set_id)
CROSS JOIN LATERAL unnest(z.scenario_ids, p.pnl_usd, p.pnl_usd_delta_gamma, p.reasons)
    AS s (scenario_id, pnl_usd, pnl_usd_delta_gamma, reason)
UNION ALL
SELECT v.trade_date, v.position_id, v.portfolio_id, r.scenario_id,
       v.exposure * m.move AS pnl_usd,
       v.exposure * m.move AS pnl_usd_delta_gamma,
       CASE WHEN m.symbol IS NULL THEN 'no move for the underlying'
            WHEN m.at IS NULL THEN 'no move for the scenario (stress_moves holds another set)'
            WHEN m.move IS NULL OR m.move = 'NaN' THEN coalesce(m.reason, 'missing beta')
            WHEN v.exposure IS NULL OR v.exposure = 'NaN'
                THEN 'no exposure for the position (unpriced)'
       END AS reason
FROM sigmasight.portfolio_stress_results r
JOIN sigmasight.position_values v
    ON v.portfolio_id = r.portfolio_id AND v.trade_date = r.trade_date AND v.quantity <> 0
JOIN sigmasight.positions p ON p.id = v.position_id AND p.position_type IN ('LONG', 'SHORT')
LEFT JOIN LATERAL (
    SELECT s.symbol, k.at, s.moves[k.at] AS move, s.reasons[k.at] AS reason
    FROM sigmasight.stress_moves s
    JOIN sigmasight.stress_scenario_sets z USING (set_id)
    CROSS JOIN LATERAL (SELECT array_position(z.scenario_ids, r.scenario_id) AS at) k
    WHERE s.trade_date = v.trade_date AND s.symbol = p.underlying
) m ON true
WHERE NOT EXISTS (
    SELECT 1 FROM sigmasight.position_stress_pnl q
    WHERE q.portfolio_id = v.portfolio_id AND q.trade_date = v.trade_date
      AND q.position_id = v.position_id
);
