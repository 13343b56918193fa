"""Integration: the demo backfill materialized into the embedded Postgres, read back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterEventType

from sigmasight_pipeline import calendar, runs
from sigmasight_pipeline.analytics.exposures import BETA_COLUMNS
from sigmasight_pipeline.analytics.greeks import bs_greeks
from sigmasight_pipeline.assets import common
from sigmasight_pipeline.checks import SCHEMAS, TableValidator
from sigmasight_pipeline.resources.database import connect
from sigmasight_pipeline.resources.io_manager import read_frame
from sigmasight_pipeline.resources.synthetic import SYNTHETIC_RATE, SyntheticMarket, implied_vol_for
from sigmasight_pipeline.scope import Scope
from sigmasight_pipeline_tests.conftest import DEMO_END


def table(db_url: str, query: str, params=None) -> pd.DataFrame:
    with connect(db_url) as conn:
        return read_frame(conn, query, params)


def test_backfill_is_two_runs_and_covers_window_and_history(db_url, demo_backfill):
    """The market run over the window and its history, then the analytics over the window."""
    plan, outcomes = demo_backfill
    assert [o.partitions for o in outcomes] == [len(plan.history) + len(plan.window), 90]
    assert [o.failed_checks for o in outcomes] == [(), ()]
    days = table(db_url, "SELECT DISTINCT trade_date FROM sigmasight.prices ORDER BY 1")
    assert list(days["trade_date"]) == list(plan.history.append(plan.window))
    snap_days = table(db_url, "SELECT DISTINCT trade_date FROM sigmasight.portfolio_snapshots")
    assert sorted(snap_days["trade_date"]) == list(plan.window)


def test_prices_match_the_provider_and_cover_every_security(db_url, demo_backfill):
    plan, _ = demo_backfill
    prices = table(db_url, "SELECT * FROM sigmasight.prices")
    securities = table(db_url, "SELECT * FROM sigmasight.securities")
    stocks = securities[securities["security_type"] != "OPTION"]
    sessions = plan.history.append(plan.window)
    assert len(prices[prices["symbol"].isin(stocks["symbol"])]) == len(stocks) * len(sessions)
    sample = prices.sample(50, random_state=1)
    expected = SyntheticMarket().daily_bars(
        sample.assign(trade_date=sample["trade_date"].dt.date)[["symbol", "trade_date"]]
    )
    merged = sample.merge(
        expected.assign(trade_date=pd.to_datetime(expected["trade_date"])),
        on=["symbol", "trade_date"],
        suffixes=("", "_src"),
    )
    assert len(merged) == 50
    np.testing.assert_allclose(merged["close"], merged["close_src"], rtol=1e-12)
    assert set(securities["symbol"]) >= {"SPY", "MTUM", "VTV", "VUG", "QUAL", "IWM", "SPLV"}


def test_returns_are_close_over_previous_session_close(db_url, demo_backfill):
    rets = table(
        db_url, "SELECT * FROM sigmasight.returns WHERE symbol = 'SPY' ORDER BY trade_date"
    )
    prices = table(
        db_url,
        "SELECT trade_date, close FROM sigmasight.prices WHERE symbol = 'SPY' ORDER BY trade_date",
    )
    expected = prices["close"] / prices["close"].shift(1) - 1
    np.testing.assert_allclose(rets["daily_return"].to_numpy(), expected.iloc[1:].to_numpy())


def test_returns_cover_every_stock_held_and_no_option(db_url, demo_backfill):
    """Options have prices but no returns (no reader takes them); every stock the book holds or
    underlies has its returns."""
    from sigmasight_pipeline.analytics.instruments import is_option_symbol

    priced = set(table(db_url, "SELECT DISTINCT symbol FROM sigmasight.prices")["symbol"])
    returned = set(table(db_url, "SELECT DISTINCT symbol FROM sigmasight.returns")["symbol"])
    options = {s for s in priced if is_option_symbol(s)}
    assert options and not options & returned
    assert returned == priced - options


def test_position_values_follow_the_valuation_rules(db_url, demo_backfill):
    values = table(
        db_url,
        "SELECT v.*, s.symbol, s.position_type, s.multiplier, s.entry_date, s.entry_price, "
        "p.close FROM sigmasight.position_values v "
        "JOIN sigmasight.positions s ON s.id = v.position_id "
        "JOIN sigmasight.prices p ON p.symbol = s.symbol AND p.trade_date = v.trade_date",
    )
    assert (values["price_source"] == "market").all()
    np.testing.assert_allclose(values["price"], values["close"])
    np.testing.assert_allclose(
        values["market_value"], values["quantity"].abs() * values["price"] * values["multiplier"]
    )
    np.testing.assert_allclose(
        values["exposure"], values["quantity"] * values["price"] * values["multiplier"]
    )
    assert (values.loc[values["quantity"] < 0, "exposure"] < 0).all()
    assert set(
        values.loc[values["position_type"].isin(["LC", "LP", "SC", "SP"]), "multiplier"]
    ) == {100}
    # A position contributes from its entry date on; on the entry day P&L is from the entry price.
    assert (values["trade_date"] >= values["entry_date"]).all()
    entry_day = values[values["trade_date"] == values["entry_date"]]
    assert len(entry_day) > 0
    np.testing.assert_allclose(
        entry_day["daily_pnl"],
        entry_day["quantity"]
        * entry_day["multiplier"]
        * (entry_day["price"] - entry_day["entry_price"]),
    )


def test_snapshots_aggregate_position_values(db_url, demo_backfill):
    snaps = table(db_url, "SELECT * FROM sigmasight.portfolio_snapshots")
    values = table(db_url, "SELECT * FROM sigmasight.position_values")
    agg = (
        values.groupby(["trade_date", "portfolio_id"])
        .agg(
            value=("market_value", "sum"),
            net=("exposure", "sum"),
            pnl=("daily_pnl", "sum"),
            n=("position_id", "count"),
        )
        .reset_index()
    )
    merged = snaps.merge(agg, on=["trade_date", "portfolio_id"])
    assert len(merged) == len(snaps)
    np.testing.assert_allclose(merged["total_value"], merged["value"])
    np.testing.assert_allclose(merged["net_exposure"], merged["net"])
    np.testing.assert_allclose(merged["daily_pnl"], merged["pnl"])
    np.testing.assert_allclose(
        merged["gross_exposure"], merged["long_exposure"] - merged["short_exposure"]
    )
    assert (merged["position_count"] == merged["n"]).all()
    latest = snaps[snaps["trade_date"] == snaps["trade_date"].max()].set_index("portfolio_id")
    main = latest.loc[1]
    assert (main["long_count"], main["short_count"]) == (20, 15)
    assert main[["lc_count", "lp_count", "sc_count", "sp_count"]].sum() == 15
    assert 2e6 < main["gross_exposure"] < 4.5e6


def test_greeks_use_the_implied_vol_of_synthetic_option_prices(db_url, demo_backfill):
    greeks = table(
        db_url,
        "SELECT g.*, s.underlying, s.position_type, v.quantity "
        "FROM sigmasight.position_greeks g JOIN sigmasight.positions s ON s.id = g.position_id "
        "JOIN sigmasight.position_values v ON v.portfolio_id = g.portfolio_id "
        "AND v.trade_date = g.trade_date AND v.position_id = g.position_id "
        "WHERE g.source = 'model'",
    )
    assert len(greeks) > 0 and (greeks["volatility_source"] == "implied").all()
    expected_vol = greeks["underlying"].map(implied_vol_for)
    np.testing.assert_allclose(greeks["volatility"], expected_vol, rtol=1e-6)
    ref = bs_greeks(
        greeks["underlying_price"],
        greeks["strike"],
        greeks["t_years"],
        SYNTHETIC_RATE,
        expected_vol,
        greeks["position_type"].isin(["LC", "SC"]),
    )
    for g in ("delta", "gamma", "theta", "vega", "rho"):
        np.testing.assert_allclose(greeks[g], ref[g], rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(
            greeks[f"position_{g}"], greeks[g] * greeks["quantity"] * 100, rtol=1e-12
        )
    # Only options are stored; portfolio Greeks add the stocks' deltas (their quantities).
    stocks = table(
        db_url,
        "SELECT count(*) AS n FROM sigmasight.position_greeks g "
        "JOIN sigmasight.positions s ON s.id = g.position_id WHERE s.multiplier = 1",
    )
    assert stocks["n"].iloc[0] == 0
    delta = table(
        db_url,
        "SELECT v.trade_date, v.portfolio_id, sum(CASE WHEN s.multiplier = 1 THEN v.quantity "
        "ELSE g.position_delta END) AS delta FROM sigmasight.position_values v "
        "JOIN sigmasight.positions s ON s.id = v.position_id "
        "LEFT JOIN sigmasight.position_greeks g ON g.portfolio_id = v.portfolio_id "
        "AND g.trade_date = v.trade_date AND g.position_id = v.position_id GROUP BY 1, 2",
    )
    stored = table(db_url, "SELECT * FROM sigmasight.portfolio_greeks WHERE view = 'portfolio'")
    both = stored.merge(delta, on=["trade_date", "portfolio_id"], suffixes=("", "_sum"))
    assert len(both) == len(stored) > 0
    np.testing.assert_allclose(both["delta"], both["delta_sum"], rtol=1e-12)


def test_factor_betas_recover_the_planted_market_betas(db_url, demo_backfill):
    plan, _ = demo_backfill
    betas = table(
        db_url,
        "SELECT * FROM sigmasight.factor_betas WHERE factor = 'Market' AND trade_date = %s",
        (plan.window[-1].date(),),
    )
    assert (betas["n_obs"] == 60).all() and betas["beta"].notna().all()
    planted = SyntheticMarket().planted_betas(list(betas["symbol"]))["Market"]
    errors = (betas.set_index("symbol")["beta"] - planted).abs()
    # 60-session market betas: standard error ~0.2 at the synthetic noise level (see
    # test_factors for the calibration); 4 standard errors.
    assert errors.max() < 0.85
    assert errors.mean() < 0.25
    first_day = table(
        db_url,
        "SELECT n_obs FROM sigmasight.factor_betas WHERE trade_date = %s",
        (plan.window[0].date(),),
    )
    assert (first_day["n_obs"] == 60).all(), "the window's first day must have a full window"


def test_portfolio_factor_exposures_and_risk_metrics(db_url, demo_backfill):
    plan, _ = demo_backfill
    exposures = table(
        db_url,
        "SELECT * FROM sigmasight.portfolio_factor_exposures WHERE trade_date = %s",
        (plan.window[-1].date(),),
    )
    assert exposures.groupby("portfolio_id")["factor"].nunique().eq(9).all()  # 8 + Rates
    core = exposures[(exposures["portfolio_id"] == 2) & (exposures["factor"] == "Market")]
    assert 0.5 < core["beta"].iloc[0] < 1.5  # long-only stocks
    # The SQL aggregate equals the exposure-weighted sum of the positions' betas over gross.
    positions = table(
        db_url,
        "SELECT e.*, v.market_value FROM sigmasight.position_factor_exposures e "
        "JOIN sigmasight.position_values v USING (portfolio_id, trade_date, position_id) "
        "WHERE e.trade_date = %s",
        (plan.window[-1].date(),),
    )
    by_portfolio = positions.groupby("portfolio_id")
    gross = positions["exposure"].abs().groupby(positions["portfolio_id"]).sum()
    for factor, column in {**BETA_COLUMNS, "Short Interest": "short_interest"}.items():
        dollars = (positions["exposure"] * positions[column]).groupby(positions["portfolio_id"])
        covered = positions["exposure"].abs().where(positions[column].notna(), 0.0)
        got = exposures[exposures["factor"] == factor].set_index("portfolio_id").sort_index()
        expected = dollars.sum(min_count=1).sort_index()
        np.testing.assert_allclose(got["dollar_exposure"], expected, rtol=1e-10)
        expected = expected / by_portfolio["market_value"].sum()
        np.testing.assert_allclose(got["beta"], expected.sort_index(), rtol=1e-10)
        expected = covered.groupby(positions["portfolio_id"]).sum() / gross
        np.testing.assert_allclose(got["coverage"], expected.sort_index(), rtol=1e-12)
    metrics = table(
        db_url,
        "SELECT * FROM sigmasight.portfolio_risk_metrics WHERE trade_date = %s",
        (plan.window[-1].date(),),
    )
    assert len(metrics) == 3
    assert metrics[["volatility_ann", "var_95_1d", "cvar_95_1d"]].notna().all().all()
    assert (metrics["cvar_95_1d"] >= metrics["var_95_1d"]).all()
    assert (metrics["max_drawdown"] <= 0).all()


def test_position_factor_exposures_view_gives_the_rows_the_asset_computed(db_url, demo_backfill):
    """sql/0023: position_exposures stores each position's exposure and P&L per 100 bp; the
    view adds its underlying's betas, n_obs, missing-beta reasons and short interest from
    factor_betas and short_interest. Over the whole demo backfill the view equals
    `analytics.exposures.position_factor_exposures` on the same tables, value for value, and
    on a day where a beta is missing (set NULL in a transaction rolled back) it names it."""
    import psycopg

    from sigmasight_pipeline.analytics import exposures

    view = table(db_url, "SELECT * FROM sigmasight.position_factor_exposures")
    values = table(
        db_url,
        "SELECT v.trade_date, v.position_id, v.portfolio_id, v.exposure, p.symbol, "
        "p.underlying, p.position_type FROM sigmasight.position_values v "
        "JOIN sigmasight.positions p ON p.id = v.position_id",
    )
    greeks = table(
        db_url,
        "SELECT trade_date, position_id, delta_adjusted_exposure FROM sigmasight.position_greeks",
    )
    betas = table(
        db_url,
        "SELECT trade_date, symbol, factor, beta, n_obs, reason FROM sigmasight.factor_betas",
    )
    short = table(
        db_url, "SELECT trade_date, symbol, short_interest_pct_float FROM sigmasight.short_interest"
    )
    expected = exposures.position_factor_exposures(
        exposures.risk_exposures(values, greeks), betas, short
    )
    keys = ["trade_date", "position_id"]
    expected = expected.set_index(keys).sort_index()
    got = view.set_index(keys).sort_index()
    assert len(got) == len(values) and got.index.equals(expected.index)
    for column in ["exposure", *BETA_COLUMNS.values(), "short_interest"]:
        np.testing.assert_array_equal(got[column].astype(float), expected[column].astype(float))
    assert (got["n_obs"] == expected["n_obs"]).all()
    assert got["reason"].fillna("").tolist() == expected["reason"].fillna("").tolist()
    assert got["beta_rates"].notna().all() and got["reason"].isna().all()

    day = view["trade_date"].max()
    underlying = values.loc[values["position_type"].eq("LONG"), "underlying"].iloc[0]
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE sigmasight.factor_betas SET beta = NULL, reason = 'only 12 observations "
            "(< 20)' WHERE trade_date = %s AND symbol = %s AND factor = 'Momentum'",
            (day, underlying),
        )
        conn.execute(
            "DELETE FROM sigmasight.factor_betas WHERE trade_date = %s AND symbol = %s "
            "AND factor = 'Rates'",
            (day, underlying),
        )
        rows = conn.execute(
            "SELECT v.beta_momentum, v.beta_rates, v.beta_market, v.n_obs, v.reason "
            "FROM sigmasight.position_factor_exposures v "
            "JOIN sigmasight.positions p ON p.id = v.position_id "
            "WHERE v.trade_date = %s AND p.underlying = %s",
            (day, underlying),
        ).fetchall()
        conn.execute(
            "DELETE FROM sigmasight.factor_betas WHERE trade_date = %s AND symbol = %s",
            (day, underlying),
        )
        none = conn.execute(
            "SELECT DISTINCT v.n_obs, v.reason FROM sigmasight.position_factor_exposures v "
            "JOIN sigmasight.positions p ON p.id = v.position_id "
            "WHERE v.trade_date = %s AND p.underlying = %s",
            (day, underlying),
        ).fetchall()
        conn.rollback()
    assert rows and all(r[0] is None and r[1] is None and r[2] is not None for r in rows)
    assert {r[4] for r in rows} == {
        "Momentum: only 12 observations (< 20); Rates: no beta for the underlying on this day"
    }
    assert none == [(0, "no betas for the underlying on this day")]


def test_rerunning_a_range_is_idempotent(db_url, dagster_instance, demo_backfill):
    plan, _ = demo_backfill
    before = table(db_url, "SELECT * FROM sigmasight.portfolio_snapshots ORDER BY 1, 2")
    start, end = plan.key(plan.window[-5]), plan.key(plan.window[-1])
    outcome = runs.materialize(dagster_instance, runs.partitioned_assets(), start, end)
    assert outcome.success and outcome.partitions == 5
    after = table(db_url, "SELECT * FROM sigmasight.portfolio_snapshots ORDER BY 1, 2")
    pd.testing.assert_frame_equal(before, after)


def test_the_trailing_pnl_of_a_daily_run_sums_stored_snapshots_or_else_position_rows(
    db_url, dagster_instance, demo_backfill
):
    """A one-session snapshot run takes the earlier sessions of its 90-session P&L window from
    the stored snapshots, and from the position rows of a portfolio-day that has none: the
    same window_pnl as the backfill's either way; and it is the sum of the position rows."""
    plan, _ = demo_backfill
    last = plan.window[-1]
    query = "SELECT * FROM sigmasight.portfolio_snapshots WHERE trade_date = %s ORDER BY 2"
    before = table(db_url, query, (last.date(),))
    pnl = table(
        db_url,
        "SELECT portfolio_id, sum(daily_pnl) AS window_pnl FROM sigmasight.position_values "
        "WHERE trade_date BETWEEN %s AND %s GROUP BY 1 ORDER BY 1",
        (plan.window[0].date(), last.date()),
    )
    np.testing.assert_allclose(before["window_pnl"], pnl["window_pnl"], rtol=1e-12)
    assert runs.materialize(
        dagster_instance, ["portfolio_snapshots"], plan.key(last), plan.key(last)
    ).success
    pd.testing.assert_frame_equal(table(db_url, query, (last.date(),)), before)

    gap = plan.window[-30:-20]  # snapshots lost for 10 sessions of portfolio 2
    with connect(db_url) as conn:
        conn.execute(
            "DELETE FROM sigmasight.portfolio_snapshots WHERE portfolio_id = 2 "
            "AND trade_date BETWEEN %s AND %s",
            (gap[0].date(), gap[-1].date()),
        )
        conn.commit()
    try:
        assert runs.materialize(
            dagster_instance, ["portfolio_snapshots"], plan.key(last), plan.key(last)
        ).success
        pd.testing.assert_frame_equal(table(db_url, query, (last.date(),)), before)
    finally:
        runs.materialize(
            dagster_instance, ["portfolio_snapshots"], plan.key(gap[0]), plan.key(gap[-1])
        )


