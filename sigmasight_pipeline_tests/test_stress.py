"""Stress tests: scenario file, moves, full revaluation vs vollib, delta-gamma, aggregation."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline.analytics.greeks import bs_greeks
from sigmasight_pipeline.analytics.scenarios import (
    DEFAULT_SCENARIO_FILE,
    SCENARIO_COLUMNS,
    Scenario,
    ScenarioFileError,
    load_scenarios,
    scenario_table,
    scenarios_from_table,
)
from sigmasight_pipeline.analytics.stress import (
    PORTFOLIO_STRESS_COLUMNS,
    POSITION_STRESS_COLUMNS,
    episode_returns,
    pnl_usd_per_100bp,
    portfolio_stress,
    position_stress,
    rate_shock_return,
    underlying_moves,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from vollib.black_scholes import black_scholes as vollib_price

DAY = pd.Timestamp("2025-06-02")
RATE = 0.04


def _betas(rows: dict[str, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(DAY, s, f, b) for s, by in rows.items() for f, b in by.items()],
        columns=["trade_date", "symbol", "factor", "beta"],
    )


FULL_BETAS = {
    "Market": 1.3, "Momentum": 0.4, "Value": -0.2, "Growth": 0.5, "Quality": 0.1, "Size": -0.3,
    "Low Volatility": -0.4, "Rates": -0.25,
}  # fmt: skip


def _positions(rows: list[dict]) -> pd.DataFrame:
    """position_greeks-shaped rows; options get model Greeks from analytics.greeks."""
    out = []
    for i, row in enumerate(rows, start=1):
        base = {"trade_date": DAY, "position_id": i, "portfolio_id": row.get("portfolio_id", 1),
                "underlying": row.get("underlying", "XYZ"), "underlying_price": row["spot"],
                "quantity": row["quantity"], "source": row.get("source")}  # fmt: skip
        if row["type"] in ("LONG", "SHORT"):
            base |= {
                "position_type": row["type"], "multiplier": 1, "strike": np.nan,
                "t_years": np.nan, "rate": np.nan, "volatility": np.nan, "delta": 1.0,
                "gamma": 0.0, "vega": 0.0, "option_price": np.nan, "source": "stock",
                "delta_adjusted_exposure": row["quantity"] * row["spot"],
            }  # fmt: skip
        else:
            call = row["type"] in ("LC", "SC")
            g = bs_greeks(row["spot"], row["strike"], row["t"], RATE, row["vol"], call).iloc[0]
            source = row.get("source") or "model"
            base |= {
                "position_type": row["type"], "multiplier": 100, "strike": row["strike"],
                "t_years": row["t"], "rate": RATE,
                "volatility": row["vol"] if source == "model" else np.nan,
                "delta": g["delta"], "gamma": g["gamma"], "vega": g["vega"],
                "option_price": g["price"], "source": source,
                "delta_adjusted_exposure": g["delta"] * row["quantity"] * 100 * row["spot"],
            }  # fmt: skip
        out.append(base)
    return pd.DataFrame(out)


def _run(positions: pd.DataFrame, betas: pd.DataFrame, scenarios: list[Scenario]):
    moves = underlying_moves(betas, scenarios)
    return position_stress(positions, moves, scenarios)


# --- the scenario file ----------------------------------------------------------------------


def test_shipped_library_has_the_required_scenarios() -> None:
    scenarios = {s.id: s for s in load_scenarios()}
    assert len(scenarios) >= 15
    assert scenarios["market_down_10"].shocks == {"Market": -0.10}
    assert scenarios["market_down_10"].vol_multiplier == 1.0
    assert scenarios["market_up_10"].shocks == {"Market": 0.10}
    assert scenarios["market_down_35"].shocks == {"Market": -0.35}
    assert scenarios["rates_up_100bp"].shocks == {"Rates": 100.0}
    assert (
        scenarios["vol_up_50pct"].shocks == {} and scenarios["vol_up_50pct"].vol_multiplier == 1.5
    )
    assert scenarios["momentum_crash"].shocks["Momentum"] < 0
    assert (
        scenarios["value_rotation"].shocks["Value"]
        > 0
        > scenarios["value_rotation"].shocks["Growth"]
    )
    for sid, start, end in (
        ("replay_2008_lehman", "2008-09-12", "2008-10-10"),
        ("replay_2020_covid", "2020-02-19", "2020-03-23"),
        ("replay_2022_rates", "2022-01-03", "2022-06-16"),
    ):
        s = scenarios[sid]
        assert (s.kind, s.start, s.end) == ("replay", pd.Timestamp(start), pd.Timestamp(end))
    table = scenario_table(scenarios.values())
    assert list(table.columns) == list(SCENARIO_COLUMNS)
    row = table.set_index("scenario_id").loc["rates_up_100bp"]
    assert row["shock_rates_bp"] == 100 and row["shock_market"] == 0
    assert scenarios_from_table(table) == list(scenarios.values())  # the stored table round-trips


def _write(tmp_path: Path, body: str, name: str = "scenarios.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


GOOD = """
scenarios:
  - id: my_crash
    name: My crash
    kind: factor
    shocks: {Market: -0.2, Low Volatility: 0.02, Rates: -25}
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (GOOD.replace("Low Volatility", "Low Vol"),
         r"scenario #1 \(my_crash\): unknown factor 'Low Vol'"),
        (GOOD.replace("    name: My crash\n", ""),
         r"scenario #1 \(my_crash\): missing field 'name'"),
        (GOOD + GOOD.split("scenarios:\n")[1],
         r"scenario #2: duplicate id 'my_crash' \(first defined in .* scenario #1\)"),
        (GOOD.replace("kind: factor", "kind: linear"),
         r"\(my_crash\): kind 'linear' must be one of"),
        (GOOD.replace("    shocks:", "    shock:"),
         r"\(my_crash\): unknown field\(s\) \['shock'\]"),
        (GOOD.replace("-0.2,", "minus,"), r"\(my_crash\): shock Market 'minus' is not a finite"),
        (GOOD.replace("id: my_crash", "id: My Crash"), r"scenario #1: id 'My Crash' must be"),
        (GOOD.replace("-0.2", "-1.5"), r"\(my_crash\): a Market return of -1.5 is <= -100%"),
        ("scenarios:\n  - id: r\n    name: R\n    kind: replay\n    start: 2020-03-01\n"
         "    end: 2020-02-01\n", r"\(r\): start 2020-03-01 must be before end 2020-02-01"),
        ("scenarios:\n  - id: r\n    name: R\n    kind: replay\n    start: 2020-03-01\n",
         r"\(r\): missing field 'end'"),
        ("scenarios:\n  - id: v\n    name: V\n    kind: factor\n    shocks: {}\n",
         r"\(v\): shocks nothing"),
        ("scenario: []\n", r"expected one top-level key 'scenarios'"),
        ("scenarios: [\n", r"not valid YAML"),
    ],
)  # fmt: skip
def test_malformed_scenarios_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ScenarioFileError, match=message) as info:
        load_scenarios(path)
    assert str(path) in str(info.value)


