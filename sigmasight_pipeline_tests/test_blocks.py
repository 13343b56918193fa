"""sql/0024: tables written in blocks of rows per portfolio-day are stored one row per
portfolio-day, each other column an array (`blocks.BLOCKS`), and read through a view with
the table's name and columns; sql/0025: correlations stored as 2-byte codes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice
from psycopg import sql

from sigmasight_pipeline.resources.blocks import BLOCKS
from sigmasight_pipeline.resources.database import connect
from sigmasight_pipeline.resources.io_manager import TableWrite, write_table_slice
from sigmasight_pipeline.resources.tables import arrow_connection, portfolio_day_blocks
from sigmasight_pipeline_tests.conftest import database_before

BLOCK_TYPES = {
    "portfolio_id": "integer",
    "trade_date": "date",
    "position_id": "integer[]",
    "value": "double precision[]",
    "reason": "text[]",
}


def test_rows_become_one_block_per_portfolio_day_in_the_order_they_came() -> None:
    """Rows of two portfolios and two days, interleaved: one block each, the rows of a block
    in the frame's order, NaN as NULL, and a column with no value in a block one NULL."""
    rows = pd.DataFrame(
        {
            "portfolio_id": [2, 1, 2, 1, 1, 2],
            "trade_date": pd.to_datetime(
                ["2026-11-20", "2026-11-19", "2026-11-20", "2026-11-20", "2026-11-19", "2026-11-19"]
            ),
            "position_id": [30, 12, 20, 11, 10, 40],
            "value": [3.0, np.nan, 2.0, 1.5, 0.5, 4.0],
            "reason": [None, "no price", None, None, None, None],
        }
    )
    blocks = portfolio_day_blocks(rows, BLOCK_TYPES)
    lists = [pa.array(blocks[c]).to_pylist() for c in ("position_id", "value", "reason")]
    got = {
        (p, f"{d:%Y-%m-%d}"): (ids, values, reasons)
        for p, d, ids, values, reasons in zip(
            blocks["portfolio_id"], blocks["trade_date"], *lists, strict=True
        )
    }
    assert got == {
        (1, "2026-11-19"): ([12, 10], [None, 0.5], ["no price", None]),
        (1, "2026-11-20"): ([11], [1.5], None),
        (2, "2026-11-19"): ([40], [4.0], None),
        (2, "2026-11-20"): ([30, 20], [3.0, 2.0], None),
    }


def test_arrays_of_a_block_are_concatenated_and_its_one_value_kept_once() -> None:
    """A column of arrays (the P&L of every scenario) is concatenated per block, a NULL array
    as NULLs; a column the blocks table holds once (the scenario set) must be the same in the
    block's rows."""
    types = {"portfolio_id": "integer", "trade_date": "date", "set_id": "integer",
             "position_id": "integer[]", "pnl_usd": "real[]", "reasons": "text[]"}  # fmt: skip
    rows = pd.DataFrame(
        {
            "portfolio_id": [7, 7, 8],
            "trade_date": pd.to_datetime(["2026-11-20"] * 3),
            "set_id": [3, 3, 3],
            "position_id": [1, 2, 3],
            "pnl_usd": [[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]],
            "reasons": [None, [None, "no move"], None],
        }
    )
    blocks = portfolio_day_blocks(rows, types)
    assert blocks["set_id"].tolist() == [3, 3]
    assert pa.array(blocks["pnl_usd"]).to_pylist() == [[1.0, 2.0, 3.0, None], [5.0, 6.0]]
    assert pa.array(blocks["reasons"]).to_pylist() == [[None, None, None, "no move"], None]
    with pytest.raises(ValueError, match="set_id: the rows of a portfolio-day differ"):
        portfolio_day_blocks(rows.assign(set_id=[3, 4, 3]), types)


def _contributions(portfolio: int, day: str, scale: float) -> pd.DataFrame:
    exposure = np.array([1000.0, -250.0, 400.0]) * scale
    marginal = np.array([0.12, 0.08, np.nan])
    return pd.DataFrame(
        {
            "trade_date": pd.Timestamp(day),
            "position_id": [portfolio * 10 + k for k in range(3)],
            "portfolio_id": portfolio,
            "exposure_usd": exposure,
            "marginal_vol_usd": marginal,
            "component_vol_usd": exposure * marginal,
            "factor_vol_usd": exposure * marginal * 0.75,
            "specific_vol_usd": exposure * marginal * 0.25,
            "share_of_risk": exposure * marginal / 150.0,
            "reason": [None, None, "no factor betas for the underlying"],
        }
    )