def test_a_failed_write_leaves_the_previous_rows(db_url, dagster_instance, demo_backfill):
    """A constraint that rejects one day's rows makes the run fail inside the IO manager's
    transaction; every partition of the range keeps its previous rows."""
    plan, _ = demo_backfill
    start, end = plan.window[-3], plan.window[-1]
    query = (
        "SELECT * FROM sigmasight.position_values WHERE trade_date >= %s "
        "ORDER BY trade_date, position_id"
    )
    before = table(db_url, query, (start.date(),))
    with connect(db_url) as conn:  # on the table the rows are stored in (sql/0024)
        conn.execute(
            "ALTER TABLE sigmasight.position_value_blocks ADD CONSTRAINT reject_one_day "
            f"CHECK (trade_date <> DATE '{end.date()}') NOT VALID"
        )
        conn.commit()
    try:
        outcome = runs.materialize(
            dagster_instance, ["position_values"], plan.key(start), plan.key(end)
        )
    finally:
        with connect(db_url) as conn:
            conn.execute(
                "ALTER TABLE sigmasight.position_value_blocks DROP CONSTRAINT reject_one_day"
            )
            conn.commit()
    assert not outcome.success
    pd.testing.assert_frame_equal(before, table(db_url, query, (start.date(),)))


def test_materialized_partitions_recorded_on_the_instance(dagster_instance, demo_backfill):
    plan, _ = demo_backfill
    keys = runs.materialized_days(dagster_instance)
    assert set(keys) >= {plan.key(d) for d in plan.window}


