-- depends: 0014_position_stress_reasons
-- A stock's (any linear position's) delta-gamma estimate is its P&L: it is stored once, in
-- pnl_usd, and its pnl_usd_delta_gamma array is NULL (about a third less to write and store
-- per position-day); the view shows pnl_usd for it, as before.
ALTER TABLE sigmasight.position_stress_pnl ALTER COLUMN pnl_usd_delta_gamma DROP NOT NULL;

CREATE OR REPLACE VIEW sigmasight.position_stress_results AS
SELECT p.trade_date, p.position_id, p.portfolio_id, s.scenario_id,
       s.pnl_usd::double precision AS pnl_usd,
       coalesce(s.pnl_usd_delta_gamma, s.pnl_usd)::double precision AS pnl_usd_delta_gamma,
       s.reason
FROM sigmasight.position_stress_pnl p
JOIN sigmasight.stress_scenario_sets z USING (set_id)
CROSS JOIN LATERAL unnest(z.scenario_ids, p.pnl_usd, p.pnl_usd_delta_gamma, p.reasons)
    AS s (scenario_id, pnl_usd, pnl_usd_delta_gamma, reason);
