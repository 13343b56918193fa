"""The asset jobs' executor: two steps at a time in threads, the long ones first, with the
rows of one step at a time."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterInstance
from psycopg import sql

from sigmasight_pipeline import executor, runs
from sigmasight_pipeline.resources.database import connect
from sigmasight_pipeline.resources.tables import query_frame
from sigmasight_pipeline_tests.conftest import long_steps_started_first, overlapping, step_spans


def dated_tables(url: str) -> list[str]:
    frame = query_frame(
        url,
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'sigmasight' "
        "AND column_name = 'trade_date' ORDER BY 1",
    )
    return list(frame["table_name"])


def rows_between(url: str, table: str, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
    with connect(url) as conn:
        width = len(conn.execute(sql.SQL("SELECT * FROM sigmasight.{} LIMIT 0").format(
            sql.Identifier(table))).description)  # fmt: skip
    order = sql.SQL(", ").join(sql.Literal(i) for i in range(1, width + 1))
    query = sql.SQL(
        "SELECT * FROM sigmasight.{} WHERE trade_date BETWEEN {} AND {} ORDER BY {}"
    ).format(sql.Identifier(table), sql.Literal(first.date()), sql.Literal(last.date()), order)
    return query_frame(url, query)


def window_run(instance: DagsterInstance, outcomes) -> dict[str, tuple[float, float]]:
    """The step spans of the backfill's run of the portfolio assets."""
    spans = [step_spans(instance, o.run_id) for o in outcomes]
    return next(s for s in spans if "portfolio_correlations" in s)


def test_a_backfill_overlaps_steps_and_starts_the_long_ones_first(
    dagster_instance: DagsterInstance, demo_backfill
) -> None:
    """The window run has two steps in flight; when position_greeks is done, the steps tagged
    START_EARLY that it readies (portfolio_correlations) start before the untagged ones
    (portfolio_concentration and portfolio_greeks sort before it by name)."""
    _, outcomes = demo_backfill
    spans = window_run(dagster_instance, outcomes)
    assert overlapping(spans)
    assert long_steps_started_first(spans), spans


def test_steps_one_at_a_time_write_the_rows_of_two_at_once(
    db_url: str, dagster_instance: DagsterInstance, demo_backfill
) -> None:
    """Two of the backfill's sessions again, every partitioned asset in one run one step at a
    time: no steps overlap, and every dated table holds the same rows."""
    plan, _ = demo_backfill
    first, last = plan.window[-2], plan.window[-1]
    tables = dated_tables(db_url)
    assert {"position_values", "portfolio_snapshots", "position_stress_pnl"} <= set(tables)
    before = {t: rows_between(db_url, t, first, last) for t in tables}

    outcome = runs.materialize(
        dagster_instance,
        runs.partitioned_assets(),
        plan.key(first),
        plan.key(last),
        steps_at_once=1,
    )

    assert outcome.success, outcome.problems
    spans = step_spans(dagster_instance, outcome.run_id)
    assert len(spans) == len(runs.partitioned_assets())
    assert overlapping(spans) == []
    for table in tables:
        after = rows_between(db_url, table, first, last)
        assert len(after) == len(before[table]), table
        pd.testing.assert_frame_equal(after, before[table], rtol=1e-12, obj=table)


def test_a_step_failing_in_its_thread_fails_the_run_and_keeps_its_rows(
    db_url: str, dagster_instance: DagsterInstance, demo_backfill
) -> None:
    """portfolio_greeks's write is refused while other steps run beside it: the run fails
    naming it, its previous rows stay, and the steps that do not need it still write."""
    plan, _ = demo_backfill
    day = plan.window[-1]
    greeks_query = "SELECT * FROM sigmasight.portfolio_greeks WHERE trade_date = %s ORDER BY 1, 2"
    with connect(db_url) as conn:
        greeks_before = conn.execute(greeks_query, (day.date(),)).fetchall()
        conn.execute(
            "ALTER TABLE sigmasight.portfolio_greeks ADD CONSTRAINT reject_the_day "
            f"CHECK (trade_date <> DATE '{day.date()}') NOT VALID"
        )
        conn.commit()
    try:
        outcome = runs.materialize(
            dagster_instance,
            ["position_greeks", "portfolio_greeks", "portfolio_volatility", "portfolio_returns"],
            plan.key(day),
            plan.key(day),
        )
    finally:
        with connect(db_url) as conn:
            conn.execute("ALTER TABLE sigmasight.portfolio_greeks DROP CONSTRAINT reject_the_day")
            conn.commit()

    assert not outcome.success
    assert any("portfolio_greeks" in line for line in outcome.problems), outcome.problems
    spans = step_spans(dagster_instance, outcome.run_id)
    assert set(spans) == {
        "position_greeks", "portfolio_greeks", "portfolio_volatility", "portfolio_returns",
    }  # fmt: skip
    assert overlapping(spans)
    with connect(db_url) as conn:
        assert conn.execute(greeks_query, (day.date(),)).fetchall() == greeks_before
    failures = dagster_instance.all_logs(outcome.run_id, of_type=DagsterEventType.STEP_FAILURE)
    assert [e.step_key for e in failures] == ["portfolio_greeks"]


def test_an_error_outside_a_steps_code_fails_the_run_once_the_other_step_ends(
    dagster_instance: DagsterInstance, demo_backfill, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster's step machinery itself raising in one worker thread (not the asset's code,
    which becomes a step failure): the run fails naming the error, after the step running
    beside it has finished and written."""

    plan, _ = demo_backfill
    day = plan.key(plan.window[-1])
    real_sequence = executor.dagster_event_sequence_for_step

    def sequence(step_context):
        if step_context.step.key == "portfolio_returns":
            raise RuntimeError("the step machinery broke")
        yield from real_sequence(step_context)

    monkeypatch.setattr(executor, "dagster_event_sequence_for_step", sequence)
    outcome = runs.materialize(dagster_instance, ["position_greeks", "portfolio_returns"], day, day)

    assert not outcome.success
    assert any(
        p.startswith("run failed:") and "the step machinery broke" in p for p in outcome.problems
    ), outcome.problems
    successes = dagster_instance.all_logs(outcome.run_id, of_type=DagsterEventType.STEP_SUCCESS)
    assert [e.step_key for e in successes] == ["position_greeks"]