@pytest.mark.parametrize("asset", runs.partitioned_assets())
def test_every_partitioned_asset_backfills_in_one_run(asset):
    from sigmasight_pipeline.definitions import defs

    node = defs.resolve_asset_graph().get(__import__("dagster").AssetKey(asset))
    assert node.backfill_policy is not None and node.backfill_policy.max_partitions_per_run is None
    assert node.partitions_def == calendar.trading_day_partitions()


def validate(name: str, *chunks: pd.DataFrame):
    validator = TableValidator(name)
    for chunk in chunks:
        validator(chunk)
    return validator.result()


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_checks_pass_on_the_tables_and_catch_bad_rows(db_url, demo_backfill, name):
    stored = {"portfolio_correlations": "portfolio_correlation_matrices"}.get(name, name)
    frame = table(db_url, f"SELECT * FROM sigmasight.{stored}")
    if name == "portfolio_correlations":  # the check reads the correlations the codes store
        frame["correlations"] = [
            np.array([np.nan if c is None else c for c in codes], dtype=float) / 32767
            for codes in frame["correlation_codes"]
        ]
    good = validate(name, frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :])
    assert good.passed and good.metadata["rows_checked"].value == len(frame)
    duplicated = pd.concat([frame, frame.head(1)], ignore_index=True)
    bad = validate(name, duplicated)
    assert not bad.passed and bad.metadata["rows_failing"].value == 2
    assert "failing_keys" in bad.metadata


