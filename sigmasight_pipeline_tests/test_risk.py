"""Risk metrics against independent references: empyrical, numpy, statsmodels, hand cases."""

from __future__ import annotations

import threading
import time
import warnings

import empyrical
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import norm

from sigmasight_pipeline.analytics.risk import (
    RISK_METRIC_COLUMNS,
    Z_95,
    annual_volatility,
    beta_against,
    daily_risk_free,
    historical_var_cvar,
    max_drawdown,
    parametric_cvar,
    parametric_var,
    rolling_parametric_var,
    rolling_risk_metrics,
    sharpe_ratio,
    sortino_ratio,
)

RF = 0.05


def _market(n_days: int = 150, seed: int = 7) -> tuple[pd.DataFrame, pd.Series]:
    """SPY and three portfolios with planted betas 1.3, -0.5 and 0.8 (the last starts late)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-02", periods=n_days)
    spy = pd.Series(rng.normal(0.0004, 0.011, n_days), index=dates)
    returns = pd.DataFrame(
        {
            "p1": 1.3 * spy + rng.normal(0.0002, 0.006, n_days),
            "p2": -0.5 * spy + rng.normal(0.0, 0.004, n_days),
            "p3": 0.8 * spy + rng.normal(0.0, 0.008, n_days),
        },
        index=dates,
    )
    returns.iloc[:120, 2] = np.nan  # p3 has 30 days of history at the end
    returns.iloc[[100, 131, 140], 0] = np.nan  # holes inside p1's windows
    spy.iloc[[135, 138]] = np.nan  # SPY holes: beta must use paired days only
    return returns, spy


def _row(frame: pd.DataFrame, day: pd.Timestamp, portfolio: str) -> pd.Series:
    match = frame[(frame["trade_date"] == day) & (frame["portfolio_id"] == portfolio)]
    assert len(match) == 1
    return match.iloc[0]


def _hostile_block(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """252 sessions x 9 portfolios: holes, a late start, a constant column, a column with no
    loss, one with only losses, a -100 % day, a 2-observation column; and a market with holes."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0003, 0.012, 252)
    block = 0.9 * market[:, None] + rng.normal(0.0, 0.008, (252, 9))
    block[rng.random((252, 9)) < 0.1] = np.nan
    block[:200, 1] = np.nan  # late start
    block[:, 2] = np.where(np.isnan(block[:, 2]), np.nan, 0.001)  # constant: zero dispersion
    block[:, 3] = np.abs(block[:, 3]) + 0.001  # never below the risk-free rate: no downside
    block[:, 4] = -np.abs(block[:, 4])  # losses only
    block[17, 5] = -1.0  # wiped out for a day
    block[:, 6] = np.nan
    block[[40, 90], 6] = [0.01, -0.02]  # two observations
    market[[5, 77, 130]] = np.nan
    return block, market


def test_window_metrics_equal_empyrical_on_hostile_columns() -> None:
    """Each vectorized metric equals empyrical's on every column (empyrical takes the columns
    with their NaNs; VaR/CVaR the NaN-free column, as empyrical's VaR needs)."""
    block, market = _hostile_block()
    rf = daily_risk_free(RF)
    paired = np.where(np.isnan(market)[:, None], np.nan, block)
    with np.errstate(all="ignore"):
        ours = {
            "vol": annual_volatility(block), "sharpe": sharpe_ratio(block, rf),
            "sortino": sortino_ratio(block, rf), "beta": beta_against(paired, market),
            "mdd": max_drawdown(block),
        }  # fmt: skip
        var, cvar = historical_var_cvar(block)
        for j in range(block.shape[1]):
            column, clean = block[:, j], block[np.isfinite(block[:, j]), j]
            expected = {
                "vol": empyrical.annual_volatility(column),
                "sharpe": empyrical.sharpe_ratio(column, risk_free=rf),
                "sortino": empyrical.sortino_ratio(column, required_return=rf),
                "beta": empyrical.beta(paired[:, j], market),
                "mdd": empyrical.max_drawdown(column),
            }
            for name, value in expected.items():
                np.testing.assert_allclose(ours[name][j], value, rtol=1e-12, atol=1e-15,
                                           err_msg=f"{name}, column {j}")  # fmt: skip
            assert var[j] == pytest.approx(-empyrical.value_at_risk(clean), rel=1e-12, abs=1e-15)
            assert cvar[j] == pytest.approx(
                -empyrical.conditional_value_at_risk(clean), rel=1e-12, abs=1e-15
            )
    assert ours["sharpe"][2] == np.inf and ours["sortino"][3] == np.inf  # as empyrical
    assert ours["mdd"][5] == -1.0