def _write(url: str, table: str, frame: pd.DataFrame, day: str, replace: str | None) -> None:
    end = (pd.Timestamp(day) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    window = TimeWindow(pd.Timestamp(day, tz="UTC"), pd.Timestamp(end, tz="UTC"))
    table_slice = TableSlice(
        table, "sigmasight", partition_dimensions=[TablePartitionDimension("trade_date", window)]
    )
    write = TableWrite(frame, replace=sql.SQL(replace) if replace else None)
    with arrow_connection(url) as conn:
        write_table_slice(conn, url, table_slice, write)


def test_a_write_reads_back_through_the_view_and_replaces_only_its_blocks(isolated_db_url):
    """Position risk contributions written through the IO manager: the view gives every row
    as written, the component volatility computed (exposure x marginal, the same product), a
    value not computed NULL with its reason; a re-write of one portfolio replaces its block and
    leaves the other portfolio's."""
    url, day = isolated_db_url, "2026-11-20"
    written = pd.concat([_contributions(7, day, 1.0), _contributions(8, day, 1.0)])
    _write(url, "position_risk_contributions", written, day, None)
    _write(url, "position_risk_contributions", _contributions(7, day, 2.0), day, "portfolio_id = 7")
    with connect(url) as conn:
        view = conn.execute(
            "SELECT position_id, exposure_usd, marginal_vol_usd, component_vol_usd, "
            "factor_vol_usd, share_of_risk, reason FROM sigmasight.position_risk_contributions "
            "WHERE trade_date = %s ORDER BY position_id",
            (day,),
        ).fetchall()
        blocks = conn.execute(
            "SELECT portfolio_id, cardinality(position_id) "
            "FROM sigmasight.position_risk_contribution_blocks ORDER BY 1"
        ).fetchall()
    expected = pd.concat([_contributions(7, day, 2.0), _contributions(8, day, 1.0)])
    want = [
        tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row)
        for row in expected[
            ["position_id", "exposure_usd", "marginal_vol_usd", "component_vol_usd",
             "factor_vol_usd", "share_of_risk", "reason"]
        ].itertuples(index=False)
    ]  # fmt: skip
    assert view == want
    assert blocks == [(7, 3), (8, 3)]