def test_users_add_their_own_file_and_ids_stay_unique(tmp_path: Path) -> None:
    mine = _write(tmp_path, GOOD)
    scenarios = load_scenarios([DEFAULT_SCENARIO_FILE, mine])
    assert scenarios[-1].shocks == {"Market": -0.2, "Low Volatility": 0.02, "Rates": -25.0}
    clash = _write(tmp_path, GOOD.replace("my_crash", "market_down_10"), "clash.yaml")
    with pytest.raises(ScenarioFileError, match="duplicate id 'market_down_10'"):
        load_scenarios([DEFAULT_SCENARIO_FILE, clash])


# --- moves and linear P&L -------------------------------------------------------------------


def test_market_down_10_on_a_stock_is_exposure_times_beta_times_minus_10pct() -> None:
    scenarios = [s for s in load_scenarios() if s.id == "market_down_10"]
    positions = _positions([{"type": "LONG", "spot": 180.0, "quantity": 250},
                            {"type": "SHORT", "spot": 180.0, "quantity": -100}])  # fmt: skip
    result = _run(positions, _betas({"XYZ": FULL_BETAS}), scenarios)
    out = result.frame()
    exposure = positions["delta_adjusted_exposure"].to_numpy()
    np.testing.assert_allclose(out["pnl_usd"], exposure * 1.3 * -0.10, rtol=1e-15)
    np.testing.assert_allclose(out["pnl_usd_delta_gamma"], out["pnl_usd"], rtol=0)
    assert (out["method"] == "linear").all() and out["reason"].isna().all()
    assert list(out.columns) == list(POSITION_STRESS_COLUMNS)


def test_rate_and_style_shocks_move_through_their_betas() -> None:
    scenarios = {s.id: s for s in load_scenarios()}
    moves = underlying_moves(_betas({"XYZ": FULL_BETAS}), list(scenarios.values())[:17]).frame()
    by = moves.set_index("scenario_id")["move"]
    assert rate_shock_return(100) == pytest.approx(-0.165)
    assert by["rates_up_100bp"] == pytest.approx(-0.25 * -0.165)
    assert by["rates_up_100bp"] * 10_000 == pytest.approx(pnl_usd_per_100bp(10_000, -0.25))
    assert by["value_rotation"] == pytest.approx(-0.2 * 0.06 + 0.5 * -0.06 + 0.4 * -0.03)
    shocks = scenarios["stagflation"].shocks
    expected = sum(
        FULL_BETAS[k] * (rate_shock_return(v) if k == "Rates" else v) for k, v in shocks.items()
    )
    assert by["stagflation"] == pytest.approx(expected)
    assert by["vol_up_50pct"] == 0.0
    moves = underlying_moves(
        _betas({"XYZ": FULL_BETAS}), [scenarios["rates_up_100bp"]], duration=7.0
    ).frame()
    assert moves["move"].iloc[0] == pytest.approx(-0.25 * -0.07)