def test_daily_risk_free_compounds_back() -> None:
    daily = daily_risk_free(RF)
    assert (1 + daily) ** 252 == pytest.approx(1 + RF, rel=1e-12)
    assert daily < RF / 252  # geometric, not simple division


# --- rolling_risk_metrics against empyrical / statsmodels / numpy ------------------------


def test_rolling_metrics_match_references_on_trailing_row_windows() -> None:
    returns, spy = _market()
    ends = returns.index[-15:]
    totals = pd.DataFrame(2_000_000.0, index=returns.index, columns=returns.columns)
    out = rolling_risk_metrics(returns, spy, ends, RF, total_values=totals)
    assert list(out.columns) == list(RISK_METRIC_COLUMNS)
    assert len(out) == 15 * 3
    rf_daily = daily_risk_free(RF)

    for end in ends[::4]:
        pos = returns.index.get_loc(end)
        for pid in ("p1", "p2"):
            row = _row(out, end, pid)
            w60 = returns[pid].iloc[pos - 59 : pos + 1]
            w90 = returns[pid].iloc[pos - 89 : pos + 1]
            s60 = spy.iloc[pos - 59 : pos + 1]
            clean = w60.dropna().to_numpy()

            pair = pd.concat([w60, s60], axis=1).dropna()
            slope = sm.OLS(pair.iloc[:, 0], sm.add_constant(pair.iloc[:, 1])).fit().params.iloc[1]
            cov_ratio = np.cov(pair.iloc[:, 0], pair.iloc[:, 1])[0, 1] / pair.iloc[:, 1].var()
            assert row["beta"] == pytest.approx(slope, rel=1e-10)
            assert row["beta"] == pytest.approx(cov_ratio, rel=1e-10)
            assert row["beta"] == pytest.approx(
                empyrical.beta(pair.iloc[:, 0].to_numpy(), pair.iloc[:, 1].to_numpy()), rel=1e-10
            )

            # ddof=1 sample std is empyrical's annual_volatility convention.
            assert row["volatility_ann"] == pytest.approx(np.std(clean, ddof=1) * np.sqrt(252))
            assert row["volatility_ann"] == pytest.approx(empyrical.annual_volatility(clean))

            excess = clean - rf_daily
            sharpe = excess.mean() / excess.std(ddof=1) * np.sqrt(252)
            downside = np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2)) * np.sqrt(252)
            assert row["sharpe"] == pytest.approx(sharpe)
            assert row["sharpe"] == pytest.approx(empyrical.sharpe_ratio(clean, risk_free=rf_daily))
            assert row["sortino"] == pytest.approx(excess.mean() * 252 / downside)
            assert row["sortino"] == pytest.approx(
                empyrical.sortino_ratio(clean, required_return=rf_daily)
            )

            assert row["max_drawdown"] == pytest.approx(
                empyrical.max_drawdown(w90.dropna().to_numpy())
            )
            var = -empyrical.value_at_risk(clean)
            cvar = -empyrical.conditional_value_at_risk(clean)
            assert row["var_95_1d_hist"] == pytest.approx(var)
            assert row["var_95_1d_hist"] == pytest.approx(-np.percentile(clean, 5))
            assert row["cvar_95_1d_hist"] == pytest.approx(cvar)
            assert row["cvar_95_1d_hist"] >= row["var_95_1d_hist"] > 0
            assert row["var_95_1d_hist_usd"] == pytest.approx(var * 2_000_000.0)
            assert row["cvar_95_1d_hist_usd"] == pytest.approx(cvar * 2_000_000.0)
            assert row["n_obs"] == len(clean)
            assert row["reason"] is None

    # Planted betas are recovered (sanity that windows line up with SPY, not shifted).
    last = out[out["trade_date"] == ends[-1]].set_index("portfolio_id")
    assert last.loc["p1", "beta"] == pytest.approx(1.3, abs=0.15)
    assert last.loc["p2", "beta"] == pytest.approx(-0.5, abs=0.1)