def test_the_blocks_migration_reads_the_same_rows_through_the_views() -> None:
    """0024: a database with rows in the eight tables reads the same rows, NULLs and reasons
    included, through the views that replace them (a position's market value and unrealized
    P&L computed from its exposure, an option's dollar delta from its position delta), one
    block per portfolio-day."""
    from sigmasight_pipeline.resources.database import migrate

    inserts = {
        "position_values": (
            "(quantity, price, market_value, exposure, cost_basis, unrealized_pnl, daily_pnl, "
            "realized_pnl_usd, realized_pnl_cum_usd, trade_date, position_id, portfolio_id, "
            "price_date, price_source, pnl_reason) VALUES "
            "(10, 101.5, 1015, 1015, 1000, 15, 2.5, 0, 0, '2026-11-19', 1, 7, '2026-11-19', "
            "'market', NULL), "
            "(-5, 20.25, 101.25, -101.25, -100, -1.25, NULL, NULL, 0, '2026-11-19', 2, 7, "
            "'2026-11-18', 'carried_forward', 'no close: price carried forward from 2026-11-18'), "
            "(10, NULL, NULL, NULL, 1000, NULL, NULL, NULL, 0, '2026-11-20', 1, 7, NULL, "
            "'missing', 'no price')"
        ),
        "position_greeks": (
            "(trade_date, position_id, portfolio_id, underlying_price, strike, t_years, rate, "
            "volatility, volatility_source, iv_converged, option_price, delta, gamma, theta, "
            "vega, rho, position_delta, position_gamma, position_theta, position_vega, "
            "position_rho, dollar_delta, delta_adjusted_exposure, source, reason) VALUES "
            "('2026-11-19', 3, 7, 160, 150, 0.5, 0.04, 0.3, 'implied', true, 12.5, 0.5, 0.02, "
            "-0.1, 0.2, 0.05, 100, 4, -20, 40, 10, 160, 16000, 'model', NULL), "
            "('2026-11-19', 4, 7, NULL, 200, 0.5, 0.04, NULL, NULL, NULL, NULL, 0.6, 0.02, "
            "-0.5, 0.3, 0.1, -60, -2, 50, -30, -10, NULL, NULL, 'fallback', 'no spot')"
        ),
        "position_stress_pnl": (
            "(trade_date, position_id, portfolio_id, set_id, pnl_usd, pnl_usd_delta_gamma, "
            "reasons) VALUES "
            "('2026-11-19', 3, 7, 1, '{-20.5,4.25}', '{-20,4}', NULL), "
            "('2026-11-19', 4, 7, 1, '{-3,1.5}', '{-3,1.5}', '{\"no move\",NULL}'), "
            "('2026-11-20', 3, 7, 1, '{-21,5}', '{-21,5}', NULL)"
        ),
        "position_exposures": (
            "(exposure, pnl_usd_per_100bp, trade_date, position_id, portfolio_id) VALUES "
            "(1015, -12.5, '2026-11-19', 1, 7), (NULL, NULL, '2026-11-19', 2, 7), "
            "(980, -11.0, '2026-11-20', 1, 7), (50, 0.5, '2026-11-20', 3, 8)"
        ),
        "position_risk_contributions": (
            "(trade_date, position_id, portfolio_id, exposure_usd, marginal_vol_usd, "
            "component_vol_usd, factor_vol_usd, specific_vol_usd, share_of_risk, reason) VALUES "
            "('2026-11-19', 1, 7, 1000, 0.125, 125, 100, 25, 0.5, NULL), "
            "('2026-11-19', 2, 7, 500, NULL, NULL, NULL, NULL, NULL, 'no betas'), "
            "('2026-11-20', 3, 8, -400, 0.25, -100, -80, -20, -0.25, NULL)"
        ),
        "portfolio_stress_results": (
            "(trade_date, portfolio_id, scenario_id, pnl_usd, pnl_usd_delta_gamma, "
            "pnl_pct_of_gross, gross_exposure_usd, worst_position_id, worst_position_pnl_usd, "
            "method, n_positions, n_missing, reason) VALUES "
            "('2026-11-19', 7, 'crash', -200, -190, -0.25, 800, 1, -150, 'full_revaluation', "
            "2, 0, NULL), "
            "('2026-11-19', 7, 'rates_up', NULL, NULL, NULL, 800, NULL, NULL, 'linear', 2, 2, "
            "'no betas'), "
            "('2026-11-20', 8, 'crash', 40, 40, NULL, 0, 3, 40, 'linear', 1, 0, NULL)"
        ),
        "portfolio_sector_exposures": (
            "(trade_date, portfolio_id, sector, long_exposure_usd, short_exposure_usd, "
            "gross_exposure_usd, net_exposure_usd, gross_weight, net_weight, benchmark_weight, "
            "active_weight, n_names, benchmark_as_of, reason) VALUES "
            "('2026-11-19', 7, 'Energy', 300, -100, 400, 200, 0.5, 0.25, 0.125, 0.125, 2, "
            "'2024-03-31', NULL), "
            "('2026-11-19', 7, 'Utilities', 0, -400, 400, -400, 0.5, -0.5, NULL, NULL, 1, NULL, "
            "'no benchmark weights on or before the day (first 2024-03-31)')"
        ),
        "portfolio_risk_decomposition": (
            "(trade_date, portfolio_id, component, exposure_usd, variance_usd2, "
            "share_of_variance, vol_contribution_usd, total_vol_usd, coverage, reason) VALUES "
            "('2026-11-19', 7, 'Market', 900, 1600, 0.64, 32, 50, 1, NULL), "
            "('2026-11-19', 7, 'specific', NULL, 900, 0.36, 18, 50, 1, NULL), "
            "('2026-11-20', 7, 'Market', NULL, NULL, NULL, NULL, NULL, 0, 'no exposure')"
        ),
    }
    with database_before("0024") as url:
        with connect(url, autocommit=True) as old:
            old.execute(
                "INSERT INTO sigmasight.stress_scenario_sets (set_id, scenario_ids) "
                "VALUES (1, '{crash,rates_up}')"
            )
            for table, values in inserts.items():
                old.execute(f"INSERT INTO sigmasight.{table} {values}")
            before = {t: _rows(old, t) for t in inserts}
        assert "0024_portfolio_day_blocks" in migrate(url)
        with connect(url) as new:
            after = {t: _rows(new, t) for t in inserts}
            blocks = {
                BLOCKS[t].table: new.execute(
                    f"SELECT count(*) FROM sigmasight.{BLOCKS[t].table}"
                ).fetchone()[0]
                for t in inserts
            }
    assert after == before
    assert blocks == {
        "position_value_blocks": 2,
        "position_greek_blocks": 1,
        "position_stress_pnl_blocks": 2,
        "position_exposure_blocks": 3,
        "position_risk_contribution_blocks": 2,
        "portfolio_stress_result_blocks": 2,
        "portfolio_sector_exposure_blocks": 1,
        "portfolio_risk_decomposition_blocks": 2,
    }


def _rows(conn, table: str) -> list[dict]:
    cursor = conn.execute(f"SELECT * FROM sigmasight.{table}")
    names = [c.name for c in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in sorted(r)))


def test_the_correlation_codes_migration_keeps_every_correlation_to_its_fifth_decimal() -> None:
    """0025: stored correlations become codes; the view gives each within 0.5 / 32767 of what
    was stored, an undefined one NULL with its reason as before."""
    from sigmasight_pipeline.resources.database import migrate

    stored = [0.123456, -0.999, None]
    with database_before("0025") as url:
        with connect(url, autocommit=True) as old:
            old.execute(
                "INSERT INTO sigmasight.portfolio_correlation_matrices (trade_date, "
                "portfolio_id, symbols, correlations, pair_obs, cluster_ids) VALUES "
                "('2026-11-20', 7, '{A,B,C}', %s::real[], '{60,60,12}', '{1,1,NULL}')",
                (stored,),
            )
            before = _rows(old, "portfolio_correlations")
        assert "0025_correlation_codes" in migrate(url)
        with connect(url) as new:
            after = _rows(new, "portfolio_correlations")
    assert [{k: v for k, v in r.items() if k != "correlation"} for r in after] == [
        {k: v for k, v in r.items() if k != "correlation"} for r in before
    ]
    for old_row, new_row in zip(before, after, strict=True):
        if old_row["correlation"] is None:
            assert new_row["correlation"] is None and new_row["reason"] == "12 common sessions < 20"
        else:
            assert abs(new_row["correlation"] - old_row["correlation"]) <= 0.5 / 32767