def test_a_missing_beta_for_a_shocked_factor_is_nan_with_a_reason() -> None:
    scenarios = {s.id: s for s in load_scenarios()}
    no_rates = {k: v for k, v in FULL_BETAS.items() if k != "Rates"}
    chosen = [scenarios["market_down_10"], scenarios["rates_up_100bp"], scenarios["vol_up_50pct"]]
    moves = underlying_moves(_betas({"XYZ": no_rates}), chosen, symbols=["XYZ", "NEW"]).frame()
    by = moves.set_index(["symbol", "scenario_id"])
    assert np.isfinite(by.loc[("XYZ", "market_down_10"), "move"])
    assert np.isnan(by.loc[("XYZ", "rates_up_100bp"), "move"])
    assert by.loc[("XYZ", "rates_up_100bp"), "reason"] == "no Rates beta"
    assert by.loc[("NEW", "market_down_10"), "reason"] == "no Market beta"
    assert by.loc[("NEW", "vol_up_50pct"), "move"] == 0.0  # spot does not move


# --- replays --------------------------------------------------------------------------------


def test_replay_uses_own_history_else_beta_times_spy() -> None:
    days = pd.bdate_range("2007-01-01", "2025-06-02")
    rng = np.random.default_rng(4)
    closes = pd.DataFrame(
        {s: 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days)))) for s in ("SPY", "OLD", "IPO")},
        index=days,
    )
    closes.loc[:"2012-12-31", "IPO"] = np.nan  # listed after 2008
    scenarios = [s for s in load_scenarios() if s.id == "replay_2008_lehman"]
    episodes = episode_returns(closes, scenarios)
    moves = (
        underlying_moves(
            _betas({"OLD": {"Market": 0.9}, "IPO": {"Market": 1.4}}), scenarios, episodes
        )
        .frame()
        .set_index("symbol")
    )
    start, end = pd.Timestamp("2008-09-12"), pd.Timestamp("2008-10-10")
    own = closes.loc[end, "OLD"] / closes.loc[start, "OLD"] - 1
    spy = closes.loc[end, "SPY"] / closes.loc[start, "SPY"] - 1
    assert moves.loc["OLD", "move"] == pytest.approx(own, rel=1e-12)
    assert moves.loc["OLD", "move_source"] == "replay_own_history"
    assert moves.loc["IPO", "move"] == pytest.approx(1.4 * spy, rel=1e-12)
    assert moves.loc["IPO", "move_source"] == "replay_beta_x_spy"
    ipo = episodes.set_index("symbol").loc["IPO"]
    assert np.isnan(ipo["episode_return"]) and "2008-09-12" in ipo["reason"]


def test_replay_start_on_a_holiday_uses_the_last_close_before() -> None:
    days = pd.bdate_range("2020-01-01", "2020-04-30")
    closes = pd.DataFrame({"SPY": np.linspace(100, 140, len(days))}, index=days)
    holiday = Scenario(
        "x", "X", "replay", start=pd.Timestamp("2020-02-16"), end=pd.Timestamp("2020-03-23")
    )  # fmt: skip  (a Sunday)
    ret = episode_returns(closes, [holiday])["episode_return"].iloc[0]
    assert ret == pytest.approx(
        closes.loc["2020-03-23", "SPY"] / closes.loc["2020-02-14", "SPY"] - 1
    )
    stale = episode_returns(closes.loc[:"2020-02-03"], [holiday])
    assert np.isnan(stale["episode_return"].iloc[0])


# --- options --------------------------------------------------------------------------------


def _option_scenarios() -> dict[str, Scenario]:
    return {s.id: s for s in load_scenarios()}


@pytest.mark.parametrize("scenario_id", ["market_down_10", "market_down_35", "vol_up_50pct",
                                         "crash_vol_spike", "market_up_10"])  # fmt: skip
def test_option_stress_equals_an_independent_black_scholes_revaluation(scenario_id: str) -> None:
    scenario = _option_scenarios()[scenario_id]
    legs = [
        {"type": "LC", "spot": 200.0, "strike": 210.0, "t": 45 / 365, "vol": 0.28, "quantity": 3},
        {"type": "SP", "spot": 200.0, "strike": 180.0, "t": 10 / 365, "vol": 0.35, "quantity": -5},
        {"type": "LP", "spot": 200.0, "strike": 230.0, "t": 400 / 365, "vol": 0.22, "quantity": 2},
        {"type": "SC", "spot": 200.0, "strike": 150.0, "t": 3 / 365, "vol": 0.40, "quantity": -1},
    ]
    result = _run(_positions(legs), _betas({"XYZ": FULL_BETAS}), [scenario])
    out = result.frame()
    move = out["move"].iloc[0]
    for leg, pnl in zip(legs, out["pnl_usd"], strict=True):
        flag = "c" if leg["type"] in ("LC", "SC") else "p"
        spot = leg["spot"] * (1 + move)
        shocked = vollib_price(flag, spot, leg["strike"], leg["t"], RATE,
                               leg["vol"] * scenario.vol_multiplier)  # fmt: skip
        today = vollib_price(flag, leg["spot"], leg["strike"], leg["t"], RATE, leg["vol"])
        assert pnl == pytest.approx((shocked - today) * leg["quantity"] * 100, rel=1e-9, abs=1e-9)
    assert (out["method"] == "full_revaluation").all()


