"""The code location loads as `dagster definitions validate` loads it."""

from __future__ import annotations

import os
import subprocess
import sys

from sigmasight_pipeline.resources.database import PROJECT_ROOT


def test_dagster_definitions_validate(dagster_instance):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "passed validation" in result.stderr + result.stdout


def test_asset_graph_pools_and_schedules():
    from dagster import AssetKey

    from sigmasight_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys >= {
        "positions", "securities", "prices", "returns", "short_interest", "position_values",
        "position_greeks", "portfolio_greeks", "factor_betas", "position_factor_exposures",
        "portfolio_factor_exposures", "portfolio_risk_metrics", "portfolio_snapshots",
    }  # fmt: skip
    # Every asset that calls the market data API shares one pool (limit 1 in dagster.yaml).
    for key in ("securities", "prices", "short_interest"):
        assert graph.get(AssetKey(key)).pools == {"market_data_api"}
    downstream = graph.get(AssetKey("positions")).child_keys
    assert AssetKey("position_values") in downstream
    assert {s.name for s in defs.schedules} == {"daily_after_close", "weekly_backfill"}


def test_planned_checks_are_stored_once_per_partition_as_dagster_stores_them(
    dagster_instance,
):
    """Our event log stores a ranged run's planned checks as dagster-postgres does (a row per
    check and partition holding the planned event), serializing the event once."""
    from dagster import AssetKey
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
    from dagster._serdes import deserialize_value

    from sigmasight_pipeline.definitions import defs
    from sigmasight_pipeline.resources.instance import SigmaSightEventLogStorage

    storage = dagster_instance.event_log_storage
    assert isinstance(storage, SigmaSightEventLogStorage)
    job = defs.resolve_job_def("daily_update").get_subset(
        asset_selection={AssetKey("portfolio_concentration"), AssetKey("portfolio_snapshots")}
    )
    tags = {
        "dagster/asset_partition_range_start": "2026-11-16",
        "dagster/asset_partition_range_end": "2026-11-20",
    }
    run = dagster_instance.create_run_for_job(job_def=job, tags=tags, run_config={})
    table = AssetCheckExecutionsTable
    with storage.index_connection() as conn:
        rows = conn.execute(
            table.select().where(table.c.run_id == run.run_id).order_by(table.c.partition)
        ).fetchall()
    planned = {(r.asset_key, r.check_name, r.partition) for r in rows}
    checks = {(r.asset_key, r.check_name) for r in rows}
    days = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
    assert len(checks) >= 2 and planned == {(*c, d) for c in checks for d in days}
    for r in rows:
        event = deserialize_value(r.evaluation_event)
        data = event.get_dagster_event().asset_check_planned_data
        assert (data.asset_key.to_string(), data.check_name) == (r.asset_key, r.check_name)
        assert r.execution_status == "PLANNED" and event.run_id == run.run_id


def test_the_event_log_asks_the_catalog_once_for_a_column_it_found(dagster_instance) -> None:
    """Reading asset records asks whether the asset key table has columns; our event log asks
    the database once per column found (dagster-postgres reflects the table every time) and
    still answers False, asking again, for a column the table does not have."""
    from sqlalchemy import event

    storage = dagster_instance.event_log_storage
    catalog_queries: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        if "pg_catalog" in statement:
            catalog_queries.append(statement)

    storage.__dict__.pop("_asset_key_columns_found", None)  # as a new process finds it
    event.listen(storage._engine, "before_cursor_execute", count)
    try:
        dagster_instance.get_asset_records()
        asked = len(catalog_queries)
        assert asked > 0
        dagster_instance.get_asset_records()
        assert storage.has_asset_key_col("cached_status_data")
        assert storage.has_asset_key_index_cols()
        assert len(catalog_queries) == asked
        assert not storage.has_asset_key_col("no_such_column")
        assert not storage.has_asset_key_col("no_such_column")
        assert len(catalog_queries) == asked + 2
    finally:
        event.remove(storage._engine, "before_cursor_execute", count)
