-- depends: 0013_portfolio_returns
-- A position's stress P&L that could not be computed (no beta for a shocked factor, no move
-- for its underlying in a replay, an option without Greeks) is NaN in position_stress_pnl;
-- `reasons` says why, per scenario in the set's order (NULL when every P&L of the row has
-- none to give), and the view shows it beside the P&L.
ALTER TABLE sigmasight.position_stress_pnl ADD COLUMN reasons text[];

CREATE OR REPLACE VIEW sigmasight.position_stress_results AS
SELECT p.trade_date, p.position_id, p.portfolio_id, s.scenario_id,
       s.pnl_usd::double precision AS pnl_usd,
       s.pnl_usd_delta_gamma::double precision AS pnl_usd_delta_gamma,
       s.reason
FROM sigmasight.position_stress_pnl p
JOIN sigmasight.stress_scenario_sets z USING (set_id)
CROSS JOIN LATERAL unnest(z.scenario_ids, p.pnl_usd, p.pnl_usd_delta_gamma, p.reasons)
    AS s (scenario_id, pnl_usd, pnl_usd_delta_gamma, reason);
