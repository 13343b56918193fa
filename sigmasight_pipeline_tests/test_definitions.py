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