def test_delta_gamma_is_close_for_small_shocks_and_far_for_a_crash_on_short_dated_options() -> None:
    small = Scenario("small", "Market -1%", "factor", shocks={"Market": -0.01})
    crash = _option_scenarios()["market_down_35"]
    legs = [  # short-dated, near the money
        {"type": "LC", "spot": 100.0, "strike": 100.0, "t": 14 / 365, "vol": 0.3, "quantity": 10},
        {"type": "LP", "spot": 100.0, "strike": 95.0, "t": 14 / 365, "vol": 0.3, "quantity": 10},
        {"type": "SP", "spot": 100.0, "strike": 100.0, "t": 7 / 365, "vol": 0.3, "quantity": -10},
    ]
    result = _run(_positions(legs), _betas({"XYZ": {"Market": 1.0}}), [small, crash])
    out = result.frame()
    small_rows = out[out["scenario_id"] == "small"]
    crash_rows = out[out["scenario_id"] == "market_down_35"]
    for full, approx in zip(small_rows["pnl_usd"], small_rows["pnl_usd_delta_gamma"], strict=True):
        assert approx == pytest.approx(full, rel=0.02)
    # At-the-money short-dated legs: the quadratic is far off (the call's gamma term even
    # turns its loss into a gain); the book total too.
    full, approx = crash_rows["pnl_usd"].to_numpy(), crash_rows["pnl_usd_delta_gamma"].to_numpy()
    assert np.sign(approx[0]) != np.sign(full[0])
    assert abs(approx[2] - full[2]) > 0.25 * abs(full[2])
    assert abs(approx.sum() - full.sum()) > 0.25 * abs(full.sum())
    # The deep in-the-money put is worth about K e^(-rt) - S: nothing is clipped.
    t = 14 / 365
    today = bs_greeks(100.0, 95.0, t, RATE, 0.3, False)["price"].iloc[0]
    deep = 95.0 * np.exp(-RATE * t) - 65.0
    assert crash_rows.iloc[1]["pnl_usd"] == pytest.approx((deep - today) * 1000, rel=1e-6)


def test_losses_are_not_clipped() -> None:
    crash = _option_scenarios()["market_down_35"]
    legs = [{"type": "LONG", "spot": 10.0, "quantity": 1000}]
    result = _run(_positions(legs), _betas({"XYZ": {"Market": 3.0}}), [crash])
    out = result.frame()
    assert out["pnl_usd"].iloc[0] == pytest.approx(-1.05 * 10_000)  # beyond -100 %
    assert portfolio_stress(result, _positions(legs))["pnl_pct_of_gross"].iloc[0] == pytest.approx(
        -1.05
    )


def test_vol_only_scenario_leaves_stocks_flat_and_reprices_options() -> None:
    vol = _option_scenarios()["vol_up_50pct"]
    legs = [
        {"type": "LONG", "spot": 50.0, "quantity": 100},
        {"type": "LC", "spot": 50.0, "strike": 55.0, "t": 60 / 365, "vol": 0.3, "quantity": 1},
    ]
    result = _run(_positions(legs), _betas({"XYZ": FULL_BETAS}), [vol])
    out = result.frame()
    assert out["pnl_usd"].iloc[0] == 0.0
    expected = (vollib_price("c", 50.0, 55.0, 60 / 365, RATE, 0.45)
                - vollib_price("c", 50.0, 55.0, 60 / 365, RATE, 0.3)) * 100  # fmt: skip
    assert out["pnl_usd"].iloc[1] == pytest.approx(expected, rel=1e-9)
    g = bs_greeks(50.0, 55.0, 60 / 365, RATE, 0.3, True).iloc[0]
    assert out["pnl_usd_delta_gamma"].iloc[1] == pytest.approx(g["vega"] * 15 * 100, rel=1e-12)