@pytest.mark.parametrize(
    ("name", "column", "reason"),
    [
        ("position_risk_contributions", "component_vol_usd", "reason"),
        ("position_stress_pnl", "pnl_usd", "reasons"),
        ("stress_moves", "moves", "reasons"),
    ],
)
def test_a_companion_value_not_computed_must_say_why(db_url, demo_backfill, name, column, reason):
    """The companion tables' checks and stress_moves': a contribution, a scenario's P&L or an
    underlying's move that is NaN without a reason fails (one row here), as does a second row
    for a key (above)."""
    frame = table(db_url, f"SELECT * FROM sigmasight.{name} WHERE {reason} IS NULL LIMIT 3")
    assert len(frame) == 3 and validate(name, frame).passed
    values = frame[column].tolist()
    if name in ("position_stress_pnl", "stress_moves"):
        values[0] = [*values[0][:-1], float("nan")]
    else:
        values[0] = float("nan")
    frame[column] = values
    result = validate(name, frame)
    assert not result.passed and result.metadata["rows_failing"].value == 1


@pytest.mark.parametrize(
    ("name", "column"), [("position_values", "price_source"), ("position_greeks", "source")]
)
def test_a_label_column_takes_only_its_labels(db_url, demo_backfill, name, column):
    """The label columns are checked by membership (no per-value str dtype check): an unknown
    label and a missing one both fail."""
    frame = table(db_url, f"SELECT * FROM sigmasight.{name} LIMIT 3")
    frame.loc[0, column] = "bogus"
    frame.loc[1, column] = None
    result = validate(name, frame)
    assert not result.passed and result.metadata["rows_failing"].value == 2