def test_windows_count_rows_not_calendar_days() -> None:
    # Irregular dates with long gaps: a 5-row window spans ~ 5 weeks of calendar time.
    dates = pd.to_datetime(
        ["2024-01-02", "2024-01-09", "2024-01-10", "2024-01-30", "2024-02-01", "2024-02-08"]
    )
    r = pd.DataFrame({"x": [0.5, 0.01, -0.02, 0.03, -0.01, 0.02]}, index=dates)
    spy = pd.Series([0.1, 0.02, -0.01, 0.02, -0.02, 0.01], index=dates)
    out = rolling_risk_metrics(
        r,
        spy,
        [dates[-1]],
        0.0,
        beta_window=5,
        vol_window=5,
        drawdown_window=5,
        var_window=5,
        min_obs=5,
    )
    row = out.iloc[0]
    assert row["n_obs"] == 5
    assert row["volatility_ann"] == pytest.approx(r["x"].iloc[1:].std(ddof=1) * np.sqrt(252))


def test_max_drawdown_hand_case() -> None:
    # Wealth 1.1, 0.88, 0.924, 0.8316, 1.08108: peak 1.1, trough 0.8316.
    dates = pd.bdate_range("2024-05-06", periods=5)
    r = pd.DataFrame({"x": [0.10, -0.20, 0.05, -0.10, 0.30]}, index=dates)
    spy = pd.Series([0.01, -0.01, 0.02, -0.02, 0.0], index=dates)
    kwargs = dict(beta_window=5, vol_window=5, drawdown_window=5, var_window=5, min_obs=2)
    out = rolling_risk_metrics(r, spy, dates[[1, 4]], 0.0, **kwargs)
    assert out.iloc[1]["max_drawdown"] == pytest.approx(0.8316 / 1.1 - 1.0)  # -0.244
    assert out.iloc[0]["max_drawdown"] == pytest.approx(-0.20)  # 1.1 -> 0.88
    # A first-day loss is a drawdown from the starting value.
    first_loss = pd.DataFrame({"x": [-0.10, 0.05]}, index=dates[:2])
    out = rolling_risk_metrics(first_loss, spy, [dates[1]], 0.0, **kwargs)
    assert out.iloc[0]["max_drawdown"] == pytest.approx(-0.10)


def test_historical_var_of_a_known_list() -> None:
    values = np.round(np.linspace(-0.10, 0.10, 21), 10)  # -0.10, -0.09, ..., 0.10
    rng = np.random.default_rng(3)
    shuffled = rng.permutation(values)
    dates = pd.bdate_range("2024-01-02", periods=21)
    r = pd.DataFrame({"x": shuffled}, index=dates)
    spy = pd.Series(rng.normal(0, 0.01, 21), index=dates)
    totals = pd.DataFrame({"x": 1_000_000.0}, index=dates)
    out = rolling_risk_metrics(
        r,
        spy,
        [dates[-1]],
        0.0,
        beta_window=21,
        vol_window=21,
        drawdown_window=21,
        var_window=21,
        min_obs=20,
        total_values=totals,
    )
    row = out.iloc[0]
    # 5th percentile, linear: rank (21-1)*0.05 = 1 -> second-lowest return, -0.09.
    assert row["var_95_1d_hist"] == pytest.approx(0.09)
    # CVaR: mean of the lowest int(20*0.05)+1 = 2 returns.
    assert row["cvar_95_1d_hist"] == pytest.approx(0.095)
    assert row["var_95_1d_hist_usd"] == pytest.approx(90_000.0)
    assert row["cvar_95_1d_hist_usd"] == pytest.approx(95_000.0)


def test_nan_returns_are_dropped_not_propagated() -> None:
    returns, spy = _market()
    end = returns.index[-1]
    window = returns["p1"].iloc[-60:]
    assert window.isna().sum() == 3
    # The trap being avoided: empyrical's historical VaR is NaN with any NaN input.
    assert np.isnan(empyrical.value_at_risk(window.to_numpy()))
    row = _row(rolling_risk_metrics(returns, spy, [end], RF), end, "p1")
    clean = window.dropna().to_numpy()
    assert row["n_obs"] == 57
    assert row["var_95_1d_hist"] == pytest.approx(-np.percentile(clean, 5))
    # Dropped, not zero-filled.
    assert row["var_95_1d_hist"] != pytest.approx(-np.percentile(window.fillna(0.0), 5))
    assert row["volatility_ann"] == pytest.approx(np.std(clean, ddof=1) * np.sqrt(252))
    for col in ("beta", "volatility_ann", "sharpe", "sortino", "max_drawdown", "cvar_95_1d_hist"):
        assert np.isfinite(row[col]), col


