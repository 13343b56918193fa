"""The read resource after a real demo backfill: its numbers are the tables' numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline.resources.database import connect
from sigmasight_pipeline.resources.io_manager import read_frame
from sigmasight_pipeline.resources.read_api import SigmaSightReader


@pytest.fixture(scope="module")
def reader(db_url, demo_backfill):
    reader = SigmaSightReader(database_url=db_url)
    yield reader
    reader.close()


def frame(db_url, query, params=None) -> pd.DataFrame:
    with connect(db_url) as conn:
        return read_frame(conn, query, params)


def test_overview_is_the_latest_snapshot(db_url, reader):
    snap = frame(db_url, "SELECT * FROM sigmasight.portfolio_snapshots WHERE portfolio_id = 1 "
                         "ORDER BY trade_date DESC LIMIT 1").iloc[0]  # fmt: skip
    overview = reader.overview(1)
    assert overview.as_of == snap["trade_date"].date()
    for field in ("total_value", "long_exposure", "short_exposure", "gross_exposure",
                  "net_exposure"):  # fmt: skip
        assert getattr(overview, f"{field}_usd") == pytest.approx(snap[field])
    assert overview.pnl.daily_usd == pytest.approx(snap["daily_pnl"])


def test_overview_betas_are_the_two_definitions(db_url, reader):
    """Holdings-based = the snapshot's beta_market = the Market factor; realized = the risk
    metrics' beta. On the demo book both exist and are different numbers."""
    overview = reader.overview(1)
    market = next(f for f in reader.factor_exposures(1).factors if f.factor == "Market")
    risk = frame(db_url, "SELECT beta FROM sigmasight.portfolio_risk_metrics "
                         "WHERE portfolio_id = 1 AND trade_date = %s",
                 (overview.as_of,)).iloc[0]  # fmt: skip
    assert overview.beta_holdings_60d == pytest.approx(market.beta)
    assert overview.beta_realized_60d == pytest.approx(risk["beta"])
    assert reader.risk_metrics(1).beta_realized_60d == pytest.approx(risk["beta"])
    assert overview.beta_holdings_60d != pytest.approx(overview.beta_realized_60d)


def test_positions_filters_and_totals(db_url, reader):
    overview = reader.overview(1)
    values = frame(db_url, "SELECT v.*, p.position_type FROM sigmasight.position_values v "
                           "JOIN sigmasight.positions p ON p.id = v.position_id "
                           "WHERE v.portfolio_id = 1 AND v.trade_date = %s",
                   (overview.as_of,))  # fmt: skip
    everything = reader.positions(1)
    assert len(everything.positions) == len(values) == 50
    shorts = reader.positions(1, types=["SHORT"])
    assert len(shorts.positions) == 15
    assert sum(p.exposure_usd for p in shorts.positions) == pytest.approx(
        values.loc[values["position_type"] == "SHORT", "exposure"].sum()
    )
    by_type = reader.positions(1, group_by="type")
    assert {g.key for g in by_type.groups} == {"LONG", "SHORT", "LC", "LP", "SC", "SP"}


def test_greeks_factors_and_metrics_match_their_tables(db_url, reader):
    as_of = reader.overview(1).as_of
    stored = frame(db_url, "SELECT * FROM sigmasight.portfolio_greeks WHERE portfolio_id = 1 "
                           "AND trade_date = %s", (as_of,)).set_index("view")  # fmt: skip
    for view in ("portfolio", "longs", "shorts"):
        greeks = reader.greeks(1, view=view)
        assert greeks.totals.delta == pytest.approx(stored.loc[view, "delta"])
        assert greeks.totals.delta_1pct_usd == pytest.approx(stored.loc[view, "dollar_delta"])
    factors = reader.factor_exposures(1)
    table = frame(db_url, "SELECT * FROM sigmasight.portfolio_factor_exposures "
                          "WHERE portfolio_id = 1 AND trade_date = %s", (as_of,))  # fmt: skip
    assert len(factors.factors) == 9  # the eight of the PRD and Rates
    by_name = table.set_index("factor")["beta"]
    for item in factors.factors:
        assert item.beta == pytest.approx(by_name[item.factor])
    metrics = reader.risk_metrics(1)
    row = frame(db_url, "SELECT * FROM sigmasight.portfolio_risk_metrics WHERE portfolio_id = 1 "
                        "AND trade_date = %s", (as_of,)).iloc[0]  # fmt: skip
    assert metrics.volatility_ann_fraction == pytest.approx(row["volatility_ann"])
    assert metrics.var_95_1d_parametric_usd == pytest.approx(row["var_95_1d"])
    assert metrics.var_95_1d_hist_fraction == pytest.approx(row["var_95_1d_hist"])


def test_snapshot_history_covers_the_window(db_url, reader, demo_backfill):
    plan, _ = demo_backfill
    history = reader.snapshots(2, plan.window[0].date(), plan.window[-1].date())
    assert len(history.points) == len(plan.window)
    pnl = np.array([p.daily_pnl_usd for p in history.points])
    table = frame(db_url, "SELECT daily_pnl FROM sigmasight.portfolio_snapshots "
                          "WHERE portfolio_id = 2 ORDER BY trade_date")  # fmt: skip
    np.testing.assert_allclose(pnl, table["daily_pnl"])


def test_portfolio_tags_count_the_portfolios_positions(db_url, reader):
    counts = frame(db_url, "SELECT t.name, count(*) AS n FROM sigmasight.position_tags pt "
                           "JOIN sigmasight.positions p ON p.id = pt.position_id "
                           "JOIN sigmasight.tags t ON t.id = pt.tag_id "
                           "WHERE p.portfolio_id = 1 GROUP BY t.name")  # fmt: skip
    tags = {t.name: t.position_count for t in reader.portfolio_tags(1)}
    assert tags and tags == dict(zip(counts["name"], counts["n"], strict=True))