def test_greeks_check_blocks_non_finite_values(db_url, demo_backfill):
    frame = table(db_url, "SELECT * FROM sigmasight.position_greeks LIMIT 20")
    frame.loc[3, "delta"] = np.nan
    result = validate("position_greeks", frame)
    assert not result.passed and result.metadata["rows_failing"].value == 1
    assert f"position_id={frame.loc[3, 'position_id']}" in result.metadata["failing_keys"].value


def test_an_array_column_is_finite_row_by_row_as_written_and_as_read_back():
    """The stress P&L check's scan of array columns: the Arrow lists a write stores (NULL
    rows, slices) and the Python lists read back give the same answer."""
    import pyarrow as pa

    from sigmasight_pipeline.checks import _lists_finite
    from sigmasight_pipeline.resources.tables import list_column

    matrix = np.array([[1.0, 2.0], [np.nan, 3.0], [4.0, 5.0], [6.0, np.inf], [7.0, 8.0]])
    present = np.array([True, True, False, True, True])  # row 2 is NULL: nothing to fault
    written = pd.Series(list_column(matrix, pa.float32(), present=present))
    expected = [True, False, True, False, True]
    assert _lists_finite(written).tolist() == expected
    assert _lists_finite(written[1:]).tolist() == expected[1:]
    read_back = pd.Series([[1.0, 2.0], [float("nan"), 3.0], None, [6.0, float("inf")], [7, 8]])
    assert _lists_finite(read_back).tolist() == expected
    assert _lists_finite(pd.Series([[], [1.0, None]])).tolist() == [True, False]
    assert _lists_finite(pd.Series([None, None], dtype=object)).tolist() == [True, True]