def test_fallback_options_are_not_revalued_and_are_counted() -> None:
    legs = [
        {"type": "LONG", "spot": 100.0, "quantity": 10},
        {"type": "LC", "spot": 100.0, "strike": 100.0, "t": 0.1, "vol": 0.3, "quantity": 1,
         "source": "fallback"},
    ]  # fmt: skip
    scenarios = [_option_scenarios()["market_down_10"]]
    result = _run(_positions(legs), _betas({"XYZ": FULL_BETAS}), scenarios)
    out = result.frame()
    assert np.isnan(out["pnl_usd"].iloc[1])
    assert out["reason"].iloc[1].startswith("option without a model volatility")
    agg = portfolio_stress(result, _positions(legs)).iloc[0]
    assert agg["n_missing"] == 1 and agg["pnl_usd"] == pytest.approx(out["pnl_usd"].iloc[0])
    assert agg["method"] == "linear"
    assert agg["reason"] == "1 position(s) without a stress P&L left out of the sum"


def test_a_reason_stands_exactly_where_a_pnl_is_missing() -> None:
    """Every kind of missing P&L in one chunk (no beta for a shocked factor, an underlying
    without betas, a fallback option, an unpriced stock): each NaN P&L has its reason and no
    computed P&L has one, which is what the stored reasons arrays are built from."""
    no_rates = {k: v for k, v in FULL_BETAS.items() if k != "Rates"}
    legs = [
        {"type": "LONG", "spot": 100.0, "quantity": 10},
        {"type": "SHORT", "spot": 50.0, "quantity": -20, "underlying": "NEW"},
        {"type": "LONG", "spot": 20.0, "quantity": 5, "underlying": "GONE"},
        {"type": "LC", "spot": 100.0, "strike": 100.0, "t": 0.1, "vol": 0.3, "quantity": 1},
        {"type": "LP", "spot": 100.0, "strike": 90.0, "t": 0.1, "vol": 0.3, "quantity": 1,
         "source": "fallback"},
        {"type": "LONG", "spot": 30.0, "quantity": 7, "underlying": "NEW"},
    ]  # fmt: skip
    positions = _positions(legs)
    positions.loc[5, "delta_adjusted_exposure"] = np.nan  # no price: no exposure
    chosen = {s.id: s for s in load_scenarios()}
    scenarios = [chosen["market_down_10"], chosen["rates_up_100bp"], chosen["vol_up_50pct"]]
    result = _run(positions, _betas({"XYZ": FULL_BETAS, "NEW": no_rates}), scenarios)
    missing = ~np.isfinite(result.pnl_usd)
    assert missing.any() and (~missing).any()
    assert (pd.notna(result.reason) == missing).all()
    by_kind = set(result.reason[missing])
    assert by_kind == {
        "no Rates beta", "no move for the underlying",
        "option without a model volatility (fallback Greeks): not revalued",
        "no exposure for the position (unpriced)",
    }  # fmt: skip
    assert (result.reason[2] == "no move for the underlying").all()  # GONE has no betas


# --- portfolio aggregation ------------------------------------------------------------------


def test_portfolio_results_sum_positions_and_name_the_worst() -> None:
    legs = [
        {"type": "LONG", "spot": 100.0, "quantity": 500, "portfolio_id": 1},
        {"type": "SHORT", "spot": 40.0, "quantity": -300, "portfolio_id": 1, "underlying": "ABC"},
        {"type": "SP", "spot": 100.0, "strike": 95.0, "t": 20 / 365, "vol": 0.3, "quantity": -4,
         "portfolio_id": 1},
        {"type": "LONG", "spot": 100.0, "quantity": 10, "portfolio_id": 2},
    ]  # fmt: skip
    positions = _positions(legs)
    scenarios = [_option_scenarios()[s] for s in ("market_down_10", "market_up_10")]
    betas = _betas({"XYZ": FULL_BETAS, "ABC": {**FULL_BETAS, "Market": 0.8}})
    result = _run(positions, betas, scenarios)
    out = result.frame()
    agg = portfolio_stress(result, positions)
    assert list(agg.columns) == list(PORTFOLIO_STRESS_COLUMNS)
    one = agg[(agg["portfolio_id"] == 1) & (agg["scenario_id"] == "market_down_10")].iloc[0]
    rows = out[(out["portfolio_id"] == 1) & (out["scenario_id"] == "market_down_10")]
    assert one["pnl_usd"] == pytest.approx(rows["pnl_usd"].sum())
    gross = 500 * 100 + 300 * 40 + 4 * 100 * positions["option_price"].iloc[2]
    assert one["gross_exposure_usd"] == pytest.approx(gross)
    assert one["pnl_pct_of_gross"] == pytest.approx(one["pnl_usd"] / gross)
    assert one["worst_position_id"] == rows.loc[rows["pnl_usd"].idxmin(), "position_id"]
    assert one["method"] == "full_revaluation" and one["n_positions"] == 3
    two = agg[(agg["portfolio_id"] == 2)].set_index("scenario_id")
    assert (two["method"] == "linear").all()
    assert two.loc["market_up_10", "pnl_usd"] == pytest.approx(10 * 100 * 1.3 * 0.10)
    snap = pd.DataFrame({"trade_date": [DAY], "portfolio_id": [2], "gross_exposure": [4000.0]})
    with_snap = portfolio_stress(result, gross_exposure=snap).set_index(
        ["portfolio_id", "scenario_id"]
    )
    assert with_snap.loc[(2, "market_up_10"), "pnl_pct_of_gross"] == pytest.approx(130 / 4000)
    assert np.isnan(with_snap.loc[(1, "market_up_10"), "pnl_pct_of_gross"])


