"""Portfolio history through the pipeline: every day valued with that day's holdings, realized
P&L, flows, equity and time-weighted returns, on a real backfill into the embedded Postgres."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance

from sigmasight_pipeline import runs
from sigmasight_pipeline.assets.common import load_positions, portfolios_in, read_risk_rows
from sigmasight_pipeline.portfolio_csv import validate_portfolio_text
from sigmasight_pipeline.portfolio_inputs import add_equity_change
from sigmasight_pipeline.portfolios import create_user, load_portfolio
from sigmasight_pipeline.resources.database import connect
from sigmasight_pipeline.resources.io_manager import TableReader
from sigmasight_pipeline.resources.tables import query_frame

END = pd.Timestamp("2026-11-20")
EFFECTIVE = date(2026, 11, 10)  # the re-upload's session
CONTRIBUTION_DAY = date(2026, 11, 13)
CONTRIBUTION = 250_000.0
TODAY = date(2026, 11, 21)
HEADER = "ticker,quantity,entry_price,entry_date,tags"
BOOK = f"""{HEADER}
AAPL,400,190.00,2026-06-01,tech
MSFT,200,400.00,2026-06-01,tech
XOM,500,110.00,2026-06-01,energy
KO,-300,60.00,2026-06-01,hedge
"""
# XOM gone, MSFT halved, NVDA new; AAPL and KO unchanged.
EDITED = f"""{HEADER}
AAPL,400,190.00,2026-06-01,tech
MSFT,100,400.00,2026-06-01,tech
KO,-300,60.00,2026-06-01,hedge
NVDA,150,120.00,{EFFECTIVE},ai
"""
OTHER = f"""{HEADER}
JPM,100,150.00,2026-06-01,
PEP,50,170.00,2026-06-01,
"""


def _book(text: str):
    return validate_portfolio_text(text, path="book.csv", today=TODAY)


def _rows(url: str, table: str, portfolio_id: int, before: date | None = None) -> pd.DataFrame:
    clause = "" if before is None else f" AND trade_date < '{before}'"
    return query_frame(
        url,
        f"SELECT * FROM sigmasight.{table} WHERE portfolio_id = {portfolio_id}{clause} "
        "ORDER BY trade_date, 2, 3",
    )


class History:
    """Two portfolios backfilled, one re-uploaded and given a contribution, backfilled again."""

    def __init__(self, url: str, instance: DagsterInstance) -> None:
        self.url = url
        user = f"hist_{uuid.uuid4().hex[:8]}"
        with connect(url, autocommit=True) as conn:
            create_user(conn, user, "secret")
            self.portfolio = load_portfolio(conn, user, "Hist", _book(BOOK)).portfolio_id
            self.other = load_portfolio(conn, user, "Other", _book(OTHER)).portfolio_id
        self.plan = runs.BackfillPlan.ending(END, days=30)
        assert all(o.success for o in runs.backfill(instance, self.plan))
        self.before = {
            table: _rows(url, table, self.portfolio)
            for table in ("position_values", "portfolio_snapshots", "portfolio_returns")
        }
        self.other_before = _rows(url, "portfolio_snapshots", self.other)
        with connect(url, autocommit=True) as conn:
            load_portfolio(conn, user, "Hist", _book(EDITED), as_of=EFFECTIVE)
            add_equity_change(
                conn, user, "Hist", CONTRIBUTION, CONTRIBUTION_DAY, note="top-up", today=TODAY
            )
        self.rerun = runs.backfill(instance, self.plan)
        assert all(o.success for o in self.rerun), [o.problems for o in self.rerun]

    def values(self) -> pd.DataFrame:
        frame = query_frame(
            self.url,
            "SELECT v.*, p.symbol, p.entry_price FROM sigmasight.position_values v "
            f"JOIN sigmasight.positions p ON p.id = v.position_id "
            f"WHERE v.portfolio_id = {self.portfolio} ORDER BY v.trade_date, p.symbol",
        )
        frame["trade_date"] = pd.to_datetime(frame["trade_date"]).dt.date
        return frame

    def close(self, symbol: str, day: date) -> float:
        return float(
            query_frame(
                self.url,
                f"SELECT close FROM sigmasight.prices WHERE symbol = '{symbol}' "
                f"AND trade_date = '{day}'",
            )["close"].iloc[0]
        )


@pytest.fixture(scope="module")
def history(isolated_db_url: str, dagster_instance: DagsterInstance) -> Iterator[History]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", isolated_db_url)
        yield History(isolated_db_url, dagster_instance)


def test_a_rerun_holding_a_new_stock_fetches_its_history_first(history: History) -> None:
    """The re-upload added NVDA, which has no returns over the lookback yet: the re-run is
    not one window run but starts with the market data over the whole lookback history."""
    assert [o.success for o in history.rerun] == [True, True]
    market = history.rerun[0]
    assert market.partitions == len(history.plan.history) + len(history.plan.window)
    nvda = query_frame(
        history.url,
        "SELECT count(*) AS n FROM sigmasight.returns WHERE symbol = 'NVDA' "
        f"AND trade_date BETWEEN '{history.plan.history[1].date()}' AND '{END.date()}'",
    )
    assert int(nvda["n"].iloc[0]) == len(history.plan.history) - 1 + len(history.plan.window)


def test_a_run_with_its_history_complete_is_one_run_of_every_asset(
    history: History, dagster_instance: DagsterInstance
) -> None:
    """Once every held stock has its lookback history, a backfill (here the last 2 sessions)
    runs everything over the window in one run, as the daily schedule does, its market data
    first."""
    plan = runs.BackfillPlan.ending(END, days=2)
    (outcome,) = runs.backfill(dagster_instance, plan)
    assert outcome.success, outcome.problems
    run = dagster_instance.get_run_by_id(outcome.run_id)
    assert run.tags[runs.STAGE_TAG] == "window"
    first, last = runs.BackfillPlan.key(plan.window[0]), runs.BackfillPlan.key(END)
    assert (run.tags[runs.RANGE_START_TAG], run.tags[runs.RANGE_END_TAG]) == (first, last)
    selected = {key.to_user_string() for key in run.asset_selection or ()}
    assert selected == {*runs.MARKET_ASSETS, *runs.partitioned_assets()}
    assert outcome.partitions == 2
    # The window's prices were written by this run, before the analytics that read them.
    done = [
        entry.step_key
        for entry in dagster_instance.all_logs(outcome.run_id)
        if entry.dagster_event and entry.dagster_event.event_type_value == "STEP_SUCCESS"
    ]
    assert done.index("prices") < done.index("position_values") < done.index("portfolio_snapshots")


def test_the_history_is_incomplete_while_a_held_stock_misses_one_return(history: History) -> None:
    """`history_is_complete` (what lets a backfill be one run) counts every wanted stock's
    returns over the lookback: one missing session of one stock makes it false."""
    assert runs.history_is_complete(history.url, history.plan)
    day = history.plan.history[len(history.plan.history) // 2].date()
    where = f"symbol = 'MSFT' AND trade_date = '{day}'"
    with connect(history.url, autocommit=True) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM sigmasight.returns WHERE {where}").fetchone()
        assert count == 1
        conn.execute(f"CREATE TEMP TABLE saved AS SELECT * FROM sigmasight.returns WHERE {where}")
        conn.execute(f"DELETE FROM sigmasight.returns WHERE {where}")
        try:
            assert not runs.history_is_complete(history.url, history.plan)
        finally:
            conn.execute("INSERT INTO sigmasight.returns SELECT * FROM saved")
    assert runs.history_is_complete(history.url, history.plan)


def test_a_runs_steps_share_one_read_of_the_positions(history: History) -> None:
    """`load_positions` with a run id reads the positions once for that run: a later step of
    the run gets the same rows (its own copy), another run reads them again."""
    portfolios = portfolios_in([history.portfolio])
    first = load_positions(history.url, portfolios, run_id="run-a")
    first.loc[:, "quantity"] = 0.0  # a step changing its copy changes nobody else's
    with connect(history.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE sigmasight.positions SET entry_price = entry_price + 1 "
            f"WHERE portfolio_id = {history.portfolio}"
        )
        try:
            same_run = load_positions(history.url, portfolios, run_id="run-a")
            next_run = load_positions(history.url, portfolios, run_id="run-b")
            unshared = load_positions(history.url, portfolios)
        finally:
            conn.execute(
                "UPDATE sigmasight.positions SET entry_price = entry_price - 1 "
                f"WHERE portfolio_id = {history.portfolio}"
            )
    assert (same_run["quantity"] != 0).all()
    np.testing.assert_allclose(next_run["entry_price"], same_run["entry_price"] + 1)
    pd.testing.assert_frame_equal(unshared, next_run)


def test_a_runs_risk_rows_are_shared_only_for_the_same_slice(history: History) -> None:
    """`read_risk_rows` keys what a run shares by the readers' slices: a step whose slice
    has other days reads its own rows, one with the same slice gets the rows already read."""

    def reader(table: str, first: date, last: date) -> TableReader:
        return TableReader(
            history.url, "sigmasight", table, f"trade_date BETWEEN '{first}' AND '{last}'"
        )

    def risk_rows(first: date, last: date) -> pd.DataFrame:
        return read_risk_rows(
            history.url, [history.portfolio], reader("position_values", first, last),
            reader("position_greeks", first, last), run_id="run-risk-rows",
        )  # fmt: skip

    window = [d.date() for d in history.plan.window]
    first = risk_rows(window[-1], window[-1])
    first.loc[:, "exposure"] = 0.0  # a step changing its copy changes nobody else's
    changed = f"portfolio_id = {history.portfolio} AND trade_date = '{window[-1]}'"
    with connect(history.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE sigmasight.position_value_blocks SET exposure = (SELECT array_agg(x + 1 "
            f"ORDER BY k) FROM unnest(exposure) WITH ORDINALITY u (x, k)) WHERE {changed}"
        )
        try:
            same_slice = risk_rows(window[-1], window[-1])
            other_slice = risk_rows(window[0], window[-1])
        finally:
            conn.execute(
                "UPDATE sigmasight.position_value_blocks SET exposure = (SELECT array_agg(x - 1 "
                f"ORDER BY k) FROM unnest(exposure) WITH ORDINALITY u (x, k)) WHERE {changed}"
            )
    assert set(same_slice["trade_date"].dt.date) == {window[-1]}
    assert set(other_slice["trade_date"].dt.date) == set(window)
    assert (same_slice["exposure"] != 0).any()
    on_last_day = other_slice[other_slice["trade_date"].dt.date == window[-1]]
    np.testing.assert_allclose(
        on_last_day.sort_values("position_id")["exposure"],
        same_slice.sort_values("position_id")["exposure"] + 1,
    )


def test_days_before_the_reupload_are_unchanged(history: History) -> None:
    for table, before in history.before.items():
        after = _rows(history.url, table, history.portfolio, before=EFFECTIVE)
        expected = before[pd.to_datetime(before["trade_date"]).dt.date < EFFECTIVE]
        columns = [c for c in expected.columns if c in after.columns]
        pd.testing.assert_frame_equal(
            after[columns].reset_index(drop=True), expected[columns].reset_index(drop=True)
        )
    # The other portfolio's rows are what they were.
    pd.testing.assert_frame_equal(
        _rows(history.url, "portfolio_snapshots", history.other), history.other_before
    )


def test_each_day_is_valued_with_that_days_holdings(history: History) -> None:
    values = history.values()
    by = values.set_index(["symbol", "trade_date"])
    day_before = max(d for d in values["trade_date"] if d < EFFECTIVE)
    after = min(d for d in values["trade_date"] if d > EFFECTIVE)
    assert by.loc[("MSFT", day_before), "quantity"] == 200
    assert by.loc[("MSFT", EFFECTIVE), "quantity"] == 100
    assert by.loc[("MSFT", after), "quantity"] == 100
    # XOM is sold at the effective session's close: held that day (nothing at its close), gone
    # after, and its last day's P&L runs from the previous close to the sale.
    assert by.loc[("XOM", EFFECTIVE), "quantity"] == 0
    assert by.loc[("XOM", EFFECTIVE), "market_value"] == 0
    assert ("XOM", after) not in by.index
    xom_close = history.close("XOM", EFFECTIVE)
    xom_previous = history.close("XOM", day_before)
    assert by.loc[("XOM", EFFECTIVE), "daily_pnl"] == pytest.approx(
        500 * (xom_close - xom_previous), rel=1e-9
    )
    assert ("NVDA", day_before) not in by.index
    nvda = by.loc[("NVDA", EFFECTIVE)]
    assert nvda["daily_pnl"] == pytest.approx(150 * (history.close("NVDA", EFFECTIVE) - 120.0))


def test_realized_pnl_of_the_closed_and_the_halved_positions(history: History) -> None:
    xom = (history.close("XOM", EFFECTIVE) - 110.0) * 500
    msft = (history.close("MSFT", EFFECTIVE) - 400.0) * 100
    values = history.values().set_index(["symbol", "trade_date"])
    assert values.loc[("XOM", EFFECTIVE), "realized_pnl_usd"] == pytest.approx(xom, rel=1e-9)
    assert values.loc[("MSFT", EFFECTIVE), "realized_pnl_usd"] == pytest.approx(msft, rel=1e-9)
    assert values.loc[("MSFT", END.date()), "realized_pnl_cum_usd"] == pytest.approx(msft)
    snapshots = _rows(history.url, "portfolio_snapshots", history.portfolio)
    snapshots["trade_date"] = pd.to_datetime(snapshots["trade_date"]).dt.date
    snap = snapshots.set_index("trade_date")
    assert snap.loc[EFFECTIVE, "realized_pnl_usd"] == pytest.approx(xom + msft, rel=1e-9)
    assert (snap.loc[snap.index < EFFECTIVE, "realized_pnl_cum_usd"] == 0).all()
    assert np.allclose(snap.loc[snap.index >= EFFECTIVE, "realized_pnl_cum_usd"], xom + msft)
    # Positions held at the close: XOM is not counted on the day it is sold.
    assert snap.loc[EFFECTIVE, "position_count"] == 4  # AAPL, MSFT, KO, NVDA


def test_twr_chains_the_sub_periods_around_a_contribution(history: History) -> None:
    snap = _rows(history.url, "portfolio_snapshots", history.portfolio)
    snap["trade_date"] = pd.to_datetime(snap["trade_date"]).dt.date
    snap = snap.set_index("trade_date")
    assert snap.loc[CONTRIBUTION_DAY, "flows_usd"] == CONTRIBUTION
    assert (snap.drop(index=CONTRIBUTION_DAY)["flows_usd"] == 0).all()
    # By hand: the start equity is the first day's gross value; equity moves by P&L and flows.
    start = snap["total_value"].iloc[0]
    pnl = snap["daily_pnl"]
    before = pnl[pnl.index < CONTRIBUTION_DAY]
    equity_before = start + before.sum()  # end of the day before the contribution
    after = pnl[pnl.index >= CONTRIBUTION_DAY]
    capital = equity_before + CONTRIBUTION
    equity_end = capital + after.sum()
    hand = (equity_before / start) * (equity_end / capital) - 1.0
    assert snap["twr_cumulative"].iloc[-1] == pytest.approx(hand, rel=1e-9)
    assert snap["equity_usd"].iloc[-1] == pytest.approx(equity_end, rel=1e-12)
    # The contribution changes the day's base, not its return.
    day = snap.loc[CONTRIBUTION_DAY]
    previous_equity = snap.loc[snap.index < CONTRIBUTION_DAY, "equity_usd"].iloc[-1]
    expected = day["daily_pnl"] / (previous_equity + CONTRIBUTION)
    assert day["twr_daily"] == pytest.approx(expected, rel=1e-12)


def test_risk_metrics_use_the_time_weighted_returns(history: History) -> None:
    returns = _rows(history.url, "portfolio_returns", history.portfolio)
    metrics = _rows(history.url, "portfolio_risk_metrics", history.portfolio)
    twr = returns["twr_daily"].dropna().to_numpy()
    assert metrics["volatility_ann"].iloc[-1] == pytest.approx(
        np.std(twr, ddof=1) * np.sqrt(252), rel=1e-9
    )


def test_a_position_closed_on_the_day_is_in_no_greeks_view(history: History) -> None:
    """XOM (sold at the effective session's close) holds nothing at the close: the portfolio
    Greeks count the positions the snapshot counts, and it does not fall into `shorts`."""
    greeks = query_frame(
        history.url,
        "SELECT g.view, g.position_count, s.position_count AS snapshot_count "
        "FROM sigmasight.portfolio_greeks g JOIN sigmasight.portfolio_snapshots s "
        "USING (trade_date, portfolio_id) "
        f"WHERE g.portfolio_id = {history.portfolio} AND g.trade_date = '{EFFECTIVE}'",
    ).set_index("view")
    assert greeks.loc["portfolio", "position_count"] == greeks.loc["portfolio", "snapshot_count"]
    assert greeks["position_count"].to_dict() == {"portfolio": 4, "longs": 3, "shorts": 1}


def test_a_run_leaves_the_garbage_collector_as_it_found_it() -> None:
    """During a run (`materialize`) the collector skips what was alive before it; garbage made
    in the run is collected as usual, and after it the older objects are collected again."""
    import gc
    import weakref

    class Node:
        pass

    def cycle() -> weakref.ref:
        node = Node()
        node.self = node
        return weakref.ref(node)

    gc.disable()  # no automatic collection between making `older` and the freeze
    try:
        older = cycle()
        with runs._collector_skips_what_is_alive():
            assert gc.get_freeze_count() > 0
            newer = cycle()
            gc.collect()
            assert newer() is None  # made in the run: collected
            assert older() is not None  # alive when the run began: skipped
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert older() is None
    finally:
        gc.enable()