def test_checks_see_only_what_the_run_wrote(db_url, dagster_instance, demo_backfill):
    """One partition of two portfolios (Core Long: stocks only; Options Income: options):
    every check counts exactly the rows written, those of the companion tables (blocking
    checks on the assets writing them) included."""
    from sigmasight_pipeline.checks import COMPANION_CHECKS

    plan, _ = demo_backfill
    day = plan.key(plan.window[-1])
    outcome = runs.materialize(
        dagster_instance,
        [
            "position_values",
            "portfolio_snapshots",
            "portfolio_risk_decomposition",
            "portfolio_stress_results",
        ],
        day,
        day,
        tags=Scope.of([2, 3]).tags(),
    )
    assert outcome.success, outcome.problems
    written = table(
        db_url,
        "SELECT count(*) AS n FROM sigmasight.position_values WHERE trade_date = %s "
        "AND portfolio_id IN (2, 3)",
        (plan.window[-1].date(),),
    )["n"].iloc[0]
    checks = {}
    for entry in dagster_instance.all_logs(
        outcome.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ):
        evaluation = entry.dagster_event.event_specific_data
        checks[f"{evaluation.check_name}@{evaluation.asset_key.to_user_string()}"] = (
            evaluation.metadata
        )
    assert checks["schema@position_values"]["rows_checked"].value == written > 10
    assert checks["schema@portfolio_snapshots"]["rows_checked"].value == 2
    assert checks["schema@portfolio_snapshots"]["partitions"].value == f"{day}..{day}"
    for asset, companion in [
        ("portfolio_risk_decomposition", "position_risk_contributions"),
        ("portfolio_stress_results", "position_stress_pnl"),
    ]:
        rows = table(
            db_url,
            f"SELECT count(*) AS n FROM sigmasight.{companion} WHERE trade_date = %s "
            "AND portfolio_id IN (2, 3)",
            (plan.window[-1].date(),),
        )["n"].iloc[0]
        assert checks[f"{COMPANION_CHECKS[companion]}@{asset}"]["rows_checked"].value == rows > 0


def test_a_scoped_run_replaces_only_its_portfolios_rows(db_url, dagster_instance, demo_backfill):
    plan, _ = demo_backfill
    day = plan.key(plan.window[-2])
    query = "SELECT * FROM sigmasight.position_values WHERE trade_date = %s ORDER BY position_id"
    before = table(db_url, query, (plan.window[-2].date(),))
    with connect(db_url) as conn:  # a stray row of portfolio 3 that only a rewrite removes
        conn.execute(
            "UPDATE sigmasight.position_value_blocks SET daily_pnl = (SELECT "
            "array_agg(x + 1 ORDER BY k) FROM unnest(daily_pnl) WITH ORDINALITY u (x, k)) "
            "WHERE trade_date = %s AND portfolio_id IN (1, 3)",
            (plan.window[-2].date(),),
        )
        conn.commit()
    outcome = runs.materialize(
        dagster_instance, ["position_values"], day, day, tags=Scope.of([1]).tags()
    )
    assert outcome.success
    after = table(db_url, query, (plan.window[-2].date(),))
    mine = after["portfolio_id"].eq(1)
    pd.testing.assert_frame_equal(after[mine], before[before["portfolio_id"].eq(1)])
    touched = after[after["portfolio_id"].eq(3)]
    untouched = before[before["portfolio_id"].eq(3)]
    np.testing.assert_allclose(touched["daily_pnl"], untouched["daily_pnl"] + 1)
    runs.materialize(dagster_instance, ["position_values"], day, day, tags=Scope.of([3]).tags())


SHARDED_TABLES = {  # table: its key columns
    "position_values": ["trade_date", "position_id"],
    "position_factor_exposures": ["trade_date", "position_id"],
    "portfolio_snapshots": ["trade_date", "portfolio_id"],
    "portfolio_risk_decomposition": ["trade_date", "portfolio_id", "component"],
    "portfolio_concentration": ["trade_date", "portfolio_id"],
}


def _sharded_rows(db_url: str, first, last) -> dict[str, pd.DataFrame]:
    return {
        name: table(
            db_url,
            f"SELECT * FROM sigmasight.{name} WHERE trade_date BETWEEN %s AND %s",
            (first, last),
        )
        .sort_values(keys)
        .reset_index(drop=True)
        for name, keys in SHARDED_TABLES.items()
    }


def _assert_same_rows(after: dict[str, pd.DataFrame], before: dict[str, pd.DataFrame]) -> None:
    for name in SHARDED_TABLES:
        pd.testing.assert_frame_equal(after[name], before[name], rtol=1e-10, obj=name)


