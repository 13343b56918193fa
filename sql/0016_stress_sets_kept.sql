-- depends: 0015_linear_stress_once
-- position_stress_pnl.set_id names the scenario set whose order its arrays follow. Its foreign
-- key checked every row written, one trigger call per row: 0.3 s of a daily run's 50,000
-- position rows at 1,000 portfolios, about 25 s of a 90-session backfill. The writer takes the
-- id from stress_scenario_sets in the same run (get or create, `scenario_set_id`), so the key
-- guarded only against a set deleted or reordered while rows follow it: that is refused here,
-- once per change of the (small, append-only) set table instead of once per row written.
ALTER TABLE sigmasight.position_stress_pnl DROP CONSTRAINT position_stress_pnl_set_id_fkey;

CREATE FUNCTION sigmasight.refuse_scenario_set_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stress scenario set % is kept as it is: position_stress_pnl arrays follow '
        'its order', OLD.set_id
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER stress_scenario_sets_kept
    BEFORE DELETE ON sigmasight.stress_scenario_sets
    FOR EACH ROW EXECUTE FUNCTION sigmasight.refuse_scenario_set_change();
CREATE TRIGGER stress_scenario_sets_order_kept
    BEFORE UPDATE ON sigmasight.stress_scenario_sets
    FOR EACH ROW WHEN (OLD.scenario_ids IS DISTINCT FROM NEW.scenario_ids
                       OR OLD.set_id IS DISTINCT FROM NEW.set_id)
    EXECUTE FUNCTION sigmasight.refuse_scenario_set_change();