def test_min_obs_reason_rows() -> None:
    returns, spy = _market()
    ends = [returns.index[-11], returns.index[-1]]  # p3 has 20 and 30 obs
    out = rolling_risk_metrics(returns, spy, ends, RF, min_obs=25)
    short = _row(out, ends[0], "p3")
    assert short["n_obs"] == 20
    assert short["reason"] == "insufficient history: 20 obs < min_obs 25"
    metric_cols = [c for c in RISK_METRIC_COLUMNS[2:-2]]
    assert short[metric_cols].isna().all()
    enough = _row(out, ends[1], "p3")
    assert enough["n_obs"] == 30
    # 30 returns but two SPY holes in the window: 28 paired days still >= 25.
    assert enough["reason"] is None
    assert np.isfinite(enough["beta"])

    # Partial: only beta is short when SPY is mostly missing.
    spy_sparse = spy.copy()
    spy_sparse.iloc[-60:-10] = np.nan
    row = _row(rolling_risk_metrics(returns, spy_sparse, [ends[1]], RF), ends[1], "p2")
    assert np.isnan(row["beta"])
    assert row["reason"] == "beta: 10 obs < min_obs 20"
    assert np.isfinite(row["volatility_ann"]) and np.isfinite(row["var_95_1d_hist"])


def test_end_date_not_in_returns_and_infinite_ratios() -> None:
    dates = pd.bdate_range("2024-01-02", periods=30)
    r = pd.DataFrame({"flat": 0.001, "up": np.linspace(0.001, 0.01, 30)}, index=dates)
    spy = pd.Series(np.random.default_rng(0).normal(0, 0.01, 30), index=dates)
    out = rolling_risk_metrics(r, spy, [dates[-1], pd.Timestamp("2024-12-25")], 0.0)
    flat = _row(out, dates[-1], "flat")
    assert np.isnan(flat["sharpe"]) and "sharpe undefined" in flat["reason"]
    assert flat["volatility_ann"] == pytest.approx(0.0, abs=1e-12)
    up = _row(out, dates[-1], "up")
    assert np.isnan(up["sortino"]) and "sortino undefined" in up["reason"]
    assert np.isfinite(up["sharpe"])
    missing = _row(out, pd.Timestamp("2024-12-25"), "up")
    assert missing["reason"] == "no return row for the end date"
    assert missing[list(RISK_METRIC_COLUMNS[2:-2])].isna().all()


# --- parametric VaR ---------------------------------------------------------------------


def test_parametric_var_matches_numpy_covariance() -> None:
    rng = np.random.default_rng(11)
    returns = rng.multivariate_normal(
        [0.0, 0.0, 0.0], [[4e-4, 1e-4, -5e-5], [1e-4, 2e-4, 0.0], [-5e-5, 0.0, 1e-4]], size=60
    )
    exposures = np.array([150_000.0, -80_000.0, 40_000.0])
    sigma = np.sqrt(exposures @ np.cov(returns.T) @ exposures)
    assert parametric_var(exposures, returns) == pytest.approx(Z_95 * sigma)
    assert parametric_cvar(exposures, returns) == pytest.approx(sigma * norm.pdf(Z_95) / 0.05)
    # Listwise deletion: a NaN drops the whole row.
    holed = returns.copy()
    holed[[3, 17], [0, 2]] = np.nan
    complete = np.delete(returns, [3, 17], axis=0)
    sigma_c = np.sqrt(exposures @ np.cov(complete.T) @ exposures)
    assert parametric_var(exposures, holed) == pytest.approx(Z_95 * sigma_c)