def test_shards_never_overwrite_each_other_and_a_failed_shard_keeps_its_rows(
    db_url, dagster_instance, demo_backfill
):
    """Two shards (portfolio 2 | portfolios 1 and 3) over the last 3 sessions give the rows
    the whole-book run gave. A shard whose snapshot write fails (a constraint the database
    enforces, mid-run) leaves its own previous rows and the other shard's intact; its re-run
    writes the same rows again."""
    plan, _ = demo_backfill
    first, last = plan.window[-3], plan.window[-1]
    start, end = plan.key(first), plan.key(last)
    assets = list(runs.portfolio_assets())
    whole_book = _sharded_rows(db_url, first.date(), last.date())
    assert set(whole_book["portfolio_snapshots"]["portfolio_id"]) == {1, 2, 3}

    for shard in (0, 1):
        tags = Scope(shard=(shard, 2)).tags()
        assert runs.materialize(dagster_instance, assets, start, end, tags=tags).success
    _assert_same_rows(_sharded_rows(db_url, first.date(), last.date()), whole_book)

    fault = "ALTER TABLE sigmasight.portfolio_snapshots ADD CONSTRAINT shard_fault "
    with connect(db_url) as conn:
        conn.execute(fault + "CHECK (portfolio_id <> 3) NOT VALID")
        conn.commit()
    try:
        failed = runs.materialize(
            dagster_instance, assets, start, end, tags=Scope(shard=(1, 2)).tags()
        )
    finally:
        with connect(db_url) as conn:
            conn.execute("ALTER TABLE sigmasight.portfolio_snapshots DROP CONSTRAINT shard_fault")
            conn.commit()
    assert not failed.success
    _assert_same_rows(_sharded_rows(db_url, first.date(), last.date()), whole_book)

    again = runs.materialize(dagster_instance, assets, start, end, tags=Scope(shard=(1, 2)).tags())
    assert again.success
    _assert_same_rows(_sharded_rows(db_url, first.date(), last.date()), whole_book)


CHUNKED_TABLES = {  # table: its key columns
    **SHARDED_TABLES,
    "position_greeks": ["trade_date", "position_id"],
    "portfolio_greeks": ["trade_date", "portfolio_id", "view"],
    "portfolio_stress_results": ["trade_date", "portfolio_id", "scenario_id"],
    "portfolio_volatility": ["trade_date", "portfolio_id"],
    "portfolio_risk_metrics": ["trade_date", "portfolio_id"],
    "portfolio_sector_exposures": ["trade_date", "portfolio_id", "sector"],
}


def test_chunks_of_one_portfolio_give_the_rows_of_one_chunk(
    db_url, dagster_instance, demo_backfill, monkeypatch
):
    """The portfolio assets over the last 3 sessions with each portfolio in its own chunk (the
    chunk size a large book gets) write the rows the backfill wrote with the whole demo book
    in one chunk; a 1-session run takes bigger chunks than a 90-session one, up to the cap."""
    plan, _ = demo_backfill
    first, last = plan.window[-3], plan.window[-1]

    def rows() -> dict[str, pd.DataFrame]:
        return {
            name: table(
                db_url,
                f"SELECT * FROM sigmasight.{name} WHERE trade_date BETWEEN %s AND %s",
                (first.date(), last.date()),
            )
            .sort_values(keys)
            .reset_index(drop=True)
            for name, keys in CHUNKED_TABLES.items()
        }

    one_chunk = rows()
    assert list(common.portfolio_chunks(db_url, Scope(), 3)) == [[1, 2, 3]]
    monkeypatch.setattr(common, "MIN_POSITIONS_PER_CHUNK", 1)
    monkeypatch.setattr(common, "POSITION_DAYS_PER_CHUNK", 3)
    assert list(common.portfolio_chunks(db_url, Scope(), 3)) == [[1], [2], [3]]
    assets = list(runs.portfolio_assets())
    assert runs.materialize(dagster_instance, assets, plan.key(first), plan.key(last)).success
    chunked = rows()
    for name in CHUNKED_TABLES:
        pd.testing.assert_frame_equal(chunked[name], one_chunk[name], rtol=1e-10, obj=name)
    monkeypatch.undo()
    assert common.positions_per_chunk(90) == common.MIN_POSITIONS_PER_CHUNK
    assert common.positions_per_chunk(1) == common.MAX_POSITIONS_PER_CHUNK
    assert common.positions_per_chunk(10) == common.POSITION_DAYS_PER_CHUNK // 10


def test_all_null_columns_load_with_their_sql_types(db_url):
    """An all-NULL double column must load as float NaN (a schema check would reject None)."""
    frame = table(db_url, "SELECT 1::int AS a, NULL::float8 AS b, NULL::int AS c, "
                          "DATE '2026-11-20' AS d")  # fmt: skip
    assert [str(t) for t in frame.dtypes] == ["int64", "float64", "float64", "datetime64[ns]"]