def test_option_rows_are_stored_and_moves_round_trip_with_their_reasons() -> None:
    """position_stress_pnl gets the options' rows only (a stock's P&L is exposure x move, the
    view's); stress_moves' rows read back as the moves they came from, a NaN move (no Rates
    beta for NEW) with its reason and a complete row with none."""
    from sigmasight_pipeline.assets.stress import move_rows, position_pnl_arrays, stored_moves

    chosen = {s.id: s for s in load_scenarios()}
    scenarios = [chosen["market_down_10"], chosen["rates_up_100bp"]]
    ids = [s.id for s in scenarios]
    no_rates = {k: v for k, v in FULL_BETAS.items() if k != "Rates"}
    moves = underlying_moves(_betas({"XYZ": FULL_BETAS, "NEW": no_rates}), scenarios)
    rows = move_rows(moves, set_id=7)
    by_symbol = rows.set_index("symbol")
    assert by_symbol.loc["XYZ", "reasons"] is None
    assert by_symbol.loc["NEW", "reasons"] == [None, "no Rates beta"]
    back = stored_moves(
        rows.assign(moves=[list(m) for m in rows["moves"]]), ids, set_id=7
    )  # as read back: lists
    np.testing.assert_array_equal(back.move, moves.move)
    assert back.reason.tolist() == moves.reason.tolist()

    positions = _positions([{"type": "LONG", "spot": 180.0, "quantity": 250},
                            {"type": "LC", "spot": 180.0, "quantity": 2, "strike": 175.0,
                             "t": 0.25, "vol": 0.3},
                            {"type": "SP", "spot": 50.0, "quantity": -3, "strike": 45.0,
                             "t": 0.5, "vol": 0.4, "underlying": "NEW"}])  # fmt: skip
    result = position_stress(positions, back, scenarios)
    arrays = position_pnl_arrays(result, set_id=7)
    assert arrays["position_id"].tolist() == [2, 3]
    assert arrays["reasons"].tolist()[0] is None
    assert list(arrays["reasons"].tolist()[1]) == [None, "no Rates beta"]
    np.testing.assert_allclose(
        np.array(arrays["pnl_usd"].tolist(), dtype=float), result.pnl_usd[1:], rtol=1e-6
    )


def test_moves_of_another_scenario_set_are_refused_naming_the_days() -> None:
    from sigmasight_pipeline.assets.stress import move_rows, stored_moves

    scenarios = [s for s in load_scenarios() if s.id == "market_down_10"]
    rows = move_rows(underlying_moves(_betas({"XYZ": FULL_BETAS}), scenarios), set_id=3)
    with pytest.raises(ValueError, match=r"stress_moves on \['2025-06-02'\] are for scenario set"):
        stored_moves(rows, ["market_down_10"], set_id=4)