def test_parametric_var_two_asset_closed_form() -> None:
    # Orthogonal, zero-mean columns: sample variances 4/3 s^2, covariance exactly 0.
    base_x = np.array([1.0, -1.0, 1.0, -1.0])
    base_y = np.array([1.0, 1.0, -1.0, -1.0])
    returns = np.column_stack([0.01 * base_x, 0.02 * base_y])
    e = np.array([1_000_000.0, -500_000.0])
    sigma = 1e4 * np.sqrt(8.0 / 3.0)  # sqrt((1e4^2 + 1e4^2) * 4/3)
    assert parametric_var(e, returns) == pytest.approx(1.6448536269514722 * sigma)
    assert parametric_cvar(e, returns) == pytest.approx(sigma * 2.0627128075074257)
    # Perfectly correlated long/short of equal dollars is fully hedged.
    hedge = np.column_stack([0.01 * base_x, 0.01 * base_x])
    assert parametric_var(np.array([1e6, -1e6]), hedge) == pytest.approx(0.0, abs=1e-6)
    # Zero exposures ignore a symbol with no history; all-zero exposures give 0.
    no_history = np.column_stack([0.01 * base_x, np.full(4, np.nan)])
    assert parametric_var(np.array([1e6, 0.0]), no_history) == pytest.approx(
        1.6448536269514722 * 1e4 * np.sqrt(4.0 / 3.0)
    )
    assert parametric_var(np.zeros(2), returns) == 0.0


@settings(max_examples=40, deadline=None)
@given(
    returns=arrays(np.float64, (25, 3), elements=st.floats(-0.2, 0.2)),
    exposures=arrays(np.float64, 3, elements=st.floats(-1e6, 1e6)),
    scale=st.floats(-10, 10),
)
def test_parametric_var_is_nonnegative_and_homogeneous(
    returns: np.ndarray, exposures: np.ndarray, scale: float
) -> None:
    var = parametric_var(exposures, returns)
    assert var >= 0
    scaled = parametric_var(scale * exposures, returns)
    assert scaled == pytest.approx(abs(scale) * var, rel=1e-6, abs=1e-6)


def test_rolling_parametric_var_aggregates_and_windows() -> None:
    rng = np.random.default_rng(5)
    dates = pd.bdate_range("2024-01-02", periods=80)
    symbol_returns = pd.DataFrame(
        rng.normal(0, 0.015, (80, 3)), index=dates, columns=["AAPL", "MSFT", "NEW"]
    )
    symbol_returns.iloc[:70, 2] = np.nan  # NEW listed 10 sessions ago
    symbol_returns.iloc[50, 1] = np.nan
    end = dates[-1]
    exposures = pd.DataFrame(
        {
            "trade_date": [end] * 6 + [dates[-2]],
            "portfolio_id": [1, 1, 1, 2, 2, 3, 1],
            # Portfolio 1: stock + delta-adjusted option on AAPL (summed), short MSFT.
            "symbol": ["AAPL", "AAPL", "MSFT", "AAPL", "NEW", "ZZZZ", "AAPL"],
            "exposure": [100_000.0, 25_000.0, -60_000.0, 50_000.0, 10_000.0, 5.0, 1.0],
        }
    )
    out = rolling_parametric_var(exposures, symbol_returns, [end], window=60, min_obs=20)
    assert list(out.columns) == [
        "trade_date",
        "portfolio_id",
        "var_95_1d",
        "cvar_95_1d",
        "n_obs",
        "reason",
    ]
    assert list(out["portfolio_id"]) == [1, 2, 3]
    p1 = out.iloc[0]
    window = symbol_returns.iloc[-60:][["AAPL", "MSFT"]]
    assert p1["n_obs"] == 59  # one MSFT hole drops one row
    expected = parametric_var(np.array([125_000.0, -60_000.0]), window.to_numpy())
    assert p1["var_95_1d"] == pytest.approx(expected)
    e = np.array([125_000.0, -60_000.0])
    sigma = np.sqrt(e @ np.cov(window.dropna().to_numpy().T) @ e)
    assert p1["var_95_1d"] == pytest.approx(Z_95 * sigma)
    assert p1["cvar_95_1d"] == pytest.approx(sigma * norm.pdf(Z_95) / 0.05)
    assert p1["reason"] is None
    p2, p3 = out.iloc[1], out.iloc[2]
    assert p2["n_obs"] == 10 and np.isnan(p2["var_95_1d"])
    assert p2["reason"] == "10 complete obs < min_obs 20"
    assert np.isnan(p3["var_95_1d"]) and "ZZZZ" in p3["reason"]

    # Default end dates = every exposure date; the earlier date uses its own window.
    both = rolling_parametric_var(exposures, symbol_returns)
    early = both[(both["trade_date"] == dates[-2])].iloc[0]
    aapl = symbol_returns["AAPL"].iloc[-61:-1].to_numpy()
    assert early["var_95_1d"] == pytest.approx(Z_95 * aapl.std(ddof=1) * 1.0)