def test_a_write_transaction_is_its_own_connection_committed_at_the_end(db_url):
    """`arrow_connection` shares the reader's ADBC database but not its connection: what it
    writes is invisible to reads until it commits, and gone if the block raises."""
    from sigmasight_pipeline.resources.tables import arrow_connection, execute, query_frame

    name = "sigmasight.arrow_connection_probe"
    with connect(db_url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} (n integer)")
        conn.commit()
    count = f"SELECT count(*) AS n FROM {name}"
    try:
        with arrow_connection(db_url) as writer:
            execute(writer, f"INSERT INTO {name} VALUES (1)")
            assert query_frame(db_url, count)["n"].iloc[0] == 0  # not committed yet
        assert query_frame(db_url, count)["n"].iloc[0] == 1
        with pytest.raises(RuntimeError), arrow_connection(db_url) as writer:
            execute(writer, f"INSERT INTO {name} VALUES (2)")
            raise RuntimeError("a chunk failed")
        assert query_frame(db_url, count)["n"].iloc[0] == 1
    finally:
        with connect(db_url) as conn:
            conn.execute(f"DROP TABLE {name}")
            conn.commit()


def test_an_insert_select_write_never_nests_loops(db_url):
    """A set-based asset aggregates the session its run wrote moments before, which the
    tables' statistics do not know yet (the planner expects one row). Its INSERT ... SELECT runs
    with nested loops and merge joins off, for that transaction only."""
    from dagster._core.storage.db_io_manager import TableSlice
    from psycopg import sql

    from sigmasight_pipeline.resources.io_manager import TableWrite, write_table_slice
    from sigmasight_pipeline.resources.tables import arrow_connection, query_frame

    name = "sigmasight.nestloop_probe"
    with connect(db_url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} (setting text)")
        conn.commit()
    probe = (
        "SELECT current_setting('enable_nestloop') || ' ' || current_setting('enable_mergejoin')"
        " AS setting"
    )
    write = TableWrite(insert_select=sql.SQL(probe), columns=["setting"])
    try:
        with arrow_connection(db_url) as writer:
            write_table_slice(writer, db_url, TableSlice("nestloop_probe", "sigmasight"), write)
            after = query_frame(db_url, probe)  # another connection: untouched
        assert list(query_frame(db_url, f"SELECT setting FROM {name}")["setting"]) == ["off off"]
        assert list(after["setting"]) == ["on on"]
        with arrow_connection(db_url) as writer, writer.cursor() as cursor:
            cursor.execute(probe)  # the writer's next transaction: back on
            assert cursor.fetchall() == [("on on",)]
    finally:
        with connect(db_url) as conn:
            conn.execute(f"DROP TABLE {name}")
            conn.commit()


def _inner_scans_of_nested_loops(plan: dict) -> set[str]:
    """The relations scanned on the inner side of a nested loop anywhere in `plan`."""

    def scanned(node: dict) -> set[str]:
        own = {node["Relation Name"]} if "Relation Name" in node else set()
        return own.union(*(scanned(child) for child in node.get("Plans", [])))

    children = plan.get("Plans", [])
    inner = (
        set().union(*(scanned(c) for c in children if c.get("Parent Relationship") == "Inner"))
        if plan["Node Type"] == "Nested Loop"
        else set()
    )
    return inner.union(*(_inner_scans_of_nested_loops(child) for child in children))


def test_set_based_selects_on_an_unknown_session_hash_the_positions_once(demo_backfill, db_url):
    """On a session the statistics do not know (a daily run's), the planner expects one block
    of a blocks view: it pulled the positions' join into the view's unnest and hashed every
    position once per block (13.5 s of a 1,000-portfolio daily run), and merged the day's
    short interest on trade_date alone. The three set-based SELECTs, planned as their write
    plans them, scan the positions and short interest only outside nested loops and never
    merge. (On the demo's 76 positions the planner hashed them once even without the OFFSET 0
    fences; the merge join it chose here without `enable_mergejoin = off`.)"""
    import json

    from sigmasight_pipeline.assets.factors import portfolio_factor_select
    from sigmasight_pipeline.assets.greeks import portfolio_greeks_select
    from sigmasight_pipeline.assets.portfolio import snapshot_select
    from sigmasight_pipeline.resources.io_manager import SET_BASED_SETTINGS

    unknown = calendar.sessions(pd.Timestamp(DEMO_END) + pd.Timedelta(days=1), "2027-12-31")[:1]
    selects = {
        "portfolio_greeks": portfolio_greeks_select(unknown, Scope()),
        "portfolio_factor_exposures": portfolio_factor_select(unknown, Scope()),
        "portfolio_snapshots": snapshot_select(unknown, Scope()),
    }
    with connect(db_url) as conn:
        for setting, value in SET_BASED_SETTINGS.items():
            conn.execute(f"SET LOCAL {setting} = '{value}'")
        for asset, select in selects.items():
            (plan,) = conn.execute(b"EXPLAIN (FORMAT JSON) " + select.as_bytes(conn)).fetchone()
            plan = plan if isinstance(plan, list) else json.loads(plan)
            inner = _inner_scans_of_nested_loops(plan[0]["Plan"])
            assert not inner & {"positions", "short_interest"}, (asset, inner)
            assert "Merge Join" not in json.dumps(plan), asset