def _view_rows(conn, where: str = "TRUE", params: tuple = ()) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT r.trade_date, r.portfolio_id, r.position_id, r.scenario_id, r.pnl_usd, "
        "r.pnl_usd_delta_gamma, r.reason, p.position_type, p.underlying "
        "FROM sigmasight.position_stress_results r "
        f"JOIN sigmasight.positions p ON p.id = r.position_id WHERE {where}",
        params,
    ).fetchall()
    columns = ["trade_date", "portfolio_id", "position_id", "scenario_id", "pnl_usd",
               "pnl_usd_delta_gamma", "reason", "position_type", "underlying"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    for name in ("pnl_usd", "pnl_usd_delta_gamma"):
        frame[name] = frame[name].astype(float)
    return frame


def test_the_stress_view_adds_up_to_every_portfolio_result(db_url, demo_backfill) -> None:
    """Over the demo backfill: position_stress_pnl holds options only; the view gives every
    stock its exposure x its underlying's stored move (exactly), and per portfolio, day and
    scenario its rows are the stored result's: n_positions rows, n_missing of them without a
    P&L, and the others sum to pnl_usd (options stored as float4)."""
    import psycopg

    with psycopg.connect(db_url) as conn:
        stored_stocks = conn.execute(
            "SELECT count(*) FROM sigmasight.position_stress_pnl q "
            "JOIN sigmasight.positions p ON p.id = q.position_id "
            "WHERE p.position_type IN ('LONG', 'SHORT')"
        ).fetchone()[0]
        view = _view_rows(conn)
        moves = pd.DataFrame(
            conn.execute(
                "SELECT trade_date, symbol, scenario_id, move "
                "FROM sigmasight.stress_underlying_moves"
            ).fetchall(),
            columns=["trade_date", "underlying", "scenario_id", "move"],
        )
        exposure = pd.DataFrame(
            conn.execute(
                "SELECT trade_date, position_id, exposure FROM sigmasight.position_values"
            ).fetchall(),
            columns=["trade_date", "position_id", "exposure"],
        )
        results = pd.DataFrame(
            conn.execute(
                "SELECT trade_date, portfolio_id, scenario_id, pnl_usd, n_positions, n_missing "
                "FROM sigmasight.portfolio_stress_results"
            ).fetchall(),
            columns=["trade_date", "portfolio_id", "scenario_id", "pnl_usd", "n_positions",
                     "n_missing"],
        )  # fmt: skip
    assert stored_stocks == 0
    stocks = view[view["position_type"].isin(["LONG", "SHORT"])]
    assert len(stocks) > 0 and len(stocks) < len(view)
    expected = stocks.merge(exposure, on=["trade_date", "position_id"]).merge(
        moves, on=["trade_date", "underlying", "scenario_id"]
    )
    assert len(expected) == len(stocks)
    np.testing.assert_array_equal(
        expected["pnl_usd"], expected["exposure"].astype(float) * expected["move"].astype(float)
    )
    np.testing.assert_array_equal(expected["pnl_usd_delta_gamma"], expected["pnl_usd"])
    keys = ["trade_date", "portfolio_id", "scenario_id"]
    missing = view["pnl_usd"].isna()
    grouped = view.assign(missing=missing, gross=view["pnl_usd"].abs()).groupby(keys)
    mine = pd.DataFrame(
        {
            "n": grouped.size(),
            "missing": grouped["missing"].sum(),
            "pnl": grouped["pnl_usd"].sum(),
            "gross": grouped["gross"].sum(),
        }
    )
    both = results.set_index(keys).join(mine, how="outer")
    assert both["n"].notna().all() and both["n_positions"].notna().all()
    assert (both["n"] == both["n_positions"]).all()
    assert (both["missing"] == both["n_missing"]).all()
    assert both["n_missing"].sum() == 0  # the demo book: every P&L computed
    tolerance = 1e-6 * both["gross"] + 1e-6
    assert ((both["pnl_usd"].astype(float) - both["pnl"]).abs() <= tolerance).all()


def test_a_stock_without_a_move_or_a_price_has_its_reason_in_the_view(
    db_url, demo_backfill
) -> None:
    """In a transaction rolled back: one underlying's first move is NaN with its reason,
    another has no stress_moves row, a third position has no exposure. The view gives each
    stock of theirs a NULL or NaN P&L with the reason the stress asset would give."""
    import psycopg

    plan, _ = demo_backfill
    day = plan.window[-1].date()
    with psycopg.connect(db_url) as conn:
        stocks = _view_rows(
            conn, "r.trade_date = %s AND p.position_type IN ('LONG', 'SHORT')", (day,)
        )
        first_scenario = conn.execute(
            "SELECT z.scenario_ids[1] FROM sigmasight.stress_moves m "
            "JOIN sigmasight.stress_scenario_sets z USING (set_id) WHERE m.trade_date = %s "
            "LIMIT 1",
            (day,),
        ).fetchone()[0]
        underlyings = stocks["underlying"].drop_duplicates().tolist()[:3]
        nan_move, no_row, unpriced = underlyings
        unpriced_ids = stocks.loc[stocks["underlying"].eq(unpriced), "position_id"].unique()
        conn.execute(
            "UPDATE sigmasight.stress_moves SET moves[1] = 'NaN', "
            "reasons = array_fill(NULL::text, ARRAY[cardinality(moves)]) WHERE trade_date = %s "
            "AND symbol = %s",
            (day, nan_move),
        )
        conn.execute(
            "UPDATE sigmasight.stress_moves SET reasons[1] = 'no Market beta' "
            "WHERE trade_date = %s AND symbol = %s",
            (day, nan_move),
        )
        conn.execute(
            "DELETE FROM sigmasight.stress_moves WHERE trade_date = %s AND symbol = %s",
            (day, no_row),
        )
        conn.execute(
            "UPDATE sigmasight.position_value_blocks SET exposure = (SELECT array_agg(CASE "
            "WHEN i = ANY(%s) THEN NULL ELSE x END ORDER BY k) FROM unnest(position_id, "
            "exposure) WITH ORDINALITY u (i, x, k)) WHERE trade_date = %s",
            ([int(i) for i in unpriced_ids], day),
        )
        after = _view_rows(
            conn, "r.trade_date = %s AND p.position_type IN ('LONG', 'SHORT')", (day,)
        )
        conn.rollback()
    assert len(after) == len(stocks)
    of = after.groupby("underlying")
    nan_rows = of.get_group(nan_move)
    first = nan_rows["scenario_id"].eq(first_scenario)
    assert nan_rows.loc[first, "pnl_usd"].isna().all()
    assert set(nan_rows.loc[first, "reason"]) == {"no Market beta"}
    assert nan_rows.loc[~first, "reason"].isna().all()
    assert np.isfinite(nan_rows.loc[~first, "pnl_usd"]).all()
    assert of.get_group(no_row)["pnl_usd"].isna().all()
    assert set(of.get_group(no_row)["reason"]) == {"no move for the underlying"}
    assert of.get_group(unpriced)["pnl_usd"].isna().all()
    assert set(of.get_group(unpriced)["reason"]) == {"no exposure for the position (unpriced)"}
    others = after[~after["underlying"].isin(underlyings)]
    assert others["reason"].isna().all() and np.isfinite(others["pnl_usd"]).all()


def test_portfolio_sums_and_worst_positions_equal_a_pandas_groupby() -> None:
    """Many portfolios and days at once, with ties, NaN P&L (an unvalued option, a symbol
    without betas) and a portfolio-day whose every P&L is missing: the sums, counts and worst
    positions equal pandas' groupby on the long rows."""
    rng = np.random.default_rng(11)
    legs = []
    for k in range(60):
        option = k % 4 == 0
        leg = {"type": "LC" if option else ("LONG" if k % 3 else "SHORT"),
               "spot": 100.0, "quantity": int(rng.integers(1, 5)) * (1 if k % 3 else -1),
               "portfolio_id": k % 5, "underlying": ["XYZ", "ABC", "NOB"][k % 3]}  # fmt: skip
        if option:
            leg |= {"strike": 100.0 + k, "t": 0.2, "vol": 0.3}
            leg["source"] = "fallback" if k % 8 == 0 else "model"
        legs.append(leg)
    legs.append({"type": "LONG", "spot": 100.0, "quantity": 7, "portfolio_id": 9,
                 "underlying": "NOB"})  # fmt: skip
    positions = _positions(legs)
    positions["trade_date"] = DAY + pd.to_timedelta(np.arange(len(positions)) % 2, unit="D")
    betas = _betas({"XYZ": FULL_BETAS, "ABC": {**FULL_BETAS, "Market": 0.8}})
    betas = pd.concat([betas, betas.assign(trade_date=DAY + pd.Timedelta(days=1))])
    chosen = {s.id: s for s in load_scenarios()}
    scenarios = [chosen[s] for s in ("market_down_10", "vol_up_50pct", "rates_up_100bp")]
    result = _run(positions, betas, scenarios)
    agg = portfolio_stress(result).set_index(["trade_date", "portfolio_id", "scenario_id"])
    agg = agg.sort_index()
    rows = result.frame()
    keys = ["trade_date", "portfolio_id", "scenario_id"]
    grouped = rows.groupby(keys)
    pd.testing.assert_series_equal(
        agg["n_missing"], grouped["pnl_usd"].apply(lambda s: s.isna().sum()), check_names=False
    )
    pd.testing.assert_series_equal(
        agg["n_positions"], grouped.size().astype(agg["n_positions"].dtype), check_names=False
    )
    expected = grouped["pnl_usd"].sum(min_count=1)
    np.testing.assert_allclose(agg["pnl_usd"], expected.loc[agg.index], rtol=1e-12)
    valued = rows.dropna(subset=["pnl_usd"]).sort_values(["pnl_usd", "position_id"])
    worst = valued.drop_duplicates(keys).set_index(keys)["position_id"]
    assert agg["worst_position_id"].dropna().astype(int).to_dict() == worst.to_dict()
    assert agg.loc[agg["n_missing"] == agg["n_positions"], "worst_position_id"].isna().all()
    assert (agg["n_missing"] == agg["n_positions"]).any()  # portfolio 9: NOB has no betas
    assert set(agg["pnl_usd"][agg["n_missing"] == agg["n_positions"]].isna()) == {True}


def test_a_scenario_set_is_kept_as_position_rows_follow_its_order(db_url) -> None:
    """sql/0016: the set table refuses a delete or a reordering (what the per-row foreign key
    of position_stress_pnl guarded); `scenario_set_id` gets the same id again."""
    import psycopg

    from sigmasight_pipeline.assets.stress import scenario_set_id
    from sigmasight_pipeline.resources.database import transaction

    ids = ["kept_a", "kept_b"]
    set_id = scenario_set_id(db_url, ids)
    assert scenario_set_id(db_url, ids) == set_id
    for statement in (
        "DELETE FROM sigmasight.stress_scenario_sets WHERE set_id = %s",
        "UPDATE sigmasight.stress_scenario_sets SET scenario_ids = "
        "ARRAY['kept_b', 'kept_a'] WHERE set_id = %s",
    ):
        refused = pytest.raises(psycopg.errors.RestrictViolation, match=f"set {set_id} is kept")
        with refused, transaction(db_url) as conn:
            conn.execute(statement, (set_id,))
    with transaction(db_url) as conn:
        kept = conn.execute(
            "SELECT scenario_ids FROM sigmasight.stress_scenario_sets WHERE set_id = %s",
            (set_id,),
        ).fetchone()
    assert kept == (ids,)