# --- input validation (issue 9, defect 14) -----------------------------------------------------


def test_infinite_returns_raise_naming_where() -> None:
    """+-inf returns once gave NaN metrics with wrong reasons."""
    returns, spy = _market()
    bad = returns.copy()
    bad.iloc[-5, 1] = np.inf
    day = returns.index[-5].strftime("%Y-%m-%d")
    with pytest.raises(ValueError, match=rf"portfolio_returns has 1 infinite .*\({day}, p2\)"):
        rolling_risk_metrics(bad, spy, [returns.index[-1]], RF)
    bad_spy = spy.copy()
    bad_spy.iloc[-5] = -np.inf
    with pytest.raises(ValueError, match=rf"spy_returns has 1 infinite value\(s\) at {day}"):
        rolling_risk_metrics(returns, bad_spy, [returns.index[-1]], RF)


def test_returns_below_minus_one_are_rejected() -> None:
    """A -2,562 % day once gave a max drawdown of -43.8: a drawdown is never below -1."""
    returns, spy = _market()
    bad = returns.copy()
    bad.iloc[-5, 0] = -25.62
    with pytest.raises(ValueError, match="below -100 %"):
        rolling_risk_metrics(bad, spy, [returns.index[-1]], RF)
    # Exactly -100 % is a possible (total) loss and is kept: the drawdown is then -1.
    bad.iloc[-5, 0] = -1.0
    row = _row(rolling_risk_metrics(bad, spy, [returns.index[-1]], RF), returns.index[-1], "p1")
    assert row["max_drawdown"] == pytest.approx(-1.0)


def test_rolling_parametric_var_unpriced_exposure_is_not_zero() -> None:
    """A NaN exposure (an unpriced position) used to be summed as 0 into the VaR."""
    rng = np.random.default_rng(2)
    dates = pd.bdate_range("2024-01-02", periods=60)
    symbol_returns = pd.DataFrame(rng.normal(0, 0.01, (60, 2)), index=dates, columns=["A", "B"])
    exposures = pd.DataFrame(
        {
            "trade_date": [dates[-1]] * 3,
            "portfolio_id": [1, 1, 2],
            "symbol": ["A", "B", "A"],
            "exposure": [1000.0, np.nan, 500.0],
        }
    )
    out = rolling_parametric_var(exposures, symbol_returns).set_index("portfolio_id")
    assert np.isnan(out.loc[1, "var_95_1d"])
    assert out.loc[1, "reason"] == "no exposure (unpriced position) for symbols ['B']"
    assert out.loc[2, "var_95_1d"] == pytest.approx(Z_95 * 500 * symbol_returns["A"].std(ddof=1))
    with pytest.raises(ValueError, match="symbol_returns has 1 infinite"):
        rolling_parametric_var(exposures, symbol_returns.replace(symbol_returns.iloc[3, 0], np.inf))


def test_metrics_leave_other_threads_warnings_alone() -> None:
    """Steps run in threads: while risk metrics run (portfolios with too short a history
    included), a warning another thread raises is still shown, and the metrics raise none."""
    returns, spy = _market()
    returns = pd.concat([returns.add_suffix(f"_{i}") for i in range(20)], axis=1)
    emitted = 0
    running = threading.Event()
    done = threading.Event()

    def warn_meanwhile() -> None:
        nonlocal emitted
        running.wait()
        while not done.is_set():
            warnings.warn("from another step", RuntimeWarning, stacklevel=1)
            emitted += 1
            time.sleep(0.0005)

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        other = threading.Thread(target=warn_meanwhile)
        other.start()
        running.set()
        try:
            out = rolling_risk_metrics(returns, spy, returns.index[20:], RF)
        finally:
            done.set()
            other.join()
    assert out["reason"].str.contains("obs < min_obs", na=False).any()  # short columns ran
    assert emitted > 0
    assert [str(w.message) for w in shown] == ["from another step"] * emitted
